"""A network whose first layer is fc (an MLP) runs on the engine: the input goes in the flat layout (every
element replicated in every bank, as each fc layer reads its input), bit-exact with the golden model under
Amaranth's simulator, and the cycle model equals the measured cycles."""
from __future__ import annotations

import numpy as np
import pytest

from sparsegate.hw.engine.cycle_model import program_cycles
from sparsegate.hw.engine.program import sample_words
from sparsegate.hw.engine.tiling import Tiling
from sparsegate.sim.engine.amaranth_sim import check_run, run_amaranth, small_program

MLP = [{"kind": "fc", "cout": 9, "relu": True, "density": 0.5}, {"kind": "fc", "cout": 6, "relu": True, "density": 0.7},
       {"kind": "fc", "cout": 5, "density": 0.8}]


@pytest.mark.parametrize("lanes,seed", [(1, 1), (4, 2)])
def test_mlp_runs_bit_exact(lanes, seed):
    prog = small_program(lanes=lanes, seed=seed, n_samples=2, spec=MLP, input_shape=(2, 3, 5))
    assert [layer.kind for layer in prog.qnet.layers] == ["fc"] * 3 and prog.qnet.layers[0].flatten_input
    runs, _, _ = run_amaranth(prog, timeout_s=300)
    report = check_run(prog, runs)
    assert report.ok and report.layers_checked == 6, str(report)
    for regs in runs:
        assert [regs[f"layer{i}.cycles"] for i in range(3)] == program_cycles(prog)
        assert regs["total.load_cycles"] == 30  # one word per input element


def test_flat_layout_replicates_each_element_in_every_bank():
    x = np.array([[[1, -2], [3, -128]]], dtype=np.int8)
    words = sample_words(x, 4, None)
    assert words == [0x01010101, 0xFEFEFEFE, 0x03030303, 0x80808080]
    # the conv layouts bank pixels by column (one-row tiles of 2 lanes: bank x % 4) or by column and row
    # (1x2 tiles: bank x % 2 | (y % 2) << 1)
    assert sample_words(x, 4, Tiling(2, 1)) == [0x0000FE01, 0x00008003]
    assert sample_words(x, 4, Tiling(1, 2)) == [0x8003FE01]
