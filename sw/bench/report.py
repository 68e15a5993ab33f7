"""``BENCHMARKS.md``: the header, then one section per benchmark between markers naming it, in registry
order. A run of some benchmarks replaces their sections and keeps the others' from earlier runs; each
benchmark's headings sit two levels down, under its own; the plots a table links are copied beside the
file and the JSON with the table's figures into a results folder beside it."""
from __future__ import annotations

import datetime
import os
import re
from pathlib import Path

from sparsegate.sw.bench import registry
from sparsegate.sw.bench.results import BenchResult
from sparsegate.sw.util.atomic_io import write_bytes

__all__ = ["HEADER", "assemble", "plots_folder", "read_sections", "results_folder", "section"]

HEADER = ("# sparsegate benchmarks\n\n"
          "Written by `make bench` (`sparsegate bench`). Every ratio in a table was measured side by side in the "
          "run that made that table; each table names its command, date, wall time and machine. Each benchmark "
          "also writes its figures as JSON (`docs/results/`), linked from its table (tables from before the JSON "
          "output have no link). Timings are noisy on a shared machine, so compare ratios, not absolute numbers.\n")


def _begin(name: str) -> str:
    return f"<!-- bench:{name} -->"


def _end(name: str) -> str:
    return f"<!-- /bench:{name} -->"


def read_sections(markdown: Path) -> dict[str, str]:
    """The sections of an earlier ``BENCHMARKS.md``, by benchmark name (between its markers); {} if none."""
    if not markdown.is_file():
        return {}
    text = markdown.read_text()
    return {m.group(1): m.group(0) for m in re.finditer(r"<!-- bench:([\w-]+) -->\n.*?<!-- /bench:\1 -->",
                                                        text, re.S) if m.group(1) in registry.BENCHMARKS}


def _demoted(table: str) -> str:
    """A benchmark's Markdown with its headings two levels down, to sit under the benchmark's own (level 2)."""
    lines, fenced = [], False
    for line in table.strip().split("\n"):
        fenced ^= line.startswith("```")
        lines.append("##" + line if line.startswith("#") and not fenced else line)
    return "\n".join(lines)


def _contents(names: list[str]) -> str:
    rows = [f"| [{name}](#{name}) | {registry.BENCHMARKS[name].title}"
            f"{' (hours)' if registry.BENCHMARKS[name].long else ''} |" for name in names]
    return "\n".join(["| benchmark | what it measures |", "|---|---|", *rows]) + "\n"


def assemble(sections: dict[str, str]) -> str:
    """The whole file: the header with the benchmarks it holds, then each one's section in registry order."""
    names = [name for name in registry.BENCHMARKS if name in sections]
    return "\n".join([HEADER, _contents(names), *(sections[name] + "\n" for name in names)])


def plots_folder(markdown: Path) -> Path:
    """Where a Markdown file's plots go: ``docs/bench`` when a ``docs`` folder sits beside it (the
    repository's BENCHMARKS.md), else ``plots`` beside it."""
    return markdown.parent / "docs" / "bench" if (markdown.parent / "docs").is_dir() else markdown.parent / "plots"


def results_folder(markdown: Path) -> Path:
    """Where the JSON of a Markdown file's tables goes: ``docs/results`` when a ``docs`` folder sits beside it,
    else ``results`` beside it."""
    return markdown.parent / "docs" / "results" if (markdown.parent / "docs").is_dir() else markdown.parent / "results"


def _with_plots(table: str, source: Path, name: str, markdown: Path) -> str:
    """``table`` with each image it links (relative to ``source``, the benchmark's folder) copied to
    :func:`plots_folder` and the link rewritten, so the plots show where the Markdown is read."""
    def copy(match: re.Match) -> str:
        image = source / match.group(2)
        if not image.is_file():
            return match.group(0)
        target = plots_folder(markdown) / f"{name}-{image.name}"
        write_bytes(target, image.read_bytes())
        return f"![{match.group(1)}]({os.path.relpath(target, markdown.parent)})"

    return re.sub(r"!\[([^\]]*)\]\((?![a-z]+:|/)([^)]+)\)", copy, table)


def section(name: str, result: BenchResult, command: str, started: datetime.datetime, elapsed_s: float,
            machine: str, markdown: Path) -> str:
    """A benchmark's section of ``markdown``: its heading, the command, date, wall time and machine, a link
    to its figures (the result's JSON, copied to :func:`results_folder`), then its table with the plots it
    links copied beside ``markdown``."""
    figures = results_folder(markdown) / result.json_path.name
    write_bytes(figures, result.json_path.read_bytes())
    link = os.path.relpath(figures, markdown.parent)
    table = _with_plots(result.markdown, result.markdown_path.parent, name, markdown)
    return (f"{_begin(name)}\n## {name}\n\nCommand: `{command}` — {started:%Y-%m-%d %H:%M} UTC, {elapsed_s:.0f} s, "
            f"on {machine}. Figures: [`{link}`]({link}).\n\n{_demoted(table)}\n{_end(name)}")
