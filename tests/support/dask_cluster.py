"""A real Dask cluster on localhost for the runner's tests: ``dask scheduler`` and ``dask worker`` processes
started from this venv, each in its own process group so a test can kill one worker (nanny and all), and every
process is killed when the cluster is closed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


@dataclass
class LocalProcesses:
    """The scheduler's address, the scheduler process and the worker processes by name."""

    address: str
    scheduler: subprocess.Popen
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)

    def kill(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def close(self) -> None:
        for proc in [*self.workers.values(), self.scheduler]:
            try:
                self.kill(proc)
            except ProcessLookupError:
                proc.wait(timeout=30)


def _spawn(args: list[str], workdir: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    env.pop("DASK_SCHEDULER_ADDRESS", None)
    with open(log, "wb") as out:
        return subprocess.Popen([str(Path(sys.executable).parent / "dask"), *args], cwd=workdir, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def start_cluster(workdir: Path, workers: int = 2) -> LocalProcesses:
    """Start a scheduler and ``workers`` single-threaded workers in ``workdir``; return once all have joined."""
    from distributed import Client

    workdir.mkdir(parents=True, exist_ok=True)
    file = workdir / "scheduler.json"
    scheduler = _spawn(["scheduler", "--host", "127.0.0.1", "--port", "0", "--dashboard-address", ":0",
                        "--scheduler-file", str(file)], workdir, workdir / "scheduler.log")
    cluster = LocalProcesses("", scheduler)
    try:
        deadline = time.monotonic() + 60
        while not file.is_file():
            if scheduler.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dask scheduler did not start: {(workdir / 'scheduler.log').read_text()}")
            time.sleep(0.2)
        for n in range(workers):
            cluster.workers[f"w{n}"] = _spawn(
                ["worker", "--scheduler-file", str(file), "--nthreads", "1", "--memory-limit", "2GiB",
                 "--no-dashboard", "--name", f"w{n}", "--local-directory", str(workdir / f"w{n}")],
                workdir, workdir / f"w{n}.log")
        with Client(scheduler_file=str(file), set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=120)
            cluster.address = client.scheduler.address
    except BaseException:
        cluster.close()
        raise
    return cluster
