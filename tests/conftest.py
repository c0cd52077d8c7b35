"""Shared fixtures: real plugin distributions on sys.path, registry refresh, small helpers."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).parent
PLUGINS = TESTS / "plugins"
REPO = TESTS.parent

# Keep tests single-threaded per process: the suite runs on 2 cores with pytest-xdist, and
# oversubscribed threads make tiny convolutions far slower. Subprocesses inherit the variable.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def refresh_registries() -> None:
    from ganzoo.registry import DATASETS, LOSSES, METRICS, MODELS

    for reg in (MODELS, LOSSES, DATASETS, METRICS):
        reg.refresh()


def make_dist(root: Path, dist: str, entry_points: dict[str, dict[str, str]],
              modules: dict[str, str]) -> Path:
    """Write a real installed distribution (``.dist-info`` + modules) under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = []
    for group, entries in entry_points.items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {target}" for name, target in entries.items()]
        lines.append("")
    (info / "entry_points.txt").write_text("\n".join(lines))
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))
    return root


@pytest.fixture
def plugin_path(monkeypatch):
    """Put directories on sys.path as installed plugins; registries are refreshed around it."""
    added: list[str] = []

    def add(path: Path) -> None:
        monkeypatch.syspath_prepend(str(path))
        added.append(str(path))
        refresh_registries()

    yield add
    for name in [m for m, mod in sys.modules.items()
                 if any(str(getattr(mod, "__file__", "") or "").startswith(p) for p in added)]:
        del sys.modules[name]
    monkeypatch.undo()
    refresh_registries()


@pytest.fixture
def toy_plugin(plugin_path):
    """The ``ganzoo-toy`` plugin distribution (tests/plugins): a tiny GAN and a dataset."""
    plugin_path(PLUGINS)
    return PLUGINS


def group_backward(model, group: str, batch, step: int = 0):
    """Loss and backward of one optimizer group as the trainer runs them: only that group's
    parameters require grad, and every gradient starts empty."""
    own = {id(p) for p in model.group_parameters(group)}
    for p in model.parameters():
        p.requires_grad_(id(p) in own)
        p.grad = None
    loss, logs = model(group, batch, step)
    loss.backward()
    return loss, logs


def run_python(code: str, env: dict | None = None, timeout: int = 120, cwd=None):
    """Run code in a fresh interpreter (real process, real environment)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=full_env, timeout=timeout, cwd=cwd)


def wait_for(predicate, proc, timeout: float = 90.0, what: str = "condition",
             group: bool = False) -> None:
    """Poll ``predicate`` until it holds; fail with the process's output if ``proc`` exits
    first, and kill it (its whole process group with ``group``) on timeout."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"process exited ({proc.returncode}) before {what}:\n{out}\n"
                                 f"{err}")
        time.sleep(0.05)
    if group:
        os.killpg(proc.pid, signal.SIGKILL)
    else:
        proc.kill()
    raise AssertionError(f"timed out waiting for {what}")


def load_benchmark(name: str):
    """``benchmarks/NAME.py`` as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module
