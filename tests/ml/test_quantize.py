"""Post-training quantization: the traced layer plan, calibration, the accuracy of a
pruned LeNet-5 through the golden model, and quantization-aware fine-tuning that keeps masks."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from sparsegate.sw.ml.models import build_model
from sparsegate.sw.ml.quantize import (calibration_split, compare, layer_plan, plan_forward,
                                    qat_finetune, quantize_model)
from sparsegate.sw.ml.train import TrainConfig, evaluate, train
from sparsegate.sw.ir.weight_image import decode_image, encode_image

from support.magnitude import KEEP, magnitude_masks
from support.torch_reference import torch_layer

@pytest.fixture(scope="module")
def pruned_lenet5(trained_lenet5, mnist5k):
    """LeNet-5 magnitude-pruned to ~9% of its weights and fine-tuned for one epoch; (model, masks)."""
    model = copy.deepcopy(trained_lenet5)
    masks = magnitude_masks(model, KEEP)
    train(model, mnist5k[0], TrainConfig(epochs=1, lr=1e-3, seed=0, progress=False), masks=masks)
    return model.eval(), masks


@pytest.fixture(scope="module")
def calib(mnist5k):
    return calibration_split(mnist5k[0], 512, seed=0)


@pytest.fixture(scope="module")
def pruned_qnet(pruned_lenet5, calib):
    model, masks = pruned_lenet5
    return quantize_model(model, calib, masks, name="lenet5")


# ---------------------------------------------------------------------------------------------- the plan

@pytest.mark.parametrize("name, expected", [
    ("lenet5", [("conv1", False, True, True), ("conv2", False, True, True), ("fc1", True, True, False),
                ("fc2", False, False, False)]),
    ("lenet300", [("fc1", True, True, False), ("fc2", False, True, False), ("fc3", False, False, False)]),
    ("vgg", [("conv1_1", False, True, False), ("conv1_2", False, True, True), ("conv2_1", False, True, False),
             ("conv2_2", False, True, True), ("conv3_1", False, True, False), ("conv3_2", False, True, True),
             ("fc1", True, True, False), ("fc2", False, False, False)]),
])
def test_layer_plan_of_the_reference_models(name, expected):
    model = build_model(name).eval()
    plan = layer_plan(model)
    assert [(p.name, p.flatten_input, p.relu, p.pool) for p in plan] == expected
    x = torch.randn(3, *model.input_shape)
    with torch.no_grad():
        assert torch.allclose(plan_forward(plan, x), model(x), atol=1e-6)


# Refusals of unsupported models: tests/ml/test_graph_capture.py


# --------------------------------------------------------------------------------------------- calibration

def test_calibration_split_is_a_seeded_subset_of_the_training_data(mnist5k):
    a, b = calibration_split(mnist5k[0], 100, seed=3), calibration_split(mnist5k[0], 100, seed=3)
    assert torch.equal(a.tensors[0], b.tensors[0]) and len(a.tensors[0]) == 100
    train_x = mnist5k[0].tensors[0].flatten(1)
    first = a.tensors[0][0].flatten()
    assert (train_x == first).all(dim=1).any()
    assert not torch.equal(calibration_split(mnist5k[0], 100, seed=4).tensors[0], a.tensors[0])


def test_quantize_model_does_not_change_the_model(pruned_lenet5, calib):
    model, masks = pruned_lenet5
    before = copy.deepcopy(model.state_dict())
    quantize_model(model, calib, masks)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_scales_chain_and_pruned_weights_stay_zero(pruned_lenet5, pruned_qnet):
    model, masks = pruned_lenet5
    qnet = pruned_qnet
    assert qnet.name == "lenet5" and qnet.input_shape == (1, 28, 28)
    assert [layer.name for layer in qnet.layers] == ["conv1", "conv2", "fc1", "fc2"]
    scale = qnet.input_scale
    for layer in qnet.layers:
        assert layer.in_scale == scale
        scale = layer.out_scale
        mask = masks[f"{layer.name}.weight"].numpy()
        assert (layer.weight[~mask] == 0).all()
        assert layer.nnz <= mask.sum() and layer.nnz >= 0.95 * mask.sum()
        assert np.abs(layer.weight).max() == 127  # per-channel scales use the full range
        assert layer.accumulator_bits() <= 32
    assert qnet.layers[0].in_shape == (1, 28, 28) and qnet.layers[2].in_shape == (800,)
    assert qnet.layers[0].relu and qnet.layers[0].pool and qnet.layers[2].flatten_input
    assert not qnet.layers[-1].relu


# ------------------------------------------------------------------------------------------------ accuracy

@pytest.mark.slow
def test_pruned_lenet5_int8_accuracy_within_half_a_point(pruned_lenet5, pruned_qnet, mnist5k):
    model, masks = pruned_lenet5
    density = sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
    assert density < 0.1
    result = compare(model, pruned_qnet, mnist5k[1])
    assert result.samples == 1000
    assert result.float_accuracy > 0.93
    assert abs(result.float_accuracy - result.quant_accuracy) <= 0.005, result
    assert result.agreement >= 0.99, result


def test_quantized_network_matches_the_torch_integer_reference_per_layer(pruned_qnet, mnist5k):
    x = pruned_qnet.quantize_input(mnist5k[1].tensors[0][:16].numpy())
    assert x.dtype == np.int8 and x.min() < 0 and x.max() == 127
    inp = x
    for layer, out in zip(pruned_qnet.layers, pruned_qnet.run(x)):
        _, ref = torch_layer(inp, layer)
        assert np.array_equal(out, ref), layer.name
        assert 0 < np.count_nonzero(out)
        inp = out


def test_dequantized_logits_track_the_float_logits(pruned_lenet5, pruned_qnet, mnist5k):
    model, _ = pruned_lenet5
    x = mnist5k[1].tensors[0][:200]
    with torch.no_grad():
        ref = model(x).numpy()
    got = pruned_qnet.logits(pruned_qnet.quantize_input(x.numpy())) * pruned_qnet.layers[-1].out_scale
    assert np.corrcoef(ref.ravel(), got.ravel())[0, 1] > 0.995
    assert np.abs(got - ref).max() < 0.1 * np.abs(ref).max()


def test_percentile_calibration_and_other_models_run(mnist5k):
    torch.manual_seed(0)
    x = torch.nn.functional.pad(mnist5k[0].tensors[0][:16], (2, 2, 2, 2), value=-0.4242).repeat(1, 3, 1, 1)
    vgg = build_model("vgg").eval()
    qnet = quantize_model(vgg, TensorDataset(x, torch.zeros(16)), method="percentile", percentile=99.9)
    outputs = qnet.run(qnet.quantize_input(x[:2].numpy()))
    assert [o.shape[1:] for o in outputs][-3:] == [(128, 4, 4), (256,), (10,)]
    assert decode_image(encode_image(qnet)).equals(qnet)  # the image format describes the VGG too
    lenet300 = build_model("lenet300").eval()
    qnet = quantize_model(lenet300, calibration_split(mnist5k[0], 64))
    assert qnet.predict(mnist5k[1].tensors[0][:10].numpy()).shape == (10,)
    with pytest.raises(ValueError, match="calibration method"):
        quantize_model(lenet300, calibration_split(mnist5k[0], 8), method="mse")


@pytest.mark.slow
def test_qat_keeps_masks_and_quantized_accuracy(pruned_lenet5, calib, mnist5k):
    model, masks = pruned_lenet5
    model = copy.deepcopy(model)
    before = quantize_model(model, calib, masks)
    subset = TensorDataset(*(t[:512] for t in mnist5k[0].tensors))
    qat_finetune(model, subset, calib, masks, TrainConfig(epochs=1, lr=2e-4, seed=0, progress=False))
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        assert torch.count_nonzero(params[name][~mask]) == 0, name
    after = quantize_model(model, calib, masks)
    assert not np.array_equal(after.layers[2].weight, before.layers[2].weight)  # it did train
    test = TensorDataset(*(t[:300] for t in mnist5k[1].tensors))
    acc_before = compare(model, before, test).quant_accuracy
    result = compare(model, after, test)
    assert result.quant_accuracy >= acc_before - 0.01, (acc_before, result)
    assert result.agreement >= 0.99
    assert evaluate(model, test) > 0.93
