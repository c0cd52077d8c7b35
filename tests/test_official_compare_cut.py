"""tools/compare_cut.py: ganzoo's cut_reference against the official CUT code on copied weights.

The comparison needs a checkout of taesungp/contrastive-unpaired-translation, named by
``GANZOO_OFFICIAL_CUT``; without one it is skipped (CI has none). The bad-input path always runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "compare_cut.py"
OFFICIAL = os.environ.get("GANZOO_OFFICIAL_CUT")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=300)


def test_without_a_checkout_one_line_and_exit_2(tmp_path):
    proc = _run("--official", str(tmp_path / "missing"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a checkout of taesungp/contrastive-unpaired-translation" \
        in lines[0], proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(not OFFICIAL, reason="set GANZOO_OFFICIAL_CUT to a checkout of "
                    "taesungp/contrastive-unpaired-translation")
@pytest.mark.parametrize("mode", ["cut", "fastcut"])
def test_matches_the_official_code_on_copied_weights(mode):
    """Outputs, losses and (relative) gradients agree to float32 rounding: 1e-4 leaves room for
    summation order across ~5e5 parameters, far below the 1e-2 the PatchNCE eps once made."""
    proc = _run("--official", OFFICIAL, "--mode", mode)
    assert proc.returncode == 0, proc.stderr[-2000:]
    worst = float(re.search(r"largest difference: (\S+)", proc.stdout).group(1))
    assert worst < 1e-4, proc.stdout
    assert "PatchNCE(G(a), a)" in proc.stdout


@pytest.mark.slow
@pytest.mark.skipif(not OFFICIAL, reason="set GANZOO_OFFICIAL_CUT to a checkout of "
                    "taesungp/contrastive-unpaired-translation")
@pytest.mark.parametrize("mode", ["cut", "fastcut"])
def test_ten_training_iterations_match_the_official_updates_in_float64(mode):
    """Ten iterations through ganzoo's Trainer against the official optimize_parameters, from
    the same weights on the same batches and patches: in float64 the rounding stays near 1e-16,
    so agreement to 1e-9 says the optimizers, groups and update order are the official ones
    (in float32 the two runs part within a few steps, as any two roundings do)."""
    proc = _run("--official", OFFICIAL, "--mode", mode, "--train-steps", "10",
                "--train-dtype", "float64")
    assert proc.returncode == 0, proc.stderr[-2000:]
    worst = float(re.search(r"largest difference after 10 iterations .*: (\S+)",
                            proc.stdout).group(1))
    assert worst < 1e-9, proc.stdout
    assert proc.stdout.count("\n| 9 |") == 1  # all ten steps ran on both sides
