"""The ``ganzoo`` command line: list, info, sample, progress into a log, exit codes, queue copy;
the README's model table. What a terminal shows is in test_terminal.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

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


def test_sample_progress_into_a_log(tmp_path, capsys):
    """stderr not a terminal: quiet by default, plain lines (no carriage returns) with
    --progress."""
    import ganzoo

    folder = tmp_path / "final"
    ganzoo.build("test_dcgan").save_pretrained(folder)
    args = ["sample", str(folder), "-n", "16", "--batch-size", "8"]
    assert main([*args, "--out-dir", str(tmp_path / "a")]) == 0
    assert capsys.readouterr().err == ""
    assert main([*args, "--out-dir", str(tmp_path / "b"), "--progress"]) == 0
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert lines[0].startswith("sampling test_dcgan: 0/16 img (0%)"), lines
    assert lines[-1].startswith("sampling test_dcgan: 16/16 img (100%), "), lines
    assert "img/s" in lines[-1] and "\r" not in captured.err
    assert "(live weights: EMA starts at step 20,000)" in captured.out


def test_sample_names_averaged_ema_weights(tmp_path, capsys):
    import torch

    import ganzoo

    model = ganzoo.build("test_dcgan")
    with torch.no_grad():
        for p in model.ema.parameters():
            p.add_(0.01)
    model.save_pretrained(tmp_path / "final")
    assert main(["sample", str(tmp_path / "final"), "-n", "2", "--out",
                 str(tmp_path / "g.png")]) == 0
    assert "(EMA weights)" in capsys.readouterr().out


def test_exit_codes_follow_one_scheme(tmp_path, capsys):
    """0 done, 1 failed, 2 bad input, 130 interrupted, in every command's --help; a usage
    error of `eval` was 1. Errors and help name the command the user typed."""
    from ganzoo.cli import build_parser
    from ganzoo.experiments.cli import build_queue_parser, build_report_parser
    from ganzoo.metrics.cli import build_parser as eval_parser
    from ganzoo.train import build_parser as train_parser, main as train_main

    for parser in (build_parser(), train_parser("ganzoo train"), eval_parser(),
                   build_queue_parser(), build_report_parser()):
        text = " ".join(parser.format_help().split())
        assert "0 done; 1 failed" in text and "2 bad input" in text, parser.prog
        assert "130 interrupted" in text, parser.prog
    assert train_parser("ganzoo train").format_usage().startswith("usage: ganzoo train ")
    assert main(["train", "--model", "no_such_model", "--max-steps", "1", "-o",
                 str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("ganzoo train: error: Unknown")
    assert train_main(["--model", "no_such_model", "--max-steps", "1", "-o",
                       str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("python -m ganzoo.train: error: Unknown")
    with pytest.raises(SystemExit) as err:
        main(["train", "--bogus"])
    assert err.value.code == 2 and "usage: ganzoo train" in capsys.readouterr().err
    assert main(["eval", str(tmp_path / "nowhere"), "--ref", "shapes", "--n", "4"]) == 2
    assert capsys.readouterr().err.startswith("ganzoo eval: error:")
    assert main(["eval", "x", "--metric-kwarg", "nodot=1"]) == 2


def test_ctrl_c_outside_a_loop_is_one_line(monkeypatch, capsys):
    """Every command: KeyboardInterrupt -> one line and 130 (the loops say more, see
    test_terminal.py)."""
    import ganzoo.cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(ganzoo.cli, "_info", interrupted)
    assert main(["info", "dcgan"]) == 130
    assert capsys.readouterr().err == "ganzoo info: interrupted\n"


def test_train_startup_line_and_verbose(tmp_path, caplog):
    import logging

    args = ["train", "--model", "test_dcgan", "--dataset", "digits", "--set", "resolution=16",
            "--batch-size", "4", "--max-steps", "1", "--sample-every", "0", "--no-progress"]
    with caplog.at_level(logging.INFO, logger="ganzoo"):
        assert main([*args, "-o", str(tmp_path / "a")]) == 0
    assert "training test_dcgan (0.035 M params) on digits, 1 steps" in caplog.text
    assert '"batch_size"' not in caplog.text
    assert '"batch_size": 4' in (tmp_path / "a" / "config.json").read_text()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="ganzoo"):
        assert main([*args, "-o", str(tmp_path / "b"), "--verbose"]) == 0
    assert '"batch_size": 4' in caplog.text and "training test_dcgan" in caplog.text


@pytest.mark.parametrize("name, needle", [
    ("genegan_multires_tiny", "its datasets are built in: no paths to change"),
    ("genegan_multires", "change its data paths (dataset_args.root: data/celeba; "),
])
def test_queue_copy_asks_for_paths_only_where_there_are_some(tmp_path, capsys, name, needle):
    assert main(["queue", "copy", name, str(tmp_path) + "/"]) == 0
    out = capsys.readouterr().out
    assert needle in out and (tmp_path / f"{name}.yaml").is_file(), out


def test_a_reader_that_leaves_early_gets_no_traceback():
    """`ganzoo list | head -1`: the reader closes the pipe (here before the first line, so the
    write fails for certain); the command ends quietly."""
    proc = subprocess.Popen([sys.executable, "-m", "ganzoo.cli", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader leaves, as head does
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipeError" not in err, err
    assert proc.returncode in (0, 1)
