"""Runs of the pruning benchmark over disjoint seeds merge into the report of one run over all their seeds, to
the last figure; reports that differ in anything but their seeds, or share a seed, are one-line errors."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from sparsegate.sw.bench.prune import BenchSettings, run_prune_benchmark
from sparsegate.sw.bench.prune_choice import choose_on_validation, load_report
from sparsegate.sw.bench.prune_merge import MergeError, merge_seed_runs, write_merged_report
from sparsegate.sw.cli.main import main

SETTINGS = replace(BenchSettings(), folds=3, methods=("torch-l1", "sra"))


def _fake_job(model, fold, seed, method, s):
    """A row whose figures depend on its seed and fold only (as a job's do: its folds are cut by its seed)."""
    names = {"torch-l1": ("torch global L1",), "sra": ("SRA", "SRA+NRP")}[method]
    results = {}
    for k, name in enumerate(names):
        g = 1.0 + 0.37 * seed + 0.11 * fold + 0.5 * k
        curve = [[1.0, 0.0], [10 * g, 0.001], [20 * g, 0.002 + 0.001 * seed], [40 * g, 0.02], [18 * g, 0.002]]
        results[name] = {"compression": 9 * g, "weight_compression": 10 * g, "drop": 0.001 * (fold - seed),
                         "val_accuracy": 0.97, "test_accuracy": 0.97, "selected_round": 2, "rounds": 3,
                         "path_sparsity": [0.9, 0.95, 0.975], "path_val_accuracy": [0.98, 0.98, 0.975, 0.96],
                         "selected_round_windowed": 1, "curve": curve}
    return {"model": model, "fold": fold, "seed": seed, "method": method,
            "digits": {"fit": 3500, "val": 500, "test": 1000}, "dense_test_accuracy": 0.98,
            "dense_val_accuracy": 0.98, "results": results}


def _report(tmp_path, seeds, name=None, **changes):
    out = tmp_path / (name or "seeds" + "".join(map(str, seeds)))
    result = run_prune_benchmark(out, "lenet5", settings=replace(SETTINGS, seeds=seeds, **changes),
                                 map_jobs=lambda fn, calls: [_fake_job(*c) for c in calls])
    return result.json_path


def _load(*paths):
    return [(str(p), load_report(p)) for p in paths]


def test_merged_runs_report_what_one_run_over_all_their_seeds_reports(tmp_path):
    whole = json.loads(_report(tmp_path, (0, 1, 2)).read_text())
    parts = _report(tmp_path, (0, 1)), _report(tmp_path, (2,))
    merged = merge_seed_runs(_load(*parts))
    assert merged.settings.seeds == (0, 1, 2) and len(merged.jobs) == 18  # 3 seeds x 3 folds x 2 methods
    result = write_merged_report(tmp_path / "merged", merged, "sparsegate prune-merge a b")
    d = json.loads(result.json_path.read_text())
    for key in ("settings", "summary", "methods", "jobs"):
        assert d[key] == whole[key], key
    assert d["methods"]["SRA+NRP"]["n"] == 9 and d["summary"]["comparisons"]["SRA+NRP"]["0.3"]["n"] == 9
    assert d["command"] == "sparsegate prune-merge a b"
    assert "5-fold" not in result.markdown and "3 seed(s)" in result.markdown
    # merged reports take part in the nested choice like any run
    other = merge_seed_runs(_load(_report(tmp_path, (0, 1), "wd01", weight_decay=1e-3),
                                  _report(tmp_path, (2,), "wd2", weight_decay=1e-3)))
    write_merged_report(tmp_path / "merged_wd", other)
    choice = choose_on_validation(_load(result.json_path, tmp_path / "merged_wd" / "prune_lenet5.json"))
    assert sum(choice.picks["SRA+NRP"].values()) == 9


def test_only_the_seeds_may_differ_and_no_seed_twice(tmp_path):
    a = _report(tmp_path, (0, 1))
    for changes, field in (({"weight_decay": 1e-3}, "weight_decay"), ({"folds": 4}, "folds"),
                           ({"methods": ("sra",)}, "methods"), ({"max_drop": 0.005}, "max_drop")):
        b = _report(tmp_path, (2,), field, **changes)
        with pytest.raises(MergeError, match=rf"{b}: settings\.{field} is .* only the seeds may differ"):
            merge_seed_runs(_load(a, b))
    with pytest.raises(MergeError, match=r"seed 1 is in another report too"):
        merge_seed_runs(_load(a, _report(tmp_path, (1, 2))))
    with pytest.raises(MergeError, match="at least two reports"):
        merge_seed_runs(_load(a))
    strays = load_report(_report(tmp_path, (2,)))
    strays["jobs"][0]["seed"] = 7
    with pytest.raises(MergeError, match=r"x: jobs hold seed 7, which settings\.seeds does not list"):
        merge_seed_runs(_load(a) + [("x", strays)])
    l300 = _report(tmp_path / "l300", (2,))
    d = load_report(l300)
    d["model"] = "lenet300"
    with pytest.raises(MergeError, match=r"x: model is 'lenet300'"):
        merge_seed_runs(_load(a) + [("x", d)])


def test_the_command_writes_the_report_and_refuses_bad_input_in_one_line(tmp_path, capsys):
    a, b = _report(tmp_path, (0, 1)), _report(tmp_path, (2,))
    out = tmp_path / "merged"
    assert main(["prune-merge", str(a), str(b), "--out", str(out)]) == 0
    assert (out / "prune_lenet5.md").read_text() in capsys.readouterr().out
    chosen = tmp_path / "chosen"
    assert main(["prune-choose", str(a), str(_report(tmp_path, (0, 1), "wd", weight_decay=1e-3)),
                 "--out", str(chosen)]) == 0
    capsys.readouterr()
    (tmp_path / "bad.json").write_text("{not json")
    for path, message in ((tmp_path / "bad.json", "not JSON"), (tmp_path / "missing.json", "cannot read"),
                          (chosen / "prune_lenet5_chosen.json", "a nested choice's report"),
                          (_report(tmp_path, (1,), "one"), "seed 1 is in another report too")):
        assert main(["prune-merge", str(a), str(path), "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and str(path) in err
    assert not (tmp_path / "x").exists()  # nothing written on a refusal
