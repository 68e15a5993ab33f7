"""The cross-validated structured-pruning benchmark: its figures and tables from hand-made fold results
(through the map_jobs hook, no training), a partial run's report, the Dask runner and its cache, and one tiny
real run over two folds whose decisions never see the fold's test digits (the benchmark itself takes about
half an hour: `sparsegate bench --only structured`). The fold split itself is tested in tests/ml/test_folds.py."""
from __future__ import annotations

import json
import math
import pickle
from dataclasses import asdict, replace

import numpy as np
import pytest

from sparsegate.sw.bench import structured as bench
from sparsegate.sw.bench.structured import (ModelSettings, StructuredSettings, fold_data, rerender_markdown,
                                            run_structured_benchmark, write_structured_report)

from support.job_log import calls, recording

T_975_DF2 = 4.302652729911275  # Student t quantile, 97.5%, 2 degrees of freedom

# key -> conv sparsity per fold (0, 1, 2); conv MACs removed follow it, drops are 0.2 / 0.4 / 0.6 points
SPARSITY = {"dense": (0.0, 0.0, 0.0), "kep-pattern": (0.80, 0.82, 0.84), "filter-l1": (0.88, 0.89, 0.90),
            "coarse-fmap": (0.60, 0.62, 0.64), "coarse-kernel": (0.70, 0.75, 0.80),
            "coarse-both": (0.86, 0.88, 0.90), "coarse-both-random": (0.70, 0.72, 0.74)}
SETTINGS = replace(StructuredSettings(), models=[StructuredSettings().model("lenet5")], task=None, folds=3)


def _row(key: str, fold: int) -> dict:
    sp = SPARSITY[key][fold]
    drop = 0.0 if key == "dense" else 0.002 * (fold + 1)
    return {"method": bench.METHODS.get(key, "dense (base)"), "key": key, "conv_sparsity": sp,
            "params_removed": sp / 2, "conv_mac_reduction": sp, "mac_reduction": sp * 0.9,
            "test_accuracy": 0.98 - drop, "accuracy_drop": drop, "index_bits_per_kept": 1.0,
            "flat_index_bits_per_kept": 10.0, "rounds": 3, "wall_time_s": 1.0, "index_encoding": "conv1: patterns"}


def _fake_job(model, fold, seed, s):
    """A job dict as structured_job returns it, with the figures of SPARSITY."""
    side = {"test_before_finetune": 0.5, "test_accuracy": 0.9, "conv_sparsity": 0.85}
    return {"model": model, "fold": fold, "seed": seed, "settings": asdict(s.model(model)),
            "base_test_accuracy": 0.98, "base_val_accuracy": 0.97, "val_size": 833, "test_size": 1667,
            "fit_size": 2500, "base_fit_size": 2500, "rows": [_row(k, fold) for k in SPARSITY],
            "oneshot": {"val_worst": 0.5, "val_mean": 0.6, "val_best": 0.7, "best": side,
                        "plain": dict(side, test_accuracy=0.88 - 0.01 * fold)},
            "shrink": [], "task": None, "threads": 1, "digits": {"fit": 2500, "val": 833, "test": 1667},
            "job_cpu_time_s": 10.0}


def test_figures_verdicts_and_tables_from_the_fold_rows(tmp_path):
    seen = []

    def map_jobs(fn, calls):
        assert fn is bench.structured_job and pickle.loads(pickle.dumps((fn, calls)))  # a runner can ship them
        seen.extend(calls)
        return [_fake_job(*c) for c in calls]

    result = run_structured_benchmark(tmp_path, settings=SETTINGS, map_jobs=map_jobs)
    assert [c[:3] for c in seen] == [("lenet5", f, 0) for f in range(3)]
    d = json.loads(result.json_path.read_text())
    both = d["summary"]["lenet5"]["methods"]["coarse-both"]
    half = T_975_DF2 * 0.02 / math.sqrt(3)  # sd of 0.86, 0.88, 0.90
    assert both["conv_sparsity_mean"] == pytest.approx(0.88)
    assert both["conv_sparsity_ci95"] == pytest.approx([0.88 - half, 0.88 + half])
    assert both["accuracy_drop_mean"] == pytest.approx(0.004) and both["n"] == 3
    assert both["folds"] == [0, 1, 2] and both["seeds"] == [0] and d["missing"] == []
    assert len(d["jobs"]) == 3 and d["jobs"][2]["rows"][5]["conv_sparsity"] == 0.90
    cmp = d["summary"]["lenet5"]["comparisons"]
    assert cmp["both_vs_best_single"]["single"] == "coarse-kernel"
    assert cmp["least_adversarial_vs_random"]["ci95"] == pytest.approx([0.16, 0.16])
    assert cmp["kep-pattern_vs_filter"]["conv_sparsity"]["mean"] == pytest.approx(-0.07)
    md = result.markdown
    assert f"| coarse: both (least adv.) | 88.0% [{100 * (0.88 - half):.1f}, {100 * (0.88 + half):.1f}] |" in md
    assert "+0.40 [" in md and "Partial run" not in md
    assert "on the means): **met** by coarse: both (least adv.)" in md
    assert "difference: +16.0 pts [+16.0, +16.0] (interval above 0)" in md
    assert "KEP, shared patterns minus filter-level" in md and "**KEP behind**" in md
    assert md.count("| 0 | 2 | ") == len(SPARSITY)  # the per-fold table: every row of fold 2
    assert rerender_markdown(tmp_path).markdown == md


def test_a_partial_run_says_so_and_figures_cover_the_finished_folds(tmp_path):
    jobs = [_fake_job("lenet5", f, 0, SETTINGS) for f in (0, 1)]
    result = write_structured_report(tmp_path, jobs, SETTINGS)
    assert "**Partial run**: 2 of the 3 model x fold x seed jobs finished; missing (model, seed.fold): " \
           "lenet5 0.2." in result.markdown
    d = json.loads(result.json_path.read_text())
    assert d["missing"] == [["lenet5", 0, 2]]
    both = d["summary"]["lenet5"]["methods"]["coarse-both"]
    assert both["n"] == 2 and both["folds"] == [0, 1] and both["conv_sparsity_mean"] == pytest.approx(0.87)


def test_the_jobs_go_through_the_dask_runner_and_its_cache(tmp_path, monkeypatch):
    """With runner options (what `sparsegate bench` passes) the models x folds x seeds run on the Dask job
    runner; a re-run with the same cache runs nothing and writes the same figures."""
    from sparsegate.sw.jobs import RunnerOptions

    log = tmp_path / "ran.txt"
    monkeypatch.setattr(bench, "structured_job", recording(_fake_job, log, (0, 1, 2)))
    options = RunnerOptions(workers=1, processes=False, cache=tmp_path / "cache")
    s = replace(SETTINGS, folds=2)
    first = run_structured_benchmark(tmp_path / "a", settings=s, jobs=options)
    assert calls(log) == ["lenet5 0 0", "lenet5 1 0"]
    log.unlink()
    again = run_structured_benchmark(tmp_path / "b", settings=s, jobs=options)
    assert calls(log) == []
    assert json.loads(again.json_path.read_text())["summary"] == json.loads(first.json_path.read_text())["summary"]


def _images(ds) -> set[bytes]:
    return {row.tobytes() for row in ds.tensors[0].numpy()}


def test_each_model_reads_disjoint_fold_roles_of_the_same_digits():
    s = replace(StructuredSettings.quick(), pool_size=600, folds=3)
    grey, rgb = fold_data("lenet5", 1, 0, s), fold_data("vgg", 1, 0, s)
    assert [len(d) for d in grey] == [len(d) for d in rgb] and sum(len(d) for d in grey) == 600
    for roles in (grey, rgb):
        a, b, c = (_images(d) for d in roles)
        assert not (a & b or a & c or b & c)
    assert np.array_equal(rgb[2].tensors[0][:, 0, 2:30, 2:30].numpy(), grey[2].tensors[0][:, 0].numpy())


TINY = replace(StructuredSettings.quick(), pool_size=1000, folds=2, models=[
    ModelSettings("lenet5", base_epochs=1, targets=(0.5,), epochs_per_round=1, final_epochs=0, fit_subset=300,
                  candidates=2, eval_samples=100, oneshot_epochs=0, calibrate=False,
                  methods=("filter-l1", "coarse-both"))])


def test_a_tiny_real_run_over_two_folds(tmp_path, monkeypatch):
    """Two real folds through the sequential mapper: the table has n = 2 per method and the task section;
    every dataset the pruning loop gets holds no test digit of its fold."""
    given = []
    real = bench.iterative_prune

    def spy(model, step, fit_ds, val_ds, *args, **kwargs):
        given.append((fit_ds, val_ds))
        return real(model, step, fit_ds, val_ds, *args, **kwargs)

    monkeypatch.setattr(bench, "iterative_prune", spy)
    result = run_structured_benchmark(tmp_path, quick=True, settings=TINY)
    d = json.loads(result.json_path.read_text())
    methods = d["summary"]["lenet5"]["methods"]
    assert set(methods) == {"dense", "filter-l1", "coarse-both"}
    assert all(m["n"] == 2 and m["folds"] == [0, 1] for m in methods.values())
    assert "| filter-level (L1 norm) |" in result.markdown and result.markdown.count(" | 2 |") >= 3
    assert "Task-guided filter pruning" in result.markdown and "Partial run" not in result.markdown
    assert len(given) == 4  # two methods x one round x two folds
    tests = {f: _images(fold_data("lenet5", f, 0, TINY)[2]) for f in (0, 1)}
    for (fit_ds, val_ds), fold in zip(given, (0, 0, 1, 1)):
        assert not (_images(fit_ds) & tests[fold]) and not (_images(val_ds) & tests[fold])
