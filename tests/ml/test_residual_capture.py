"""Residual networks through graph capture and quantization: ResNet-8 (sparsegate.sw.ml.zoo) traced into
conv layers, residual adds reading two tensors, and shortcut convs reading the block input, with every
BatchNorm folded (the downsampling shortcut's too); the folded float plan equals the model; the int8
network's logits measured against the float ones on real digits; every spelling of the add captured."""
from __future__ import annotations

import operator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from sparsegate.sw.ir.weight_image import decode_image, encode_image
from sparsegate.sw.ml.data import load_dataset
from sparsegate.sw.ml.graph_capture import QuantizationError, layer_plan, plan_forward
from sparsegate.sw.ml.quantize import calibration_split, quantize_model

from sparsegate.sw.ml.zoo import ResNet8


def _resnet8(seed: int = 0) -> nn.Module:
    """ResNet-8 with non-trivial BatchNorm statistics (an untrained one would fold identities)."""
    torch.manual_seed(seed)
    model = ResNet8()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.eval()


def test_resnet8_plan_folds_every_batchnorm_and_names_its_tensors():
    model = _resnet8()
    plan = layer_plan(model)
    names = [p.name for p in plan]
    assert names == ["stem", "layer1.conv1", "layer1.conv2", "layer1.add", "layer2.conv1", "layer2.conv2",
                     "layer2.short.0", "layer2.add", "layer3.conv1", "layer3.conv2", "layer3.short.0",
                     "layer3.add", "fc"]
    by_name = {p.name: p for p in plan}
    assert by_name["layer1.add"].inputs == (1, 3)          # the stem output (block input) and conv2's
    assert by_name["layer2.short.0"].inputs == (4,)        # the shortcut reads the block input
    assert by_name["layer2.add"].inputs == (6, 7)
    assert by_name["layer2.short.0"].bn is model.layer2.short[1]   # the shortcut's BatchNorm is folded
    assert all(p.bn is not None for p in plan if p.is_conv)
    assert [p.relu for p in plan if p.is_add] == [True] * 3
    assert by_name["fc"].avg_input[0] == "gap" and by_name["fc"].flatten_input
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        got, want = plan_forward(plan, x), model(x)
    assert torch.allclose(got, want, atol=1e-5 * float(want.abs().max()) + 1e-6)


def test_resnet8_int8_logits_agree_with_float_on_digits():
    train_ds, test_ds = load_dataset("mnist5k-rgb32", None, 0)
    model = _resnet8(1)
    qnet = quantize_model(model, calibration_split(train_ds, 256), name="resnet8")
    assert decode_image(encode_image(qnet)).equals(qnet)
    adds = [layer for layer in qnet.layers if layer.inputs is not None and len(layer.inputs) == 2]
    assert len(adds) == 3 and all(layer.nnz == 2 * layer.out_channels for layer in adds)
    x = test_ds.tensors[0][:200]
    with torch.no_grad():
        ref = model(x).numpy()
    logits = qnet.logits(qnet.quantize_input(x.numpy())).astype(np.float64) * qnet.layers[-1].out_scale
    rel = np.linalg.norm(logits - ref) / np.linalg.norm(ref)
    agree = float((logits.argmax(1) == ref.argmax(1)).mean())
    print(f"ResNet-8 (random BN), 200 digits: int8 vs float logits relative error {rel:.3f}, argmax agreement {agree:.3f}")
    assert rel < 0.1 and agree >= 0.9


class _AddSpellings(nn.Module):
    input_shape = (2, 6, 6)

    def __init__(self, spelling):
        super().__init__()
        self.spelling = spelling
        self.conv1, self.conv2 = nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        y = F.relu(self.conv1(x))
        z = self.conv2(y)
        if self.spelling == "plus":
            z = z + y
        elif self.spelling == "torch.add":
            z = torch.add(z, y)
        elif self.spelling == "operator.add":
            z = operator.add(y, z)
        elif self.spelling == "iadd":
            z += y
        elif self.spelling == "method":
            z = z.add(y)
        return self.fc(torch.flatten(self.relu(z), 1))


@pytest.mark.parametrize("spelling", ["plus", "torch.add", "operator.add", "iadd", "method"])
def test_every_add_spelling_is_captured(spelling):
    model = _AddSpellings(spelling).eval()
    plan = layer_plan(model)
    assert [p.is_add for p in plan] == [False, False, True, False]
    assert plan[2].inputs == (1, 2) and plan[2].relu
    x = torch.randn(4, 2, 6, 6)
    with torch.no_grad():
        assert torch.allclose(plan_forward(plan, x), model(x), atol=1e-5)
    calib = TensorDataset(torch.randn(32, 2, 6, 6), torch.zeros(32, dtype=torch.long))
    qnet = quantize_model(model, calib)
    assert qnet.layers[2].inputs == (1, 2) and qnet.layers[2].relu


def test_add_of_a_constant_is_refused():
    class _AddConst(_AddSpellings):
        def forward(self, x):
            return self.fc(torch.flatten(F.relu(self.conv1(x) + 1.0), 1))

    with pytest.raises(QuantizationError, match=r"an add of a tensor and a constant.*hint: add two activation"):
        layer_plan(_AddConst("plus"))
