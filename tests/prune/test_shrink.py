"""Physical shrinking: the small dense model computes exactly what the masked model computes."""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
import torch.nn.functional as F

from sparsegate.sw.prune.masks import apply_masks, global_magnitude_masks, remove_channels, topology
from sparsegate.sw.ml.models import build_model
from sparsegate.sw.prune.shrink import ShrinkError, UnsupportedLayerError, check_supported, load_shrunk, save_shrunk, \
    shrink_model


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: on the shared 2-core machine two threads mostly wait for each other."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _structured_masks(model, seed: int, frac: float = 0.4):
    """Element masks plus whole channels removed in every hidden layer."""
    gen = torch.Generator().manual_seed(seed)
    masks = global_magnitude_masks(model, 0.5)
    topo = topology(model)
    for layer, info in topo.items():
        if info.consumer is not None:
            masks = remove_channels(model, masks, layer, torch.rand(info.out_units, generator=gen) < frac, topo)
    return masks


def _outputs(model, masks, x):
    m = copy.deepcopy(model)
    apply_masks(m, masks)
    m.eval()
    with torch.no_grad():
        return m(x)


@pytest.mark.parametrize("name", ["lenet5", "vgg"])
def test_shrunk_model_equals_masked_model(name):
    torch.manual_seed(1)
    model = build_model(name)
    masks = _structured_masks(model, seed=3)
    res = shrink_model(model, masks)
    topo = topology(model)
    # every removed channel is gone, every other one stays
    for layer, info in topo.items():
        w = masks[f"{layer}.weight"]
        expected = int(w.flatten(1).any(1).sum()) if info.consumer is not None else info.out_units
        assert res.widths[layer][1] == expected
    assert res.params_after < res.params_before and res.macs_after < res.macs_before
    x = torch.randn(12, *model.input_shape, generator=torch.Generator().manual_seed(7))
    res.model.eval()
    with torch.no_grad():
        small = res.model(x)
    assert torch.allclose(small, _outputs(model, masks, x), atol=1e-5, rtol=1e-5)
    # the remaining zeros travel as masks of the small model, which is smaller for real
    assert sum(p.numel() for p in res.model.parameters()) == res.params_after
    for key, mask in res.masks.items():
        assert mask.shape == dict(res.model.named_parameters())[key].shape


def test_lenet5_widths_and_param_count():
    model = build_model("lenet5")
    topo = topology(model)
    masks = remove_channels(model, {}, "conv1", torch.arange(20) >= 8, topo)  # keep 8 of 20
    masks = remove_channels(model, masks, "conv2", torch.arange(50) >= 30, topo)  # keep 30 of 50
    masks = remove_channels(model, masks, "fc1", torch.arange(500) >= 100, topo)  # keep 100 of 500
    res = shrink_model(model, masks)
    assert res.widths == {"conv1": (1, 8), "conv2": (8, 30), "fc1": (480, 100), "fc2": (100, 10)}
    assert res.params_after == (8 * 25 + 8) + (30 * 8 * 25 + 30) + (100 * 480 + 100) + (10 * 100 + 10)
    assert torch.equal(res.kept_outputs["conv2"], torch.arange(30))
    assert res.masks == {}  # only whole channels were removed: the small model is fully dense


def test_constant_channel_with_positive_bias_is_kept():
    model = build_model("lenet5")
    masks = remove_channels(model, {}, "conv1", torch.arange(20) < 5)
    with torch.no_grad():  # channel 7: no fan-in, but a positive bias -> a constant ReLU output that fc reads
        model.conv1.weight[7] = 0.0
        model.conv1.bias[7] = 0.5
        model.conv1.bias[8] = -0.5  # channel 8: no fan-in, negative bias -> always 0 after the ReLU
        model.conv1.weight[8] = 0.0
    res = shrink_model(model, masks)
    kept = res.kept_outputs["conv1"].tolist()
    assert 7 in kept and 8 not in kept and not set(range(5)) & set(kept)
    x = torch.randn(4, 1, 28, 28)
    res.model.eval()
    with torch.no_grad():
        assert torch.allclose(res.model(x), _outputs(model, masks, x), atol=1e-5)


class _Dilated(nn.Module):
    input_shape = (1, 12, 12)

    def __init__(self, groups=1, dilation=1, bn=False):
        super().__init__()
        self.conv1 = nn.Conv2d(2 if groups > 1 else 1, 4, 3, dilation=dilation, groups=groups)
        self.bn = nn.BatchNorm2d(4) if bn else None
        self.fc = nn.Linear(4 * (12 - 2 * dilation) ** 2, 3)

    def forward(self, x):
        if self.conv1.groups > 1:
            x = x.repeat(1, 2, 1, 1)
        x = self.conv1(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.fc(F.relu(x).flatten(1))


@pytest.mark.parametrize("kwargs,message", [
    (dict(groups=2), "grouped convolution"),
    (dict(dilation=2), "dilated convolution"),
    (dict(bn=True), "BatchNorm2d"),
])
def test_unsupported_layers_are_refused(kwargs, message):
    model = _Dilated(**kwargs)
    with pytest.raises(UnsupportedLayerError, match=message):
        shrink_model(model, {})
    with pytest.raises(UnsupportedLayerError, match=message):
        check_supported(model)


def test_conv1d_is_refused_not_skipped():
    model = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(UnsupportedLayerError, match="Conv1d"):
        check_supported(model, structural=False)


class _NoRelu(nn.Module):
    """Breaks the chain assumption: no ReLU between the layers."""
    input_shape = (1, 8, 8)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3)
        self.fc = nn.Linear(3 * 36, 2)

    def forward(self, x):
        return self.fc(self.conv1(x).flatten(1))


def test_verification_catches_a_broken_assumption():
    model = _NoRelu()
    with torch.no_grad():
        model.conv1.weight[1] = 0.0
        model.conv1.bias[1] = -1.0  # no fan-in, negative bias: "dead" under a ReLU, but there is none
    with pytest.raises(ShrinkError, match="differ"):
        shrink_model(model, {})


def test_save_and_load_shrunk(tmp_path):
    torch.manual_seed(2)
    model = build_model("vgg")
    masks = _structured_masks(model, seed=5)
    res = shrink_model(model, masks)
    path = tmp_path / "shrunk.pt"
    save_shrunk(path, res, "vgg", meta={"note": "x"})
    loaded, loaded_masks, meta = load_shrunk(path)
    x = torch.randn(3, 3, 32, 32)
    loaded.eval()
    res.model.eval()
    with torch.no_grad():
        assert torch.equal(loaded(x), res.model(x))
    assert set(loaded_masks) == set(res.masks) and meta == {"note": "x"}
    with pytest.raises(ValueError, match="no such shrunk-model file"):
        load_shrunk(tmp_path / "missing.pt")
