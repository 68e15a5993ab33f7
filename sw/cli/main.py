"""The ``sparsegate`` command line: one entry point, one subcommand per feature.

Each subcommand lives in the module that owns the feature and exposes ``configure(parser)`` (arguments,
no heavy imports) and ``run(args) -> int``. Expected failures raise :class:`CliError` (or a ValueError
subclass from the data/checkpoint layers) and are printed as one clear line, exit status 2.
"""
from __future__ import annotations

import argparse
import importlib
import shlex
import sys
from typing import Iterable

# subcommand -> (module, one-line help)
COMMANDS = {
    "train": ("sparsegate.sw.cli.train", "train a model on a dataset and write a checkpoint"),
    "prune": ("sparsegate.sw.cli.prune", "prune a checkpoint (magnitude, global, torch-l1, SRA, ACRA, NRP)"),
    "quantize": ("sparsegate.sw.cli.quantize", "quantize a checkpoint to int8, report float vs int8 accuracy"),
    "export": ("sparsegate.sw.cli.export", "write the sparse weight image, hex files and manifest"),
    "inspect": ("sparsegate.sw.cli.inspect", "print a weight image's layers and storage against other formats"),
    "simulate": ("sparsegate.sw.cli.simulate", "run a weight image on the cycle-accurate engine, check it bit-exactly"),
    "snn": ("sparsegate.sw.cli.snn", "spiking MLP: train, prune by spike count, export to integers, simulate the LIF core"),
    "build": ("sparsegate.sw.cli.build", "build an ECP5 bitstream of the engine + UART host link for a board"),
    "run": ("sparsegate.sw.cli.run", "classify digits on a board (--board-port) or the simulated board top (--sim)"),
    "demo": ("sparsegate.sw.cli.demo", "the main job on the embedded MNIST default, resumable"),
    "bench": ("sparsegate.sw.cli.bench", "run the benchmarks and write BENCHMARKS.md"),
    "prune-bench": ("sparsegate.sw.cli.prune_bench", "the cross-validated pruning benchmark: folds, seeds, MNIST"),
    "prune-choose": ("sparsegate.sw.cli.prune_choose",
                     "choose a training setting per fold on validation digits across prune-bench reports"),
    "prune-merge": ("sparsegate.sw.cli.prune_merge", "pool prune-bench reports of disjoint seeds into one report"),
    "rnn": ("sparsegate.sw.cli.rnn", "LSTM on offline text: sparsify weights, neurons and gates (constant gates)"),
}


class CliError(Exception):
    """A user-facing error: printed without a traceback."""


def invoked_as(command: str) -> str | None:
    """The command line, as a report records it, when this process is ``sparsegate <command> ...`` (None when
    the subcommand runs through :func:`main` from Python)."""
    return "sparsegate " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == [command] else None


def build_parser(configured: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line; only the subcommands in ``configured`` (None: all) import their module to add
    their arguments, the others are listed by their help line. A command that needs no torch then starts
    without it, and ``sparsegate --help`` imports no feature at all."""
    parser = argparse.ArgumentParser(prog="sparsegate", description=(
        "Prune, quantize and run PyTorch networks on a zero-skipping sparse engine for Lattice ECP5."))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if configured is None or name in configured:
            importlib.import_module(module_name).configure(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv[:1]).parse_args(argv)  # the subcommand comes first: only its module is imported
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        return int(module.run(args) or 0)
    except (CliError, ValueError, OSError, MemoryError) as err:
        from sparsegate.sw.ir.weight_image import printable  # messages quote names read from files

        message = "out of memory" if isinstance(err, MemoryError) else str(err)
        print(f"sparsegate {args.command}: error: {printable(message)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sparsegate {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
