"""``sparsegate bench``: run the benchmarks and collect their tables into ``BENCHMARKS.md``.

Each benchmark is a function ``run(out_dir, quick=False, **kwargs) -> markdown`` in the module that owns
the feature; it measures everything it compares in one run. This command adds, per table, the command
that produced it, the date, the wall time and the machine, and rewrites ``BENCHMARKS.md`` after every
benchmark, so a long ``make bench`` that stops keeps the tables it finished. ``--quick`` is the smoke run
(smaller budgets; the build sweep places only); ``--list`` prints what would run.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import inspect
import os
import platform
import time
from pathlib import Path

from .atomic_io import write_text

# name -> (module, function, extra keyword arguments)
BENCHMARKS = {
    "prune": ("sparsegate.sw.prune_benchmark", "run_prune_benchmark", {"model": "lenet5"}),
    "prune-lenet300": ("sparsegate.sw.prune_benchmark", "run_prune_benchmark", {"model": "lenet300"}),
    "snn": ("sparsegate.sw.snn_benchmark", "run_snn_benchmark", {}),
    "engine": ("sparsegate.sim.engine_benchmark", "run_engine_benchmark", {}),
    "builds": ("sparsegate.hw.build_sweep", "run_build_sweep", {}),
    "structured": ("sparsegate.sw.structured_benchmark", "run_structured_benchmark", {}),
    "rnn": ("sparsegate.sw.rnn_benchmark", "run_rnn_benchmark", {}),
}


def machine_description() -> str:
    import torch

    return (f"{platform.node()}: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads)")


def benchmark_function(name: str):
    """The callable behind a benchmark name, checked to accept ``(out_dir, quick=..., **its kwargs)``."""
    if name not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; expected one of {sorted(BENCHMARKS)}")
    module_name, function_name, kwargs = BENCHMARKS[name]
    function = getattr(importlib.import_module(module_name), function_name)
    inspect.signature(function).bind(Path("out"), quick=True, **kwargs)  # TypeError when the wiring is stale
    return function


def run_benchmarks(names: list[str], out: Path, quick: bool = False, log=print, markdown: Path | None = None) -> str:
    """Run the named benchmarks in order; return the assembled Markdown (also written to ``markdown``, if
    given, after each benchmark)."""
    machine = machine_description()
    sections = [f"# sparsegate benchmarks\n\nMachine: {machine}.\n"
                "Every ratio in a table was measured side by side in the same run; timings are noisy on a "
                "shared machine, so compare ratios, not absolute numbers.\n"]
    functions = {name: benchmark_function(name) for name in names}  # wiring errors before hours of work
    for name in names:
        function, kwargs = functions[name], BENCHMARKS[name][2]
        started = datetime.datetime.now(datetime.timezone.utc)
        log(f"[bench {name}] running ...")
        clock = time.perf_counter()
        table = function(out / name, quick=quick, **kwargs)
        elapsed = time.perf_counter() - clock
        command = f"sparsegate bench --only {name}" + (" --quick" if quick else "")
        sections.append(f"## {name}\n\nCommand: `{command}` — {started:%Y-%m-%d %H:%M} UTC, "
                        f"{elapsed:.0f} s, on {machine}.\n\n{table.strip()}\n")
        log(f"[bench {name}] done in {elapsed:.0f} s")
        if markdown is not None:
            write_text(markdown, "\n".join(sections))
    return "\n".join(sections)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS),
                        help="run just this benchmark (repeatable); default: all")
    parser.add_argument("--quick", action="store_true", help="smaller budgets, for a smoke run")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"), help="folder for each benchmark's files")
    parser.add_argument("--markdown", type=Path, default=Path("BENCHMARKS.md"), help="where to write the tables")
    parser.add_argument("--list", action="store_true", help="print the benchmarks and the functions behind them")


def run(args: argparse.Namespace) -> int:
    names = args.only or list(BENCHMARKS)
    if args.list:
        for name in names:
            benchmark_function(name)
            module_name, function_name, kwargs = BENCHMARKS[name]
            print(f"{name:<16} {module_name}.{function_name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})")
        return 0
    run_benchmarks(names, args.out, quick=args.quick, markdown=args.markdown)
    print(f"wrote {args.markdown}")
    return 0
