"""The ``ganzoo`` command line: list, info, sample; the README's model table."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from ganzoo.cli import main, model_table

from conftest import REPO


def test_list_and_info(toy_plugin, capsys):
    assert main(["list", "datasets", "shapes*"]) == 0
    out = capsys.readouterr().out.split()
    assert "shapes_attr" in out and "celeba" not in out
    assert main(["list", "models"]) == 0
    assert "toy_gan" in capsys.readouterr().out.split()
    assert main(["info", "toy_gan"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["distribution"] == "ganzoo-toy" and info["config"]["latent_dim"] == 4


def test_unknown_name_is_a_short_error(capsys):
    assert main(["info", "dcgann_xyz"]) == 2
    assert "Unknown ganzoo model 'dcgann_xyz'" in capsys.readouterr().err


def test_sample_untrained_and_saved(toy_plugin, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "grid.png"
    assert main(["sample", "toy_gan", "-n", "4", "--out", str(out)]) == 2
    assert "bare preset: its weights are random" in capsys.readouterr().err
    assert not out.exists()
    assert main(["sample", "toy_gan", "-n", "4", "--out", str(out), "--seed", "1",
                 "--untrained"]) == 0
    assert "random (untrained) weights" in capsys.readouterr().err
    assert Image.open(out).size[0] > 8
    import ganzoo

    ganzoo.build("toy_gan").save_pretrained(tmp_path / "saved")
    out2 = tmp_path / "grid2.png"
    assert main(["sample", str(tmp_path / "saved"), "-n", "4", "--out", str(out2)]) == 0
    assert out2.exists()


def test_console_script_is_installed():
    exe = shutil.which("ganzoo") or pytest.skip("console script not on PATH")
    proc = subprocess.run([exe, "list", "datasets"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "shapes" in proc.stdout.split()


def test_readme_model_table_is_generated_from_the_registry():
    readme = (REPO / "README.md").read_text()
    block = re.search(r"<!-- model-table:start -->\n(.*?)<!-- model-table:end -->", readme,
                      re.S)
    assert block, "README.md lost its generated model table markers"
    assert block.group(1) == model_table(), (
        "README's model table is stale; regenerate it with: "
        "python tools/update_readme.py")
