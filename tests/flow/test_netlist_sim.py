"""Issue #21: the synthesized netlist of the smallest board tops (ULX3S-25F; the engine at one lane with a small
network on MNIST-shaped inputs, the LIF core with a 784-4-10 SNN on one unit) simulated through their UART pins by
the host driver: the network loaded over the link, real held-out digits classified, outputs (logits; readout
membranes) bit-exact with the golden model and every debug register (the engine's per-layer cycles and output
signatures, the LIF core's counters) equal to the RTL of the same top. Plus the naming of the first difference."""
from __future__ import annotations

import numpy as np
import pytest

from sparsegate.sw.util.toolchain import yowasp_available


@pytest.mark.slow
@pytest.mark.synthesis
@pytest.mark.skipif(not yowasp_available(), reason="YoWASP Yosys is not installed")
def test_board_netlist_is_bit_exact_through_the_uart_pins(tmp_path):
    from sparsegate.hw.link.uart import divisor_for
    from sparsegate.hw.platform.board_top import BoardTop
    from sparsegate.hw.platform.boards import make_platform
    from sparsegate.hw.platform.cores import ENGINE
    from sparsegate.hw.platform.ecp5_build import synthesize
    from sparsegate.sim.engine.amaranth_sim import random_network
    from sparsegate.sw.flow.build import board_program
    from sparsegate.sw.flow.netlist_sim import netlist_check
    from sparsegate.sw.ir.weight_image import encode_image

    qnet = random_network(np.random.default_rng(0), (1, 28, 28), [
        {"kind": "conv", "cout": 2, "k": 5, "stride": 2, "pad": 0, "relu": True, "pool": True, "density": 0.5},
        {"kind": "fc", "cout": 10, "density": 0.5}])
    image = encode_image(qnet)
    program = board_program(ENGINE, image, lanes=1)
    platform = make_platform("ulx3s-25f")
    baud = 6_250_000                                # 16 cycles per bit at 100 MHz: a short serial stream
    top = BoardTop(program, clk_hz=100e6, baud=baud)
    synthesis = synthesize(top, build_dir=tmp_path / "synth", platform=platform)
    netlist = synthesis.netlist.read_text()
    for cell in ("MULT18X18D", "DP16KD", "EHXPLLL", "TRELLIS_FF", "TRELLIS_DPR16X4"):   # the models it exercises
        assert f"  {cell} " in netlist, cell
    lines = []
    check = netlist_check(synthesis.netlist, platform, program, image, 3, divisor=divisor_for(100e6, baud),
                          timeout=5_000_000, build_dir=tmp_path / "sim", clk_hz=100_000_000, optimize=False,
                          log=lines.append)
    assert check.ok, (check.first_difference, lines)
    assert check.exact == check.rtl_exact == 3 and check.first_difference is None
    assert check.line() == "netlist simulated: 3 digits bit-exact"
    assert check.netlist_cycles > 100_000 and check.rtl_cycles > 100_000


@pytest.mark.slow
@pytest.mark.synthesis
@pytest.mark.skipif(not yowasp_available(), reason="YoWASP Yosys is not installed")
def test_lif_board_netlist_is_bit_exact_through_the_uart_pins(tmp_path):
    from sparsegate.hw.link.uart import divisor_for
    from sparsegate.hw.platform.board_top import BoardTop
    from sparsegate.hw.platform.boards import make_platform
    from sparsegate.hw.platform.ecp5_build import synthesize
    from sparsegate.sw.flow.build import board_program
    from sparsegate.hw.platform.cores import LIF
    from sparsegate.sw.flow.netlist_sim import _workload, netlist_check
    from sparsegate.sw.ir.snn_golden import IntSNN, LifParams

    rng = np.random.default_rng(0)
    hidden = LifParams(threshold=400, leak="shift", leak_shift=3, v_width=16)
    snn = IntSNN(rng.integers(-8, 16, size=(4, 784)), rng.integers(-60, 61, size=(10, 4)), hidden,
                 LifParams.integrator(v_width=16), np.ones(4, bool), 4)
    program = board_program(LIF, snn, units=1, per_word=4)
    golden = _workload(program, snn, 2)     # real digits, rate-coded over 4 steps
    run = snn.run(np.stack(golden.inputs, axis=1))
    assert run.hidden.counts.sum() > 0 and len({tuple(v) for v in golden.golden}) == 2   # the network does work
    platform = make_platform("ulx3s-25f")
    baud = 6_250_000                                # 16 cycles per bit at 100 MHz
    synthesis = synthesize(BoardTop(program, clk_hz=100e6, baud=baud), build_dir=tmp_path / "synth", platform=platform)
    netlist = synthesis.netlist.read_text()
    for cell in ("DP16KD", "EHXPLLL", "TRELLIS_FF"):
        assert f"  {cell} " in netlist, cell
    lines = []
    check = netlist_check(synthesis.netlist, platform, program, snn, 2, divisor=divisor_for(100e6, baud),
                          timeout=5_000_000, build_dir=tmp_path / "sim", clk_hz=100_000_000, optimize=False,
                          log=lines.append)
    assert check.ok, (check.first_difference, lines)
    assert check.exact == check.rtl_exact == 2 and check.line() == "netlist simulated: 2 digits bit-exact"
    assert check.netlist_cycles > 100_000 and check.rtl_cycles > 100_000


def test_first_difference_names_the_layer_then_the_output():
    from sparsegate.sw.flow.netlist_sim import _first_difference

    rtl = {"total.cycles": 900, "layer0.signature": 0x1234, "layer1.signature": 0xBEEF, "layer0.cycles": 500}
    out, golden = np.array([3, -2, 7], np.int8), np.array([3, -2, 7], np.int8)
    assert _first_difference(4, out, golden, dict(rtl), rtl, golden) is None
    bad = {**rtl, "layer1.signature": 0xBEEE, "layer0.cycles": 501}
    assert _first_difference(4, out, golden, bad, rtl, golden) == \
        "digit 4: layer1 output signature 0x0000beee (RTL 0x0000beef)"
    assert _first_difference(4, out, golden, {**rtl, "layer0.cycles": 501}, rtl, golden) == \
        "digit 4: register layer0.cycles = 501 (RTL 500)"
    wrong = np.array([3, -1, 7], np.int8)
    assert _first_difference(2, wrong, golden, dict(rtl), rtl, golden) == "digit 2: output 1 = -1 (RTL -2)"
