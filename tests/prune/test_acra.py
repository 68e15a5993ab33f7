"""ACRA: the binary searches hit their FLOPs (MAC) target; unreachable targets fail clearly."""
from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.data import TensorDataset

from sparsegate.sw.prune.acra import acra_sensitivity, acra_uniform, masks_for_ratios
from sparsegate.sw.prune.counting import layer_table
from sparsegate.sw.prune.masks import PruneError, RatioError, TargetUnreachableError, UnknownLayerError
from sparsegate.sw.ml.models import build_model
from sparsegate.sw.prune.sensitivity import SensitivityCurve, SensitivityResult


@pytest.fixture(scope="module")
def lenet5():
    torch.manual_seed(1)
    return build_model("lenet5")


@pytest.mark.parametrize("granularity,target", [("filter", 0.5), ("filter", 0.8), ("weight", 0.3), ("weight", 0.5),
                                                ("weight", 0.8)])
def test_uniform_binary_search_hits_target(lenet5, granularity, target):
    res = acra_uniform(lenet5, target, granularity)
    assert abs(res.achieved - target) <= 0.01
    # recount independently from the returned masks
    assert layer_table(lenet5, res.masks).total.mac_reduction == pytest.approx(res.achieved)
    assert len(set(res.ratios.values())) == 1  # one ratio for every layer
    assert res.iterations <= 62
    if granularity == "filter":
        assert "fc2" not in res.ratios  # the output layer keeps its outputs
        assert res.masks["fc2.weight"].any(0).float().mean() < 1.0  # ... but loses inputs from cut neurons


def test_uniform_tighter_tolerance_and_unreachable_targets(lenet5):
    res = acra_uniform(lenet5, 0.5, "weight", tolerance=0.001)
    assert abs(res.achieved - 0.5) <= 0.001
    with pytest.raises(TargetUnreachableError, match=r"target_flops=0\.5000 cannot be met within ±0\.0000"):
        acra_uniform(lenet5, 0.5, "filter", tolerance=1e-6)
    # one conv1 channel is ~3.5% of LeNet-5's MACs: a single uniform filter ratio jumps over 30% +- 1%
    with pytest.raises(TargetUnreachableError, match=r"jumps from 2\d\.\d\d% .* to 3\d\.\d\d%"):
        acra_uniform(lenet5, 0.3, "filter")
    # every layer keeps one channel, so at most ~99.3% of the MACs can go
    with pytest.raises(TargetUnreachableError, match=r"target_flops=0\.9990 is unreachable: the largest ratio"):
        acra_uniform(lenet5, 0.999, "filter", tolerance=0.001)
    with pytest.raises(RatioError, match=r"target_flops must be in \[0, 1\), got 1\.2"):
        acra_uniform(lenet5, 1.2)
    with pytest.raises(UnknownLayerError, match="conv7"):
        acra_uniform(lenet5, 0.5, layers=["conv7"])
    with pytest.raises(PruneError, match="output layer"):
        acra_uniform(lenet5, 0.5, "filter", layers=["fc2"])


def _synthetic_sensitivity() -> SensitivityResult:
    """conv1 and conv2 very sensitive, fc1 insensitive."""
    ratios = [0.25, 0.5, 0.75, 0.95]
    curves = {
        "conv1": SensitivityCurve("conv1", ratios, [0.90, 0.70, 0.40, 0.10], [0, 0, 0, 0], [5, 10, 15, 19], 20),
        "conv2": SensitivityCurve("conv2", ratios, [0.97, 0.93, 0.80, 0.50], [0, 0, 0, 0], [12, 25, 38, 48], 50),
        "fc1": SensitivityCurve("fc1", ratios, [0.98, 0.98, 0.975, 0.96], [0, 0, 0, 0], [125, 250, 375, 475], 500),
    }
    return SensitivityResult("filter", 0.98, 0.05, curves)


@pytest.mark.parametrize("target", [0.2, 0.5])
def test_sensitivity_strategy_hits_target_and_spares_sensitive_layers(lenet5, target):
    sens = _synthetic_sensitivity()
    res = acra_sensitivity(lenet5, target, sensitivity=sens, granularity="filter")
    assert abs(res.achieved - target) <= 0.01
    assert layer_table(lenet5, res.masks).total.mac_reduction == pytest.approx(res.achieved)
    assert res.ratios["fc1"] >= res.ratios["conv2"] >= res.ratios["conv1"]
    # the returned masks are exactly the masks of the returned ratios
    again = masks_for_ratios(lenet5, res.ratios, "filter")
    assert all(torch.equal(again[k], res.masks[k]) for k in res.masks)


def test_sensitivity_strategy_measures_curves_and_rejects_mismatch(trained_lenet5, mnist5k):
    model = copy.deepcopy(trained_lenet5)
    x, y = mnist5k[1].tensors
    small = TensorDataset(x[:200], y[:200])
    res = acra_sensitivity(model, 0.5, small, granularity="filter", ratios=(0.25, 0.5, 0.75))
    assert abs(res.achieved - 0.5) <= 0.01
    assert set(res.sensitivity.curves) == {"conv1", "conv2", "fc1"}
    with pytest.raises(PruneError, match="measured at 'filter' granularity, not 'weight'"):
        acra_sensitivity(model, 0.5, sensitivity=res.sensitivity, granularity="weight")
    with pytest.raises(PruneError, match="needs ds"):
        acra_sensitivity(model, 0.5)
