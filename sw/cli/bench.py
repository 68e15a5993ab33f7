"""``sparsegate bench``: run the benchmarks of :mod:`sparsegate.sw.bench.registry` and collect their tables
into ``BENCHMARKS.md`` (:mod:`sparsegate.sw.bench.report`), each with the JSON of its figures beside it.

``--only`` runs some benchmarks and replaces just their tables; ``--quick`` is the smoke run (smaller
budgets; the build sweep places only) and writes beside its outputs, not over the real tables; ``--list``
prints what would run. ``--scheduler`` / ``--workers`` / ``--cache`` say where the jobs of the benchmarks
made of independent jobs run (:mod:`sparsegate.sw.jobs`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from sparsegate.sw.bench import registry
from sparsegate.sw.bench.runner import run_benchmarks
from sparsegate.sw.jobs import RunnerOptions


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", action="append", choices=sorted(registry.BENCHMARKS),
                        help="run just this benchmark (repeatable); default: all")
    parser.add_argument("--quick", action="store_true", help="smaller budgets, for a smoke run")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"), help="folder for each benchmark's files")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="where to write the tables (default BENCHMARKS.md; with --quick, OUT/BENCHMARKS.md)")
    parser.add_argument("--list", action="store_true", help="print the benchmarks and the functions behind them")
    jobs = parser.add_argument_group("sweeps on Dask (the build sweep's points run as jobs)")
    jobs.add_argument("--scheduler", default=None, metavar="tcp://HOST:8786",
                      help="an existing Dask scheduler (default: $DASK_SCHEDULER_ADDRESS, else a local cluster)")
    jobs.add_argument("--workers", type=int, default=None, help="local cluster: worker processes (default: one per core)")
    jobs.add_argument("--cache", type=Path, default=None,
                      help="folder of finished job results, reused by a re-run (default OUT/job-cache)")


def run(args: argparse.Namespace) -> int:
    names = args.only or list(registry.BENCHMARKS)
    if args.list:
        for name in names:
            bench = registry.benchmark(name)
            function = bench.function()
            arguments = ", ".join(f"{k}={v!r}" for k, v in bench.kwargs.items())
            print(f"{name:<16} {function.__module__}.{function.__qualname__}({arguments})")
        return 0
    markdown = args.markdown or (args.out / "BENCHMARKS.md" if args.quick else Path("BENCHMARKS.md"))
    options = RunnerOptions(scheduler=args.scheduler, cache=args.cache or args.out / "job-cache", progress=True,
                            workers=args.workers, log=print)
    run_benchmarks(names, args.out, markdown, quick=args.quick, log=print, jobs=options)
    print(f"wrote {markdown}")
    return 0
