"""What a user sees in a terminal: the commands run as real processes under a pseudo-terminal
(Python's ``pty``): progress of ``sample``, Ctrl-C (SIGINT) in ``sample``, the ``train``
startup line and progress bar. In-process checks of the same (logs, exit codes) are in
test_cli.py."""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import struct
import subprocess
import sys
import termios

import pytest

import ganzoo

from conftest import wait_for

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "ganzoo.cli"]


def run_in_pty(cmd: list[str], size: tuple[int, int] = (24, 100),
               timeout: float = 120) -> tuple[int, str]:
    """Run ``cmd`` with stdin, stdout and stderr on a pseudo-terminal of ``size`` (rows,
    columns); (0, 0) is a terminal whose size was never set (``docker exec``, ``script``)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return proc.wait(timeout=timeout), out.decode(errors="replace")


def screen_lines(raw: str) -> list[str]:
    """The lines a terminal shows: a carriage return goes back to the line's start, and
    what follows overwrites it (tqdm redraws its bar so)."""
    lines = []
    for line in raw.replace("\r\n", "\n").split("\n"):
        shown = ""
        for part in line.split("\r"):
            shown = part + shown[len(part):]
        lines.append(shown.rstrip())
    return [line for line in lines if line]


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A saved test_dcgan (its EMA copies equal the live weights: EMA starts at 20,000)."""
    folder = tmp_path_factory.mktemp("model") / "final"
    ganzoo.build("test_dcgan").save_pretrained(folder)
    return folder


# -- sample ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(24, 100), (0, 0)], ids=["sized", "no-size"])
def test_sample_shows_progress_on_a_terminal(saved_model, tmp_path, size):
    """A bar with images written, images per second and time left; also on a terminal that
    reports no size, where tqdm hid its bar (0 rows) and the command printed nothing."""
    code, raw = run_in_pty([*CLI, "sample", str(saved_model), "-n", "24", "--batch-size", "8",
                            "--out-dir", str(tmp_path / "out")], size)
    assert code == 0, raw
    shown = screen_lines(raw)
    bars = [line for line in shown if line.startswith("sampling test_dcgan")]
    assert bars, shown
    assert "24/24" in bars[-1] and "img/s" in bars[-1] and "100%" in bars[-1], bars
    assert shown[-1].startswith("wrote 24 images (0 already there)"), shown
    assert "(live weights: EMA starts at step 20,000)" in shown[-1]


def test_ctrl_c_in_sample_says_what_is_complete(saved_model, tmp_path):
    """SIGINT mid-run: exit 130, one line with the images complete and how to resume, no
    traceback (it printed a 61-line KeyboardInterrupt traceback)."""
    out = tmp_path / "out"
    proc = subprocess.Popen([*CLI, "sample", str(saved_model), "-n", "200000", "--batch-size",
                             "8", "--out-dir", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(list(out.glob("*.png"))) >= 16, proc, what="the first images")
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    line = stderr.strip()
    prefix = "ganzoo sample: interrupted: "
    assert line.startswith(prefix), line
    complete = int(line[len(prefix):].split()[0])
    assert line.endswith(f" of 200000 images are complete in {out}; run the same command "
                         f"again to resume"), line
    assert complete >= 16 and complete % 8 == 0, line  # whole batches
    assert all((out / f"{i:06d}.png").is_file() for i in range(complete))
    assert stdout == ""


# -- train ----------------------------------------------------------------------------------------
def test_train_prints_one_startup_line_and_one_final_bar(tmp_path):
    """The startup line replaces the 53-line config dump (config.json keeps it all); each loss
    shows once in the bar; a checkpoint saved at the last step prints above the bar, not into
    its line (which left two 100% bars)."""
    out = tmp_path / "run"
    code, raw = run_in_pty([*CLI, "train", "--model", "test_dcgan", "--dataset", "digits",
                            "--set", "resolution=16", "--batch-size", "8", "--max-steps", "6",
                            "--save-every", "3", "--log-every", "1", "--sample-every", "0",
                            "-o", str(out)])
    assert code == 0, raw
    shown = screen_lines(raw)
    assert shown[0] == (f"training test_dcgan (0.035 M params) on digits, 6 steps, batch 8, "
                        f"cpu, fp32, channels_last, EMA from step 20,000, after this run "
                        f"(samples: live weights) -> {out}"), shown
    assert "{" not in raw and (out / "config.json").is_file()
    bars = [line for line in shown if line.startswith("train:")]
    assert len([b for b in bars if "100%" in b]) == 1, shown
    assert "disc:loss=" in bars[-1] and "d_loss" not in raw and "g_loss" not in raw, bars
    saved = [line for line in shown if "saved" in line]
    assert saved == [f"step 3: saved {out / 'checkpoints' / 'step_00000003'}",
                     f"step 6: saved {out / 'checkpoints' / 'step_00000006'}",
                     f"step 6: saved {out / 'final'}"], shown
