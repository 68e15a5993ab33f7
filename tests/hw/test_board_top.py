"""Board support: every board's platform (with the constraints amaranth-boards lacks), the PLL settings,
the board top level rendered into a build plan for each board without any tool (programmer absent is
fine), capacity geometry / retargeting, and one real bitstream of a small configuration."""
from __future__ import annotations

import pytest

from sparsegate.hw.platform.board_top import BoardTop, capacity_geometry, pll_params, retarget_program
from sparsegate.hw.platform.boards import BOARDS, make_platform
from sparsegate.sim.engine.amaranth_sim import small_program
from sparsegate.sw.util.toolchain import yowasp_available


@pytest.fixture(scope="module")
def tiny():
    prog = small_program(lanes=1, seed=3, n_samples=1, spec=[
        {"kind": "conv", "cout": 2, "k": 3, "stride": 1, "pad": 1, "relu": True, "pool": True, "density": 0.6},
        {"kind": "fc", "cout": 4, "density": 0.6}], input_shape=(1, 6, 6))
    return retarget_program(prog, capacity_geometry(prog))


def test_board_list_covers_the_brief():
    names = set(BOARDS)
    for need in ("ulx3s-12f", "ulx3s-25f", "ulx3s-45f", "ulx3s-85f", "orangecrab-25f", "ecpix5-85f",
                 "colorlight-5a75b", "versa-ecp5"):
        assert need in names


@pytest.mark.parametrize("name", list(BOARDS))
def test_every_board_renders_a_build_plan(name, tiny, tmp_path):
    platform = make_platform(name)
    assert ("uart", 0) in platform.resources
    plan = platform.build(BoardTop(tiny, clk_hz=100e6), name="top", do_build=False, do_program=False)
    files = plan.files
    assert "top.il" in files and "top.lpf" in files
    # the board clock's pin is constrained; the PLL's output is not (nextpnr derives it: a net name would not survive
    # synthesis, and the real build below checks the derived constraint)
    lpf = files["top.lpf"]
    assert "FREQUENCY PORT" in lpf and "FREQUENCY NET" not in lpf


def test_orangecrab_uart_comes_from_constraints():
    platform = make_platform("orangecrab-25f")
    res = platform.resources["uart", 0]
    pins = {sub.name: sub.ios[0].names for sub in res.ios}
    assert pins == {"tx": ["N17"], "rx": ["M18"]}


def test_uart_pins_override():
    platform = make_platform("colorlight-5a75b", uart_pins=("F3", "F1"))
    pins = {sub.name: sub.ios[0].names for sub in platform.resources["uart", 0].ios}
    assert pins == {"tx": ["F3"], "rx": ["F1"]}


def test_unknown_board():
    with pytest.raises(ValueError, match="unknown board"):
        make_platform("de0-nano")


@pytest.mark.parametrize("fin,fout", [(25e6, 100e6), (25e6, 125e6), (48e6, 100e6), (100e6, 125e6)])
def test_pll_params(fin, fout):
    p = pll_params(fin, fout)
    assert abs(p["fout_hz"] - fout) / fout < 0.01
    vco = p["fout_hz"] * p["CLKOP_DIV"]
    assert 400e6 <= vco <= 800e6 and 3.125e6 <= fin / p["CLKI_DIV"]


@pytest.mark.slow
@pytest.mark.synthesis
def test_board_top_bitstream_and_cache(tmp_path, tiny):
    """A real ULX3S-25F bitstream of the board top (1 lane, a tiny image) through `build_board`, then the
    same build again: a cache hit."""
    if not yowasp_available():
        pytest.skip("YoWASP tools not installed")
    from sparsegate.sw.flow.build import build_board
    from sparsegate.sw.ir.weight_image import encode_image

    image = encode_image(tiny.qnet)
    logs = []
    info = build_board("ulx3s-25f", 1, tmp_path / "out", image=image, image_name="tiny", cache=tmp_path / "cache",
                       log=logs.append)
    rep = info.report
    assert (tmp_path / "out" / "top.bit").stat().st_size > 100_000
    assert rep["utilisation"]["MULT18X18D"]["used"] >= 1 and rep["utilisation"]["DP16KD"]["used"] >= 1
    # nextpnr carries the board clock's constraint through the PLL to the engine's clock: one net at the PLL's rate
    assert [c["constraint_mhz"] for c in rep["clocks"].values()] == [pytest.approx(info.clock_mhz)]
    assert (tmp_path / "out" / "report.md").read_text().count("| LUT4 |") == 1
    logs.clear()
    again = build_board("ulx3s-25f", 1, tmp_path / "out2", image=image, image_name="tiny",
                        cache=tmp_path / "cache", log=logs.append)
    assert any("cache hit" in line for line in logs)
    assert again.cache_hit and again.digest == info.digest
    assert (tmp_path / "out2" / "top.bit").read_bytes() == (tmp_path / "out" / "top.bit").read_bytes()


@pytest.mark.parametrize("name", ["ulx3s-25f", "orangecrab-25f"])
def test_lif_board_top_renders_a_build_plan(name):
    """The LIF core behind the same UART host link, on a board: a build plan with the PLL and the UART pins."""
    from sparsegate.hw.lif.design import LifDesign
    from support.small_snn import small_snn

    platform = make_platform(name)
    plan = platform.build(BoardTop(LifDesign(small_snn(1), units=3, per_word=2), clk_hz=100e6), name="top",
                          do_build=False, do_program=False)
    assert "EHXPLLL" in plan.files["top.il"] and "FREQUENCY" in plan.files["top.lpf"]


@pytest.mark.slow
@pytest.mark.synthesis
def test_lif_board_top_places_on_a_25f(tmp_path):
    """`build_board(core=<the LIF core>, place_only=True)`: the LIF top level through Yosys and nextpnr placement,
    with real utilisation and a post-placement Fmax estimate (no bitstream)."""
    if not yowasp_available():
        pytest.skip("YoWASP tools not installed")
    from sparsegate.hw.lif.design import CORE_NAME
    from sparsegate.sw.flow.build import build_board, format_report
    from support.small_snn import small_snn

    info = build_board("ulx3s-25f", 1, tmp_path / "out", image=small_snn(1), image_name="small SNN", core=CORE_NAME,
                       units=3, per_word=2, cache=tmp_path / "cache", place_only=True, log=lambda s: None)
    rep = info.report
    assert info.core == CORE_NAME and info.bitstream is None and rep["routed"] is False
    assert rep["utilisation"]["TRELLIS_COMB"]["used"] > 500 and rep["fmax_mhz"] > 0
    assert not (tmp_path / "out" / "top.bit").exists()
    assert "LIF core, 3 units" in format_report(info) and "placement estimate" in format_report(info)
