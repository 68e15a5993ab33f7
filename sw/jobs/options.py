"""How a sweep runs: which cluster, where results are cached, how often a failed job is retried, and where
progress lines go (the library never prints; the CLI passes ``print``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

__all__ = ["RunnerError", "RunnerOptions", "SCHEDULER_ENV"]

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"


class RunnerError(ValueError):
    """The runner cannot start: an unreachable scheduler, an impossible worker count."""


@dataclass(frozen=True)
class RunnerOptions:
    """``scheduler``: ``None`` → the address in ``$DASK_SCHEDULER_ADDRESS`` if set, else a ``LocalCluster`` on this
    machine (``workers`` processes, default one per core, one thread each, memory split evenly);
    ``"tcp://HOST:8786"`` → that cluster. ``cache``: folder of finished results (``None``: no cache).
    ``retries``: extra attempts of a failed job. ``progress``: send done/running/failed lines to ``log``.
    ``processes=False`` runs the local workers as threads of this process (in-process stand-ins stay visible)."""

    scheduler: str | None = None
    cache: Path | None = None
    retries: int = 1
    progress: bool = False
    workers: int | None = None
    processes: bool = True
    log: Callable[[str], None] | None = None

    def __post_init__(self):
        if self.retries < 0:
            raise RunnerError(f"retries must be >= 0, got {self.retries}")
        if self.workers is not None and self.workers < 1:
            raise RunnerError(f"--workers must be >= 1, got {self.workers}")
        if self.scheduler is not None and "://" not in self.scheduler:
            raise RunnerError(f"--scheduler must be an address like tcp://HOST:8786, got {self.scheduler!r}")
