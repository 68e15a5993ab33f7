"""The integer golden model against an independent PyTorch reference with the same integer semantics:
every layer type bit for bit on randomized shapes and values, saturation, and the rounding rule."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sparsegate.sw.ir import golden
from sparsegate.sw.ir.golden import AccumulatorOverflow, IntLayer, QuantizedNetwork

from support.int_networks import _layer, random_network
from support.torch_reference import torch_conv_acc, torch_layer, torch_linear_acc, torch_requant


# ------------------------------------------------------------------------------------------ random layers

def random_conv_case(rng: np.random.Generator):
    kh, kw = int(rng.integers(1, 8)), int(rng.integers(1, 8))
    stride = int(rng.choice([1, 2]))
    padding = int(rng.integers(0, 4))
    cin, cout = int(rng.integers(1, 7)), int(rng.integers(1, 7))
    h = int(rng.integers(max(1, kh - 2 * padding), 14))
    w = int(rng.integers(max(1, kw - 2 * padding), 14))
    x = rng.integers(-128, 128, size=(int(rng.integers(1, 4)), cin, h, w), dtype=np.int64).astype(np.int8)
    weight = rng.integers(-127, 128, size=(cout, cin, kh, kw)).astype(np.int8)
    weight[rng.random(weight.shape) < rng.random()] = 0  # random sparsity
    bias = rng.integers(-(1 << 20), 1 << 20, size=cout).astype(np.int32)
    mult = rng.integers(0, 1 << 16, size=cout).astype(np.uint16)
    shift = rng.integers(12, 30, size=cout).astype(np.uint8)
    return x, weight, bias, mult, shift, stride, padding


def spread_shift(acc: np.ndarray, mult: np.ndarray, rng) -> np.ndarray:
    """Per-channel shifts that map the accumulators to roughly +-100, jittered so that some channels
    saturate and most land inside int8."""
    peak = np.abs(acc.swapaxes(0, 1).reshape(acc.shape[1], -1)).max(axis=1) * mult.astype(np.int64) + 1
    shift = np.ceil(np.log2(peak / 100.0)) + rng.integers(-2, 3, size=len(peak))
    return np.clip(shift, 1, 47).astype(np.uint8)


@pytest.mark.parametrize("seed", range(40))
def test_conv_layer_matches_torch_bit_for_bit(seed):
    rng = np.random.default_rng(seed)
    x, weight, bias, mult, shift, stride, padding = random_conv_case(rng)
    acc = golden.conv2d_int(x, weight, bias, stride, padding)
    shift = spread_shift(acc, mult, rng) if seed % 4 else shift
    ref_acc = torch_conv_acc(x, weight, bias, stride, padding)
    assert acc.dtype == np.int64 and np.array_equal(acc, ref_acc.numpy())
    y = golden.requantize(acc, mult, shift)
    ref = torch_requant(ref_acc, mult, shift)
    assert y.dtype == np.int8 and np.array_equal(y, ref.numpy())
    assert np.array_equal(golden.relu_int(y), F.relu(ref).numpy())
    if min(y.shape[2:]) >= 2:
        pooled = golden.output_stage(acc, mult, shift, relu=True, pool=True)
        ref_pooled = F.max_pool2d(F.relu(ref).double(), 2).to(torch.int64)
        assert np.array_equal(pooled, ref_pooled.numpy())


@pytest.mark.parametrize("seed", range(15))
def test_sparse_walk_equals_dense_conv(seed):
    rng = np.random.default_rng(100 + seed)
    x, weight, _, _, _, stride, padding = random_conv_case(rng)
    assert np.array_equal(golden.conv2d_acc_sparse(x, weight, stride, padding),
                          golden.conv2d_acc(x, weight, stride, padding))


def test_sparse_entries_walk_order():
    w = np.zeros((2, 3, 3, 3), dtype=np.int8)
    w[0, 2, 0, 1], w[0, 0, 2, 2], w[0, 0, 1, 0], w[1, 1, 1, 1] = 5, -3, 7, 1
    (ci, ky, kx, v), (ci1, _, _, v1) = golden.sparse_entries(w)
    assert list(zip(ci, ky, kx, v)) == [(0, 1, 0, 7), (0, 2, 2, -3), (2, 0, 1, 5)]
    assert list(ci1) == [1] and list(v1) == [1]


@pytest.mark.parametrize("seed", range(15))
def test_linear_layer_matches_torch_bit_for_bit(seed):
    rng = np.random.default_rng(200 + seed)
    n, cin, cout = int(rng.integers(1, 9)), int(rng.integers(1, 900)), int(rng.integers(1, 40))
    x = rng.integers(-128, 128, size=(n, cin)).astype(np.int8)
    w = rng.integers(-127, 128, size=(cout, cin)).astype(np.int8)
    w[rng.random(w.shape) < 0.8] = 0
    bias = rng.integers(-(1 << 24), 1 << 24, size=cout).astype(np.int32)
    mult = rng.integers(1 << 15, 1 << 16, size=cout).astype(np.uint16)
    acc = golden.linear_int(x, w, bias)
    shift = spread_shift(acc, mult, rng)
    ref = torch_linear_acc(x, w, bias)
    assert np.array_equal(acc, ref.numpy())
    assert np.array_equal(golden.requantize(acc, mult, shift), torch_requant(ref, mult, shift).numpy())


@pytest.mark.parametrize("shape", [(1, 1, 2, 2), (2, 3, 5, 7), (1, 4, 9, 8), (3, 2, 2, 3)])
def test_maxpool_flatten_relu_match_torch(shape):
    x = np.random.default_rng(sum(shape)).integers(-128, 128, size=shape).astype(np.int8)
    t = torch.as_tensor(x.astype(np.int64))
    assert np.array_equal(golden.maxpool2x2(x), F.max_pool2d(t.double(), 2).to(torch.int64).numpy())
    assert np.array_equal(golden.flatten(x), torch.flatten(t, 1).numpy())
    assert np.array_equal(golden.relu_int(x), F.relu(t).numpy())
    assert golden.maxpool2x2(x).dtype == np.int8


def test_saturation_clamps_and_never_wraps():
    # Large same-sign products: the requantized values overflow int8 in both directions.
    x = np.full((1, 2, 6, 6), 127, dtype=np.int8)
    x[:, :, :3] = -128
    w = np.full((3, 2, 3, 3), 127, dtype=np.int8)
    w[1] = -127
    w[2, :, :, :] = 1
    bias = np.array([0, 0, 0], dtype=np.int32)
    mult, shift = np.array([1 << 15] * 3, dtype=np.uint16), np.array([16, 16, 16], dtype=np.uint8)
    acc = golden.conv2d_int(x, w, bias, 1, 1)
    unclamped = golden.rounding_shift(acc * (1 << 15), 16)
    assert unclamped.max() > 127 and unclamped.min() < -128  # the case really overflows
    y = golden.requantize(acc, mult, shift)
    ref = torch_requant(torch_conv_acc(x, w, bias, 1, 1), mult, shift).numpy()
    assert np.array_equal(y, ref)
    assert np.array_equal(y, np.clip(unclamped, -128, 127))
    assert not np.array_equal(y, unclamped.astype(np.int8))  # wrap-around would give other values
    assert (y == 127).any() and (y == -128).any()
    assert np.array_equal(golden.saturate_int8(np.array([300, -300, 128, -129, 5])), [127, -128, 127, -128, 5])


def test_rounding_is_half_up_at_exact_half_boundaries():
    acc = np.array([[3, -3, 5, -5, 1, -1, 2, -2, 7, -7]], dtype=np.int64)
    # mult / 2**shift = 1/2: every odd value is an exact .5 case and rounds toward +infinity.
    y = golden.requantize(acc, 1 << 15, 16)
    assert y.tolist() == [[2, -1, 3, -2, 1, 0, 1, -1, 4, -3]]
    rng = np.random.default_rng(7)
    for shift in range(1, 48):
        k = rng.integers(-2000, 2000, size=64)
        halves = (2 * k + 1) * (1 << (shift - 1))  # (2k+1)/2 * 2**shift: exactly k + 0.5 after the shift
        assert golden.rounding_shift(halves, shift).tolist() == (k + 1).tolist(), shift
        below = halves - 1
        assert golden.rounding_shift(below, shift).tolist() == k.tolist(), shift
    # And against exact rational arithmetic for random multipliers.
    acc = rng.integers(-(1 << 31), 1 << 31, size=(1, 200))
    mult = rng.integers(0, 1 << 16, size=200).astype(np.uint16)
    shift = rng.integers(1, 48, size=200).astype(np.uint8)
    got = golden.rounding_shift(acc * mult.astype(np.int64), shift.astype(np.int64))
    want = [math.floor(Fraction(int(a) * int(m), 2 ** int(s)) + Fraction(1, 2))
            for a, m, s in zip(acc[0], mult, shift)]
    assert got[0].tolist() == want


def test_requant_parameters_out_of_range_are_rejected():
    acc = np.zeros((1, 2), dtype=np.int64)
    with pytest.raises(ValueError, match="shift"):
        golden.requantize(acc, [1, 1], [0, 5])
    with pytest.raises(ValueError, match="shift"):
        golden.requantize(acc, [1, 1], [48, 5])
    with pytest.raises(ValueError, match="mult"):
        golden.requantize(acc, [1 << 16, 1], [5, 5])
    with pytest.raises(TypeError, match="integer"):
        golden.requantize(acc.astype(np.float64), 1, 5)


def test_accumulator_overflow_raises():
    x = np.full((1, 1, 1, 1), 127, dtype=np.int8)
    w = np.full((1, 1, 1, 1), 127, dtype=np.int8)
    with pytest.raises(AccumulatorOverflow, match="32-bit"):
        golden.conv2d_int(x, w, np.array([2 ** 31 - 100], dtype=np.int32))
    with pytest.raises(AccumulatorOverflow):
        golden.requantize(np.array([[2 ** 31]]), 1, 1)


def test_network_runner_returns_every_layer_and_matches_torch():
    net = random_network(3)
    x = np.random.default_rng(4).integers(-128, 128, size=(5, 2, 13, 12)).astype(np.int8)
    outputs = net.run(x)
    assert [o.shape[1:] for o in outputs] == [layer.out_shape for layer in net.layers]
    inp = x
    for layer, out in zip(net.layers, outputs):
        _, ref = torch_layer(inp, layer)
        assert out.dtype == np.int8 and np.array_equal(out, ref), layer.name
        inp = out
    assert (outputs[-1] != 0).any() and (outputs[0] > 0).any()  # not a degenerate all-zero network


def test_layer_validation_rejects_what_the_engine_cannot_run():
    rng = np.random.default_rng(0)
    good = _layer(rng, "c", "conv", (2, 8, 8), 3)
    with pytest.raises(ValueError, match=r"weight values must lie in \[-127, 127\]"):
        IntLayer(**{**vars(good), "weight": np.full_like(good.weight, -128)})
    with pytest.raises(ValueError, match="kernel 8x8"):
        IntLayer(**{**vars(good), "weight": np.ones((3, 2, 8, 8), np.int8), "in_shape": (2, 9, 9)})
    with pytest.raises(ValueError, match="stride"):
        IntLayer(**{**vars(good), "stride": 3})
    with pytest.raises(ValueError, match="bias dtype"):
        IntLayer(**{**vars(good), "bias": good.bias.astype(np.int64)})
    with pytest.raises(ValueError, match="worst-case accumulator"):
        IntLayer(**{**vars(good), "bias": np.full(3, 2 ** 31 - 1, np.int32)})
    with pytest.raises(ValueError, match="in_shape"):
        QuantizedNetwork("n", (2, 8, 8), 1.0, [good, _layer(rng, "d", "conv", (5, 8, 8), 3)])
    with pytest.raises(ValueError, match="input shape"):
        good.forward(np.zeros((1, 2, 7, 8), np.int8))
