"""`sparsegate prune` end to end on a tiny budget, and its argument errors."""
from __future__ import annotations

import json

import pytest

from sparsegate.sw.cli.main import main
from sparsegate.sw.ml.data import mnist_embedded
from sparsegate.sw.ml.train import DataSplit, checkpoint_split, load_checkpoint, save_checkpoint
from sparsegate.sw.prune.iterative import accuracy
from sparsegate.sw.prune.masks import verify_masks


@pytest.fixture(scope="module")
def checkpoint(trained_lenet5, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, trained_lenet5, "lenet5", meta={"dataset": "mnist5k", "seed": 0})
    return path


def test_prune_magnitude_writes_outputs(checkpoint, tmp_path, capsys):
    out = tmp_path / "mag"
    rc = main(["prune", "--method", "magnitude", "--checkpoint", str(checkpoint), "--target-sparsity", "0.6",
               "--step", "0.6", "--finetune-epochs", "0", "--nrp", "--layers", "fc1,fc2", "--val-size", "200",
               "--out", str(out),
               "--no-progress"])
    assert rc == 0
    captured = capsys.readouterr()
    assert "magnitude + nrp" in captured.out
    assert captured.err.startswith(f"warning: {checkpoint} records no held-out digits")  # saved without a split
    for name in ("model.pt", "layers.json", "layers.md", "prune.json", "layers.png"):
        assert (out / name).is_file(), name
    model, masks, meta = load_checkpoint(out / "model.pt")
    verify_masks(model, masks)
    summary = json.loads((out / "prune.json").read_text())
    table = json.loads((out / "layers.json").read_text())
    assert table["total"]["nonzero_weights"] <= 0.4 * 430_500 + 1
    assert summary["compression"] == pytest.approx(table["total"]["compression"])
    assert meta["method"] == "magnitude" and summary["nrp"] is not None
    assert (summary["options"]["augment_rotate"], summary["options"]["augment_scale"]) == (0.0, 0.0)
    assert summary["options"]["weight_decay"] == 5e-4  # the recovery #19 kept: every fine-tune decays
    assert "| conv1 | conv |" in (out / "layers.md").read_text()
    assert (summary["val_size"], summary["held_out"]) == (200, 0)  # validated on digits it may have trained on


def test_prune_validates_on_the_digits_training_held_out(trained_lenet5, tmp_path, capsys):
    """A checkpoint from `sparsegate train --val-size` is tested and validated on the splits its own seed made,
    whatever --seed the pruning runs with, and on no more validation digits than training held out; the pruned
    checkpoint carries the split on (to quantize, or a second prune)."""
    held = tmp_path / "held.pt"
    save_checkpoint(held, trained_lenet5, "lenet5", meta={"dataset": "mnist5k", "seed": 2, "held_out": 300})
    out = tmp_path / "p"
    args = ["prune", "--method", "magnitude", "--checkpoint", str(held), "--target-sparsity", "0.5", "--step", "0.5",
            "--finetune-epochs", "0", "--no-progress"]
    assert main([*args, "--out", str(out)]) == 0
    assert capsys.readouterr().err == ""
    summary = json.loads((out / "prune.json").read_text())
    assert (summary["seed"], summary["data_seed"], summary["val_size"], summary["held_out"]) == (0, 2, 300, 300)
    assert summary["base_test_accuracy"] == accuracy(trained_lenet5, mnist_embedded(2)[1])  # 0.980 (seed 0's: 0.962)
    assert checkpoint_split(load_checkpoint(out / "model.pt")[2], "model.pt") == DataSplit(2, 300)
    assert main([*args, "--val-size", "400", "--out", str(tmp_path / "q")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"sparsegate prune: error: --val-size 400: {held} held only 300 training digits out of training; validate "
        "on at most those (or retrain with sparsegate train --val-size 400)")
    assert not (tmp_path / "q").exists()
    save_checkpoint(held, trained_lenet5, "lenet5", meta={"dataset": "mnist5k", "seed": 2, "held_out": 4000})
    assert main([*args, "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip() == (f"sparsegate prune: error: {held}: meta 'held_out' is 4000, not fewer "
                                               "than the 4000 training digits of mnist5k")
    assert not (tmp_path / "r").exists()


def test_prune_acra_uniform_cli(checkpoint, tmp_path):
    out = tmp_path / "acra"
    rc = main(["prune", "--method", "acra-uniform", "--checkpoint", str(checkpoint), "--target-flops", "0.5",
               "--finetune-epochs", "0", "--val-size", "200", "--out", str(out), "--no-progress"])
    assert rc == 0
    summary = json.loads((out / "prune.json").read_text())
    assert abs(summary["mac_reduction"] - 0.5) <= 0.01
    assert summary["info"]["granularity"] == "filter"


@pytest.mark.parametrize("args,message", [
    (["--method", "magnitude", "--target-sparsity", "1.5"], "target_sparsity must be in [0, 1), got 1.5"),
    (["--method", "sra", "--target-sparsity", "0.5", "--layers", "conv1,conv9"], "unknown layer 'conv9'"),
    (["--method", "acra-uniform", "--target-flops", "0.5", "--tolerance", "0"], "tolerance must be in (0, 1), got 0"),
    (["--method", "acra-sensitivity"], "needs target_flops (--target-flops)"),
    (["--method", "global"], "needs target_sparsity (--target-sparsity) or max_drop"),
    (["--method", "sensitivity", "--nrp"], "nrp: neuron re-pruning needs a pruning method"),
    (["--method", "magnitude", "--target-sparsity", "0.5", "--augment-rotate", "190"],
     "--augment-rotate / --augment-scale: augmentation: expected"),
    (["--method", "magnitude", "--target-sparsity", "0.5", "--weight-decay", "nan"],
     "--weight-decay: weight decay: expected a finite strength >= 0, got nan"),
])
def test_prune_cli_errors(checkpoint, tmp_path, capsys, args, message):
    rc = main(["prune", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "x"), "--no-progress",
               "--finetune-epochs", "0", *args])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("sparsegate prune: error:") and message in err


def test_prune_cli_missing_checkpoint(tmp_path, capsys):
    rc = main(["prune", "--method", "global", "--target-sparsity", "0.5", "--checkpoint", str(tmp_path / "no.pt"),
               "--out", str(tmp_path / "o")])
    assert rc == 2 and "no such checkpoint" in capsys.readouterr().err
