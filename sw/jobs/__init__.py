"""Independent jobs of a sweep run on ``dask.distributed``: a local cluster sized to this machine or an existing
one (:mod:`~sparsegate.sw.jobs.cluster`), results cached by content digest (:mod:`~sparsegate.sw.jobs.digest`,
:mod:`~sparsegate.sw.jobs.cache`), a failed job retried, then recorded, never aborting the sweep
(:mod:`~sparsegate.sw.jobs.runner`). It sits just above ``sw/util``: any floor above may hand it its jobs."""
from sparsegate.sw.jobs.options import RunnerError, RunnerOptions
from sparsegate.sw.jobs.runner import Job, JobFailure, JobResult, JobsFailed, Progress, SweepResult, map_jobs, run_jobs

__all__ = ["Job", "JobFailure", "JobResult", "JobsFailed", "Progress", "RunnerError", "RunnerOptions", "SweepResult",
           "map_jobs", "run_jobs"]
