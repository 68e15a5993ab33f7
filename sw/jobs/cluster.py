"""The Dask client of a sweep: connected to ``options.scheduler`` (or ``$DASK_SCHEDULER_ADDRESS``), else to a
``LocalCluster`` started for the sweep — one worker process per core (a nextpnr run or a training job each
needs a core), one thread each, the machine's memory split evenly — and closed with it.

The local scheduler hands each worker one task at a time (``worker-saturation`` 1.0), so when a worker dies the
task it was running is the only one blamed, and gives up on that task at once (``allowed-failures`` 0): a job
that brings its worker down (out of memory, a crash) comes back to the runner, which retries it once and then
records it. A remote scheduler keeps its own settings (Dask's defaults reschedule such a task 3 times first,
and may blame a task that was only queued on the dying worker)."""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

from sparsegate.sw.jobs.options import SCHEDULER_ENV, RunnerError, RunnerOptions

__all__ = ["Connection", "connect", "local_cores"]


@dataclass(frozen=True)
class Connection:
    """An open client, the scheduler's address and its dashboard link (``None`` when it serves none)."""

    client: object
    scheduler: str
    dashboard: str | None


def local_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:     # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _dashboard(client) -> str | None:
    """The dashboard link, if the scheduler serves the dashboard (it needs bokeh there; without it the same
    address only shows a page asking for bokeh)."""
    if "dashboard" not in client.scheduler_info(n_workers=0).get("services", {}):
        return None
    if client.get_versions(packages=["bokeh"])["scheduler"]["packages"].get("bokeh") is None:
        return None
    return client.dashboard_link


@contextmanager
def connect(options: RunnerOptions):
    """Yield a :class:`Connection` for ``options``; raise :class:`RunnerError` when the scheduler is unreachable."""
    import dask
    from distributed import Client, LocalCluster

    address = options.scheduler or os.environ.get(SCHEDULER_ENV) or None
    if address is not None:
        try:
            client = Client(address, timeout="20s", set_as_default=False)
        except (OSError, TimeoutError) as err:
            raise RunnerError(f"cannot reach the Dask scheduler at {address}: {err}") from None
        with client:
            yield Connection(client, address, _dashboard(client))
        return
    from distributed.system import MEMORY_LIMIT

    workers = options.workers or local_cores()
    with dask.config.set({"distributed.scheduler.allowed-failures": 0, "distributed.scheduler.worker-saturation": 1.0}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=options.processes,
                               memory_limit=MEMORY_LIMIT // workers, dashboard_address=":0")
    with cluster, Client(cluster, set_as_default=False) as client:
        yield Connection(client, cluster.scheduler_address, _dashboard(client))
