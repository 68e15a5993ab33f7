"""Sensitivity analysis: one layer at a time, model untouched, CSV/JSON/PNG out, curve interpolation."""
from __future__ import annotations

import copy
import csv
import io

import pytest
import torch
from torch.utils.data import TensorDataset

from sparsegate.sw.prune.masks import PruneError, RatioError, UnknownLayerError
from sparsegate.sw.prune.sensitivity import (SensitivityCurve, SensitivityResult, load_sensitivity, prune_fraction,
                                       sensitivity_analysis)


@pytest.fixture(scope="module")
def probe(mnist5k):
    x, y = mnist5k[1].tensors
    return TensorDataset(x[:300], y[:300])


def test_weight_sensitivity_curves_and_outputs(trained_lenet5, probe, tmp_path):
    model = copy.deepcopy(trained_lenet5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = sensitivity_analysis(model, probe, ratios=(0.3, 0.6, 0.95))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # restored exactly
    assert list(res.curves) == ["conv1", "conv2", "fc1", "fc2"]
    assert res.curves["conv1"].removed == [150, 300, 475]
    assert res.curves["fc1"].removed == [120_000, 240_000, 380_000]
    # pruning 95% of conv1 must hurt, and the monotone drops never decrease
    assert res.curves["conv1"].accuracy[-1] < res.base_accuracy - 0.05
    for layer in res.curves:
        drops = res.drops(layer)
        assert drops == sorted(drops) and drops[0] >= 0
    paths = res.write(tmp_path, "sens")
    rows = list(csv.DictReader(io.StringIO(paths["csv"].read_text())))
    assert len(rows) == 12 and rows[0]["layer"] == "conv1" and float(rows[0]["ratio"]) == 0.3
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    again = load_sensitivity(paths["json"])
    assert again.curves["fc2"].accuracy == res.curves["fc2"].accuracy


def test_filter_sensitivity_skips_output_layer(trained_lenet5, probe):
    model = copy.deepcopy(trained_lenet5)
    res = sensitivity_analysis(model, probe, layers=["conv2", "fc1"], ratios=(0.5,), granularity="filter")
    assert res.curves["conv2"].removed == [25] and res.curves["fc1"].removed == [250]
    with pytest.raises(PruneError, match="'fc2' is the output layer"):
        sensitivity_analysis(model, probe, layers=["fc2"], granularity="filter")


def test_prune_fraction_is_relative_to_remaining_and_keeps_one(trained_lenet5):
    model = copy.deepcopy(trained_lenet5)
    m1 = prune_fraction(model, None, "conv1", 0.5)
    m2 = prune_fraction(model, m1, "conv1", 0.5)
    assert int(m1["conv1.weight"].sum()) == 250 and int(m2["conv1.weight"].sum()) == 125
    assert int(prune_fraction(model, None, "conv1", 1.0)["conv1.weight"].sum()) == 1
    f = prune_fraction(model, None, "conv2", 0.999, "filter")
    assert int(f["conv2.weight"].flatten(1).any(1).sum()) == 1


def test_max_ratio_interpolates():
    curve = SensitivityCurve("a", [0.5, 1 - 1e-9], [0.90, 0.50], [0.1, 0.2], [5, 10], 10)
    res = SensitivityResult("weight", 0.90, 0.1, {"a": curve})
    assert res.max_ratio("a", 0.0) == pytest.approx(0.5)  # flat to 0.5, then rising
    assert res.max_ratio("a", 0.2) == pytest.approx(0.75)
    assert res.max_ratio("a", 0.0, tie_slope=1e-3) == pytest.approx(0.0)
    assert res.drops("a", "loss") == pytest.approx([0.0, 0.1])
    with pytest.raises(PruneError, match="no sensitivity curve for 'b'"):
        res.max_ratio("b", 0.1)


def test_bad_arguments(trained_lenet5, probe):
    with pytest.raises(RatioError, match=r"ratios must be in \[0, 1\), got 1\.0"):
        sensitivity_analysis(trained_lenet5, probe, ratios=(0.5, 1.0))
    with pytest.raises(PruneError, match="strictly increasing"):
        sensitivity_analysis(trained_lenet5, probe, ratios=(0.5, 0.2))
    with pytest.raises(UnknownLayerError, match="'conv3'"):
        sensitivity_analysis(trained_lenet5, probe, layers=["conv3"])
    with pytest.raises(PruneError, match="granularity: expected one of"):
        sensitivity_analysis(trained_lenet5, probe, granularity="kernel")
