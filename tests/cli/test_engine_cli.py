"""`sparsegate simulate` end to end on a small random network image (Amaranth simulator)."""
from __future__ import annotations

import numpy as np

from sparsegate.sim.engine.amaranth_sim import random_network
from sparsegate.sw.cli.main import main
from sparsegate.sw.ir.weight_image import write_image


def test_simulate_command_amaranth(tmp_path, capsys):
    rng = np.random.default_rng(3)
    qnet = random_network(rng, (1, 6, 7), [
        {"kind": "conv", "cout": 2, "k": 3, "stride": 1, "pad": 1, "relu": True, "pool": True, "density": 0.6},
        {"kind": "fc", "cout": 4, "density": 0.7}])
    image = tmp_path / "image.bin"
    write_image(image, qnet)
    vcd = tmp_path / "run.vcd"
    assert main(["simulate", "--image", str(image), "--samples", "2", "--sim", "amaranth", "--lanes", "4",
                 "--vcd", str(vcd)]) == 0
    out = capsys.readouterr().out
    assert "0 mismatches" in out and "cycles/s (amaranth)" in out
    assert "l0_conv" in out and vcd.is_file()


def test_simulate_command_rejects_bad_lanes(tmp_path, capsys):
    rng = np.random.default_rng(4)
    qnet = random_network(rng, (1, 5, 5), [{"kind": "conv", "cout": 1, "k": 3}])
    image = tmp_path / "image.bin"
    write_image(image, qnet)
    assert main(["simulate", "--image", str(image), "--lanes", "3", "--sim", "amaranth"]) == 2
    assert "power of two" in capsys.readouterr().err
