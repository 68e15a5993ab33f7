"""``sparsegate prune-bench``: bad options are one-line errors; full MNIST from IDX files runs end to end."""
from __future__ import annotations

import json
import struct

import numpy as np

from sparsegate.sw.cli.main import main


def test_bad_options_are_one_line_errors(capsys, tmp_path):
    assert main(["prune-bench", "--dataset", "mnist"]) == 2
    assert main(["prune-bench", "--folds", "1", "--out", str(tmp_path)]) == 2
    assert main(["prune-bench", "--val-fraction", "1.5", "--out", str(tmp_path)]) == 2
    assert main(["prune-bench", "--folds", "3", "--only-folds", "1", "3", "--out", str(tmp_path)]) == 2
    assert main(["prune-bench", "--epochs-per-round", "0", "--out", str(tmp_path)]) == 2
    assert main(["prune-bench", "--augment-rotate", "200", "--out", str(tmp_path)]) == 2
    assert main(["prune-bench", "--augment-scale", "1", "--out", str(tmp_path)]) == 2
    assert main(["prune-bench", "--fit-fraction", "0", "--out", str(tmp_path)]) == 2
    assert main(["prune-bench", "--weight-decay", "-0.1", "--out", str(tmp_path)]) == 2
    assert main(["prune-bench", "--base-epochs", "0", "--out", str(tmp_path)]) == 2
    assert main(["prune-bench", "--final-epochs", "-1", "--out", str(tmp_path)]) == 2
    assert main(["prune-bench", "--finish-from", "0.5", "--out", str(tmp_path)]) == 2
    assert main(["prune-bench", "--finish-every", "0", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "--fit-fraction: expected a fraction in (0, 1], got 0.0" in err[7]
    assert "--weight-decay: weight decay: expected a finite strength >= 0, got -0.1" in err[8]
    assert "--base-epochs: expected at least 1, got 0" in err[9] and "--final-epochs: expected at least 0" in err[10]
    assert "--finish-from: expected a weight compression >= 1, or 0" in err[11]
    assert "--finish-every: expected at least 1, got 0" in err[12] and len(err) == 13
    err = err[:7]
    assert len(err) == 7 and "--epochs-per-round" in err[4] and "at least 1, got 0" in err[4]
    assert all("--augment-rotate / --augment-scale" in line for line in err[5:])
    assert "got 2, 200.0, 0.0" in err[5] and "got 2, 0.0, 1.0" in err[6]
    assert "--data-path" in err[0] and "--folds" in err[1] and "--val-fraction" in err[2]
    assert "--only-folds" in err[3] and "0..2" in err[3]


def _idx(array: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) \
        + array.astype(np.uint8).tobytes()


def _random_mnist(folder, seed: int) -> None:
    """60 training and 20 test digits of noise as MNIST IDX files: a run of the folds in seconds."""
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", 60), ("t10k", 20)):
        (folder / f"{prefix}-images-idx3-ubyte").write_bytes(_idx(rng.integers(0, 256, (n, 28, 28))))
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(_idx(rng.integers(0, 10, n)))


def test_mnist_idx_files_run_through_the_folds(tmp_path, capsys):
    _random_mnist(tmp_path, 0)
    out = tmp_path / "out"
    assert main(["prune-bench", "--model", "lenet300", "--dataset", "mnist", "--data-path", str(tmp_path),
                 "--folds", "2", "--seeds", "0", "--methods", "torch-l1", "--quick", "--val-fraction", "0.2",
                 "--out", str(out)]) == 0
    d = json.loads((out / "prune_lenet300.json").read_text())
    assert d["settings"]["dataset"] == "mnist" and [j["digits"] for j in d["jobs"]] == [
        {"fit": 32, "val": 8, "test": 40}] * 2
    assert d["methods"]["torch global L1"]["folds"] == [0, 1]
    # one fold of the two: the same digits as that fold of the whole run, and the report says it is a subset
    assert main(["prune-bench", "--model", "lenet300", "--dataset", "mnist", "--data-path", str(tmp_path),
                 "--folds", "2", "--only-folds", "1", "--seeds", "0", "--methods", "torch-l1", "--quick",
                 "--val-fraction", "0.2", "--out", str(tmp_path / "one")]) == 0
    one = json.loads((tmp_path / "one" / "prune_lenet300.json").read_text())
    assert [j["fold"] for j in one["jobs"]] == [1] and one["settings"]["only_folds"] == [1]
    assert d["settings"]["epochs_per_round"] == one["settings"]["epochs_per_round"] == 1  # --quick's
    assert main(["prune-bench", "--model", "lenet300", "--dataset", "mnist", "--data-path", str(tmp_path),
                 "--folds", "2", "--only-folds", "1", "--seeds", "0", "--methods", "torch-l1", "--quick",
                 "--val-fraction", "0.2", "--epochs-per-round", "2", "--out", str(tmp_path / "two")]) == 0
    assert json.loads((tmp_path / "two" / "prune_lenet300.json").read_text())["settings"]["epochs_per_round"] == 2
    assert main(["prune-bench", "--model", "lenet300", "--dataset", "mnist", "--data-path", str(tmp_path),
                 "--folds", "2", "--only-folds", "1", "--seeds", "0", "--methods", "torch-l1", "--quick",
                 "--val-fraction", "0.2", "--augment-rotate", "12", "--augment-scale", "0.1",
                 "--out", str(tmp_path / "warped")]) == 0
    warped = json.loads((tmp_path / "warped" / "prune_lenet300.json").read_text())
    assert (warped["settings"]["augment_rotate"], warped["settings"]["augment_scale"]) == (12.0, 0.1)
    assert "rotated by up to 12 degrees" in (tmp_path / "warped" / "prune_lenet300.md").read_text()
    assert main(["prune-bench", "--model", "lenet300", "--dataset", "mnist", "--data-path", str(tmp_path),
                 "--folds", "2", "--only-folds", "1", "--seeds", "0", "--methods", "torch-l1", "--quick",
                 "--val-fraction", "0.2", "--fit-fraction", "0.5", "--final-epochs", "1", "--base-epochs", "2",
                 "--weight-decay", "1e-3",
                 "--out", str(tmp_path / "half")]) == 0
    half = json.loads((tmp_path / "half" / "prune_lenet300.json").read_text())
    assert half["jobs"][0]["digits"] == {"fit": 16, "val": 8, "test": 40}
    assert [half["settings"][k] for k in ("fit_fraction", "final_epochs", "base_epochs", "weight_decay")] == [
        0.5, 1, 2, 1e-3]
    assert "adds L2 weight decay of 0.001" in (tmp_path / "half" / "prune_lenet300.md").read_text()
    assert "Only a seeded 50% of each fold's fit digits train" in (tmp_path / "half" / "prune_lenet300.md").read_text()
    assert "fit digits train" not in (tmp_path / "one" / "prune_lenet300.md").read_text()
    untimed = [{k: v for k, v in job["results"]["torch global L1"].items() if not k.endswith("_time_s")}
               for job in (one["jobs"][0], d["jobs"][1])]
    assert untimed[0] == untimed[1]
    assert "Folds 1 of the 2 only" in (tmp_path / "one" / "prune_lenet300.md").read_text()


def test_quick_alone_is_the_smoke_budget_and_given_options_override_it(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from sparsegate.sw.bench import prune as bench

    seen = []

    def fake(out_dir, model, quick, settings, command=None, jobs=None):
        seen.append(settings)
        return SimpleNamespace(markdown="", markdown_path=out_dir / "a.md", json_path=out_dir / "a.json")

    monkeypatch.setattr(bench, "run_prune_benchmark", fake)
    assert main(["prune-bench", "--quick", "--out", str(tmp_path)]) == 0
    assert main(["prune-bench", "--quick", "--folds", "3", "--seeds", "4", "--out", str(tmp_path)]) == 0
    assert main(["prune-bench", "--out", str(tmp_path)]) == 0
    assert main(["prune-bench", "--finish-from", "0", "--finish-every", "3", "--out", str(tmp_path)]) == 0
    assert [(s.folds, s.seeds, s.max_rounds) for s in seen] == [(2, (0,), 2), (3, (4,), 2), (5, (0, 1), 30),
                                                                (5, (0, 1), 30)]
    assert [(s.finish_from, s.finish_every) for s in seen] == [(1.0, 1), (1.0, 1), (10.0, 2), (None, 3)]


def test_weight_decay_chosen_per_fold_runs_every_strength_then_chooses(tmp_path, capsys):
    _random_mnist(tmp_path, 1)
    out = tmp_path / "out"
    args = ["prune-bench", "--model", "lenet300", "--dataset", "mnist", "--data-path", str(tmp_path), "--folds", "2",
            "--seeds", "0", "--methods", "torch-l1", "--quick", "--val-fraction", "0.2", "--out", str(out)]
    assert main(args + ["--choose-weight-decay", "0", "1e-3"]) == 0
    runs = [json.loads((out / f"weight_decay_{wd}" / "prune_lenet300.json").read_text()) for wd in ("0", "0.001")]
    assert [r["settings"]["weight_decay"] for r in runs] == [0.0, 1e-3]
    chosen = json.loads((out / "prune_lenet300_chosen.json").read_text())
    assert [c["source"] for c in chosen["candidates"]] == ["weight_decay_0/prune_lenet300.json",
                                                          "weight_decay_0.001/prune_lenet300.json"]
    assert sum(chosen["picks"]["torch global L1"].values()) == 2 and chosen["methods"]["torch global L1"]["n"] == 2
    for job in chosen["jobs"]:  # each row is the chosen run's own, picked by its selected compression
        run = runs[0] if job["candidate"] == "weight_decay 0" else runs[1]
        own = next(j for j in run["jobs"] if (j["seed"], j["fold"]) == (job["seed"], job["fold"]))
        assert job["results"] == own["results"]
        assert own["results"]["torch global L1"]["compression"] == max(
            j["results"]["torch global L1"]["compression"] for r in runs for j in r["jobs"]
            if (j["seed"], j["fold"]) == (job["seed"], job["fold"]))
    capsys.readouterr()
    assert main(args + ["--choose-weight-decay", "1e-3"]) == 2
    assert main(args + ["--choose-weight-decay", "0", "-1"]) == 2
    assert main(args + ["--choose-weight-decay", "0", "1e-3", "--recovery", "plain"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "expected at least two different strengths" in err[0]
    assert "--choose-weight-decay: weight decay: expected a finite strength >= 0, got -1" in err[1]
    assert "give one or the other" in err[2]
