"""The selection-rule simulation on the measured LeNet-5 paths (docs/results/prune_lenet5.json): with the
noise gone the isotonic fit picks the oracle's round, the figures are the seed's, the Markdown shows the
JSON's figures, and on the run's recorded readings the rules pick what the run recorded."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sparsegate.sw.bench.selection_noise import RULES, measured_paths, recorded_picks, run_selection_benchmark, \
    simulate

SOURCE = Path(__file__).resolve().parents[2] / "docs" / "results" / "prune_lenet5.json"


@pytest.fixture(scope="module")
def paths():
    return measured_paths(json.loads(SOURCE.read_text()))


def test_the_paths_are_the_iterative_methods_of_each_fold(paths):
    d = json.loads(SOURCE.read_text())
    assert len(paths) == sum(len([n for n in j["results"] if n != "SRA+NRP"]) for j in d["jobs"])
    for p in paths:
        assert p["compressions"][0] == 1.0 and all(a < b for a, b in zip(p["compressions"], p["compressions"][1:]))
        assert all(a >= b - 1e-12 for a, b in zip(p["accuracy"], p["accuracy"][1:]))  # the truth never rises


def test_without_noise_the_monotone_fits_pick_the_oracle(paths):
    for p in paths:
        truth, c = np.asarray(p["accuracy"]), np.asarray(p["compressions"])
        oracle = int(np.nonzero(truth[0] - truth <= 0.003 + 1e-9)[0][-1])
        assert RULES["isotonic"](truth, c, 0.003) == oracle  # the truth is isotonic: its fit is the truth
    noisy = simulate(paths, "windowed", 0.003, scale=1, draws=50)
    assert noisy["draws"] == 50 * len(paths) and noisy["true_drop_mean"] > 0  # noise moves picks off the start


def test_the_report_is_the_seeds_and_shows_its_json(tmp_path):
    first = run_selection_benchmark(tmp_path / "a", quick=True, source=SOURCE, scales=(1, 2))
    again = run_selection_benchmark(tmp_path / "b", quick=True, source=SOURCE, scales=(1, 2))
    assert first.data == again.data == json.loads(first.json_path.read_text())
    assert [(r["rule"], r["val_scale"]) for r in first.data["rows"]] == [(r, s) for s in (1, 2) for r in RULES]
    for r in first.data["rows"]:
        assert f"| {r['rule']} | {r['val_scale']:g}x | {100 * r['true_drop_mean']:+.2f} |" in first.markdown
    assert run_selection_benchmark(tmp_path / "c", quick=True, source=SOURCE, scales=(1,), seed=1).data["rows"] \
        != first.data["rows"][:3]


def test_the_recorded_readings_give_the_runs_own_picks():
    """On the readings the run recorded, the fitted rule picks the rounds the run selected and the windowed
    rule those it recorded for the previous rule."""
    d = json.loads(SOURCE.read_text())
    recorded = recorded_picks(d, d["settings"]["max_drop"])
    for name, rules in recorded.items():
        rows = [j["results"][name] for j in d["jobs"] if name in j["results"]]
        assert rules["fitted"]["rounds"] == [r["selected_round"] for r in rows]
        assert rules["windowed"]["rounds"] == [r["selected_round_windowed"] for r in rows]
        assert rules["fitted"]["test_drop"] == [r["curve"][r["selected_round"]][1] for r in rows]
    assert set(recorded) == {"torch global L1", "SRA", "SRA+NRP every round"}
