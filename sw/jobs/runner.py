"""Run a sweep's independent jobs on a Dask cluster and collect their results in the order they were given.

Each :class:`Job` is ``fn(*args, **kwargs)``, a pure function of its inputs. With a cache folder, a job whose
digest (:func:`~sparsegate.sw.jobs.digest.job_digest`) has a result there is not run again, and every result
is stored the moment it arrives, so a re-run skips finished points and an interrupted sweep resumes. A job
that raises or loses its worker (killed, out of memory) is submitted again up to ``retries`` times, then
recorded as failed with its reason; the sweep itself always finishes."""
from __future__ import annotations

import collections
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Callable

from sparsegate.sw.jobs.cache import CachedResult, ResultCache
from sparsegate.sw.jobs.cluster import connect
from sparsegate.sw.jobs.digest import job_digest
from sparsegate.sw.jobs.options import RunnerOptions

__all__ = ["Job", "JobFailure", "JobResult", "JobsFailed", "Progress", "SweepResult", "map_jobs", "run_jobs"]


@dataclass(frozen=True)
class Job:
    """One point of a sweep: ``key`` names it in results and progress; ``fn`` must be importable on the workers."""

    key: str
    fn: Callable
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class JobResult:
    """A job's outcome: its value, or ``error`` (the reason it failed, after ``attempts`` tries; 0 for a result
    from the cache); the wall time and worker of the run that produced it (for a cached result, of the earlier
    run that did; no worker when the worker died under it)."""

    key: str
    value: object = None
    error: str | None = None
    wall_s: float = 0.0
    worker: str | None = None
    attempts: int = 0
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class JobFailure:
    """What :func:`map_jobs` puts in place of a failed call's value (when not strict)."""

    key: str
    reason: str
    attempts: int


@dataclass(frozen=True)
class Progress:
    """A snapshot of a sweep: jobs done (``cached`` of them from the cache), running, failed, of ``total``."""

    done: int
    running: int
    failed: int
    cached: int
    total: int

    def line(self) -> str:
        return (f"[jobs] {self.done}/{self.total} done ({self.cached} cached), {self.running} running, "
                f"{self.failed} failed")


@dataclass(frozen=True)
class SweepResult:
    """Every job's :class:`JobResult`, in the order of the jobs; where they ran and how long the sweep took."""

    results: list[JobResult]
    scheduler: str | None
    dashboard: str | None
    wall_s: float

    @property
    def failed(self) -> list[JobResult]:
        return [r for r in self.results if not r.ok]

    @property
    def values(self) -> list:
        return [r.value for r in self.results]


class JobsFailed(RuntimeError):
    """Some jobs of a strict :func:`map_jobs` failed; ``sweep`` holds every result, failed ones included."""

    def __init__(self, sweep: SweepResult):
        self.sweep = sweep
        first = sweep.failed[0]
        super().__init__(f"{len(sweep.failed)} of {len(sweep.results)} jobs failed; first: {first.key}: {first.error}")


@dataclass(frozen=True)
class _Outcome:
    """What a job sends back from its worker."""

    value: object
    error: str | None
    wall_s: float
    worker: str


def _run_on_worker(fn, args, kwargs) -> _Outcome:
    """The task Dask runs: the job, timed, its exception turned into a reason (so the runner decides on retries)."""
    from distributed import get_worker

    worker = get_worker().address
    start = time.perf_counter()
    try:
        value = fn(*args, **kwargs)
    except Exception as err:     # noqa: BLE001 - any failure of the job is its result: recorded, never raised
        tb = traceback.extract_tb(err.__traceback__)[-1]
        return _Outcome(None, f"{type(err).__name__}: {err} (at {tb.filename}:{tb.lineno})",
                        time.perf_counter() - start, worker)
    return _Outcome(value, None, time.perf_counter() - start, worker)


def _lost(err: BaseException) -> str:
    """The reason of a task Dask itself gave up on (its worker died or the task could not be run there)."""
    from distributed import KilledWorker

    if isinstance(err, KilledWorker):
        return f"worker killed while running it (out of memory or a crash): {err}"
    return f"{type(err).__name__}: {err}"


def run_jobs(jobs: list[Job], options: RunnerOptions | None = None, *,
             on_result: Callable[[int, JobResult], None] | None = None) -> SweepResult:
    """Run ``jobs`` as :class:`RunnerOptions` says; return every job's result in the order of ``jobs``.
    ``on_result(index, result)`` is called in this process as each one settles (cached ones first)."""
    from distributed import as_completed

    options = options or RunnerOptions()
    say = options.log if options.progress and options.log is not None else None
    keys = [job.key for job in jobs]
    if len(set(keys)) != len(keys):
        raise ValueError("job keys must be unique within a sweep")
    cache = ResultCache(options.cache) if options.cache is not None else None
    digests = [job_digest(job.fn, job.args, job.kwargs) for job in jobs]
    results: list[JobResult | None] = [None] * len(jobs)
    t0 = time.perf_counter()

    def settle(i: int, result: JobResult) -> None:
        results[i] = result
        if on_result is not None:
            on_result(i, result)

    for i, (job, digest) in enumerate(zip(jobs, digests)):
        hit = cache.get(digest) if cache is not None else None
        if hit is not None:
            settle(i, JobResult(job.key, hit.value, None, hit.wall_s, hit.worker, 0, cached=True))
    todo = [i for i, r in enumerate(results) if r is None]
    cached = len(jobs) - len(todo)
    if not todo:
        if say:
            say(Progress(cached, 0, 0, cached, len(jobs)).line())
        return SweepResult(results, None, None, time.perf_counter() - t0)

    with connect(options) as conn:
        client = conn.client
        if say:
            say(f"[jobs] {len(todo)} to run ({cached} cached) on {conn.scheduler}"
                + (f"; dashboard {conn.dashboard}" if conn.dashboard else ""))
        attempts = dict.fromkeys(todo, 0)
        waiting = collections.deque(todo)
        futures: dict = {}
        pending = as_completed(loop=client.loop)

        def top_up() -> None:
            """Keep one job per worker thread in flight: the rest wait here, so the only job a dying worker takes
            down is the one it was running."""
            slots = max(1, sum(client.nthreads().values()))
            while waiting and len(futures) < slots:
                i = waiting.popleft()
                attempts[i] += 1
                job = jobs[i]
                future = client.submit(_run_on_worker, job.fn, job.args, job.kwargs, pure=False, retries=0,
                                       key=f"{job.key}-{uuid.uuid4().hex[:12]}")
                futures[future] = i
                pending.add(future)

        top_up()
        done = failed = 0
        for future in pending:
            i = futures.pop(future)
            outcome = None
            if future.status != "finished":
                error = _lost(future.exception())
            else:
                try:
                    outcome = future.result()
                    error = outcome.error
                except Exception as err:     # noqa: BLE001 - e.g. a value this process cannot unpickle
                    error = f"its result could not be fetched: {type(err).__name__}: {err}"
            future.release()
            if error is not None and attempts[i] <= options.retries:
                if say:
                    say(f"[jobs] {jobs[i].key} attempt {attempts[i]} failed ({error}); retrying")
                waiting.appendleft(i)
            else:
                wall = outcome.wall_s if outcome is not None else 0.0
                worker = outcome.worker if outcome is not None else None
                if error is None:
                    done += 1
                    if cache is not None:
                        cache.put(digests[i], CachedResult(outcome.value, wall, worker))
                    settle(i, JobResult(jobs[i].key, outcome.value, None, wall, worker, attempts[i]))
                else:
                    failed += 1
                    settle(i, JobResult(jobs[i].key, None, error, wall, worker, attempts[i]))
            top_up()
            if say and results[i] is not None:
                say(Progress(cached + done, len(futures), failed, cached, len(jobs)).line())
        return SweepResult(results, conn.scheduler, conn.dashboard, time.perf_counter() - t0)


def map_jobs(fn, calls: list[tuple], *, options: RunnerOptions | None = None, strict: bool = False) -> list:
    """``[fn(*call) for call in calls]`` on the cluster, in the order of ``calls``. A failed call's place holds a
    :class:`JobFailure`; with ``strict``, :class:`JobsFailed` is raised instead, once every call has finished."""
    name = getattr(fn, "__qualname__", type(fn).__name__)
    sweep = run_jobs([Job(f"{name}[{n}]", fn, tuple(call)) for n, call in enumerate(calls)], options)
    if strict and sweep.failed:
        raise JobsFailed(sweep)
    return [r.value if r.ok else JobFailure(r.key, r.error, r.attempts) for r in sweep.results]
