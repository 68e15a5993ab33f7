"""Tiny pure jobs for the runner's tests: they run on real Dask workers, so they live in an importable module."""
from __future__ import annotations

import os
import signal
import time


def square_after(x: int, seconds: float) -> int:
    """x squared, after sleeping ``seconds`` (long enough to kill a worker under it)."""
    time.sleep(seconds)
    return x * x


def fails_on(x: int, bad: int) -> int:
    """x + 1, except for ``bad``, which raises."""
    if x == bad:
        raise ValueError(f"point {x} is broken")
    return x + 1


def record_run(log: str, x: int) -> int:
    """x times 10, appending x to the file ``log``: the test sees which jobs really ran."""
    with open(log, "a") as f:
        f.write(f"{x}\n")
    return 10 * x


def kill_own_worker() -> None:
    """Kill the worker process running it, as the kernel's OOM killer or a crashing tool would."""
    os.kill(os.getpid(), signal.SIGKILL)
