"""NRP: exact clean-up never changes outputs; re-pruning never goes beyond its guard."""
from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.data import TensorDataset

from sparsegate.sw.prune.counting import layer_table
from sparsegate.sw.prune.masks import PruneError, RatioError, global_magnitude_masks, verify_masks
from sparsegate.sw.prune.nrp import NRPGuard, exact_cleanup, nrp_prune
from sparsegate.sw.prune.iterative import accuracy

from support.tiny_model import tiny_network


def _outputs(model, x):
    model.eval()
    with torch.no_grad():
        return model(x)


def test_exact_cleanup_on_tiny_network_keeps_outputs():
    model = tiny_network()
    x = torch.randn(64, 1, 4, 4)
    ref = _outputs(model, x)
    masks, removed, folded = exact_cleanup(model, {})
    assert removed == {"conv1": [1], "fc1": [1, 2], "fc2": []}
    assert folded == 0
    assert torch.allclose(_outputs(model, x), ref, atol=1e-6)
    t = layer_table(model, masks)
    assert t.total.nonzero_weights == t.total.live_weights == 17  # 11 conv + 3 fc1 + 3 fc2
    assert t["fc1"].nonzero_biases == 2 and t["conv1"].nonzero_biases == 2


def test_constant_neuron_is_folded_into_consumer_bias():
    model = tiny_network()
    with torch.no_grad():
        model.fc1.weight[3].zero_()  # n3 now outputs relu(0.2) = 0.2 for every input
    x = torch.randn(64, 1, 4, 4)
    ref = _outputs(model, x)
    masks, removed, folded = exact_cleanup(model, {})
    assert folded == 1 and 3 in removed["fc1"]
    assert not bool(masks["fc2.weight"][:, 3].any()) and not bool(masks["fc1.bias"][3])
    assert torch.allclose(_outputs(model, x), ref, atol=1e-6)


@pytest.fixture(scope="module")
def pruned_lenet5(trained_lenet5):
    """LeNet-5 with 97% of its weights pruned globally (no fine-tune): many dead/weak neurons."""
    model = copy.deepcopy(trained_lenet5)
    masks = global_magnitude_masks(model, 0.97)
    from sparsegate.sw.ml.train import apply_masks
    apply_masks(model, masks)
    return model, masks


@pytest.fixture(scope="module")
def guard_data(mnist5k):
    x, y = mnist5k[1].tensors
    return TensorDataset(x[:200], y[:200])


def test_tight_output_guard_allows_only_exact_removals(pruned_lenet5, guard_data):
    model, masks = copy.deepcopy(pruned_lenet5[0]), pruned_lenet5[1]
    x = guard_data.tensors[0]
    ref = _outputs(model, x)
    res = nrp_prune(model, masks, guard_data, NRPGuard(max_accuracy_drop=0.0, max_output_change=1e-4), passes=1)
    assert sum(res.exact_removed.values()) > 0
    # removals beyond the exact clean-up are only neurons that never fire on the guard data
    assert all(h["output_change"] <= 1e-4 for h in res.history)
    assert float((_outputs(model, x) - ref).abs().max()) <= 1e-4
    assert res.max_output_change <= 1e-4
    verify_masks(model, res.masks)


def test_accuracy_guard_bounds_the_drop_and_removes_more(pruned_lenet5, guard_data, mnist5k):
    model, masks = copy.deepcopy(pruned_lenet5[0]), pruned_lenet5[1]
    before = accuracy(model, guard_data)
    t0 = layer_table(model, masks)
    res = nrp_prune(model, masks, guard_data, NRPGuard(max_accuracy_drop=0.01))
    after = accuracy(model, guard_data)  # measured independently of NRP's own bookkeeping
    assert before - after <= 0.01 + 1e-9
    assert after == pytest.approx(res.accuracy)
    t1 = layer_table(model, res.masks)
    assert t1.total.nonzero_params < t0.total.nonzero_params
    assert t1["fc1"].live_out < t0["fc1"].live_out
    assert sum(len(v) for v in res.removed.values()) > sum(res.exact_removed.values())
    # every removed neuron is gone entirely: fan-in, bias and fan-out
    for idx in res.removed["fc1"]:
        assert not bool(res.masks["fc1.weight"][idx].any()) and not bool(res.masks["fc1.bias"][idx])
        assert not bool(res.masks["fc2.weight"][:, idx].any())
    for idx in res.removed["conv2"]:
        assert not bool(res.masks["fc1.weight"][:, idx * 16:(idx + 1) * 16].any())
    verify_masks(model, res.masks)


def test_guard_arguments():
    with pytest.raises(RatioError, match=r"max_accuracy_drop must be in \[0, 1\], got 2"):
        NRPGuard(max_accuracy_drop=2)
    with pytest.raises(PruneError, match="max_output_change must be >= 0, got -1"):
        NRPGuard(max_output_change=-1)
