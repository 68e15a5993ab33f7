"""How a benchmark made of independent jobs runs them: in order in this process by default, or on the Dask
job runner when ``sparsegate bench`` passes runner options; failed jobs are left out of the results."""
from __future__ import annotations

from typing import Callable

from sparsegate.sw.jobs import JobFailure, RunnerOptions
from sparsegate.sw.jobs import map_jobs as runner_map_jobs

__all__ = ["MapJobs", "finished", "job_mapper", "sequential_map"]

MapJobs = Callable[[Callable, list[tuple]], list]


def sequential_map(fn: Callable, calls: list[tuple]) -> list:
    """The default ``map_jobs``: each call in order, in this process."""
    return [fn(*args) for args in calls]


def job_mapper(map_jobs: MapJobs, jobs: RunnerOptions | None) -> MapJobs:
    """``map_jobs``, or the Dask job runner (:mod:`sparsegate.sw.jobs`: local cluster or ``--scheduler``,
    result cache, one retry) when runner options are given."""
    if jobs is None:
        return map_jobs
    return lambda fn, calls: runner_map_jobs(fn, calls, options=jobs)


def finished(results: list) -> list[dict]:
    """The jobs that returned; a failed one (:class:`~sparsegate.sw.jobs.JobFailure`) is left out, and the
    report then says the run is partial."""
    return [r for r in results if not isinstance(r, JobFailure)]
