"""Exact counts on a hand-built tiny network (every number below was computed by hand)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
import torch.nn.functional as F

from sparsegate.sw.prune.counting import StorageFormat, layer_table, liveness, relative_index_entries
from sparsegate.sw.prune.masks import topology

from support.tiny_model import Tiny, tiny_network


def test_topology_links_conv_to_fc_groups():
    topo = topology(tiny_network())
    assert list(topo) == ["conv1", "fc1", "fc2"]
    assert topo["conv1"].consumer == "fc1" and topo["conv1"].group == 4 and topo["conv1"].positions == 4
    assert topo["fc1"].producer == "conv1" and topo["fc2"].consumer is None


def test_counts_match_hand_computation():
    table = layer_table(tiny_network(), storage=StorageFormat(weight_bits=8, index_bits=2))
    c, f1, f2 = table["conv1"], table["fc1"], table["fc2"]
    # dense sizes
    assert (c.weights, c.biases, c.dense_macs) == (27, 3, 108)
    assert (f1.weights, f1.biases, f1.dense_macs) == (48, 4, 48)
    assert (f2.weights, f2.biases, f2.dense_macs) == (8, 2, 8)
    # stored nonzeros
    assert (c.nonzero_weights, c.nonzero_biases) == (11, 3)
    assert (f1.nonzero_weights, f1.nonzero_biases) == (8, 3)
    assert (f2.nonzero_weights, f2.nonzero_biases) == (4, 2)
    # liveness: conv ch1 and fc1 n1 are identically zero, fc1 n2 is never read
    assert (c.live_in, c.live_out) == (1, 2)
    assert (f1.live_in, f1.live_out) == (3, 2)  # features 0, 1 (ch0) and 11 (ch2) are read by live weights
    assert (f2.live_in, f2.live_out) == (2, 2)
    assert (c.live_weights, f1.live_weights, f2.live_weights) == (11, 3, 3)
    # MACs actually needed: conv 11 weights x 4 positions, fc1 3, fc2 3
    assert (c.macs, f1.macs, f2.macs) == (44, 3, 3)
    t = table.total
    assert (t.params, t.nonzero_params, t.dense_macs, t.macs) == (92, 31, 164, 50)
    assert t.compression == pytest.approx(92 / 31)
    assert t.weight_compression == pytest.approx(83 / 23)  # weights only, biases left out
    assert t.mac_reduction == pytest.approx(1 - 50 / 164)
    # storage: 8-bit values + 2-bit gaps (span 4); conv gaps 1, 8, 10, 1x8 -> 3 fillers; fc1 gaps
    # 1,1,4,11,16,1,1,13 -> 8 fillers; fc2 gaps 1,3,2,2 -> none. Biases dense at 8 bits.
    assert c.sparse_bits == (11 + 3) * 10 + 3 * 8
    assert f1.sparse_bits == (8 + 8) * 10 + 3 * 8
    assert f2.sparse_bits == 4 * 10 + 2 * 8
    assert c.dense_bits == 30 * 8 and t.dense_bits == 92 * 8


def test_masks_count_as_zero_and_dense_model_counts_dense():
    m = tiny_network()
    masks = {"fc2.weight": torch.tensor([[True, True, True, False], [True, True, True, True]])}
    table = layer_table(m, masks)
    assert table["fc2"].nonzero_weights == 3
    # out0 no longer reads n3, but out1 still does: n3 stays live
    assert table["fc1"].live_out == 2
    dense = nn.Linear(3, 2)
    with torch.no_grad():
        dense.weight.fill_(1.0)
    wrapped = nn.Sequential()
    wrapped.fc = dense
    wrapped.input_shape = (3,)
    t = layer_table(wrapped).total
    assert (t.params, t.nonzero_params, t.macs, t.dense_macs) == (8, 8, 6, 6)
    assert t.compression == 1.0 and t.mac_reduction == 0.0


def test_liveness_vectors_and_markdown():
    live = liveness(tiny_network())
    assert live["conv1"][2].tolist() == [True, False, True]
    assert live["fc1"][2].tolist() == [True, False, False, True]
    md = layer_table(tiny_network()).to_markdown()
    assert "| conv1 | conv | 27 | 11 |" in md and "compression 3.0x" in md


def test_relative_index_fillers():
    mask = torch.zeros(40, dtype=torch.bool)
    mask[[0, 3, 39]] = True
    # gaps 1, 3, 36 with 16-step spans (4 bits): 36 needs ceil(36/16) - 1 = 2 fillers
    assert relative_index_entries(mask, 4) == 5
    assert relative_index_entries(torch.zeros(5, dtype=torch.bool), 4) == 0
    assert math.isinf(layer_table(_all_zero()).total.compression)
    assert math.isinf(layer_table(_all_zero()).total.weight_compression)


def _all_zero():
    m = Tiny()
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
    return m


def test_storage_format_rejects_bad_bits():
    with pytest.raises(ValueError, match="weight_bits=0"):
        StorageFormat(weight_bits=0)


@pytest.mark.parametrize("name", ["lenet5", "lenet300", "vgg"])
def test_dense_reference_models_match_count_layers(name):
    from sparsegate.sw.ml.models import build_model, count_layers

    model = build_model(name)
    table = layer_table(model)
    dense = count_layers(model)
    assert [s.dense_macs for s in table.layers] == [c.macs for c in dense]
    assert table.total.macs == table.total.dense_macs and table.total.params == sum(c.params for c in dense)
    assert table.total.nonzero_params == table.total.params  # random init: no exact zeros
