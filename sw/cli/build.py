"""``sparsegate build``: the board top level (engine + UART host link + PLL) as an ECP5 bitstream.

    sparsegate build --board ulx3s-85f --lanes 16 [--image IMG] [--engine v1|v2] [--clock-mhz 100] --out DIR
    sparsegate build --board ulx3s-85f --core lif --image SNN.npz [--units 20 --per-word 8] --out DIR

Compiles the weight image (default: the pruned LeNet-5) into the engine's memories (the power-up
contents; any image that fits the same geometry can be loaded at run time over the host link), checks
an estimate of block RAM and DSP use against the device (a design that clearly cannot fit stops here,
with the numbers), then runs Yosys -> nextpnr-ecp5 -> ecppack through YoWASP. ``--engine v1`` builds the old
engine (one-row passes, one pixel drained a cycle, 2P activation banks) instead of the current ``v2``, for
comparisons. Writes ``DIR/top.bit``, ``DIR/report.json`` and ``DIR/report.md`` (LUT4, FF, MULT18X18D, DP16KD,
Fmax per clock, timing met).
``--netlist-sim N`` also simulates the synthesized netlist through the UART pins on N held-out digits
(Verilator, ECP5 cell models), bit for bit against the golden model and the RTL of the same top; the
report says "netlist simulated: N digits bit-exact" or names the first difference (exit status 1).
``--core lif`` (or an ``--image`` that is an exported integer SNN, ``.npz`` from ``sparsegate snn export``)
puts the LIF core behind the same host link instead (``hw/lif/design.py``).

Builds are cached under ``--cache`` by a digest of everything that determines the bitstream (the program's
memory words and geometry, board, clock, baud, the elaborated gateware's sources, the Amaranth / YoWASP
versions); a cache hit copies the earlier ``.bit`` and report. The work is :func:`sparsegate.sw.flow.build.build_board`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    from sparsegate.hw.platform.boards import board_names
    from sparsegate.hw.platform.cores import CORES
    from sparsegate.sw.flow.build import DEFAULT_CACHE, DEFAULT_ENGINE, ENGINE_VARIANTS
    parser.add_argument("--board", required=True, choices=board_names(), help="target board")
    parser.add_argument("--core", choices=("auto", *CORES), default="auto",
                        help="device behind the host link: the sparse engine or the LIF core (default: from --image)")
    parser.add_argument("--lanes", type=int, default=16, help="MAC lanes P: a power of two (default 16)")
    parser.add_argument("--engine", choices=tuple(ENGINE_VARIANTS), default=DEFAULT_ENGINE,
                        help="engine variant: v2 the current engine (2-D tiles, two pixels drained a cycle), v1 "
                             "the old one (one-row passes, one pixel a cycle, 2P activation banks); default "
                             f"{DEFAULT_ENGINE}; --core engine only")
    parser.add_argument("--units", type=int, default=20, help="--core lif: neuron units (default 20)")
    parser.add_argument("--per-word", type=int, default=8, help="--core lif: weights per bank word (default 8)")
    parser.add_argument("--image", type=Path,
                        help="weight image baked in at power-up (default: pruned LeNet-5), or an exported "
                             "integer SNN (.npz) for the LIF core")
    parser.add_argument("--out", type=Path, required=True, help="output folder (top.bit, report.json/.md)")
    parser.add_argument("--clock-mhz", type=float, default=100.0, help="engine clock from the PLL (default 100)")
    parser.add_argument("--baud", type=int, default=115200, help="UART baud rate (default 115200)")
    parser.add_argument("--samples", type=int, default=1, help="input slots in the input memory (default 1)")
    parser.add_argument("--headroom", type=float, default=0.0,
                        help="extra weight/channel/parameter capacity for larger run-time images (0.25 = 25%%)")
    parser.add_argument("--uart-pins", help="TX,RX pins replacing the board's UART pinout (e.g. F3,F1)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"build cache (default {DEFAULT_CACHE})")
    parser.add_argument("--force", action="store_true", help="rebuild even when the cache has this design")
    parser.add_argument("--no-precheck", action="store_true", help="run the tools even when the estimate says it cannot fit")
    parser.add_argument("--seed", type=int, nargs="+", default=[1], metavar="SEED",
                        help="nextpnr placer seed (default 1); several (--seed 1 2 3) place and route once per seed, "
                             "as many at a time as there are cores, and keep the fastest")
    parser.add_argument("--place-only", action="store_true",
                        help="stop after placement: resources and a post-placement Fmax estimate, no bitstream")
    parser.add_argument("--netlist-sim", type=int, default=0, metavar="N",
                        help="simulate the synthesized netlist through the UART pins on N digits (default 0)")


def run(args: argparse.Namespace) -> int:
    from sparsegate.hw.platform.cores import ENGINE
    from sparsegate.hw.platform.ecp5_build import BuildFailed, DesignDoesNotFit
    from sparsegate.sw.cli.main import CliError
    from sparsegate.sim.cocotb_runner import SimulationFailed
    from sparsegate.sw.flow.build import DEFAULT_IMAGE_NAME, BuildError, build_board, detect_core, format_report
    from sparsegate.sw.flow.netlist_sim import NetlistSimError
    from sparsegate.sw.ir.weight_image import read_image_bytes
    from sparsegate.sw.util.toolchain import ToolNotFoundError

    uart = None
    if args.uart_pins:
        uart = tuple(p.strip() for p in args.uart_pins.split(","))
        if len(uart) != 2:
            raise CliError(f"--uart-pins takes TX,RX, got {args.uart_pins!r}")
    if not 0 <= args.netlist_sim <= 1000:
        raise CliError(f"--netlist-sim must be in 0..1000 (the held-out digits), got {args.netlist_sim}")
    try:
        core = detect_core(args.core, args.image)
        image = read_image_bytes(args.image) if core is ENGINE and args.image else args.image
        result = build_board(args.board, args.lanes, args.out, image=image, engine=args.engine, core=core,
                             units=args.units, per_word=args.per_word,
                             image_name=str(args.image) if args.image else DEFAULT_IMAGE_NAME,
                             clock_mhz=args.clock_mhz, baud=args.baud, samples=args.samples, headroom=args.headroom,
                             uart_pins=uart, cache=args.cache, force=args.force, precheck=not args.no_precheck,
                             place_only=args.place_only, seeds=args.seed, netlist_sim=args.netlist_sim, log=print)
    except (BuildError, DesignDoesNotFit, NetlistSimError) as err:
        raise CliError(str(err)) from None
    except (BuildFailed, ToolNotFoundError, SimulationFailed) as err:
        raise CliError(str(err).splitlines()[0] + " (see the build folder's logs)") from None
    print(format_report(result))
    netlist_ok = result.netlist_sim is None or result.netlist_sim["ok"]
    return 0 if result.timing_met and netlist_ok else 1
