"""Finished results on disk: one file per job digest (``DIGEST.pkl``, pickled value with the wall time and
worker of the run that made it), written atomically by the process that collects the results, so a sweep
that is interrupted keeps every point it finished and the cache folder needs no sharing with the workers."""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

from sparsegate.sw.util.atomic_io import write_bytes

__all__ = ["CachedResult", "ResultCache"]


@dataclass(frozen=True)
class CachedResult:
    value: object
    wall_s: float
    worker: str | None


class ResultCache:
    """The cache folder ``root``; unreadable entries (a truncated or stale pickle) count as missing."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        return self.root / f"{digest}.pkl"

    def get(self, digest: str) -> CachedResult | None:
        try:
            entry = pickle.loads(self.path(digest).read_bytes())
        except Exception:     # noqa: BLE001 - missing or undecodable: a miss, recomputed and overwritten
            return None
        return entry if isinstance(entry, CachedResult) else None

    def put(self, digest: str, entry: CachedResult) -> None:
        write_bytes(self.path(digest), pickle.dumps(entry, protocol=5))
