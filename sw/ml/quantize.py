"""Post-training quantization with calibration, and optional quantization-aware fine-tuning.

:func:`quantize_model` turns a float model (LeNet-5, LeNet-300-100, the small VGG, or any network made
of conv/linear layers, ReLU, 2x2 max-pool and flatten) into a :class:`~.golden.QuantizedNetwork`
whose integer arithmetic is the golden model's (docs/arithmetic.md):

* input: int8, scale ``max|x| / 127`` over the calibration images (zero point 0);
* weights: int8 in [-127, 127], one scale per output channel, ``max|w_c| / 127`` (pruned zeros stay 0);
* bias: int32 at scale ``s_in * s_w[c]``;
* each layer's output: int8, one scale per tensor, ``max|y| / 127`` over the calibration images, where
  ``y`` is the float output after the layer's fused ReLU/max-pool;
* requant: ``M[c] = s_in * s_w[c] / s_out`` as an unsigned 16-bit ``mult`` and a ``shift`` in [1, 47].
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from sparsegate.sw.ir.golden import INT8_MAX, WEIGHT_MAX, IntLayer, QuantizedNetwork
from sparsegate.sw.ir.requant import RequantError, requant_params
from sparsegate.sw.ml.train import Masks, TrainConfig, TrainResult, apply_masks, check_masks, predict, train

CALIB_SIZE = 512
CALIB_METHODS = ("max", "percentile")
BIAS_LIMIT = 1 << 30  # |bias| stays well inside int32 so the accumulator keeps head-room


class QuantizationError(ValueError):
    """The model cannot be expressed with the engine's layers, or its values do not fit the formats."""


# ------------------------------------------------------------------------------------------- layer plan

@dataclass
class PlanLayer:
    """One conv/linear layer and the element-wise stages fused after it."""

    name: str
    module: nn.Module
    flatten_input: bool = False
    relu: bool = False
    pool: bool = False


def _arg(node, index: int, name: str, default):
    if len(node.args) > index:
        return node.args[index]
    return node.kwargs.get(name, default)


def _is_relu(node, modules) -> bool:
    if node.op == "call_function":
        return node.target in (F.relu, torch.relu) and not _arg(node, 1, "inplace", False)
    if node.op == "call_method":
        return node.target == "relu"
    return node.op == "call_module" and isinstance(modules[node.target], nn.ReLU)


def _pool_params(node, modules):
    """(kernel, stride, padding, dilation, ceil_mode) of a max-pool node, or None."""
    if node.op == "call_function" and node.target in (F.max_pool2d, torch.max_pool2d):
        kernel = _arg(node, 1, "kernel_size", None)
        stride = _arg(node, 2, "stride", None)
        return (kernel, stride if stride not in (None, []) else kernel, _arg(node, 3, "padding", 0),
                _arg(node, 4, "dilation", 1), _arg(node, 5, "ceil_mode", False))
    if node.op == "call_module" and isinstance(modules[node.target], nn.MaxPool2d):
        m = modules[node.target]
        return m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode
    return None


def _is_flatten(node, modules) -> bool:
    if node.op == "call_method" and node.target == "flatten":
        return _arg(node, 1, "start_dim", 0) == 1 and _arg(node, 2, "end_dim", -1) == -1
    if node.op == "call_function" and node.target is torch.flatten:
        return _arg(node, 1, "start_dim", 0) == 1 and _arg(node, 2, "end_dim", -1) == -1
    if node.op == "call_module" and isinstance(modules[node.target], nn.Flatten):
        m = modules[node.target]
        return m.start_dim == 1 and m.end_dim == -1
    return False


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _check_module(name: str, m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d):
        problems = []
        if m.groups != 1:
            problems.append(f"groups={m.groups}")
        if _pair(m.dilation) != (1, 1):
            problems.append(f"dilation={m.dilation}")
        if m.padding_mode != "zeros" or isinstance(m.padding, str):
            problems.append(f"padding={m.padding!r} ({m.padding_mode})")
        elif len(set(_pair(m.padding))) != 1:
            problems.append(f"non-square padding {m.padding}")
        if len(set(_pair(m.stride))) != 1 or _pair(m.stride)[0] not in (1, 2):
            problems.append(f"stride={m.stride}")
        if max(m.kernel_size) > 7:
            problems.append(f"kernel {m.kernel_size} larger than 7")
        if problems:
            raise QuantizationError(f"layer {name!r}: unsupported conv ({', '.join(problems)})")


def layer_plan(model: nn.Module) -> list[PlanLayer]:
    """Trace ``model`` into its conv/linear layers and the ReLU / 2x2 max-pool / flatten around them.

    Raises :class:`QuantizationError` for anything the engine cannot run (other ops, branches, ...).
    """
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as err:  # tracing failures come in many types
        raise QuantizationError(f"cannot trace {type(model).__name__} ({type(err).__name__}: {err})") from None
    modules = dict(model.named_modules())
    plan: list[PlanLayer] = []
    current = None  # the node holding the running activation
    pending_flatten = False
    for node in graph.nodes:
        if node.op == "placeholder":
            if current is not None:
                raise QuantizationError("models with more than one input are not supported")
            current = node
            continue
        if node.op == "output":
            if node.args[0] is not current:
                raise QuantizationError("the model output must be the last layer's output")
            break
        if node.op == "get_attr":
            raise QuantizationError(f"unsupported use of parameter {node.target!r} outside a layer")
        tensor_args = [a for a in node.all_input_nodes]
        if tensor_args != [current]:
            raise QuantizationError(f"unsupported data flow at {node.name!r}: the engine runs a plain chain of layers")
        if node.op == "call_module" and isinstance(modules[node.target], (nn.Conv2d, nn.Linear)):
            module = modules[node.target]
            _check_module(node.target, module)
            if (isinstance(module, nn.Linear) and not pending_flatten
                    and not (plan and isinstance(plan[-1].module, nn.Linear))):
                raise QuantizationError(f"layer {node.target!r}: a linear layer needs a flattened input")
            if isinstance(module, nn.Conv2d) and pending_flatten:
                raise QuantizationError(f"layer {node.target!r}: a conv cannot follow a flatten")
            plan.append(PlanLayer(node.target, module, flatten_input=pending_flatten))
            pending_flatten = False
        elif _is_relu(node, modules):
            if not plan or pending_flatten:
                raise QuantizationError(f"{node.name!r}: a ReLU must directly follow a conv/linear layer")
            plan[-1].relu = True
        elif (pool := _pool_params(node, modules)) is not None:
            kernel, stride, padding, dilation, ceil_mode = pool
            if (_pair(kernel) != (2, 2) or _pair(stride) != (2, 2) or _pair(padding) != (0, 0)
                    or _pair(dilation) != (1, 1) or ceil_mode):
                raise QuantizationError(f"{node.name!r}: only 2x2 max-pool with stride 2 is supported")
            if not plan or pending_flatten or plan[-1].pool or isinstance(plan[-1].module, nn.Linear):
                raise QuantizationError(f"{node.name!r}: a max-pool must follow a conv layer, once")
            plan[-1].pool = True
        elif _is_flatten(node, modules):
            if pending_flatten or (plan and isinstance(plan[-1].module, nn.Linear)):
                raise QuantizationError(f"{node.name!r}: unexpected flatten")
            pending_flatten = True
        else:
            raise QuantizationError(f"unsupported operation {node.op} {node.target!r} ({node.name!r})")
        current = node
    if not plan:
        raise QuantizationError(f"{type(model).__name__} has no conv or linear layer")
    if pending_flatten:
        raise QuantizationError("the model ends with a flatten")
    return plan


def plan_forward(plan: list[PlanLayer], x: torch.Tensor, outputs: list | None = None,
                 weights: dict | None = None) -> torch.Tensor:
    """Run the plan in float (optionally with substitute ``weights``, name -> (weight, bias));
    append each layer's post-ReLU/pool output to ``outputs``."""
    for layer in plan:
        if layer.flatten_input:
            x = x.flatten(1)
        m = layer.module
        w, b = (weights or {}).get(layer.name, (m.weight, m.bias))
        if isinstance(m, nn.Conv2d):
            x = F.conv2d(x, w, b, stride=_pair(m.stride)[0], padding=_pair(m.padding)[0])
        else:
            x = F.linear(x, w, b)
        if layer.pool:
            x = F.max_pool2d(x, 2)
        if layer.relu:
            x = F.relu(x)
        if outputs is not None:
            outputs.append(x)
    return x


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
    m = layer.module
    w = m.weight.detach().double().cpu().numpy()
    cout = w.shape[0]
    b = m.bias.detach().double().cpu().numpy() if m.bias is not None else np.zeros(cout)
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
    conv = isinstance(m, nn.Conv2d)
    try:
        return IntLayer(name=layer.name, kind="conv" if conv else "fc", weight=wq, bias=bq.astype(np.int32),
                        mult=np.array(mults, dtype=np.uint16), shift=np.array(shifts, dtype=np.uint8),
                        in_shape=in_shape, stride=_pair(m.stride)[0] if conv else 1,
                        padding=_pair(m.padding)[0] if conv else 0, relu=layer.relu, pool=layer.pool,
                        flatten_input=layer.flatten_input, in_scale=in_scale, out_scale=out_scale,
                        weight_scale=w_scale.astype(np.float32))
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
    plan = layer_plan(model)
    x = calib_ds.tensors[0]
    if len(x) == 0:
        raise ValueError("empty calibration set")
    input_shape = tuple(x.shape[1:])
    if len(input_shape) != 3:
        raise QuantizationError(f"inputs must be images (C, H, W), got {input_shape}")
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
    in_scale, shape = input_scale, input_shape
    for layer, store in zip(plan, outs):
        out_range = _range(torch.cat(store), method, percentile)
        out_scale = _f32(out_range / INT8_MAX) if out_range > 0 else 1.0
        in_shape = (int(np.prod(shape)),) if layer.flatten_input else shape
        q = _quantize_layer(layer, in_scale, out_scale, in_shape)
        layers.append(q)
        in_scale, shape = out_scale, q.out_shape
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

    def __init__(self, model: nn.Module, input_scale: float, out_scales: list[float]):
        super().__init__()
        self.model = model
        self.plan = layer_plan(model)
        self.input_scale = input_scale
        self.out_scales = out_scales

    def forward(self, x):
        x = _FakeQuant.apply(x, self.input_scale, -128, 127)
        for layer, s_out in zip(self.plan, self.out_scales):
            if layer.flatten_input:
                x = x.flatten(1)
            m = layer.module
            w = _fake_weight(m.weight)
            if isinstance(m, nn.Conv2d):
                x = F.conv2d(x, w, m.bias, stride=_pair(m.stride)[0], padding=_pair(m.padding)[0])
            else:
                x = F.linear(x, w, m.bias)
            if layer.pool:
                x = F.max_pool2d(x, 2)
            if layer.relu:
                x = F.relu(x)
            x = _FakeQuant.apply(x, s_out, -128, 127)
        return x


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
    wrapper = FakeQuantNet(model, qnet.input_scale, [layer.out_scale for layer in qnet.layers])
    wrapped_masks = {f"model.{k}": v for k, v in masks.items()}
    return train(wrapper, train_ds, config, masks=wrapped_masks, desc="qat")
