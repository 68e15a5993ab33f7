"""Model shapes and the per-layer parameter/MAC counter, checked against hand-computed figures."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsegate.sw.ml.models import MODELS, build_model, count_layers


def test_lenet5_caffe_counts_by_hand():
    table = {layer.name: layer for layer in count_layers(build_model("lenet5"))}
    assert list(table) == ["conv1", "conv2", "fc1", "fc2"]
    assert (table["conv1"].params, table["conv1"].macs) == (20 * 25 + 20, 20 * 24 * 24 * 25)
    assert (table["conv2"].params, table["conv2"].macs) == (50 * 20 * 25 + 50, 50 * 8 * 8 * 20 * 25)
    assert (table["fc1"].params, table["fc1"].macs) == (800 * 500 + 500, 800 * 500)
    assert (table["fc2"].params, table["fc2"].macs) == (500 * 10 + 10, 500 * 10)
    assert sum(layer.params for layer in table.values()) == 431_080
    assert table["conv2"].in_shape == (20, 12, 12) and table["conv2"].out_shape == (50, 8, 8)


def test_lenet300_counts():
    table = count_layers(build_model("lenet300"))
    assert [layer.params for layer in table] == [784 * 300 + 300, 300 * 100 + 100, 100 * 10 + 10]
    assert sum(layer.params for layer in table) == 266_610


def test_vgg_counts_padding_convs():
    table = {layer.name: layer for layer in count_layers(build_model("vgg"))}
    assert table["conv1_1"].out_shape == (32, 32, 32)
    assert table["conv1_1"].macs == 32 * 32 * 32 * 3 * 9
    assert table["conv3_2"].out_shape == (128, 8, 8)
    assert table["fc1"].in_shape == (2048,)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_shape(name):
    model = build_model(name)
    assert model(torch.zeros(2, *model.input_shape)).shape == (2, 10)


def test_strided_conv_macs():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False))
    (layer,) = count_layers(model, (3, 9, 9))
    assert layer.out_shape == (4, 5, 5) and layer.macs == 4 * 5 * 5 * 3 * 9 and layer.biases == 0


def test_unknown_model_lists_choices():
    with pytest.raises(ValueError, match="unknown model 'alexnet'.*lenet5"):
        build_model("alexnet")
