"""The whole engine under Amaranth's simulator on small random networks (conv stride 1/2, padding, pooling,
an empty channel, flatten, fc): every layer's output bit-exact with the golden model (signatures), the
final outputs exact, and the analytical cycle model equal to the measured cycles."""
from __future__ import annotations

import pytest

from sparsegate.hw.engine.cycle_model import program_cycles
from sparsegate.sim.engine.amaranth_sim import check_run, run_amaranth, small_program


@pytest.mark.parametrize("lanes,seed", [(1, 1), (4, 2), (8, 3)])
def test_engine_small_network_bit_exact(lanes, seed):
    prog = small_program(lanes=lanes, seed=seed, n_samples=2)
    runs, cycles, _ = run_amaranth(prog, timeout_s=300)
    report = check_run(prog, runs)
    assert report.ok, str(report)
    assert report.layers_checked == 8 and report.outputs_checked == 10
    model = program_cycles(prog)
    for regs in runs:
        measured = [regs[f"layer{i}.cycles"] for i in range(len(prog.layers))]
        assert measured == model
        assert regs["total.cycles"] == regs["total.load_cycles"] + sum(measured)
        # the MAC-active lane-cycles are exactly the nonzero MACs of the image
        assert [regs[f"layer{i}.active"] for i in range(len(prog.layers))] == [p.nonzero_macs for p in prog.layers]


def test_engine_vcd(tmp_path):
    prog = small_program(lanes=4, seed=4, n_samples=1, spec=[
        {"kind": "conv", "cout": 2, "k": 3, "stride": 1, "pad": 0, "relu": True, "density": 0.5},
        {"kind": "fc", "cout": 3, "density": 0.5}], input_shape=(1, 5, 6))
    runs, _, _ = run_amaranth(prog, vcd=str(tmp_path / "engine.vcd"))
    assert check_run(prog, runs).ok
    assert (tmp_path / "engine.vcd").stat().st_size > 1000


def test_engine_banked_weight_memory(monkeypatch):
    """A weight memory deeper than one block-RAM bank is split into banks (mux between registers):
    still bit-exact, same cycles."""
    from sparsegate.hw.engine import weight_decoder
    monkeypatch.setattr(weight_decoder, "BANK_DEPTH", 8)
    prog = small_program(lanes=4, seed=2, n_samples=1)
    assert prog.geometry.weight_depth > 3 * 8
    runs, _, _ = run_amaranth(prog, timeout_s=300)
    assert check_run(prog, runs).ok
    assert [runs[0][f"layer{i}.cycles"] for i in range(len(prog.layers))] == program_cycles(prog)


@pytest.mark.parametrize("lanes", [2, 4])
def test_two_pixels_a_cycle_drain(lanes):
    """The output stage's second pipeline (``drains=2``): sparse conv layers whose passes have fewer commands
    than pixels (drain-bound at one pixel a cycle), unpooled into a conv layout with odd widths (a pass
    ending on a lone pixel), pooled, and unpooled into an fc layer (kept at one a cycle). Both engines are
    bit-exact and model-exact; two a cycle take fewer cycles on exactly the layers that drain two."""
    spec = [
        {"kind": "conv", "cout": 3, "k": 3, "stride": 1, "pad": 1, "relu": True, "density": 0.15},
        {"kind": "conv", "cout": 3, "k": 3, "stride": 1, "pad": 1, "relu": True, "pool": True, "density": 0.15},
        {"kind": "conv", "cout": 2, "k": 1, "stride": 1, "pad": 0, "relu": True, "density": 0.5},
        {"kind": "fc", "cout": 4, "density": 0.8},
    ]
    measured = {}
    for drains in (1, 2):
        prog = small_program(lanes=lanes, seed=7, n_samples=1, spec=spec, input_shape=(2, 7, 9), drains=drains)
        runs, _, _ = run_amaranth(prog, timeout_s=300)
        assert check_run(prog, runs).ok, str(check_run(prog, runs))
        measured[drains] = [runs[0][f"layer{i}.cycles"] for i in range(len(prog.layers))]
        assert measured[drains] == program_cycles(prog)
        if drains == 2:
            assert [plan.drain2 for plan in prog.layers] == [True, True, False, False]
    faster = [two < one for one, two in zip(measured[1], measured[2])]
    assert faster[:2] == [True, True] and measured[2][2:] == measured[1][2:]
