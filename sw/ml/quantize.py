"""Post-training quantization with calibration, and optional quantization-aware fine-tuning.

:func:`quantize_model` turns a float model (LeNet-5, LeNet-300-100, the small VGG, or any network made
that :func:`~.graph_capture.layer_plan` captures: conv/linear, folded BatchNorm, ReLU/ReLU6, 2x2 max-pool,
flatten) into a :class:`~.golden.QuantizedNetwork`
whose integer arithmetic is the golden model's (docs/arithmetic.md):

* input: int8, scale ``max|x| / 127`` over the calibration images (zero point 0);
* weights: int8 in [-127, 127], one scale per output channel, ``max|w_c| / 127`` (pruned zeros stay 0);
* bias: int32 at scale ``s_in * s_w[c]``;
* each layer's output: int8, one scale per tensor, ``max|y| / 127`` over the calibration images, where
  ``y`` is the float output after the layer's fused ReLU/max-pool (``t / 127`` for a ReLU6/clamp at ``t``,
  so the int8 saturation is the clamp);
* a residual add: the golden model's add (``sw/ir/residual.py``), each input brought to the common scale by an
  int8 factor, its output scale calibrated like any layer's;
* requant: ``M[c] = s_in * s_w[c] / s_out`` as an unsigned 16-bit ``mult`` and a ``shift`` in [1, 47].
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from sparsegate.sw.ir.golden import INT8_MAX, WEIGHT_MAX, IntLayer, QuantizedNetwork
from sparsegate.sw.ir.requant import RequantError, requant_params
from sparsegate.sw.ir.residual import residual_add_layer
from sparsegate.sw.ml.graph_capture import (PlanLayer, QuantizationError, apply_fused, layer_plan,
                                            plan_forward)
from sparsegate.sw.ml.train import Masks, TrainConfig, TrainResult, apply_masks, check_masks, predict, train

CALIB_SIZE = 512
CALIB_METHODS = ("max", "percentile")
BIAS_LIMIT = 1 << 30  # |bias| stays well inside int32 so the accumulator keeps head-room


# ------------------------------------------------------------------------------------------- calibration

def calibration_split(train_ds: TensorDataset, size: int = CALIB_SIZE, seed: int = 0) -> TensorDataset:
    """A seeded random subset of the *training* data used only to pick scales (never the test set)."""
    x, y = train_ds.tensors
    if size < 1:
        raise ValueError(f"calibration size must be at least 1, got {size}")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:size]
    return TensorDataset(x[order], y[order])


def _range(values: torch.Tensor, method: str, percentile: float) -> float:
    a = values.detach().abs().flatten().double()
    if method == "max" or a.numel() == 0:
        return float(a.max()) if a.numel() else 0.0
    k = max(1, min(a.numel(), int(math.ceil(a.numel() * percentile / 100.0))))
    return float(a.kthvalue(k).values)


def _f32(v: float) -> float:
    """Round a scale to float32 so it round-trips through the weight image exactly."""
    return float(np.float32(v))


def _quantize_layer(layer: PlanLayer, in_scale: float, out_scale: float, in_shape: tuple) -> IntLayer:
    weight, bias = layer.params()
    w = weight.detach().double().cpu().numpy()
    cout = w.shape[0]
    b = bias.detach().double().cpu().numpy()
    wmax = np.abs(w.reshape(cout, -1)).max(axis=1)
    # Channels whose weights are all zero output requant(bias): give them M = 1 so the bias keeps precision.
    w_scale = np.where(wmax > 0, wmax / WEIGHT_MAX, out_scale / in_scale)
    # Keep the int32 bias inside BIAS_LIMIT by coarsening a channel's weight scale if needed (rare).
    w_scale = np.maximum(w_scale, np.abs(b) / (in_scale * BIAS_LIMIT))
    w_scale = w_scale.astype(np.float32).astype(np.float64)
    shape = (cout,) + (1,) * (w.ndim - 1)
    wq = np.clip(np.rint(w / w_scale.reshape(shape)), -WEIGHT_MAX, WEIGHT_MAX).astype(np.int8)
    bq = np.rint(b / (in_scale * w_scale)).astype(np.int64)
    try:
        mults, shifts = zip(*(requant_params(in_scale * s / out_scale) for s in w_scale))
    except RequantError as err:
        raise QuantizationError(f"{layer.name}: {err}") from None
    conv = layer.is_conv
    try:
        return IntLayer(name=layer.name, kind="conv" if conv else "fc", weight=wq, bias=bq.astype(np.int32),
                        mult=np.array(mults, dtype=np.uint16), shift=np.array(shifts, dtype=np.uint8),
                        in_shape=in_shape, stride=layer.stride, padding=layer.padding, relu=layer.relu, pool=layer.pool,
                        flatten_input=layer.flatten_input, in_scale=in_scale, out_scale=out_scale,
                        weight_scale=w_scale.astype(np.float32), inputs=layer.inputs)
    except ValueError as err:
        raise QuantizationError(str(err)) from None


@torch.no_grad()
def quantize_model(model: nn.Module, calib_ds: TensorDataset, masks: Masks | None = None, *,
                   name: str | None = None, method: str = "max", percentile: float = 99.99,
                   batch_size: int = 256) -> QuantizedNetwork:
    """Post-training quantization: calibrate scales on ``calib_ds`` and return the integer network.

    ``masks`` (param name -> bool tensor) are applied to a copy first, so pruned weights are exactly 0
    and appear in no sparse list. ``method`` picks the range of each tensor: ``max`` (default) or the
    ``percentile`` of absolute values. The model itself is not changed.
    """
    if method not in CALIB_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; expected one of {CALIB_METHODS}")
    model = copy.deepcopy(model).cpu().eval()
    if masks:
        check_masks(model, masks)
        apply_masks(model, masks)
    x = calib_ds.tensors[0]
    if len(x) == 0:
        raise ValueError("empty calibration set")
    input_shape = tuple(x.shape[1:])
    if len(input_shape) not in (1, 3):
        raise QuantizationError(f"inputs must be images (C, H, W) or vectors (features,), got {input_shape}")
    plan = layer_plan(model, input_shape)
    if len(input_shape) == 1:  # a vector input is a (features, 1, 1) image that the first fc layer flattens
        if plan[0].is_conv:
            raise QuantizationError(f"{type(model).__name__}: a vector input {input_shape} needs an fc first layer")
        plan[0].flatten_input = True
        input_shape = (input_shape[0], 1, 1)
    outs: list[list[torch.Tensor]] = [[] for _ in plan]
    for i in range(0, len(x), batch_size):
        per_layer: list[torch.Tensor] = []
        got = plan_forward(plan, x[i:i + batch_size].float(), per_layer)
        expected = model(x[i:i + batch_size].float())
        if not torch.allclose(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()) + 1e-6):
            raise QuantizationError(f"{type(model).__name__}: the traced layer plan does not reproduce the "
                                    "model's output; it uses an operation the engine cannot run")
        for store, out in zip(outs, per_layer):
            store.append(out)
    input_scale = _f32(max(_range(x, method, percentile), 1e-12) / INT8_MAX)
    layers = []
    scales, shapes = [input_scale], [input_shape]   # per tensor: 0 = input, k = layer k-1
    for i, (layer, store) in enumerate(zip(plan, outs)):
        out_range = layer.clamp if layer.clamp is not None else _range(torch.cat(store), method, percentile)
        out_scale = _f32(out_range / INT8_MAX) if out_range > 0 else 1.0
        refs = layer.inputs if layer.inputs is not None else (i,)
        if layer.is_add:
            try:
                q = residual_add_layer(layer.name, shapes[refs[0]], refs, scales[refs[0]], scales[refs[1]],
                                       out_scale, relu=layer.relu)
            except (RequantError, ValueError) as err:
                raise QuantizationError(f"{layer.name}: {err}") from None
        else:
            shape = shapes[refs[0]]
            in_shape = (int(np.prod(shape)),) if layer.flatten_input else shape
            q = _quantize_layer(layer, scales[refs[0]], out_scale, in_shape)
        layers.append(q)
        scales.append(out_scale)
        shapes.append(q.out_shape)
    try:
        return QuantizedNetwork(name=name or type(model).__name__.lower(), input_shape=input_shape,
                                input_scale=input_scale, layers=layers)
    except ValueError as err:
        raise QuantizationError(str(err)) from None


# --------------------------------------------------------------------------------------------- evaluation

@dataclass
class QuantComparison:
    """Float vs quantized (golden model) accuracy and prediction agreement on one dataset (0..1)."""

    float_accuracy: float
    quant_accuracy: float
    agreement: float
    samples: int


def compare(model: nn.Module, qnet: QuantizedNetwork, ds: TensorDataset) -> QuantComparison:
    """Float accuracy, quantized (golden model) accuracy and prediction agreement on ``ds``."""
    x, y = ds.tensors
    float_pred = predict(model, ds).numpy()
    quant_pred = qnet.predict(x.numpy())
    labels = y.numpy()
    return QuantComparison(float_accuracy=float((float_pred == labels).mean()),
                           quant_accuracy=float((quant_pred == labels).mean()),
                           agreement=float((float_pred == quant_pred).mean()), samples=int(len(labels)))


# ------------------------------------------------------------------------------ quantization-aware training

class _FakeQuant(torch.autograd.Function):
    """Quantize-dequantize with a straight-through gradient (zeroed outside the representable range)."""

    @staticmethod
    def forward(ctx, x, scale, lo, hi):
        q = torch.clamp(torch.round(x / scale), lo, hi)
        ctx.save_for_backward((x / scale >= lo - 0.5) & (x / scale <= hi + 0.5))
        return q * scale

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside.to(grad.dtype), None, None, None


def _fake_weight(w: torch.Tensor) -> torch.Tensor:
    scale = w.detach().abs().flatten(1).amax(dim=1).clamp_min(1e-12) / WEIGHT_MAX
    scale = scale.view(-1, *([1] * (w.dim() - 1)))
    return _FakeQuant.apply(w, scale, -WEIGHT_MAX, WEIGHT_MAX)


class FakeQuantNet(nn.Module):
    """Wraps ``model`` (as ``self.model``) and runs its plan with int8 fake quantization of the input,
    the per-channel weights and every layer output, at scales fixed by calibration."""

    def __init__(self, model: nn.Module, input_shape: tuple, input_scale: float, out_scales: list[float]):
        super().__init__()
        self.model = model
        self.plan = layer_plan(model, input_shape)
        self.input_scale = input_scale
        self.out_scales = out_scales

    def forward(self, x):
        tensors = [_FakeQuant.apply(x, self.input_scale, -128, 127)]
        for i, (layer, s_out) in enumerate(zip(self.plan, self.out_scales)):
            refs = layer.inputs if layer.inputs is not None else (i,)
            x = tensors[refs[0]]
            if layer.is_add:
                x = x + tensors[refs[1]]
            else:
                if layer.flatten_input:
                    x = x.flatten(1)
                weight, bias = layer.params()
                w = _fake_weight(weight)
                if layer.is_conv:
                    x = F.conv2d(x, w, bias, stride=layer.stride, padding=layer.padding)
                else:
                    x = F.linear(x, w, bias)
            x = apply_fused(layer, x)
            tensors.append(_FakeQuant.apply(x, s_out, -128, 127))
        return tensors[-1]


def qat_finetune(model: nn.Module, train_ds: TensorDataset, calib_ds: TensorDataset,
                 masks: Masks | None = None, config: TrainConfig | None = None) -> TrainResult:
    """Quantization-aware fine-tuning of ``model`` in place, keeping pruned weights exactly zero.

    Scales come from a PTQ calibration on ``calib_ds``; training runs through :func:`~.train.train` on a
    :class:`FakeQuantNet` wrapper with the masks renamed to its parameter names. Re-run
    :func:`quantize_model` afterwards to get the integer network.
    """
    config = config or TrainConfig(epochs=1, lr=2e-4)
    masks = masks or {}
    check_masks(model, masks)
    qnet = quantize_model(model, calib_ds, masks)
    wrapper = FakeQuantNet(model, tuple(calib_ds.tensors[0].shape[1:]), qnet.input_scale, [layer.out_scale for layer in qnet.layers])
    wrapped_masks = {f"model.{k}": v for k, v in masks.items()}
    return train(wrapper, train_ds, config, masks=wrapped_masks, desc="qat")
