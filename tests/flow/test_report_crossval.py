"""The demo report's cross-validated section: drawn from the pruning benchmark's JSON, absent without it."""
from __future__ import annotations

import json

from sparsegate.sw.bench.prune import BenchSettings, aggregate
from sparsegate.sw.flow.report import crossval_section


def _job(fold, gain):
    curve = [[1.0, 0.0], [10 * gain, 0.001 * (1 + fold)], [30 * gain, 0.006]]
    return {"seed": 0, "fold": fold, "results": {"SRA+NRP": {"compression": 9 * gain, "weight_compression": 10 * gain,
                                                             "drop": 0.001 * fold, "curve": curve}}}


def test_crossval_section_from_the_benchmark_json(tmp_path):
    jobs = [_job(f, g) for f, g in ((0, 1.0), (1, 1.2), (2, 0.9))]
    figures = tmp_path / "prune_lenet5.json"
    figures.write_text(json.dumps({"command": "sparsegate prune-bench --folds 3", "jobs": jobs,
                                   "settings": {**vars(BenchSettings()), "folds": 3, "seeds": [0]},
                                   "methods": aggregate(jobs)["methods"]}))
    md = "\n".join(crossval_section(figures, tmp_path, "cv.png"))
    assert "| SRA+NRP | 9.2x [" in md and "3-fold cross-validation" in md and "![drop vs compression" in md
    assert "within a 0.3-point validation budget, every training call with L2 weight decay 0.0005;" in md
    assert (tmp_path / "cv.png").stat().st_size > 5_000
    assert crossval_section(tmp_path / "missing.json", tmp_path, "cv.png") == []
    figures.write_text(json.dumps({"rows": []}))  # the benchmark's JSON from before cross-validation
    assert crossval_section(figures, tmp_path, "cv.png") == []
