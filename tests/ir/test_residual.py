"""Residual adds in the integer floor: the golden model's add (a 1x1 conv over the channel concatenation of two
tensors, each brought to a common scale by an int8 factor) against a direct integer computation and against
the float sum; tensor references through the weight image (version 2), version-1 images still loading, and
hostile references refused with one line."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from sparsegate.sw.ir.golden import QuantizedNetwork, requantize
from sparsegate.sw.ir.residual import add_factors, residual_add_layer
from sparsegate.sw.ir.weight_image import DESCRIPTOR, HEADER, ImageError, decode_image, encode_image

from support.hostile_images import recrc
from support.int_networks import random_network, residual_network


def test_add_is_the_scaled_sum_requantized():
    rng = np.random.default_rng(0)
    a = rng.integers(-128, 128, size=(3, 5, 4, 6)).astype(np.int8)
    b = rng.integers(-128, 128, size=(3, 5, 4, 6)).astype(np.int8)
    s_a, s_b, s_out = 0.02, 0.05, 0.06
    layer = residual_add_layer("add", (5, 4, 6), (1, 2), s_a, s_b, s_out)
    wa, wb, s_acc = add_factors(s_a, s_b)
    assert (wa, wb) == (51, 127) and s_acc == pytest.approx(0.05 / 127)
    assert layer.nnz == 2 * 5 and layer.weight.shape == (5, 10, 1, 1)
    got = layer.forward(np.concatenate([a, b], axis=1))
    acc = wa * a.astype(np.int64) + wb * b.astype(np.int64)
    want = np.maximum(requantize(acc, layer.mult, layer.shift), 0)
    np.testing.assert_array_equal(got, want)
    real = np.maximum(a * s_a + b * s_b, 0)   # within one output step, plus the factors' rounding
    assert np.abs(got * s_out - np.clip(real, 0, 127 * s_out)).max() <= s_out * 0.5 + 128 * 0.5 * s_acc + 1e-9


def test_network_with_references_runs_and_validates():
    net = residual_network(0)
    assert not net.is_chain and random_network(0).is_chain
    x = np.random.default_rng(1).integers(-128, 128, size=(2, 3, 8, 8)).astype(np.int8)
    outs = net.run(x)
    stem, b1c2, b1add = outs[0], outs[2], outs[3]
    np.testing.assert_array_equal(b1add, net.layers[3].forward(np.concatenate([stem, b1c2], axis=1)))
    np.testing.assert_array_equal(outs[6], net.layers[6].forward(b1add))      # the shortcut reads the block input
    assert outs[-1].shape == (2, 5)
    layers = list(net.layers)
    bad = residual_add_layer("b1add", (4, 8, 8), (1, 5), 1.0, 1.0, 1.0)  # tensor 5 comes after layer 3
    with pytest.raises(ValueError, match="reads tensor 5"):
        QuantizedNetwork("bad", net.input_shape, 1.0, layers[:3] + [bad] + layers[4:])
    wrong = residual_add_layer("b1add", (4, 8, 8), (1, 5), 1.0, 1.0, 1.0)
    wrong.inputs = (1, 6)  # tensor 6 is 8x4x4: cannot be concatenated with an 8x8 map
    with pytest.raises(ValueError):
        QuantizedNetwork("bad", net.input_shape, 1.0, layers[:6] + [wrong])


def test_image_round_trip_with_references():
    net = residual_network(2)
    image = encode_image(net)
    back = decode_image(image)
    assert back.equals(net) and encode_image(back) == image
    assert [layer.inputs for layer in back.layers] == [None, None, None, (1, 3), None, None, (4,), (6, 7), None]


def _descriptor_at(i: int) -> int:
    return HEADER.size + i * DESCRIPTOR.size


def test_version_1_images_still_load():
    net = random_network(3)
    data = bytearray(encode_image(net))
    struct.pack_into("<H", data, 4, 1)
    for i in range(len(net.layers)):  # version 1 had no references: the trailing descriptor bytes were 0
        data[_descriptor_at(i) + 72:_descriptor_at(i) + 80] = bytes(8)
    assert decode_image(recrc(bytes(data))).equals(net)
    res = bytearray(encode_image(residual_network(0)))
    struct.pack_into("<H", res, 4, 1)  # a version-1 reader's layout cannot hold references
    with pytest.raises(ImageError, match=r"layer 0 \('stem'\) reserved"):
        decode_image(recrc(bytes(res)))


@pytest.mark.parametrize("patch, field, words", [
    ((3, 74, "<H", 9), "layer 3 ('b1add') inputs", "reference to tensor 9"),        # a later tensor
    ((7, 76, "<H", 4), "layer 7 ('b2add') inputs", "same height and width"),       # 8x4x4 with 4x8x8
    ((3, 73, "B", 3), "layer 3 ('b1add') inputs", "1 or 2 tensors"),
    ((4, 73, "B", 2), "layer 4 ('b2c1') in_shape", "input (tensors 4, 0) is 7x8x8"),  # concatenation: 4 + 3
    ((8, 73, "B", 2), "layer 8 ('fc') inputs", "only a conv layer"),
    ((5, 74, "<H", 1), "layer 5 ('b2c2') in_shape", "input (tensors 1) is 4x8x8"),  # an earlier, other map
])
def test_hostile_references_are_refused_in_one_line(patch, field, words):
    layer, offset, fmt, value = patch
    data = bytearray(encode_image(residual_network(0)))
    struct.pack_into(fmt, data, _descriptor_at(layer) + offset, value)
    with pytest.raises(ImageError) as info:
        decode_image(recrc(bytes(data)), "img.bin")
    text = str(info.value)
    assert "\n" not in text and text.startswith("img.bin: ")
    assert info.value.field == field and words in text, text
