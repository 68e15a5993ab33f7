"""SRA: the allocation spends removals where they cost least per weight; a step reaches its sparsity."""
from __future__ import annotations

import copy

import pytest
from torch.utils.data import TensorDataset

from sparsegate.sw.prune.iterative import accuracy
from sparsegate.sw.prune.masks import PruneError, apply_masks, weight_sparsity
from sparsegate.sw.prune.sensitivity import SensitivityCurve, SensitivityResult
from sparsegate.sw.prune.sra import SRAConfig, allocate, sra_step


def _sens(curves: dict[str, list[float]], ratios=(0.5, 0.9)) -> SensitivityResult:
    """Loss-increase curves (base loss 0)."""
    return SensitivityResult("weight", 1.0, 0.0, {
        n: SensitivityCurve(n, list(ratios), [1.0] * len(ratios), list(d), [0] * len(ratios), 0)
        for n, d in curves.items()})


def test_big_insensitive_layer_gives_up_most():
    sens = _sens({"big": [0.01, 0.05], "small": [0.5, 2.0]})
    alloc = allocate(sens, {"big": 10_000, "small": 100}, 5_000, min_kept=0)
    assert alloc.feasible and sum(alloc.removed.values()) == 5_000
    assert alloc.removed == {"big": 5_000, "small": 0}
    # beyond what "big" can give cheaply the next cheapest segment is used, in slope order
    alloc = allocate(sens, {"big": 10_000, "small": 100}, 9_050, min_kept=0)
    assert alloc.removed["big"] == 9_000 and alloc.removed["small"] == 50
    assert alloc.predicted_cost == pytest.approx(0.05 + 0.5)


def test_size_matters_at_equal_sensitivity():
    # same curve, the larger layer's removals are cheaper per weight, so it goes first
    sens = _sens({"a": [0.1, 0.4], "b": [0.1, 0.4]})
    alloc = allocate(sens, {"a": 1_000, "b": 100}, 500, min_kept=0)
    assert alloc.removed == {"a": 500, "b": 0}


def test_nonconvex_curve_uses_hull_and_caps():
    # a bump at 0.5 is skipped by the lower convex hull: 0 -> 0.9 in one segment
    sens = _sens({"a": [0.5, 0.6]})
    alloc = allocate(sens, {"a": 1_000}, 700, min_kept=0)
    assert alloc.removed["a"] == 700 and alloc.predicted_cost == pytest.approx(0.6 * 700 / 900)
    # at most max_layer_ratio per round and never below min_kept weights
    alloc = allocate(sens, {"a": 1_000}, 1_000, max_layer_ratio=0.9, min_kept=0)
    assert alloc.removed["a"] == 900 and not alloc.feasible
    alloc = allocate(_sens({"a": [0.0, 0.0]}), {"a": 20}, 20, min_kept=8)
    assert alloc.removed["a"] == 12
    with pytest.raises(PruneError, match="n_remove must be >= 0, got -1"):
        allocate(sens, {"a": 10}, -1)


def test_sra_step_reaches_requested_sparsity(trained_lenet5, mnist5k):
    model = copy.deepcopy(trained_lenet5)
    x, y = mnist5k[1].tensors
    step = sra_step(TensorDataset(x[:200], y[:200]), SRAConfig(ratios=(0.3, 0.6, 0.9)))
    masks = step(model, {}, 0.8)
    assert weight_sparsity(model, masks) == pytest.approx(0.8, abs=2e-5)
    kept = step.last_info["kept"]
    # fc1 (93% of the weights, least sensitive per weight) is pruned much harder than conv1
    assert kept["fc1"] / 400_000 < 0.25 < kept["conv1"] / 500
    assert set(step.last_sensitivity.curves) == {"conv1", "conv2", "fc1", "fc2"}
    # a second step continues from the first step's masks
    masks2 = step(model, masks, 0.9)
    assert weight_sparsity(model, masks2) == pytest.approx(0.9, abs=2e-5)
    assert not bool((masks2["fc1.weight"] & ~masks["fc1.weight"]).any())


def test_every_round_nrp_cuts_neurons_within_its_guard_on_the_data_given(trained_lenet5, mnist5k):
    """With ``nrp_drop`` a step re-prunes neurons after SRA's weights: it goes past the requested sparsity, and
    on the guard data it loses at most ``nrp_drop`` against the same step without NRP."""
    x, y = mnist5k[1].tensors
    probe = TensorDataset(x[:200], y[:200])
    xf, yf = mnist5k[0].tensors
    guard_ds = TensorDataset(xf[:300], yf[:300])
    config = SRAConfig(ratios=(0.3, 0.6, 0.9))
    plain = copy.deepcopy(trained_lenet5)
    apply_masks(plain, sra_step(probe, config)(plain, {}, 0.9))
    model = copy.deepcopy(trained_lenet5)
    step = sra_step(probe, SRAConfig(ratios=(0.3, 0.6, 0.9), nrp_drop=0.002), nrp_ds=guard_ds)
    masks = step(model, {}, 0.9)
    assert weight_sparsity(model, masks) > 0.9 + 1e-4 and sum(step.last_info["nrp_removed"].values()) > 0
    assert accuracy(plain, guard_ds) - accuracy(model, guard_ds) <= 0.002 + 1e-9
    with pytest.raises(PruneError, match="nrp_ds: neuron re-pruning in every round needs"):
        sra_step(probe, SRAConfig(nrp_drop=0.002))


def test_config_errors():
    with pytest.raises(PruneError, match="metric: expected one of"):
        SRAConfig(metric="f1")
    with pytest.raises(PruneError, match="max_layer_ratio must be in"):
        SRAConfig(max_layer_ratio=1.0)
