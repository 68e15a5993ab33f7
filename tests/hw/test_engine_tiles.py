"""2-D pass tiles (hw/engine/tiling.py): the per-layer choice, the shared-tensor fallback to one-row tiles,
and the whole engine under Amaranth's simulator on random networks with narrow and odd maps, stride 1 and
2, padding and pooling, at P = 1 .. 16 in both tilings — every layer bit-exact with the golden model, the
measured cycles equal to the cycle model, and ``tiling="rows"`` the one-row engine."""
from __future__ import annotations

import numpy as np
import pytest

from sparsegate.hw.engine.cycle_model import program_cycles
from sparsegate.hw.engine.program import compile_program, input_tiling, layer_tilings
from sparsegate.hw.engine.tiling import Tiling, choose_tiling, conv_place, lane_sources
from sparsegate.sim.engine.amaranth_sim import check_run, random_inputs, random_network, run_amaranth

from support.int_networks import mixed_readers_network, residual_network

NETWORKS = {
    # narrow maps: 7x6 -> pooled 3x3 (walked 6x6), a pad-2 conv growing it to 5x5, a stride-2 conv, an fc
    "narrow": ((2, 7, 6), [
        {"kind": "conv", "cout": 3, "k": 3, "stride": 1, "pad": 1, "relu": True, "pool": True, "density": 0.6,
         "empty_channel": True},
        {"kind": "conv", "cout": 3, "k": 3, "stride": 1, "pad": 2, "relu": True, "density": 0.6},
        {"kind": "conv", "cout": 2, "k": 2, "stride": 2, "pad": 1, "relu": False, "density": 0.8},
        {"kind": "fc", "cout": 5, "density": 0.7}]),
    # odd sizes: 11x5 -> 9x3, pooled from walked 10x4, then a conv ending the network (written flat)
    "odd": ((1, 11, 5), [
        {"kind": "conv", "cout": 2, "k": 3, "stride": 1, "pad": 0, "relu": True, "density": 0.7},
        {"kind": "conv", "cout": 3, "k": 2, "stride": 1, "pad": 1, "relu": True, "pool": True, "density": 0.7},
        {"kind": "conv", "cout": 2, "k": 3, "stride": 1, "pad": 1, "relu": False, "density": 0.7}]),
    # wider: 13x21 pooled twice (tiles 4x4 / 2x8 at 16 lanes), a 1x1 conv read by an fc
    "wide": ((2, 13, 21), [
        {"kind": "conv", "cout": 2, "k": 5, "stride": 1, "pad": 2, "relu": True, "pool": True, "density": 0.5},
        {"kind": "conv", "cout": 3, "k": 3, "stride": 1, "pad": 1, "relu": True, "pool": True, "density": 0.6},
        {"kind": "conv", "cout": 2, "k": 1, "stride": 1, "pad": 0, "relu": True, "density": 1.0},
        {"kind": "fc", "cout": 4, "density": 0.7}]),
}


def _run(prog):
    runs, _, _ = run_amaranth(prog, timeout_s=300)
    report = check_run(prog, runs)
    assert report.ok, str(report)
    for regs in runs:
        assert [regs[f"layer{i}.cycles"] for i in range(len(prog.layers))] == program_cycles(prog)
        assert [regs[f"layer{i}.active"] for i in range(len(prog.layers))] == [p.nonzero_macs for p in prog.layers]
    return runs


@pytest.mark.parametrize("lanes,ratio", [(p, r) for p in (1, 2, 4, 8, 16, 32, 64) for r in (1, 2) if p > 1 or r == 2])
def test_lane_sources_match_the_bank_layout(lanes, ratio):
    """The activation buffer's crossbar: banks rotated by R, lane j at its ``lane_sources`` position, is the
    bank ``conv_place`` stores lane j's pixel in — every tile, stride and window offset."""
    nb = ratio * lanes
    sources = [lane_sources(lanes, ratio, j) for j in range(lanes)]
    for tlx in range(lanes.bit_length()):
        t = Tiling(1 << tlx, lanes >> tlx, ratio)
        for stride in (1, 2) if ratio == 2 and t.ty == 1 else (1,):
            for base in range(3 * t.cols):
                for y in range(2 * t.ty):
                    rot = base % t.cols + (y % t.ty) * t.cols
                    for j in range(lanes):
                        jy, jx = divmod(j, t.tx)
                        want, _ = conv_place(t, 4, 4, 0, y + jy, base + jx * stride)
                        wrap = base % t.cols + jx * stride >= t.cols
                        assert (sources[j][tlx, stride - 1, wrap] + rot) % nb == want, (t, stride, base, y, j)


def test_choice_rule():
    # LeNet-5 at 16 lanes: conv1 walks 24x24 (two tiles of 16+8 per row -> 8x2: 3 x 12 passes), conv2 8x8
    assert choose_tiling(24, 24, 1, 16) == Tiling(8, 2)
    assert choose_tiling(8, 8, 1, 16) == Tiling(8, 2)
    assert choose_tiling(8, 8, 1, 32) == Tiling(8, 4)
    assert choose_tiling(8, 8, 2, 16) == Tiling(16, 1)          # stride 2: one row
    assert choose_tiling(6, 6, 1, 8) == Tiling(8, 1)            # 6 passes either way: the larger Tx
    assert choose_tiling(5, 3, 1, 8) == Tiling(4, 2)            # 1 x 3 passes (2x4: 2 x 2)
    assert choose_tiling(32, 6, 1, 16) == Tiling(2, 8)          # 3 x 4 passes (8x2: 1 x 16)
    assert choose_tiling(32, 6, 1, 16, full_rows=True) == Tiling(8, 2)  # written flat: rows span the map
    assert choose_tiling(9, 9, 1, 1) == Tiling(1, 1) and choose_tiling(9, 9, 1, 2) == Tiling(2, 1)


def test_shared_tensor_readers_fall_back_to_rows():
    """A block input read by a stride-1 conv (a 2-D tile alone) and a stride-2 shortcut: both one-row; the
    rest of the network keeps its own tiles; bit-exact."""
    qnet = mixed_readers_network(3)
    tiles = layer_tilings(qnet, 8)
    assert tiles[1] == tiles[3] == Tiling(8) and tiles[0] == Tiling(4, 2) and tiles[5] is None
    assert input_tiling(qnet, 8) == Tiling(4, 2)
    rng = np.random.default_rng(3)
    _run(compile_program(qnet, 8, random_inputs(rng, qnet.input_shape, 1)))


@pytest.mark.parametrize("lanes", [4, 8])
def test_residual_network_2d(lanes):
    qnet = residual_network(1, (2, 6, 10))
    prog = compile_program(qnet, lanes, random_inputs(np.random.default_rng(lanes), qnet.input_shape, 1))
    assert any(p.tiling is not None and p.tiling.ty > 1 for p in prog.layers)
    _run(prog)


@pytest.mark.parametrize("name,lanes", [(name, lanes) for name in sorted(NETWORKS) for lanes in (1, 2, 4, 8, 16)
                                        if lanes >= 4 or name != "wide"])
def test_random_networks_both_tilings(name, lanes):
    shape, spec = NETWORKS[name]
    cycles = {}
    for tiling in ("rows", "2d"):
        rng = np.random.default_rng(lanes)
        prog = compile_program(random_network(rng, shape, spec), lanes, random_inputs(rng, shape, 1), tiling=tiling)
        if tiling == "rows":
            assert all(p.tiling in (None, Tiling(lanes, 1, prog.geometry.bank_ratio)) for p in prog.layers)
        runs = _run(prog)
        cycles[tiling] = sum(runs[0][f"layer{i}.cycles"] for i in range(len(prog.layers)))
        tiles = [p.tiling for p in prog.layers]
    if lanes <= 2:  # no 2-D tile fits: the same engine
        assert cycles["2d"] == cycles["rows"]
    else:           # every layer picks its fewest passes: never slower here, faster where a tile is 2-D
        assert cycles["2d"] <= cycles["rows"]
        assert (cycles["2d"] < cycles["rows"]) == any(t is not None and t.ty > 1 for t in tiles)


@pytest.mark.parametrize("lanes", [2, 8])
def test_p_banks_for_stride_one_images(lanes):
    """An image without stride-2 convolutions compiles for P activation banks (``bank_ratio`` 1, the default
    for it): half the banks of the 2P engine, the same cycles, bit-exact on both; a stride-2 image is refused
    at P banks and gets 2P by default."""
    shape, spec = NETWORKS["odd"]
    cycles = {}
    for ratio in (1, 2):
        rng = np.random.default_rng(lanes)
        prog = compile_program(random_network(rng, shape, spec), lanes, random_inputs(rng, shape, 1),
                               bank_ratio=ratio)
        assert prog.geometry.banks == ratio * lanes
        runs = _run(prog)
        cycles[ratio] = [runs[0][f"layer{i}.cycles"] for i in range(len(prog.layers))]
    assert cycles[1] == cycles[2]
    rng = np.random.default_rng(lanes)
    assert compile_program(random_network(rng, shape, spec), lanes).geometry.bank_ratio == 1
    shape, spec = NETWORKS["narrow"]
    rng = np.random.default_rng(lanes)
    qnet = random_network(rng, shape, spec)
    assert compile_program(qnet, lanes).geometry.bank_ratio == 2
    with pytest.raises(ValueError, match="stride 2.*2P activation banks"):
        compile_program(qnet, lanes, bank_ratio=1)
