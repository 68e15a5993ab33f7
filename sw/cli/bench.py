"""``sparsegate bench``: run the benchmarks and collect their tables into ``BENCHMARKS.md``.

Each benchmark is a function ``run(out_dir, quick=False, **kwargs) -> markdown`` in the module that owns
the feature; it measures everything it compares in one run. This command adds, per table, the command
that produced it, the date, the wall time and the machine, and rewrites ``BENCHMARKS.md`` after every
benchmark, so a long ``make bench`` that stops keeps the tables it finished. Each table sits between
markers naming its benchmark: a run of some benchmarks (``--only``) replaces their tables and keeps the
others' from earlier runs. ``--quick`` is the smoke run (smaller budgets; the build sweep places only) and
writes beside its outputs, not over the real tables; ``--list`` prints what would run.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import inspect
import os
import platform
import re
import time
from pathlib import Path

from sparsegate.sw.util.atomic_io import write_bytes, write_text

# name -> (module, function, extra keyword arguments)
BENCHMARKS = {
    "prune": ("sparsegate.sw.bench.prune", "run_prune_benchmark", {"model": "lenet5"}),
    "prune-lenet300": ("sparsegate.sw.bench.prune", "run_prune_benchmark", {"model": "lenet300"}),
    "snn": ("sparsegate.sw.bench.snn", "run_snn_benchmark", {}),
    "engine": ("sparsegate.sw.bench.engine", "run_engine_benchmark", {}),
    "structured": ("sparsegate.sw.bench.structured", "run_structured_benchmark", {}),
    "rnn": ("sparsegate.sw.bench.rnn", "run_rnn_benchmark", {}),
    "builds": ("sparsegate.sw.bench.builds", "run_build_sweep", {}),  # last: hours of place and route
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


HEADER = ("# sparsegate benchmarks\n\n"
          "Written by `make bench` (`sparsegate bench`). Every ratio in a table was measured side by side in the "
          "run that made that table; each table names its command, date, wall time and machine. Timings are "
          "noisy on a shared machine, so compare ratios, not absolute numbers.\n")


def _begin(name: str) -> str:
    return f"<!-- bench:{name} -->"


def _end(name: str) -> str:
    return f"<!-- /bench:{name} -->"


def read_sections(markdown: Path | None) -> dict[str, str]:
    """The tables of an earlier ``BENCHMARKS.md``, by benchmark name (between its markers); {} if none."""
    if markdown is None or not markdown.is_file():
        return {}
    text = markdown.read_text()
    return {m.group(1): m.group(0) for m in re.finditer(r"<!-- bench:([\w-]+) -->\n.*?<!-- /bench:\1 -->",
                                                        text, re.S) if m.group(1) in BENCHMARKS}


def _demoted(table: str) -> str:
    """A benchmark's Markdown with its headings two levels down, to sit under the benchmark's own (level 2)."""
    lines, fenced = [], False
    for line in table.strip().split("\n"):
        fenced ^= line.startswith("```")
        lines.append("##" + line if line.startswith("#") and not fenced else line)
    return "\n".join(lines)


def assemble(sections: dict[str, str]) -> str:
    """The whole file: the header, then each benchmark's table in registry order."""
    return "\n".join([HEADER, *(sections[name] + "\n" for name in BENCHMARKS if name in sections)])


def plots_folder(markdown: Path) -> Path:
    """Where a Markdown file's plots go: ``docs/bench`` when a ``docs`` folder sits beside it (the
    repository's BENCHMARKS.md), else ``plots`` beside it."""
    return markdown.parent / "docs" / "bench" if (markdown.parent / "docs").is_dir() else markdown.parent / "plots"


def _with_plots(table: str, source: Path, name: str, markdown: Path | None) -> str:
    """``table`` with each image it links (relative to ``source``, the benchmark's folder) copied next to
    ``markdown`` and the link rewritten, so the tables' plots show where the Markdown is read."""
    if markdown is None:
        return table

    def copy(match: re.Match) -> str:
        image = source / match.group(2)
        if not image.is_file():
            return match.group(0)
        target = plots_folder(markdown) / f"{name}-{image.name}"
        write_bytes(target, image.read_bytes())
        return f"![{match.group(1)}]({os.path.relpath(target, markdown.parent)})"

    return re.sub(r"!\[([^\]]*)\]\((?![a-z]+:|/)([^)]+)\)", copy, table)


def run_benchmarks(names: list[str], out: Path, quick: bool = False, log=print, markdown: Path | None = None) -> str:
    """Run the named benchmarks in order; return the assembled Markdown (also written to ``markdown``, if
    given, after each benchmark, keeping the tables of benchmarks not run now; linked plots are copied
    to :func:`plots_folder`)."""
    machine = machine_description()
    functions = {name: benchmark_function(name) for name in names}  # wiring errors before hours of work
    sections = read_sections(markdown)
    for name in names:
        function, kwargs = functions[name], BENCHMARKS[name][2]
        started = datetime.datetime.now(datetime.timezone.utc)
        log(f"[bench {name}] running ...")
        clock = time.perf_counter()
        table = _with_plots(function(out / name, quick=quick, **kwargs), out / name, name, markdown)
        elapsed = time.perf_counter() - clock
        command = f"sparsegate bench --only {name}" + (" --quick" if quick else "")
        sections[name] = (f"{_begin(name)}\n## {name}\n\nCommand: `{command}` — {started:%Y-%m-%d %H:%M} UTC, "
                          f"{elapsed:.0f} s, on {machine}.\n\n{_demoted(table)}\n{_end(name)}")
        log(f"[bench {name}] done in {elapsed:.0f} s")
        if markdown is not None:
            write_text(markdown, assemble(sections))
    return assemble(sections)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS),
                        help="run just this benchmark (repeatable); default: all")
    parser.add_argument("--quick", action="store_true", help="smaller budgets, for a smoke run")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"), help="folder for each benchmark's files")
    parser.add_argument("--markdown", type=Path, default=None,
                        help="where to write the tables (default BENCHMARKS.md; with --quick, OUT/BENCHMARKS.md)")
    parser.add_argument("--list", action="store_true", help="print the benchmarks and the functions behind them")


def run(args: argparse.Namespace) -> int:
    names = args.only or list(BENCHMARKS)
    if args.list:
        for name in names:
            benchmark_function(name)
            module_name, function_name, kwargs = BENCHMARKS[name]
            print(f"{name:<16} {module_name}.{function_name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})")
        return 0
    markdown = args.markdown or (args.out / "BENCHMARKS.md" if args.quick else Path("BENCHMARKS.md"))
    run_benchmarks(names, args.out, quick=args.quick, markdown=markdown)
    print(f"wrote {markdown}")
    return 0
