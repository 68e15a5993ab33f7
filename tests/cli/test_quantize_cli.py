"""``sparsegate quantize`` and ``sparsegate export`` end to end on a magnitude-pruned LeNet-5 checkpoint;
``export --format`` writes only what it is asked for."""
from __future__ import annotations

import copy
import json
import zlib

import pytest
import torch

from sparsegate.sw.cli.main import main
from sparsegate.sw.ml.data import mnist_embedded
from sparsegate.sw.ml.train import apply_masks, load_checkpoint, save_checkpoint
from sparsegate.sw.prune.iterative import split_validation
from sparsegate.sw.ir.weight_image import export_image, read_image, write_image
from support.int_networks import random_network
from support.magnitude import KEEP, magnitude_masks


@pytest.fixture(scope="module")
def checkpoint(trained_lenet5, tmp_path_factory):
    model = copy.deepcopy(trained_lenet5)
    masks = magnitude_masks(model, KEEP)
    apply_masks(model, masks)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(path, model, "lenet5", masks, meta={"dataset": "mnist5k", "seed": 0})
    return path


@pytest.mark.slow
def test_quantize_then_export(checkpoint, tmp_path, capsys):
    qdir, edir = tmp_path / "q", tmp_path / "e"
    assert main(["quantize", "--checkpoint", str(checkpoint), "--out", str(qdir), "--eval-size", "300",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "float" in out and "int8" in out and "agree" in out
    summary = json.loads((qdir / "quantize.json").read_text())
    assert summary["model"] == "lenet5" and summary["samples"] == 300 and summary["calib_size"] == 512
    assert summary["agreement"] >= 0.97 and summary["quant_accuracy"] > 0.85
    qnet = read_image(qdir / "quantized.bin")
    assert [layer.nnz for layer in qnet.layers] == [s["nnz"] for s in summary["layers"]]

    assert main(["export", "--quantized", str(qdir), "--out", str(edir)]) == 0
    out = capsys.readouterr().out
    assert "conv2" in out and "total" in out and "of dense int8" in out
    assert (edir / "image.bin").read_bytes() == (qdir / "quantized.bin").read_bytes()
    manifest = json.loads((edir / "manifest.json").read_text())
    total = manifest["storage"]["total"]
    assert total["image_bytes"] == (edir / "image.bin").stat().st_size
    assert total["density"] < 0.1 and total["image_bytes"] < 0.35 * total["dense_int8_bytes"]
    assert len(list((edir / "hex").glob("*.hex"))) == 5 * 4

    # Exporting straight from the checkpoint calibrates the same way: the same bytes.
    assert main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "e2")]) == 0
    assert (tmp_path / "e2" / "image.bin").read_bytes() == (edir / "image.bin").read_bytes()


def test_qat_fine_tunes_outside_the_checkpoint_hold_out(trained_lenet5, tmp_path, monkeypatch, capsys):
    """QAT trains on the training digits `sparsegate train --val-size` left for validation only after leaving them
    out, and its checkpoint records the hold-out, so a later prune still validates on unseen digits."""
    import sparsegate.sw.flow.quantize as flow
    seen = []
    monkeypatch.setattr(flow, "qat_finetune", lambda model, train_ds, *rest, **kw: seen.append(train_ds))
    held = tmp_path / "held.pt"
    save_checkpoint(held, trained_lenet5, "lenet5", meta={"dataset": "mnist5k", "seed": 2, "held_out": 300})
    args = ["quantize", "--checkpoint", str(held), "--qat-epochs", "1", "--eval-size", "20", "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "q")]) == 0
    train_ds = mnist_embedded(2)[0]
    fit = split_validation(train_ds, 300, 2)[0]
    assert torch.equal(seen[0].tensors[0], fit.tensors[0])  # the 300 validation digits left out
    assert load_checkpoint(tmp_path / "q" / "model_qat.pt")[2]["held_out"] == 300

    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, trained_lenet5, "lenet5", meta={"dataset": "mnist5k", "seed": 2, "held_out": 4000})
    capsys.readouterr()
    assert main(["quantize", "--checkpoint", str(bad), "--out", str(tmp_path / "b"), "--no-progress"]) == 2
    assert capsys.readouterr().err.strip() == (f"sparsegate quantize: error: {bad}: meta 'held_out' is 4000, not "
                                               "fewer than the 4000 training digits of mnist5k")
    assert not (tmp_path / "b").exists()


def test_export_rejects_a_corrupt_image_in_one_line(tmp_path, capsys, checkpoint):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"SPGW" + b"\0" * 100)
    assert main(["export", "--quantized", str(bad), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("sparsegate export: error: ") and "version" in err and "Traceback" not in err
    assert not (tmp_path / "e").exists()
    assert main(["quantize", "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "q")]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "--quantized", str(bad), "--checkpoint", str(checkpoint), "--out", str(tmp_path)])


def test_export_writes_only_the_formats_asked_for(tmp_path, capsys):
    write_image(tmp_path / "q.bin", random_network(1))
    assert main(["export", "--quantized", str(tmp_path / "q.bin"), "--out", str(tmp_path / "img"),
                 "--format", "image"]) == 0
    assert [p.name for p in (tmp_path / "img").iterdir()] == ["image.bin"]
    crc = zlib.crc32((tmp_path / "img" / "image.bin").read_bytes()[:-4])
    assert capsys.readouterr().out.strip().endswith(f"crc32 0x{crc:08x})")
    assert main(["export", "--quantized", str(tmp_path / "q.bin"), "--out", str(tmp_path / "hj"),
                 "--format", "hex", "--format", "json"]) == 0
    assert sorted(p.name for p in (tmp_path / "hj").iterdir()) == ["hex", "manifest.json"]
    manifest = json.loads((tmp_path / "hj" / "manifest.json").read_text())
    assert all((tmp_path / "hj" / f["path"]).is_file() for layer in manifest["layers"] for f in layer["files"].values())
    assert main(["export", "--quantized", str(tmp_path / "q.bin"), "--out", str(tmp_path / "j"),
                 "--format", "json"]) == 0
    assert all(layer["files"] == {} for layer in json.loads((tmp_path / "j" / "manifest.json").read_text())["layers"])
    with pytest.raises(SystemExit):
        main(["export", "--quantized", str(tmp_path / "q.bin"), "--out", str(tmp_path / "x"), "--format", "csv"])
    with pytest.raises(ValueError, match="export formats must be among image, hex, json"):
        export_image(random_network(1), tmp_path / "x", ("csv",))
    assert not (tmp_path / "x").exists()
