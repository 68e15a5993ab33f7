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
