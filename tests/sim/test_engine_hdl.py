"""The engine as Verilog: randomized conv/fc networks on Verilator's C++ main loop (the same registers as
through cocotb, and a small one on Icarus), and the pruned, quantized LeNet-5 run whole, free-running, on
20 held-out digits — every layer's output bit-exact with the golden model, predictions equal to the PyTorch
integer reference."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sparsegate.hw.engine.cycle_model import program_cycles
from sparsegate.hw.engine.program import compile_program
from sparsegate.sim.cocotb_runner import SimulationFailed
from sparsegate.sim.engine.hdl import build_engine, run_engine_hdl
from sparsegate.sim.engine.amaranth_sim import check_run, random_inputs, random_network, small_program
from sparsegate.sw.util.toolchain import icarus_available

BUILD = Path(__file__).resolve().parents[2] / "build" / "engine"

RANDOM_SPEC = [
    {"kind": "conv", "cout": 5, "k": 5, "stride": 1, "pad": 2, "relu": True, "pool": True, "density": 0.4,
     "empty_channel": True},
    {"kind": "conv", "cout": 6, "k": 3, "stride": 2, "pad": 1, "relu": True, "density": 0.5},
    {"kind": "conv", "cout": 4, "k": 2, "stride": 1, "pad": 0, "relu": False, "density": 0.9},
    {"kind": "fc", "cout": 21, "relu": True, "density": 0.3},
    {"kind": "fc", "cout": 9, "density": 0.6},
]


@pytest.mark.slow
def test_verilator_random_networks():
    """One build, a five-layer random network (5x5 pad 2 + pool, 3x3 stride 2, 2x2, two fc), 8 samples."""
    rng = np.random.default_rng(2024)
    shape = (3, 21, 19)
    qnet = random_network(rng, shape, RANDOM_SPEC)
    prog = compile_program(qnet, 8, random_inputs(rng, shape, 8))
    built, _ = build_engine(prog, "verilator", BUILD / "test_random_p8_verilator")
    runs, _, _ = run_engine_hdl(prog, built)
    report = check_run(prog, runs)
    assert report.ok, str(report)
    assert report.layers_checked == 40 and report.outputs_checked == 72
    assert [runs[0][f"layer{i}.cycles"] for i in range(5)] == program_cycles(prog)


NARROW_SPEC = [
    {"kind": "conv", "cout": 4, "k": 5, "stride": 1, "pad": 2, "relu": True, "pool": True, "density": 0.4,
     "empty_channel": True},
    {"kind": "conv", "cout": 5, "k": 3, "stride": 1, "pad": 1, "relu": True, "density": 0.5},
    {"kind": "conv", "cout": 4, "k": 3, "stride": 2, "pad": 1, "relu": True, "density": 0.6},
    {"kind": "conv", "cout": 3, "k": 2, "stride": 1, "pad": 0, "relu": False, "density": 0.9},
    {"kind": "fc", "cout": 9, "density": 0.6},
]


@pytest.mark.slow
def test_verilator_2d_tiles_32_lanes():
    """32 lanes on maps of 8..16 columns: 2-D tiles (2x16, 8x4), a stride-2 layer (one row), a conv written
    flat for the fc; 4 samples bit-exact, cycles equal to the model."""
    rng = np.random.default_rng(7)
    shape = (2, 17, 15)
    qnet = random_network(rng, shape, NARROW_SPEC)
    prog = compile_program(qnet, 32, random_inputs(rng, shape, 4))
    assert [(p.tiling.tx, p.tiling.ty) for p in prog.layers[:4]] == [(2, 16), (8, 4), (32, 1), (8, 4)]
    built, _ = build_engine(prog, "verilator", BUILD / "test_tiles_p32_verilator")
    runs, _, _ = run_engine_hdl(prog, built)
    report = check_run(prog, runs)
    assert report.ok, str(report)
    assert report.layers_checked == 20 and report.outputs_checked == 36
    for regs in runs:
        assert [regs[f"layer{i}.cycles"] for i in range(5)] == program_cycles(prog)


@pytest.mark.slow
def test_cpp_main_loop_equals_cocotb(tmp_path):
    """The C++ main loop and the cocotb bench drive the same Verilog the same way: identical registers."""
    prog = small_program(lanes=4, seed=11, n_samples=3)
    cpp, _ = build_engine(prog, "verilator", tmp_path / "cpp")
    cpp_runs, cpp_cycles, _ = run_engine_hdl(prog, cpp)
    assert check_run(prog, cpp_runs).ok
    cocotb, _ = build_engine(prog, "verilator-cocotb", tmp_path / "cocotb")
    cocotb_runs, cocotb_cycles, _ = run_engine_hdl(prog, cocotb, samples=[2, 0])
    assert cocotb_runs == [cpp_runs[2], cpp_runs[0]] and cpp_cycles > cocotb_cycles > 0
    again, _ = build_engine(prog, "verilator", tmp_path / "cpp")  # cached by digest: no second build
    assert again.binary == cpp.binary
    assert run_engine_hdl(prog, again, samples=[1])[0] == [cpp_runs[1]]
    with pytest.raises(SimulationFailed, match="no done after 10 cycles"):
        run_engine_hdl(prog, cpp, samples=[0], timeout_cycles=10)
    with pytest.raises(ValueError, match="unknown engine simulator"):
        build_engine(prog, "modelsim", tmp_path / "x")


@pytest.mark.icarus
@pytest.mark.skipif(not icarus_available(), reason="Icarus Verilog (iverilog/vvp) is not installed")
def test_icarus_small_network(tmp_path):
    prog = small_program(lanes=4, seed=9, n_samples=2)
    built, _ = build_engine(prog, "icarus", tmp_path / "icarus")
    runs, _, _ = run_engine_hdl(prog, built)
    report = check_run(prog, runs)
    assert report.ok, str(report)
    assert [runs[0][f"layer{i}.cycles"] for i in range(4)] == program_cycles(prog)


@pytest.mark.slow
def test_verilator_lenet5_whole_network(trained_lenet5, mnist5k):
    """16 lanes, 20 digits, in both tilings: bit-exact, cycles equal to the model, and the 2-D tiles keep
    more lanes busy (nonzero MACs / (P x cycles), from the engine's own counters) than one-row tiles."""
    from sparsegate.sw.flow.lenet import pruned_lenet5, test_digits, torch_int_reference
    from sparsegate.sw.ir.weight_image import decode_image

    image, _ = pruned_lenet5(model=trained_lenet5, data=mnist5k, finetune_epochs=0)
    qnet = decode_image(image)
    x, _ = test_digits(qnet, 20, data=mnist5k)
    reference = torch_int_reference(qnet, x).argmax(axis=1)
    utilization = {}
    for tiling in ("2d", "rows"):
        prog = compile_program(qnet, 16, x, tiling=tiling)
        built, _ = build_engine(prog, "verilator", BUILD / f"test_lenet5_p16_{tiling}_verilator")
        runs, cycles, _ = run_engine_hdl(prog, built)
        report = check_run(prog, runs)
        assert report.ok, str(report)
        assert report.layers_checked == 80 and report.outputs_checked == 200
        assert report.predictions_hw == reference.tolist()
        model = program_cycles(prog)
        for regs in runs:
            measured = [regs[f"layer{i}.cycles"] for i in range(4)]
            assert measured == model
            assert [regs[f"layer{i}.active"] for i in range(4)] == [p.nonzero_macs for p in prog.layers]
        regs = runs[0]
        utilization[tiling] = (sum(regs[f"layer{i}.active"] for i in range(4))
                               / (16 * sum(regs[f"layer{i}.cycles"] for i in range(4))))
    assert utilization["2d"] > utilization["rows"], utilization
