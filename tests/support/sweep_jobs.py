"""Tiny pure jobs for the runner's tests: they run on real Dask workers, so they live in an importable module."""
from __future__ import annotations

import os
import time


def square_after(x: int, seconds: float) -> int:
    """x squared, after sleeping ``seconds`` (long enough to kill a worker under it)."""
    time.sleep(seconds)
    return x * x


def pid_after(seconds: float) -> int:
    """The worker's process id, after ``seconds``: a test knows whom to kill."""
    time.sleep(seconds)
    return os.getpid()


def fails_on(x: int, bad: int) -> int:
    """x + 1, except for ``bad``, which raises."""
    if x == bad:
        raise ValueError(f"point {x} is broken")
    return x + 1
