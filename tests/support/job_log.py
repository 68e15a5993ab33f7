"""A stand-in benchmark job that records each call in a file: a job shipped to the Dask workers by value
cannot report through the test's memory."""
from __future__ import annotations

from pathlib import Path
from typing import Callable


def recording(job: Callable, log: Path, fields: tuple[int, ...]) -> Callable:
    """``job`` that first appends the call's arguments at ``fields`` to ``log``, one line per call."""
    def run(*call):
        with open(log, "a") as f:
            f.write(" ".join(str(call[i]) for i in fields) + "\n")
        return job(*call)
    return run


def calls(log: Path) -> list[str]:
    """The recorded calls, sorted (none when nothing ran)."""
    return sorted(log.read_text().splitlines()) if log.exists() else []
