"""The sweep runner on real Dask clusters: `dask scheduler` + two `dask worker` processes on localhost (one killed
mid-sweep: every point still completes), a re-run served from the cache without running anything, a failing job
retried once and reported without aborting, a job that kills its worker on a LocalCluster, and a real
placement-only build point of the board top through the cluster and back from the cache."""
from __future__ import annotations

import json
import threading
import time

import pytest
from support.dask_cluster import start_cluster
from support.sweep_jobs import fails_on, kill_own_worker, record_run, square_after

from sparsegate.sw.jobs import Job, JobFailure, JobsFailed, RunnerOptions, map_jobs, run_jobs


@pytest.fixture
def fresh_cluster(tmp_path):
    """A cluster of its own, for the test that kills one of its workers."""
    cluster = start_cluster(tmp_path / "cluster")
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = start_cluster(tmp_path_factory.mktemp("dask"))
    yield cluster
    cluster.close()


def _addresses(client) -> dict[str, str]:
    return {info["name"]: address for address, info in client.scheduler_info(n_workers=-1)["workers"].items()}


def test_a_worker_killed_mid_sweep_costs_no_point(fresh_cluster):
    from distributed import Client

    jobs = [Job(f"square{i}", square_after, (i, 1.0)) for i in range(8)]
    box = {}
    sweep_thread = threading.Thread(target=lambda: box.update(
        sweep=run_jobs(jobs, RunnerOptions(scheduler=fresh_cluster.address))))
    sweep_thread.start()
    with Client(fresh_cluster.address, set_as_default=False) as watch:
        names = _addresses(watch)
        deadline = time.monotonic() + 60
        while {w for w, keys in watch.processing().items() if keys} != set(names.values()):
            assert time.monotonic() < deadline, "the two workers never ran jobs at the same time"
            time.sleep(0.05)
        fresh_cluster.kill(fresh_cluster.workers["w0"])       # nanny and worker, under a running job
        killed_at = time.monotonic()
    sweep_thread.join(timeout=120)
    sweep = box["sweep"]
    assert fresh_cluster.workers["w0"].poll() is not None
    assert sweep.values == [i * i for i in range(8)] and not sweep.failed
    # w0 died ~immediately after both workers started: at most its first job finished there; w1 ran the rest,
    # the job w0 was running included, one second each.
    assert sum(r.worker == names["w1"] for r in sweep.results) >= 7
    assert time.monotonic() - killed_at >= 6.0


def test_a_rerun_reuses_the_cache_and_an_interrupted_sweep_runs_only_what_is_missing(cluster, tmp_path):
    ran = tmp_path / "ran.txt"
    options = RunnerOptions(scheduler=cluster.address, cache=tmp_path / "cache")
    jobs = [Job(f"record{i}", record_run, (str(ran), i)) for i in range(4)]
    first = run_jobs(jobs, options)
    assert first.values == [0, 10, 20, 30] and first.scheduler == cluster.address
    assert all(r.attempts == 1 and not r.cached and r.worker for r in first.results)
    assert sorted(ran.read_text().split()) == ["0", "1", "2", "3"]

    again = run_jobs(jobs, options)
    assert again.values == first.values and all(r.cached and r.attempts == 0 for r in again.results)
    assert again.scheduler is None                                    # it did not even connect
    assert [r.worker for r in again.results] == [r.worker for r in first.results]
    assert sorted(ran.read_text().split()) == ["0", "1", "2", "3"]     # nothing ran again

    cache_files = sorted((tmp_path / "cache").glob("*.pkl"))
    assert len(cache_files) == 4
    cache_files[0].unlink()                                           # as if the sweep had stopped before it
    cache_files[1].write_bytes(b"truncated")                          # ... or died while writing it
    resumed = run_jobs(jobs, options)
    assert resumed.values == first.values and sum(not r.cached for r in resumed.results) == 2
    assert len(ran.read_text().split()) == 6


def test_a_failing_job_is_retried_once_then_reported_without_aborting(cluster, monkeypatch):
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster.address)     # the cluster comes from the environment
    lines = []
    values = map_jobs(fails_on, [(i, 2) for i in range(4)], options=RunnerOptions(progress=True, log=lines.append))
    assert values[:2] == [1, 2] and values[3] == 4
    failure = values[2]
    assert isinstance(failure, JobFailure) and failure.attempts == 2
    assert failure.key == "fails_on[2]" and failure.reason.startswith("ValueError: point 2 is broken")
    assert cluster.address in lines[0] and "4 to run (0 cached)" in lines[0]
    assert sum("attempt 1 failed" in line and "retrying" in line for line in lines) == 1
    assert any(line.endswith("1 failed") for line in lines)

    with pytest.raises(JobsFailed, match=r"1 of 4 jobs failed; first: fails_on\[2\]: ValueError") as err:
        map_jobs(fails_on, [(i, 2) for i in range(4)], strict=True)
    assert [r.ok for r in err.value.sweep.results] == [True, True, False, True]


def test_a_job_that_kills_its_worker_on_a_local_cluster_is_retried_once_then_failed():
    jobs = [Job("crash", kill_own_worker), Job("nine", square_after, (3, 0.0)), Job("sixteen", square_after, (4, 0.0))]
    sweep = run_jobs(jobs, RunnerOptions(workers=1, retries=1))
    crash, nine, sixteen = sweep.results
    assert nine.value == 9 and sixteen.value == 16
    assert nine.attempts == sixteen.attempts == 1          # only the job running on the dying worker is blamed
    assert not crash.ok and crash.attempts == 2 and crash.error.startswith("worker killed")
    assert sweep.scheduler.startswith("tcp://127.0.0.1:")


@pytest.mark.slow
@pytest.mark.synthesis
def test_a_placement_only_build_point_runs_on_the_cluster_and_comes_back_from_the_cache(cluster, tmp_path):
    """The smallest board top (P=1, a tiny image, 25F) placed by nextpnr on a cluster worker; its files land
    here; the re-run is served by the runner's cache with the same table and files."""
    from sparsegate.sim.engine.amaranth_sim import small_program
    from sparsegate.sw.bench.builds import run_build_sweep
    from sparsegate.sw.ir.weight_image import encode_image

    image = encode_image(small_program(lanes=1, seed=3, n_samples=1, input_shape=(1, 6, 6), spec=[
        {"kind": "conv", "cout": 2, "k": 3, "stride": 1, "pad": 1, "relu": True, "pool": True, "density": 0.6},
        {"kind": "fc", "cout": 4, "density": 0.6}]).qnet)
    options = RunnerOptions(scheduler=cluster.address, cache=tmp_path / "cache")
    sweep = dict(quick=True, lanes=(1,), devices=("25f",), image=image, log=lambda _: None, jobs=options)
    first = run_build_sweep(tmp_path / "one", **sweep)
    (point,) = first.data["points"]
    assert point["status"] == "ok" and point["mode"] == "placed" and point["lut"] > 1000 and point["fmax"] > 0
    assert point["job"]["attempts"] == 1 and not point["job"]["cached"]
    assert point["job"]["worker"].startswith("tcp://127.0.0.1:") and point["job"]["wall_s"] > 5
    report = json.loads((tmp_path / "one" / "ulx3s-25f-p1" / "report.json").read_text())
    assert report["report"]["routed"] is False and report["digest"] == point["digest"]

    again = run_build_sweep(tmp_path / "two", **sweep)
    (cached,) = again.data["points"]
    assert cached["job"]["cached"] and again.data["runner"]["scheduler"] is None
    assert {k: v for k, v in cached.items() if k != "job"} == {k: v for k, v in point.items() if k != "job"}
    table = lambda md: [line for line in md.splitlines() if line.startswith("|")]  # noqa: E731
    assert table(again.markdown) == table(first.markdown)
    assert "from the runner's cache" not in first.markdown      # a re-run says where its points came from
    assert (f"1 of 1 points from the runner's cache, built by an earlier run; their jobs' own wall times sum to "
            f"{point['job']['wall_s']:.0f} s") in again.markdown
    for name in ("report.json", "report.md"):
        assert ((tmp_path / "two" / "ulx3s-25f-p1" / name).read_bytes()
                == (tmp_path / "one" / "ulx3s-25f-p1" / name).read_bytes())
