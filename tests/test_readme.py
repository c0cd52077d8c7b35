"""The README runs as written: every shell command and Python block, in order, in one folder.

Commands that train get ``--max-steps 2``, evaluations ``n = 8``, bulk samples (``-n`` of 1000
or more) ``-n 8``, and a Hub dataset id in ``data.path=org/name`` becomes a ``save_to_disk``
folder of 32 embedded ``shapes`` images written here (the only rewrites: no network). The
Inception weights are seeded random ones (``GANZOO_FID_WEIGHTS``) and the Hub is the loopback
server. Left out, each for a stated reason: ``pip install`` (CI has just run it), the README's
own test command (this suite), ``accelerate config`` (interactive), placeholders (``...``),
benchmark scripts (long by nature; their docs say how long), and non-runnable blocks (TOML,
the plugin skeleton with ``...`` bodies, the layout listing).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import run_python
from hub_server import FakeHub

README = Path(__file__).resolve().parents[1] / "README.md"
SKIPPED = ("pip install", "python -m pytest", "accelerate config", "python benchmarks/",
           "bash benchmarks/", "python tools/")


def blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of every fenced block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.M | re.S)


def shell_commands(body: str) -> list[str]:
    out = []
    for line in body.splitlines():
        line = re.sub(r"\s+#\s.*$", "", line).strip()  # a trailing comment
        if not line or line.startswith("#"):
            continue
        for part in line.split(" && "):
            part = part.strip()
            if part.startswith(SKIPPED) or " ..." in f" {part}":
                continue
            out.append(part)
    return out


def is_skeleton(body: str) -> bool:
    """A block with ``...`` in its code (not its comments) is a sketch to fill in."""
    return "..." in "\n".join(line.split("#")[0] for line in body.splitlines())


def cheap(command: str, hf_dataset: str = "") -> str:
    command = re.sub(r"--max-steps \d+", "--max-steps 2", command)
    command = re.sub(r"(^| )-n \d{4,}", r"\1-n 8", command)
    if hf_dataset:
        command = re.sub(r"data\.path=[\w.-]+/[\w.-]+", f"data.path={hf_dataset}", command)
    return re.sub(r"--n \d+", "--n 8", command)


def write_hf_dataset(folder: Path) -> str:
    """A ``datasets`` folder (save_to_disk) standing in for a Hub dataset id."""
    import datasets
    import numpy as np
    from PIL import Image

    import ganzoo

    shapes = ganzoo.build_dataset("shapes", resolution=32, size=32)
    images = [Image.fromarray(((shapes[i]["image"].permute(1, 2, 0).numpy() + 1) * 127.5)
                              .round().astype(np.uint8)) for i in range(len(shapes))]
    features = datasets.Features({"image": datasets.Image()})
    datasets.Dataset.from_dict({"image": images}, features=features).save_to_disk(str(folder))
    return str(folder)


def test_readme_blocks_are_found():
    langs = [lang for lang, _ in blocks(README.read_text())]
    assert langs.count("bash") >= 4
    python = [body for lang, body in blocks(README.read_text()) if lang == "python"]
    assert [is_skeleton(b) for b in python] == [False, True]  # quick start runs; plugin sketch


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_readme_runs_as_written(tmp_path):
    from ganzoo.metrics.extractors import random_inception_state_dict

    weights = tmp_path / "inception.pth"
    torch.save(random_inception_state_dict(), weights)
    env = {**os.environ, "GANZOO_FID_WEIGHTS": str(weights), "GANZOO_CACHE": str(tmp_path / "c"),
           "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": "hf_test_token",
           "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1", "OMP_NUM_THREADS": "1"}
    bin_dir = str(Path(sys.executable).parent)  # ganzoo, torchrun, accelerate of this venv
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env["HF_DATASETS_OFFLINE"] = "1"
    work = tmp_path / "clone"
    work.mkdir()
    hf_dataset = write_hf_dataset(tmp_path / "hf_dataset")
    ran = []
    with FakeHub() as hub:
        env["HF_ENDPOINT"] = hub.url
        for lang, body in blocks(README.read_text()):
            if lang == "bash":
                for command in shell_commands(body):
                    command = cheap(command, hf_dataset)
                    proc = subprocess.run(shlex.split(command), cwd=work, env=env, text=True,
                                          capture_output=True, timeout=300)
                    assert proc.returncode == 0, f"{command}\n{proc.stderr[-3000:]}"
                    ran.append(command.split()[0:2])
            elif lang == "python" and not is_skeleton(body):
                code = re.sub(r"\bn=\d+", "n=8", body)
                proc = run_python(code, env=env, timeout=300, cwd=work)
                assert proc.returncode == 0, f"{code}\n{proc.stderr[-3000:]}"
                ran.append(["python", "block"])
        assert "me/my-dcgan" in hub.repos  # the quick start's push_to_hub went through
        pushed = hub.repos["me/anime-ddpm"].files  # the diffusers-style workflow's last step
        assert {"model.safetensors", "config.json", "README.md", "samples.png"} <= set(pushed)
        assert b'ganzoo.from_pretrained("me/anime-ddpm")' in pushed["README.md"]
    assert (work / "runs" / "quickstart" / "final" / "model.safetensors").is_file()
    assert (work / "runs" / "grid.png").is_file() and (work / "runs" / "fid.json").is_file()
    assert (work / "runs" / "anime-diffusers" / "model_index.json").is_file()
    assert len(list((work / "runs" / "anime-samples").glob("*.png"))) == 8
    assert ["torchrun", "--standalone"] in ran and ["accelerate", "launch"] in ran
    assert not list(work.glob("*.png")) + list(work.glob("*.json"))  # nothing in the root
