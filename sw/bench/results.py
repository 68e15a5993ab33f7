"""One writer for every benchmark's outputs: its Markdown table and a JSON file beside it with the same
figures, both written atomically, so a reader never sees half a file or a table without its data."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sparsegate.sw.util.atomic_io import write_json, write_text

__all__ = ["BenchResult", "write_results"]


@dataclass(frozen=True)
class BenchResult:
    """What a benchmark produced: the Markdown it rendered from ``data``, and where both were written."""

    name: str
    markdown: str
    data: dict | list
    markdown_path: Path
    json_path: Path


def write_results(name: str, markdown: str, data: dict | list, out_dir: str | Path) -> BenchResult:
    """Write ``out_dir/<name>.md`` and ``out_dir/<name>.json`` (``data``, the figures the Markdown shows)."""
    out_dir = Path(out_dir)
    json_path, markdown_path = out_dir / f"{name}.json", out_dir / f"{name}.md"
    write_json(json_path, data)
    write_text(markdown_path, markdown)
    return BenchResult(name, markdown, data, markdown_path, json_path)
