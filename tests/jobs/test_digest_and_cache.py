"""The runner's cache key and cache folder, without a cluster: equal inputs give equal digests in any process,
any change of function, input or (for a job marked ``follows_code``) of the code it follows gives another;
entries round-trip and a damaged entry is a miss."""
from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from support.sweep_jobs import fails_on, square_after

from sparsegate.sw.jobs import RunnerError, RunnerOptions
from sparsegate.sw.jobs.cache import CachedResult, ResultCache
from sparsegate.sw.jobs.digest import follows_code, job_digest, sources_digest


def test_equal_inputs_give_equal_digests_and_any_change_another():
    base = job_digest(square_after, (3, 0.5), {"opts": {"b": 1, "a": [1, 2]}, "image": b"abc"})
    assert base == job_digest(square_after, (3, 0.5), {"image": bytearray(b"abc"), "opts": {"a": [1, 2], "b": 1}})
    changed = [job_digest(fails_on, (3, 0.5), {"opts": {"b": 1, "a": [1, 2]}, "image": b"abc"}),
               job_digest(square_after, (3, 0.25), {"opts": {"b": 1, "a": [1, 2]}, "image": b"abc"}),
               job_digest(square_after, (3, 0.5), {"opts": {"b": 1, "a": [2, 1]}, "image": b"abc"}),
               job_digest(square_after, (3, 0.5), {"opts": {"b": 1, "a": (1, 2)}, "image": b"abc"}),
               job_digest(square_after, (3, 0.5), {"opts": {"b": 1, "a": [1, 2]}, "image": b"abd"}),
               job_digest(functools.partial(square_after, 3), (0.5,), {"opts": {"b": 1, "a": [1, 2]}, "image": b"abc"})]
    assert len({base, *changed}) == 1 + len(changed)
    a = np.arange(12, dtype=np.int8).reshape(3, 4)
    assert job_digest(square_after, (a,)) == job_digest(square_after, (a.copy(),))
    assert job_digest(square_after, (a,)) != job_digest(square_after, (a.reshape(4, 3),))
    assert job_digest(square_after, (Path("x/y"),)) != job_digest(square_after, ("x/y",))


def _package(root: Path, body: str) -> None:
    (root / "followed_pkg" / "sub").mkdir(parents=True, exist_ok=True)
    (root / "followed_pkg" / "__init__.py").write_text("")
    (root / "followed_pkg" / "sub" / "step.py").write_text(body)
    (root / "followed_module.py").write_text("X = 1\n")


def test_a_job_that_follows_code_changes_its_key_with_that_code(tmp_path, monkeypatch):
    _package(tmp_path, "def step(x):\n    return x + 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    @follows_code("followed_pkg", "followed_module", libraries=("numpy",))
    def job(x):
        return x

    def unmarked(x):
        return x

    before, plain = job_digest(job, (3,)), job_digest(unmarked, (3,))
    assert job_digest(job, (3,)) == before and job_digest(job, (4,)) != before
    _package(tmp_path, "def step(x):\n    return x + 2\n")        # a file deep in the followed package
    after = job_digest(job, (3,))
    assert after != before and job_digest(unmarked, (3,)) == plain
    (tmp_path / "followed_module.py").write_text("X = 2\n")           # a followed single module
    assert job_digest(job, (3,)) != after
    assert sources_digest("followed_module") != sources_digest("followed_module", libraries=("numpy",))
    with pytest.raises(ModuleNotFoundError, match="no_such_package"):
        sources_digest("no_such_package")


def test_the_benchmark_jobs_follow_the_model_and_pruning_code():
    from sparsegate.sw.bench.prune import prune_job
    from sparsegate.sw.bench.structured import structured_job
    from sparsegate.sw.prune import MODEL_CODE

    for job in (prune_job, structured_job):
        modules, libraries = job.code_sources
        assert set(MODEL_CODE) <= set(modules) and job.__module__ in modules and "torch" in libraries


def test_the_digest_is_the_same_in_another_process():
    code = ("from support.sweep_jobs import square_after; from sparsegate.sw.jobs.digest import job_digest; "
            "print(job_digest(square_after, (3, 0.5), {'image': b'abc', 'opts': {'a': 1, 'b': 2}}))")
    tests = str(Path(__file__).resolve().parents[1])
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60,
                           env={"PYTHONPATH": tests, "PYTHONHASHSEED": "123"}).stdout.strip()
    assert other == job_digest(square_after, (3, 0.5), {"opts": {"b": 2, "a": 1}, "image": b"abc"})


def test_cache_entries_round_trip_and_damaged_ones_are_misses(tmp_path):
    cache = ResultCache(tmp_path / "c")
    assert cache.get("d1") is None
    cache.put("d1", CachedResult({"lut": 5}, 1.5, "tcp://w:1"))
    assert cache.get("d1") == CachedResult({"lut": 5}, 1.5, "tcp://w:1")
    assert [p.name for p in (tmp_path / "c").iterdir()] == ["d1.pkl"]      # no temp file left behind
    cache.path("d1").write_bytes(cache.path("d1").read_bytes()[:10])
    assert cache.get("d1") is None


@pytest.mark.parametrize("kwargs, message", [
    ({"scheduler": "localhost:8786"}, "tcp://HOST:8786"), ({"workers": 0}, "--workers must be >= 1"),
    ({"retries": -1}, "retries must be >= 0")])
def test_impossible_options_are_typed_errors(kwargs, message):
    with pytest.raises(RunnerError, match=message):
        RunnerOptions(**kwargs)
