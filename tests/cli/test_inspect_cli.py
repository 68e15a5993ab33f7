"""``sparsegate inspect``: the layers and storage of a real exported image, JSON for scripts, and a clear
one-line error for a file that is not a valid image."""
from __future__ import annotations

import json

from sparsegate.sw.cli.main import main
from sparsegate.sw.ir.weight_image import export_image, storage_report
from support.int_networks import random_network


def test_inspect_prints_layers_and_storage(tmp_path, capsys):
    qnet = random_network(2)
    export_image(qnet, tmp_path)
    assert main(["inspect", str(tmp_path / "image.bin")]) == 0
    out = capsys.readouterr().out
    for layer in qnet.layers:
        assert f"\n{layer.name} " in out
    assert "5x5/s1/p2" in out and "relu+pool" in out and "CSR, 32-bit indexes" in out
    assert "relative 4-bit (Deep Compression)" in out and "image is" in out

    assert main(["inspect", "--json", str(tmp_path / "image.bin")]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in doc["layers"]] == [layer.name for layer in qnet.layers]
    assert doc["storage"]["formats"] == storage_report(qnet)["formats"]


def test_inspect_rejects_a_bad_image(tmp_path, capsys):
    bad = tmp_path / "image.bin"
    bad.write_bytes(b"not an image at all, just some bytes")
    assert main(["inspect", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sparsegate inspect: error: ") and str(bad) in err and "\n" not in err
    assert main(["inspect", str(tmp_path / "missing.bin")]) == 2
    assert "cannot read" in capsys.readouterr().err
