"""Mask machinery: selection, structure, persistence through fine-tuning and export, argument errors."""
from __future__ import annotations

import copy

import pytest
import torch

from sparsegate.sw.prune.masks import (MaskViolationError, PruneError, RatioError, UnknownLayerError, check_ratio,
                                 expand_plane_mask, global_magnitude_masks, input_alive, layer_magnitude_masks,
                                 load_masks, magnitude_mask, output_alive, plane_mask, remove_channels,
                                 save_masks, topology, verify_masks, weight_sparsity)
from sparsegate.sw.ml.models import build_model
from sparsegate.sw.ml.train import TrainConfig, load_checkpoint, save_checkpoint, train


def test_magnitude_mask_prunes_smallest_and_keeps_old_pruned():
    w = torch.tensor([[0.5, -0.1, 2.0], [-3.0, 0.2, 0.05]])
    m = magnitude_mask(w, 0.5)
    assert m.tolist() == [[True, False, True], [True, False, False]]
    # an already-masked large weight stays pruned and counts towards the ratio
    old = torch.ones_like(w, dtype=torch.bool)
    old[1, 0] = False
    m2 = magnitude_mask(w, 0.5, old)
    assert m2.tolist() == [[True, False, True], [False, True, False]]
    assert magnitude_mask(w, 0.0, old).tolist() == old.tolist()


def test_global_threshold_spans_layers():
    torch.manual_seed(0)
    model = build_model("lenet300")
    with torch.no_grad():
        model.fc1.weight.mul_(1e-6)  # fc1 is now all small: a global threshold prunes it first
    masks = global_magnitude_masks(model, 0.5)
    assert weight_sparsity(model, masks) == pytest.approx(0.5, abs=1e-5)
    # fc1 (235,200 of 266,200 weights) is now all small, so the global threshold takes all 133,100 from it
    assert int((~masks["fc1.weight"]).sum()) == 133_100
    assert bool(masks["fc2.weight"].all()) and bool(masks["fc3.weight"].all())
    per_layer = layer_magnitude_masks(model, {"fc1": 0.9, "fc3": 0.1})
    assert float((~per_layer["fc1.weight"]).float().mean()) == pytest.approx(0.9, abs=1e-5)
    assert "fc2.weight" not in per_layer


def test_masks_stay_zero_through_finetuning_and_checkpoint(trained_lenet5, mnist5k, tmp_path):
    model = copy.deepcopy(trained_lenet5)
    masks = global_magnitude_masks(model, 0.9)
    masks = remove_channels(model, masks, "conv2", torch.arange(50) < 5)  # structured cut, bias masked too
    x, y = mnist5k[0].tensors
    small = torch.utils.data.TensorDataset(x[:256], y[:256])
    train(model, small, TrainConfig(epochs=1, lr=5e-3, progress=False), masks=masks)
    verify_masks(model, masks)
    assert float(model.conv2.bias.detach()[:5].abs().sum()) == 0.0
    assert float(model.fc1.weight.detach()[:, :5 * 16].abs().sum()) == 0.0
    path = tmp_path / "pruned.pt"
    save_checkpoint(path, model, "lenet5", masks)
    loaded, loaded_masks, _ = load_checkpoint(path)
    verify_masks(loaded, loaded_masks)
    assert set(loaded_masks) == set(masks)
    assert weight_sparsity(loaded, loaded_masks) >= 0.9
    save_masks(tmp_path / "masks.pt", masks)
    assert all(torch.equal(load_masks(tmp_path / "masks.pt")[k], masks[k]) for k in masks)


def test_verify_masks_detects_nonzero_masked_entry():
    model = build_model("lenet300")
    masks = {"fc3.weight": torch.zeros_like(model.fc3.weight, dtype=torch.bool)}
    with pytest.raises(MaskViolationError, match="fc3.weight"):
        verify_masks(model, masks)


def test_structured_views():
    model = build_model("lenet5")
    topo = topology(model)
    assert (topo["conv2"].consumer, topo["conv2"].group) == ("fc1", 16)
    masks = remove_channels(model, None, "conv1", torch.tensor([True] + [False] * 19), topo)
    assert not bool(output_alive(masks["conv1.weight"])[0]) and bool(output_alive(masks["conv1.weight"])[1:].all())
    assert input_alive(masks["conv2.weight"]).tolist() == [False] + [True] * 19
    planes = plane_mask(masks["conv2.weight"])
    assert planes.shape == (50, 20) and not bool(planes[:, 0].any())
    assert torch.equal(expand_plane_mask(planes, (5, 5)), masks["conv2.weight"])
    with pytest.raises(PruneError, match="output layer"):
        remove_channels(model, None, "fc2", torch.ones(10, dtype=torch.bool), topo)
    with pytest.raises(PruneError, match="4-D"):
        plane_mask(masks.get("fc1.weight", torch.ones(3, 3, dtype=torch.bool)))


@pytest.mark.parametrize("value", [1.0, -0.1, 1.5, float("nan"), "half"])
def test_ratio_errors_name_field_and_value(value):
    with pytest.raises(RatioError, match=r"sparsity must be .*got"):
        check_ratio(value, "sparsity")
    assert issubclass(RatioError, ValueError)


def test_bad_layer_and_ratio_arguments():
    model = build_model("lenet5")
    with pytest.raises(UnknownLayerError, match="'conv9'.*conv1"):
        layer_magnitude_masks(model, {"conv9": 0.5})
    with pytest.raises(RatioError, match=r"ratio of layer 'fc1' must be in \[0, 1\], got 1.2"):
        layer_magnitude_masks(model, {"fc1": 1.2})
    with pytest.raises(RatioError, match="sparsity must be in"):
        global_magnitude_masks(model, 1.0)
    with pytest.raises(UnknownLayerError, match="fc7"):
        global_magnitude_masks(model, 0.5, layers=["fc7"])
