"""Physical shrinking: turn removed channels into a smaller dense model with identical outputs.

Every pruning method here expresses its result as masks (:mod:`sparsegate.sw.prune.masks`); channels that a method
removed (feature maps, filters, neurons) are still there, just zero. :func:`shrink_model` builds a copy of the
model in which those channels are really gone — each conv/linear layer is replaced by a narrower one holding
only the *live* rows and columns — and checks on random inputs that the small model computes exactly what the
masked model computes. The remaining (element- and plane-level) zeros inside the kept channels stay as masks
on the small model, so it can still be fine-tuned, quantized and exported.

Which channels go is decided by :func:`sparsegate.sw.prune.counting.liveness`: an output channel is kept when it
can be nonzero (a kept fan-in weight from a live input, or a positive bias under the ReLU) and something
downstream reads it. Under the chain assumptions of :mod:`sparsegate.sw.prune.masks` (ReLU/max-pool/flatten between
the prunable layers) removing every other channel is exact; ``verify=True`` (default) proves it on random
inputs and raises :class:`ShrinkError` otherwise, so a model that breaks the assumptions is refused rather
than silently changed.

:func:`check_supported` is the shared guard of the structured methods (KEP, coarse, task-guided, shrinking):
grouped and dilated convolutions, other convolution types and — for channel removal — normalisation or other
parametrised layers between the prunable ones raise :class:`UnsupportedLayerError` instead of producing masks
whose meaning would be wrong.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from sparsegate.sw.util.atomic_io import atomic_path
from sparsegate.sw.prune.counting import liveness
from sparsegate.sw.prune.masks import Masks, PruneError, apply_masks, bias_key, check_masks, copy_masks, topology, weight_key
from sparsegate.sw.ml.models import MODELS, build_model, count_layers, prunable_layers
from sparsegate.sw.ml.train import load_envelope

SHRUNK_FORMAT = "sparsegate-shrunk"
SHRUNK_VERSION = 1

__all__ = ["UnsupportedLayerError", "ShrinkError", "check_supported", "ShrinkResult", "shrink_model",
           "save_shrunk", "load_shrunk", "model_name_of"]


class UnsupportedLayerError(PruneError):
    """The model has a layer whose structure the method cannot reason about (grouped/dilated conv, ...)."""


class ShrinkError(PruneError):
    """The shrunk model would not compute what the masked model computes."""


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def check_supported(model: nn.Module, *, structural: bool = True, what: str = "pruning") -> None:
    """Raise :class:`UnsupportedLayerError` for layers ``what`` cannot handle correctly.

    Always refused: grouped convolutions (a weight "plane" is then not an (output, input) channel pair),
    dilated convolutions (the kernel-element geometry, the MAC/index model and the engine assume dilation 1)
    and convolution types other than ``nn.Conv2d`` (they would be skipped silently: ``prunable_layers`` only
    sees Conv2d/Linear). With ``structural=True`` (channel removal) also any other layer with parameters or
    buffers (BatchNorm, LayerNorm, ...): a removed channel's output would not stay zero through it.
    """
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            if m.groups != 1:
                raise UnsupportedLayerError(f"{what}: layer {name!r} is a grouped convolution (groups={m.groups}); "
                                            f"only groups=1 is supported")
            if _pair(m.dilation) != (1, 1):
                raise UnsupportedLayerError(f"{what}: layer {name!r} is a dilated convolution (dilation="
                                            f"{_pair(m.dilation)}); only dilation 1 is supported")
        elif isinstance(m, nn.modules.conv._ConvNd):
            raise UnsupportedLayerError(f"{what}: layer {name!r} is a {type(m).__name__}; only nn.Conv2d and "
                                        f"nn.Linear layers are supported")
        elif structural and not isinstance(m, nn.Linear) and name and \
                (any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False))):
            raise UnsupportedLayerError(f"{what}: layer {name!r} ({type(m).__name__}) has its own parameters/"
                                        f"buffers; removing a channel in front of it would not leave a zero "
                                        f"output, so structured pruning refuses it")


def model_name_of(model: nn.Module) -> str | None:
    """The CLI name of a reference model (``lenet5``, ``vgg``, ...), or None for another class."""
    return next((name for name, cls in MODELS.items() if type(model) is cls), None)


@dataclass
class ShrinkResult:
    model: nn.Module  # the small dense model (same class, narrower layers)
    masks: Masks  # the remaining masks, restricted to the kept rows/columns
    kept_outputs: dict[str, torch.Tensor]  # per layer: indices of the original output channels kept
    kept_inputs: dict[str, torch.Tensor]  # per layer: indices of the original input channels/features kept
    widths: dict[str, tuple[int, int]]  # per layer: (inputs, outputs) of the small layer
    params_before: int = 0
    params_after: int = 0
    macs_before: int = 0
    macs_after: int = 0
    max_abs_diff: float | None = None  # largest output difference seen by the verification
    info: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {"widths": {k: list(v) for k, v in self.widths.items()}, "params_before": self.params_before,
                "params_after": self.params_after, "macs_before": self.macs_before, "macs_after": self.macs_after,
                "max_abs_diff": self.max_abs_diff}


def _resized(module: nn.Module, n_in: int, n_out: int) -> nn.Module:
    """An empty layer like ``module`` with ``n_in`` inputs and ``n_out`` outputs."""
    bias = module.bias is not None
    if isinstance(module, nn.Conv2d):
        return nn.Conv2d(n_in, n_out, module.kernel_size, stride=module.stride, padding=module.padding,
                         dilation=module.dilation, groups=1, bias=bias, padding_mode=module.padding_mode)
    return nn.Linear(n_in, n_out, bias=bias)


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)


def _input_index(topo, kept_outputs: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    info = topo[name]
    if info.producer is None:
        return torch.arange(info.in_units)
    prod = topo[info.producer]
    idx = kept_outputs[info.producer]
    return (idx[:, None] * prod.group + torch.arange(prod.group)[None, :]).flatten()


@torch.no_grad()
def shrink_model(model: nn.Module, masks: Masks | None = None, *, verify: bool = True, samples: int = 16,
                 input_shape: tuple | None = None, seed: int = 0, rtol: float = 1e-4) -> ShrinkResult:
    """A smaller dense copy of ``model`` without its dead channels; ``model`` itself is not changed.

    ``verify`` compares the outputs of the masked and the shrunk model on ``samples`` random inputs and raises
    :class:`ShrinkError` when they differ by more than ``rtol`` of the output scale.
    """
    check_supported(model, structural=True, what="shrink")
    masks = copy_masks(masks)
    check_masks(model, masks)
    input_shape = tuple(input_shape or model.input_shape)
    reference = copy.deepcopy(model)
    apply_masks(reference, masks)
    topo = topology(reference, input_shape)
    live = liveness(reference, masks, topo)
    mods = prunable_layers(reference)
    small = copy.deepcopy(reference)
    kept_out: dict[str, torch.Tensor] = {}
    kept_in: dict[str, torch.Tensor] = {}
    new_masks: Masks = {}
    widths: dict[str, tuple[int, int]] = {}
    for name, info in topo.items():
        k, _inp, alive = live[name]
        out_idx = torch.nonzero(alive, as_tuple=False).flatten()
        empty = out_idx.numel() == 0
        if empty:  # nothing survives: keep one all-zero channel so the layer still exists (exact: output 0)
            out_idx = torch.zeros(1, dtype=torch.long)
        kept_out[name] = out_idx
        in_idx = _input_index(topo, kept_out, name)
        kept_in[name] = in_idx
        m = mods[name]
        w = m.weight.detach()
        wk = k[out_idx][:, in_idx]
        new = _resized(m, in_idx.numel(), out_idx.numel())
        new.weight.copy_(w[out_idx][:, in_idx] * wk.to(w.dtype))
        if m.bias is not None:
            b = m.bias.detach()[out_idx].clone()
            if empty:
                b.zero_()
            new.bias.copy_(b)
            if bias_key(name) in masks:
                bm = masks[bias_key(name)][out_idx].clone()
                if empty:
                    bm[:] = False
                if not bool(bm.all()):
                    new_masks[bias_key(name)] = bm
        new.train(m.training)
        if not bool(wk.all()):
            new_masks[weight_key(name)] = wk.clone()
        _replace(small, name, new)
        widths[name] = (in_idx.numel(), out_idx.numel())
    before = count_layers(reference, input_shape)
    after = count_layers(small, input_shape)
    result = ShrinkResult(small, new_masks, kept_out, kept_in, widths,
                          params_before=sum(c.params for c in before), params_after=sum(c.params for c in after),
                          macs_before=sum(c.macs for c in before), macs_after=sum(c.macs for c in after))
    if verify:
        result.max_abs_diff = _verify(reference, small, input_shape, samples, seed, rtol)
    return result


@torch.no_grad()
def _verify(reference: nn.Module, small: nn.Module, input_shape: tuple, samples: int, seed: int,
            rtol: float) -> float:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, *input_shape, generator=gen)
    was = reference.training, small.training
    reference.eval()
    small.eval()
    try:
        a, b = reference(x), small(x)
    finally:
        reference.train(was[0])
        small.train(was[1])
    diff = float((a - b).abs().max())
    scale = float(a.abs().max()) or 1.0
    if diff > rtol * scale + 1e-6:
        raise ShrinkError(f"shrink: the shrunk model's outputs differ from the masked model's by up to {diff:.3g} "
                          f"(output scale {scale:.3g}); the model does not follow the chain assumptions "
                          f"(ReLU/max-pool/flatten between the prunable layers)")
    return diff


# ------------------------------------------------------------------------------------------- persistence

def save_shrunk(path: str | Path, result: ShrinkResult, model_name: str, meta: dict | None = None) -> None:
    """Write a shrunk model (layer widths, weights, masks) atomically; :func:`load_shrunk` rebuilds it."""
    if model_name not in MODELS:
        raise PruneError(f"model_name: expected one of {sorted(MODELS)}, got {model_name!r}")
    num_classes = list(prunable_layers(result.model).values())[-1].weight.shape[0]
    payload = {"format": SHRUNK_FORMAT, "version": SHRUNK_VERSION, "model": model_name,
               "num_classes": int(num_classes), "widths": {k: list(v) for k, v in result.widths.items()},
               "state_dict": result.model.state_dict(), "masks": {k: v.bool() for k, v in result.masks.items()},
               "meta": meta or {}}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_shrunk(path: str | Path) -> tuple[nn.Module, Masks, dict]:
    """Rebuild a model written by :func:`save_shrunk`: (model, masks, meta)."""
    payload = load_envelope(path, SHRUNK_FORMAT, SHRUNK_VERSION, "shrunk-model", PruneError)
    try:
        model = build_model(payload["model"], payload["num_classes"])
        mods = prunable_layers(model)
        for name, (n_in, n_out) in payload["widths"].items():
            _replace(model, name, _resized(mods[name], int(n_in), int(n_out)))
        model.load_state_dict(payload["state_dict"])
        masks = payload["masks"]
        check_masks(model, masks)
    except (KeyError, RuntimeError, ValueError) as err:
        raise PruneError(f"{path}: inconsistent shrunk model ({err})") from None
    return model, masks, payload["meta"]
