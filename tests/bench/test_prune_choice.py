"""The nested choice across pruning-benchmark reports: each seed x fold x method keeps the run whose selected
result (a validation decision) is the most compressed, never reading a test figure; reports that do not cut
the same folds, or are not reports, are one-line errors."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest

from sparsegate.sw.bench import prune_choice
from sparsegate.sw.bench.prune import BenchSettings, run_prune_benchmark
from sparsegate.sw.bench.prune_choice import ChoiceError, choose_on_validation, load_report, write_choice_report
from sparsegate.sw.cli.main import main

SETTINGS = replace(BenchSettings(), folds=3, seeds=(0, 1), methods=("torch-l1", "sra"))


def _gain(name, fold, seed, wd):
    """Selected compression of a fake row: weight decay helps SRA+NRP on even folds, hurts it on odd ones;
    it helps torch global L1 on seed 1 only."""
    if name == "torch global L1":
        return 1.0 + (wd * 1000 if seed == 1 else 0.0)
    return 2.0 + (wd * 1000 if fold % 2 == 0 else -wd * 1000)


def _fake_job(model, fold, seed, method, s):
    names = {"torch-l1": ("torch global L1",), "sra": ("SRA", "SRA+NRP")}[method]
    results = {}
    for name in names:
        g = _gain(name, fold, seed, s.weight_decay)
        curve = [[1.0, 0.0], [10 * g, 0.001], [20 * g, 0.004], [40 * g, 0.02], [18 * g, 0.002]]
        results[name] = {"compression": 9 * g, "weight_compression": 10 * g, "drop": 0.001 * (1 + fold),
                         "val_accuracy": 0.97, "test_accuracy": 0.97, "selected_round": 2, "rounds": 3,
                         "path_sparsity": [0.9, 0.95, 0.975], "path_val_accuracy": [0.98, 0.98, 0.975, 0.96],
                         "selected_round_windowed": 1, "curve": curve}
    return {"model": model, "fold": fold, "seed": seed, "method": method, "digits": {"fit": 3500, "val": 500,
                                                                                      "test": 1000},
            "dense_test_accuracy": 0.98 + s.weight_decay, "dense_val_accuracy": 0.98, "results": results}


def _report(tmp_path, wd, model="lenet5", **changes):
    out = tmp_path / f"wd{wd}"
    run_prune_benchmark(out, model, settings=replace(SETTINGS, weight_decay=wd, **changes),
                        map_jobs=lambda fn, calls: [_fake_job(*c) for c in calls])
    return out / f"prune_{model}.json"


@pytest.fixture
def reports(tmp_path):
    return [_report(tmp_path, 0.0), _report(tmp_path, 1e-3)]


def test_each_row_keeps_the_most_compressed_selected_result(tmp_path, reports):
    choice = choose_on_validation([(str(p), load_report(p)) for p in reports])
    assert choice.varied == ("weight_decay",)
    assert choice.picks == {"torch global L1": {"weight_decay 0": 3, "weight_decay 0.001": 3},
                            "SRA": {"weight_decay 0": 2, "weight_decay 0.001": 4},
                            "SRA+NRP": {"weight_decay 0": 2, "weight_decay 0.001": 4}}
    for job in choice.jobs:
        (name, r), = job["results"].items()
        wd = 1e-3 if job["candidate"] == "weight_decay 0.001" else 0.0
        assert r["compression"] == max(9 * _gain(name, job["fold"], job["seed"], w) for w in (0.0, 1e-3))
        assert job["dense_test_accuracy"] == 0.98 + wd  # the drop stays paired with the chosen run's dense model
        assert job["method"] == ("torch-l1" if name == "torch global L1" else "sra")  # the job that ran the row
    result = write_choice_report(tmp_path / "out", choice, "sparsegate prune-choose a b")
    d = json.loads(result.json_path.read_text())
    nrp = d["methods"]["SRA+NRP"]
    assert nrp["n"] == 6 and nrp["compression_mean"] == pytest.approx(9 * (3.0 ** 4 * 2.0 ** 2) ** (1 / 6))
    assert nrp["dense_test_accuracy_mean"] == pytest.approx(0.98 + 4e-3 / 6)
    assert [c["settings"] for c in d["candidates"]] == [{"weight_decay": 0.0}, {"weight_decay": 1e-3}]
    assert d["candidates"][1]["methods"]["SRA+NRP"]["compression_mean"] == pytest.approx(
        9 * (3.0 ** 4 * 1.0 ** 2) ** (1 / 6))  # the run alone, on the same rows
    assert set(d["summary"]["comparisons"]) == {"SRA+NRP"}
    md = result.markdown
    assert "`weight_decay` chosen per fold on validation digits" in md and "| weight_decay 0.001 | 3 | 4 | 4 |" in md
    assert "**chosen on validation**" in md and "Goal (SRA+NRP >= 1.5x torch global L1" in md
    assert (tmp_path / "out" / d["plot"]).stat().st_size > 10_000


def test_the_choice_never_reads_a_test_figure(reports):
    loaded = [(str(p), load_report(p)) for p in reports]
    picks = choose_on_validation(loaded).picks
    for _, d in loaded:  # scramble everything the test digits gave: the drops, the curves, the test accuracies
        for i, job in enumerate(d["jobs"]):
            job["dense_test_accuracy"] = 0.5 + 0.01 * i
            for r in job["results"].values():
                r["drop"], r["test_accuracy"] = 0.3 - 0.01 * i, 0.2 + 0.01 * i
                r["curve"] = [[c, 0.5 - 0.01 * i] for c, _ in r["curve"]]
    assert choose_on_validation(loaded).picks == picks


def test_ties_go_to_the_higher_validation_accuracy_then_the_earlier_report(tmp_path):
    a, b = _report(tmp_path, 0.0), _report(tmp_path, 2e-3, methods=("torch-l1",))
    da, db = load_report(a), load_report(b)
    for job in db["jobs"]:  # the same compression as run a everywhere
        job["results"]["torch global L1"]["compression"] = 9.0
    db["jobs"][0]["results"]["torch global L1"]["val_accuracy"] = 0.99
    choice = choose_on_validation([("a", da), ("b", db)])
    assert list(choice.picks) == ["torch global L1"]  # only the methods every report ran
    assert choice.picks["torch global L1"] == {"weight_decay 0": 5, "weight_decay 0.002": 1}


def test_reports_must_cut_the_same_folds_and_hold_the_same_budget(tmp_path, reports):
    base = (str(reports[0]), load_report(reports[0]))
    for changes, field in (({"folds": 4}, "folds"), ({"max_drop": 0.005}, "max_drop"),
                           ({"val_fraction": 0.2}, "val_fraction"), ({"fit_fraction": 0.5}, "fit_fraction"),
                           ({"finish_from": None}, "finish_from")):
        other = _report(tmp_path / field, 1e-3, **changes)
        with pytest.raises(ChoiceError, match=rf"settings\.{field} is"):
            choose_on_validation([base, (str(other), load_report(other))])
    other = _report(tmp_path / "l300", 1e-3, model="lenet300")
    with pytest.raises(ChoiceError, match=r"settings\.model is 'lenet300'"):
        choose_on_validation([base, (str(other), load_report(other))])
    with pytest.raises(ChoiceError, match="ran the same settings"):
        choose_on_validation([base, base])
    with pytest.raises(ChoiceError, match="at least two reports"):
        choose_on_validation([base])


def test_older_reports_without_the_newer_settings_read_as_they_ran(tmp_path, reports):
    old = load_report(reports[0])
    for key in ("weight_decay", "fit_fraction", "augment_rotate", "augment_scale"):
        del old["settings"][key]
    choice = choose_on_validation([("old", old), (str(reports[1]), load_report(reports[1]))])
    assert choice.varied == ("weight_decay",) and "weight_decay 0" in choice.picks["SRA"]
    del old["settings"]["finish_from"]  # drew path curves: not to be read beside finished ones
    with pytest.raises(ChoiceError, match=r"settings\.finish_from is 10\.0, old has None: .* same kind of curve"):
        choose_on_validation([("old", old), (str(reports[1]), load_report(reports[1]))])


def _broken(tmp_path, edit):
    path = tmp_path / "broken.json"
    d = json.loads(_report(tmp_path, 0.0).read_text())
    edit(d)
    path.write_text(json.dumps(d))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(model="vgg"), "expected a pruning benchmark report"),
    (lambda d: d.update(recovery={}), "a recovery study's report"),
    (lambda d: d["settings"].pop("max_drop"), r"settings\.max_drop: missing"),
    (lambda d: d["jobs"][0].update(seed="0"), r"jobs\[0\]: expected an object with integer seed and fold"),
    (lambda d: d["jobs"][0]["results"]["torch global L1"].update(compression=-1.0),
     r"jobs\[0\]\.results\['torch global L1'\]\.compression: expected a positive compression"),
    (lambda d: d["jobs"][1]["results"]["SRA"].update(val_accuracy=None), r"\.val_accuracy: expected a finite number"),
    (lambda d: d["jobs"][1]["results"]["SRA"].update(curve=[[0, 1]]), r"\.curve: expected"),
    (lambda d: d["jobs"][1]["results"]["SRA"].update(finished_curve=[[1, "x"]]), r"\.finished_curve: expected"),
    (lambda d: d["settings"].update(finish_from="10"), r"settings\.finish_from: expected a finite number or null"),
    (lambda d: d["settings"].update(finish_every=0), r"settings\.finish_from / finish_every: expected"),
    (lambda d: d["settings"].update(step="x"), r"settings\.step: expected a finite number, got 'x'"),
    (lambda d: d["settings"].update(seeds=[0, True]), r"settings\.seeds: expected a list of whole numbers"),
    (lambda d: d["settings"].update(rewind=1), r"settings\.rewind: expected true or false"),
    (lambda d: d["settings"].update(threads="2"), r"settings\.threads: expected a whole number or null"),
    (lambda d: d.update(wall_time_s="abc"), r"wall_time_s: expected a finite number of seconds"),
    (lambda d: d["jobs"][1]["results"]["SRA"].update(selected_round=9), r"\.selected_round: expected a round"),
    (lambda d: d["jobs"][1]["results"]["SRA"].update(selected_round_windowed=7), r"\.selected_round_windowed"),
])
def test_a_malformed_report_names_its_file_and_field(tmp_path, edit, message):
    path = _broken(tmp_path, edit)
    with pytest.raises(ChoiceError, match=message) as err:
        load_report(path)
    assert str(path) in str(err.value)


def test_the_command_writes_the_report_and_refuses_bad_input_in_one_line(tmp_path, reports, capsys, monkeypatch):
    out = tmp_path / "chosen"
    assert main(["prune-choose", *map(str, reports), "--out", str(out)]) == 0
    assert (out / "prune_lenet5_chosen.md").read_text() in capsys.readouterr().out
    (tmp_path / "bad.json").write_text("{not json")
    huge = tmp_path / "huge.json"
    huge.write_bytes(reports[0].read_bytes())
    monkeypatch.setattr(prune_choice, "MAX_REPORT_BYTES", 100)
    for path, message in ((tmp_path / "bad.json", "not JSON"), (tmp_path / "missing.json", "cannot read"),
                          (huge, "a pruning report is at most 100")):
        assert main(["prune-choose", str(path), str(reports[1]), "--out", str(tmp_path / "x")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and str(path) in err
    assert not (tmp_path / "x").exists()  # nothing written on a refusal
