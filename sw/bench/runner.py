"""Run benchmarks from the registry and keep ``BENCHMARKS.md`` current: the file is rewritten after every
benchmark, so a long ``make bench`` that stops keeps the sections it finished."""
from __future__ import annotations

import datetime
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sparsegate.sw.bench import registry
from sparsegate.sw.bench.report import assemble, read_sections, section
from sparsegate.sw.bench.results import BenchResult
from sparsegate.sw.jobs import RunnerOptions
from sparsegate.sw.util.atomic_io import write_text

__all__ = ["BenchRun", "machine_description", "run_benchmarks"]


@dataclass(frozen=True)
class BenchRun:
    """The outcome of :func:`run_benchmarks`: each benchmark's result and the assembled Markdown."""

    results: dict[str, BenchResult]
    markdown: str


def machine_description() -> str:
    import torch

    return (f"{platform.node()}: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads)")


def _quiet(_: str) -> None:
    pass


def run_benchmarks(names: list[str], out: Path, markdown: Path, quick: bool = False,
                   log: Callable[[str], None] = _quiet, jobs: RunnerOptions | None = None) -> BenchRun:
    """Run the named benchmarks in order, each in ``out/NAME``, rewriting ``markdown`` after each one (keeping
    the sections of benchmarks not run now). Every benchmark's wiring is checked first, so a stale one fails
    before hours of work. ``jobs``: the runner options (cluster, cache, workers) for the benchmarks made of
    independent jobs (those whose function takes ``jobs``)."""
    benchmarks = [registry.benchmark(name) for name in names]
    for bench in benchmarks:
        bench.function()
    machine = machine_description()
    sections = read_sections(markdown)
    results = {}
    for bench in benchmarks:
        started = datetime.datetime.now(datetime.timezone.utc)
        log(f"[bench {bench.name}] running ...")
        clock = time.perf_counter()
        results[bench.name] = result = bench.run(out / bench.name, quick=quick, jobs=jobs)
        elapsed = time.perf_counter() - clock
        log(f"[bench {bench.name}] done in {elapsed:.0f} s")
        command = f"sparsegate bench --only {bench.name}" + (" --quick" if quick else "")
        sections[bench.name] = section(bench.name, result, command, started, elapsed, machine, markdown)
        write_text(markdown, assemble(sections))
    return BenchRun(results, assemble(sections))
