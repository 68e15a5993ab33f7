"""``sparsegate run``: classify digits on a board, or on the simulated board top level, through the host
link — one code path, two transports (:func:`sparsegate.sw.flow.run.run_digits`).

    sparsegate run --board-port /dev/ttyUSB0 [--image IMG] [--samples 20] [--build OUT | --baud RATE]
    sparsegate run --sim [--simulator verilator|amaranth] [--lanes 16] [--image IMG] [--samples 20]
    sparsegate run --sim --core lif --image SNN.npz [--units 20 --per-word 8] [--samples 20]

The image is compiled for the device's geometry (read with the ID command) and loaded at run time; each
digit is written into input slot 0, run, and its logits read back; predictions and logits are compared
with the golden model (bit-exact) and the labels. The ID reply says which core the device holds; for the
LIF core the image is an integer SNN (``sparsegate snn export``), each digit's spike trains are loaded,
and the readout membranes are compared with :class:`~sparsegate.sw.ir.snn_golden.IntSNN` (bit-exact).
``--build OUT`` takes the baud rate from the build's ``OUT/report.json`` (``sparsegate build --out OUT``, or a demo's
``RUN/build``: the demo builds at the board's fastest rate); without it and ``--baud``, 115200.
Exit status 0 when every output is bit-exact, 1 when not, 2 on an error.
"""
from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["configure", "run"]


def configure(parser: argparse.ArgumentParser) -> None:
    from sparsegate.hw.platform.cores import CORES
    from sparsegate.sim.transports import SIMULATORS
    from sparsegate.sw.flow.run import DEFAULT_SIM_BUILD

    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--board-port", help="serial port of a board running `sparsegate build`'s bitstream")
    where.add_argument("--sim", action="store_true", help="the board top level in simulation")
    parser.add_argument("--baud", type=int, default=None, help="UART baud rate (default: --build's, else 115200)")
    parser.add_argument("--build", type=Path, metavar="OUT",
                        help="the bitstream's build folder: its report.json says the baud rate")
    parser.add_argument("--image", type=Path,
                        help="weight image (default: the pruned LeNet-5), or an integer SNN (.npz) for the LIF core")
    parser.add_argument("--core", choices=("auto", *CORES), default="auto",
                        help="--sim: which core to simulate (default: from --image)")
    parser.add_argument("--units", type=int, default=20, help="--sim --core lif: neuron units (default 20)")
    parser.add_argument("--per-word", type=int, default=8, help="--sim --core lif: weights per bank word (default 8)")
    parser.add_argument("--samples", type=int, default=20, help="held-out digits to classify, 1..1000 (default 20)")
    parser.add_argument("--lanes", type=int, default=16, help="--sim: MAC lanes (default 16)")
    parser.add_argument("--simulator", choices=SIMULATORS, default="verilator",
                        help="--sim: Verilator (fast, builds once) or Amaranth's simulator (slow)")
    parser.add_argument("--build-dir", type=Path, default=DEFAULT_SIM_BUILD, help="--sim: Verilator build cache")
    parser.add_argument("--no-load", action="store_true",
                        help="use the image baked into the bitstream instead of loading --image")


def _baud(args: argparse.Namespace) -> int:
    """``--baud``, else the build report's, else 115200; a ``--baud`` that contradicts ``--build`` is refused."""
    import json

    from sparsegate.sw.cli.main import CliError

    if args.build is None:
        return args.baud or 115200
    report = args.build / "report.json"
    try:
        built = int(json.loads(report.read_text())["baud"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise CliError(f"--build: {report}: expected a build report with a 'baud' field ({err})") from None
    if args.baud is not None and args.baud != built:
        raise CliError(f"--baud {args.baud} contradicts --build: {report} was built for {built} baud")
    return built


def run(args: argparse.Namespace) -> int:
    from sparsegate.sw.cli.main import CliError
    from sparsegate.sw.flow.build import BuildError, detect_core
    from sparsegate.sw.flow.run import RunError, run_digits
    from sparsegate.sw.host.driver import DeviceError, LinkError

    try:
        core = detect_core(args.core, args.image)
        result = run_digits(core, args.image, args.samples, port=None if args.sim else args.board_port,
                            baud=_baud(args), load=not args.no_load, lanes=args.lanes, units=args.units,
                            per_word=args.per_word, simulator=args.simulator, build_dir=args.build_dir,
                            auto=args.core == "auto", log=print)
    except (BuildError, RunError, LinkError, DeviceError) as err:
        raise CliError(str(err)) from None
    return 0 if result.ok else 1
