"""The command line: help for every subcommand, a small real run, and clear errors."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from sparsegate.sw.cli.main import COMMANDS, main


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in COMMANDS)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_each_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: sparsegate " + command in capsys.readouterr().out


@pytest.mark.parametrize("argv,loads_torch", [(["--help"], False), (["inspect", "--help"], False),
                                               (["simulate", "--help"], False), (["build", "--help"], False),
                                               (["prune", "--help"], True)])
def test_only_the_invoked_command_is_imported(argv, loads_torch):
    """The top-level help and the hardware-side commands start without torch (about a second of imports); the
    training-side commands still load it (the last case shows the probe sees an import)."""
    probe = ("import sys\nfrom sparsegate.sw.cli.main import main\ntry:\n    main(%r)\nexcept SystemExit:\n    pass\n"
             "print('torch' in sys.modules, file=sys.stderr)" % argv)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stderr.strip().splitlines()[-1] == str(loads_torch), result.stderr


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "sparsegate.sw.cli.main", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "train" in result.stdout


def test_train_command_writes_checkpoint_and_summary(tmp_path, capsys):
    assert main(["train", "--model", "lenet300", "--epochs", "1", "--out", str(tmp_path), "--no-progress"]) == 0
    summary = json.loads((tmp_path / "train.json").read_text())
    assert summary["model"] == "lenet300" and summary["params"] == 266_610
    assert 0.8 < summary["test_accuracy"] <= 1.0
    assert (tmp_path / "model.pt").stat().st_size > 266_610 * 4
    assert "test accuracy" in capsys.readouterr().out
    assert summary["augment"] == {"shift": 2, "rotate": 0.0, "scale": 0.0}
    assert summary["weight_decay"] == 5e-4  # the LeNet recipes train with L2 weight decay
    warped = tmp_path / "warped"
    assert main(["train", "--model", "lenet300", "--epochs", "1", "--out", str(warped), "--no-progress",
                 "--augment-rotate", "12", "--augment-scale", "0.1", "--weight-decay", "0"]) == 0
    warped_summary = json.loads((warped / "train.json").read_text())
    assert warped_summary["augment"] == {"shift": 2, "rotate": 12.0, "scale": 0.1}
    assert warped_summary["weight_decay"] == 0.0
    assert warped_summary["history"] != summary["history"]


def test_bad_arguments_give_one_clear_line(tmp_path, capsys):
    assert main(["train", "--epochs", "0", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sparsegate train: error: --epochs must be at least 1")
    assert "Traceback" not in err
    assert main(["train", "--dataset", "mnist", "--out", str(tmp_path)]) == 2
    assert "needs --data-path" in capsys.readouterr().err
    assert main(["train", "--augment-scale", "-0.1", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        "sparsegate train: error: --augment-rotate / --augment-scale: augmentation: expected a shift >= 0 pixels, "
        "a rotation of 0..180 degrees and a zoom fraction in [0, 1), got 2, 0.0, -0.1")
    assert main(["train", "--weight-decay", "-1", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        "sparsegate train: error: --weight-decay: weight decay: expected a finite strength >= 0, got -1.0")
    assert not (tmp_path / "model.pt").exists()
