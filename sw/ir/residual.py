"""The residual add in integers: ``relu(a + b)`` of two int8 tensors at different scales, as the one layer kind
the engine already runs — a 1x1 conv over the channel concatenation ``[a; b]`` (docs/arithmetic.md).

Each input is brought to a common scale by an int8 factor: with ``s = max(s_a, s_b)``,
``wa = round(127 * s_a / s)`` and ``wb = round(127 * s_b / s)``, so ``acc = wa * a + wb * b`` (int32, exact)
is the real sum in units of ``s / 127``; the usual requantization (``M = s / 127 / s_out``), saturation and
ReLU follow. Output channel ``c`` has exactly two nonzero weights, ``w[c, c] = wa`` and ``w[c, C + c] = wb``,
so the zero-skipping engine spends two cycles per pass on it.
"""
from __future__ import annotations

import numpy as np

from sparsegate.sw.ir.golden import WEIGHT_MAX, IntLayer
from sparsegate.sw.ir.requant import requant_params

__all__ = ["add_factors", "residual_add_layer"]


def add_factors(scale_a: float, scale_b: float) -> tuple[int, int, float]:
    """``(wa, wb, s_acc)``: the int8 factors that bring inputs at ``scale_a`` and ``scale_b`` to the common
    scale, and the real value of one accumulator unit (``max(scale_a, scale_b) / 127``)."""
    if not (np.isfinite(scale_a) and np.isfinite(scale_b) and scale_a > 0 and scale_b > 0):
        raise ValueError(f"add input scales must be finite and positive, got {scale_a}, {scale_b}")
    top = max(scale_a, scale_b)
    wa, wb = (max(1, int(np.rint(WEIGHT_MAX * s / top))) for s in (scale_a, scale_b))
    return wa, wb, top / WEIGHT_MAX


def residual_add_layer(name: str, shape: tuple, inputs: tuple, scale_a: float, scale_b: float,
                       out_scale: float, relu: bool = True) -> IntLayer:
    """The integer layer of ``relu(a + b)`` for two tensors of ``shape`` (C, H, W): tensor references
    ``inputs = (ref_a, ref_b)`` (golden.IntLayer.inputs), their scales, and the output scale."""
    c, h, w = (int(v) for v in shape)
    wa, wb, s_acc = add_factors(float(scale_a), float(scale_b))
    weight = np.zeros((c, 2 * c, 1, 1), dtype=np.int8)
    weight[np.arange(c), np.arange(c)] = wa
    weight[np.arange(c), c + np.arange(c)] = wb
    # metadata so that in_scale * weight_scale is the accumulator unit (the in_scale is the first input's)
    weight_scale = np.full(c, s_acc / float(np.float32(scale_a)), dtype=np.float32)
    mult, shift = requant_params(float(np.float32(scale_a)) * float(weight_scale[0]) / float(np.float32(out_scale)))
    return IntLayer(name=name, kind="conv", weight=weight, bias=np.zeros(c, dtype=np.int32),
                    mult=np.full(c, mult, dtype=np.uint16), shift=np.full(c, shift, dtype=np.uint8),
                    in_shape=(2 * c, h, w), relu=relu, in_scale=scale_a, out_scale=out_scale,
                    weight_scale=weight_scale, inputs=tuple(inputs))
