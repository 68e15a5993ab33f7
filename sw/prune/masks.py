"""Pruning masks and the layer structure they act on.

A mask is a bool tensor per parameter name (``"conv1.weight"``, ``"fc1.bias"``), the same convention
:func:`sparsegate.sw.ml.train.train` and the checkpoints use: ``True`` keeps an entry, ``False`` pins it at
zero through fine-tuning and export. Masks for biases appear only where whole neurons/channels were
removed; a missing mask means "all kept".

This module holds what every pruning method shares:

* argument checks that raise :class:`PruneError` (a ``ValueError``) naming the field and the value;
* unstructured selection (per-layer and global magnitude);
* the network's chain structure (:func:`topology`: which layer consumes which layer's channels, and how
  many consumer input features one producer channel feeds), with structured views of a mask at every
  granularity the engine cares about — output channel/neuron, input channel/feature and conv kernel
  plane — and :func:`remove_channels` to cut a channel together with its now-useless fan-out weights.

Structure assumptions (checked where cheap): the prunable layers (conv/linear, in definition order) form
a chain; between two of them sit only element-wise ops with ``f(0) = 0`` (ReLU), max-pooling and
flattening, so a channel whose output is identically zero contributes nothing downstream.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import torch
from torch import nn

from sparsegate.sw.util.atomic_io import atomic_path
from sparsegate.sw.ml.models import prunable_layers
from sparsegate.sw.ml.train import Masks, apply_masks, check_masks

__all__ = [
    "Masks", "PruneError", "RatioError", "UnknownLayerError", "TargetUnreachableError", "MaskViolationError",
    "check_ratio", "check_fraction", "resolve_layers", "weight_key", "bias_key", "full_masks", "masks_from_weights",
    "merge_masks", "copy_masks", "apply_masks", "verify_masks", "mask_for", "layer_sparsity",
    "weight_sparsity", "magnitude_mask", "layer_magnitude_masks", "global_magnitude_masks", "LayerInfo",
    "topology", "output_alive", "input_alive", "plane_mask", "expand_plane_mask", "consumer_columns",
    "remove_channels", "channel_l1_norms", "save_masks", "load_masks",
]


class PruneError(ValueError):
    """A pruning request that cannot be carried out; the message names the offending field and value."""


class RatioError(PruneError):
    """A ratio/fraction argument outside its allowed range."""


class UnknownLayerError(PruneError):
    """A layer name that the model does not have."""


class TargetUnreachableError(PruneError):
    """A sparsity/FLOPs/accuracy target that the method cannot reach under its constraints."""


class MaskViolationError(PruneError):
    """A masked-out parameter entry is not zero."""


def check_ratio(value, field: str, *, high_inclusive: bool = False) -> float:
    """Return ``value`` as a float in [0, 1) (or [0, 1] with ``high_inclusive``) or raise :class:`RatioError`."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RatioError(f"{field} must be a number in [0, 1{']' if high_inclusive else ')'}, got {value!r}") from None
    ok = 0.0 <= number <= 1.0 if high_inclusive else 0.0 <= number < 1.0
    if not ok or math.isnan(number):
        interval = "[0, 1]" if high_inclusive else "[0, 1)"
        raise RatioError(f"{field} must be in {interval}, got {value!r}")
    return number


def check_fraction(value, field: str) -> float:
    """A budget such as an accuracy drop: a number in [0, 1]."""
    return check_ratio(value, field, high_inclusive=True)


def resolve_layers(model: nn.Module, names: Iterable[str] | None = None, *, field: str = "layers") -> list[str]:
    """The prunable layer names of ``model`` (all, in order, when ``names`` is None), checked to exist."""
    layers = list(prunable_layers(model))
    if names is None:
        return layers
    if isinstance(names, str):
        names = [names]
    names = list(names)
    unknown = [n for n in names if n not in layers]
    if unknown:
        raise UnknownLayerError(f"{field}: unknown layer {unknown[0]!r}; the model's prunable layers are {layers}")
    if not names:
        raise UnknownLayerError(f"{field}: empty layer list; the model's prunable layers are {layers}")
    return [n for n in layers if n in names]


def weight_key(layer: str) -> str:
    return f"{layer}.weight"


def bias_key(layer: str) -> str:
    return f"{layer}.bias"


def full_masks(model: nn.Module, layers: Iterable[str] | None = None) -> Masks:
    """All-kept weight masks for the prunable layers."""
    mods = prunable_layers(model)
    return {weight_key(n): torch.ones_like(mods[n].weight, dtype=torch.bool) for n in resolve_layers(model, layers)}


def masks_from_weights(model: nn.Module, include_bias: bool = False) -> Masks:
    """Masks equal to the current nonzero pattern of the prunable weights (and biases)."""
    masks = {}
    for name, module in prunable_layers(model).items():
        masks[weight_key(name)] = module.weight.detach() != 0
        if include_bias and module.bias is not None:
            masks[bias_key(name)] = module.bias.detach() != 0
    return masks


def copy_masks(masks: Mapping[str, torch.Tensor] | None) -> Masks:
    return {k: v.clone().bool() for k, v in (masks or {}).items()}


def merge_masks(*all_masks: Mapping[str, torch.Tensor] | None) -> Masks:
    """Entry-wise AND of several mask dicts (a key missing from one dict counts as all-kept there)."""
    out: Masks = {}
    for masks in all_masks:
        for key, mask in (masks or {}).items():
            out[key] = out[key] & mask.bool() if key in out else mask.clone().bool()
    return out


def mask_for(model: nn.Module, masks: Mapping[str, torch.Tensor] | None, key: str) -> torch.Tensor:
    """The mask of parameter ``key``, all-kept if absent."""
    if masks and key in masks:
        return masks[key].bool()
    return torch.ones_like(dict(model.named_parameters())[key], dtype=torch.bool)


def verify_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    """Raise :class:`MaskViolationError` if any masked-out entry of the model is nonzero."""
    check_masks(model, dict(masks))
    params = dict(model.named_parameters())
    for key, mask in masks.items():
        bad = int((params[key].detach()[~mask.bool()] != 0).sum())
        if bad:
            raise MaskViolationError(f"{key}: {bad} masked-out entries are nonzero")


def layer_sparsity(model: nn.Module, masks: Mapping[str, torch.Tensor] | None, layer: str) -> float:
    """Fraction of ``layer``'s weights that are masked out or zero."""
    w = prunable_layers(model)[layer].weight.detach()
    kept = (w != 0) & mask_for(model, masks, weight_key(layer))
    return 1.0 - float(kept.sum()) / w.numel()


def weight_sparsity(model: nn.Module, masks: Mapping[str, torch.Tensor] | None = None,
                    layers: Iterable[str] | None = None) -> float:
    """Fraction of all weights of ``layers`` (default: every prunable layer) that are masked out or zero."""
    mods = prunable_layers(model)
    total = kept = 0
    for n in resolve_layers(model, layers):
        w = mods[n].weight.detach()
        total += w.numel()
        kept += int(((w != 0) & mask_for(model, masks, weight_key(n))).sum())
    return 1.0 - kept / total


def _kept(weight: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    alive = weight.detach() != 0
    return alive & mask.bool() if mask is not None else alive


def magnitude_mask(weight: torch.Tensor, ratio: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Keep the largest-|w| entries so that a fraction ``ratio`` of *all* entries is pruned.

    Entries already masked (or zero) stay pruned; if they already exceed ``ratio`` nothing more is pruned.
    Ties are broken by position, so exactly ``round(ratio * numel)`` entries are pruned when possible.
    """
    ratio = check_ratio(ratio, "ratio", high_inclusive=True)
    kept = _kept(weight, mask)
    n_prune = int(round(ratio * weight.numel()))
    extra = n_prune - int((~kept).sum())
    if extra <= 0:
        return kept
    score = weight.detach().abs().flatten().clone()
    score[~kept.flatten()] = -1.0
    order = torch.argsort(score, stable=True)
    new = kept.flatten().clone()
    new[order[weight.numel() - int(kept.sum()):][:extra]] = False
    return new.view_as(kept)


def layer_magnitude_masks(model: nn.Module, ratios: Mapping[str, float], masks: Masks | None = None) -> Masks:
    """Per-layer magnitude pruning: layer ``name`` loses the fraction ``ratios[name]`` of all its weights."""
    mods = prunable_layers(model)
    resolve_layers(model, list(ratios), field="ratios")
    out = copy_masks(masks)
    for name, ratio in ratios.items():
        check_ratio(ratio, f"ratio of layer {name!r}", high_inclusive=True)
        key = weight_key(name)
        out[key] = magnitude_mask(mods[name].weight, ratio, out.get(key))
    return out


def global_magnitude_masks(model: nn.Module, sparsity: float, masks: Masks | None = None,
                           layers: Iterable[str] | None = None) -> Masks:
    """One |w| threshold over all ``layers`` so that the fraction ``sparsity`` of their weights is pruned."""
    sparsity = check_ratio(sparsity, "sparsity")
    names = resolve_layers(model, layers)
    mods = prunable_layers(model)
    out = copy_masks(masks)
    kept = [_kept(mods[n].weight, out.get(weight_key(n))) for n in names]
    scores = torch.cat([torch.where(k, mods[n].weight.detach().abs(), torch.full_like(mods[n].weight, -1.0)).flatten()
                        for n, k in zip(names, kept)])
    total = scores.numel()
    extra = int(round(sparsity * total)) - int((scores < 0).sum())
    if extra > 0:
        order = torch.argsort(scores, stable=True)
        flat = scores >= 0
        flat[order[total - int(flat.sum()):][:extra]] = False
        offset = 0
        for n, k in zip(names, kept):
            out[weight_key(n)] = flat[offset:offset + k.numel()].view_as(k)
            offset += k.numel()
    else:
        for n, k in zip(names, kept):
            out[weight_key(n)] = k
    return out


# ----------------------------------------------------------------------------------------------- structure

@dataclass(frozen=True)
class LayerInfo:
    """One prunable layer in the chain, as traced on one input."""

    name: str
    kind: str  # "conv" or "fc"
    in_shape: tuple
    out_shape: tuple
    in_units: int  # input channels (conv) or input features (fc)
    out_units: int  # output channels (conv) or neurons (fc)
    producer: str | None  # the layer whose output this one consumes (None for the first layer)
    consumer: str | None  # the layer consuming this one's output (None for the last layer)
    group: int  # consumer input features fed by one of this layer's output channels (1 unless conv -> fc)
    consumer_padded: bool  # the consumer is a convolution with zero padding

    @property
    def positions(self) -> int:
        """Output positions per channel (1 for fc)."""
        return int(math.prod(self.out_shape[1:])) if self.kind == "conv" else 1


def topology(model: nn.Module, input_shape: tuple | None = None) -> dict[str, LayerInfo]:
    """Trace one forward pass and describe the chain of prunable layers; raises :class:`PruneError` if
    the layers do not form a chain that this module can reason about."""
    input_shape = tuple(input_shape or model.input_shape)
    mods = prunable_layers(model)
    shapes: dict[str, tuple] = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, (tuple(i[0].shape[1:]), tuple(o.shape[1:]))))
             for n, m in mods.items()]
    try:
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
        model.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    names = list(mods)
    info: dict[str, LayerInfo] = {}
    for i, name in enumerate(names):
        m = mods[name]
        if name not in shapes:
            raise PruneError(f"layer {name!r} is not used in the forward pass")
        kind = "conv" if isinstance(m, nn.Conv2d) else "fc"
        if kind == "conv" and m.groups != 1:
            raise PruneError(f"layer {name!r}: grouped convolutions are not supported (groups={m.groups})")
        out_units = m.out_channels if kind == "conv" else m.out_features
        in_units = m.in_channels if kind == "conv" else m.in_features
        consumer = names[i + 1] if i + 1 < len(names) else None
        group, padded = 1, False
        if consumer is not None:
            c = mods[consumer]
            c_in = c.in_channels if isinstance(c, nn.Conv2d) else c.in_features
            if c_in % out_units:
                raise PruneError(f"layer {consumer!r} takes {c_in} inputs, not a multiple of the {out_units} "
                                 f"outputs of {name!r}: the prunable layers do not form a chain")
            group = c_in // out_units
            if isinstance(c, nn.Conv2d):
                if group != 1:
                    raise PruneError(f"layer {consumer!r} does not consume {name!r} channel for channel")
                padded = any(p != 0 for p in (c.padding if isinstance(c.padding, tuple) else (c.padding,))) \
                    if not isinstance(c.padding, str) else c.padding != "valid"
        info[name] = LayerInfo(name, kind, shapes[name][0], shapes[name][1], in_units, out_units,
                               names[i - 1] if i else None, consumer, group, padded)
    return info


def output_alive(weight_mask: torch.Tensor) -> torch.Tensor:
    """Per output channel/neuron: does it keep any fan-in weight?"""
    return weight_mask.bool().flatten(1).any(1)


def input_alive(weight_mask: torch.Tensor) -> torch.Tensor:
    """Per input channel (conv) or feature (fc): does any kept weight read it?"""
    m = weight_mask.bool()
    return m.any(0).flatten(1).any(1) if m.dim() == 4 else m.any(0)


def plane_mask(weight_mask: torch.Tensor) -> torch.Tensor:
    """Conv kernel planes ``(out, in)`` that keep at least one element."""
    if weight_mask.dim() != 4:
        raise PruneError(f"plane_mask needs a conv weight mask (4-D), got shape {tuple(weight_mask.shape)}")
    return weight_mask.bool().flatten(2).any(2)


def expand_plane_mask(planes: torch.Tensor, kernel_shape: tuple) -> torch.Tensor:
    """Broadcast a ``(out, in)`` plane mask to a full conv weight mask of shape ``(out, in, kh, kw)``."""
    return planes.bool()[:, :, None, None].expand(*planes.shape, *kernel_shape[-2:]).clone()


def consumer_columns(info: LayerInfo, channels: torch.Tensor) -> torch.Tensor:
    """Indices of the consumer's input channels/features fed by the given output ``channels`` of ``info``
    (a bool vector over the outputs, or integer indices)."""
    idx = torch.nonzero(channels, as_tuple=False).flatten() if channels.dtype == torch.bool else channels.long()
    return (idx[:, None] * info.group + torch.arange(info.group)[None, :]).flatten()


def remove_channels(model: nn.Module, masks: Masks | None, layer: str, remove: torch.Tensor,
                    topo: dict[str, LayerInfo] | None = None) -> Masks:
    """Masks with output channels/neurons ``remove`` (bool over the outputs) of ``layer`` cut: their fan-in
    weights, their bias and the consumer's fan-out weights that read them are all masked out.

    The last layer's outputs are the network's outputs and cannot be removed.
    """
    topo = topo or topology(model)
    if layer not in topo:
        raise UnknownLayerError(f"layer: unknown layer {layer!r}; the model's prunable layers are {list(topo)}")
    info = topo[layer]
    remove = remove.bool()
    if remove.shape != (info.out_units,):
        raise PruneError(f"remove: expected a bool vector of {info.out_units} outputs of {layer!r}, "
                         f"got shape {tuple(remove.shape)}")
    if info.consumer is None and bool(remove.any()):
        raise PruneError(f"layer {layer!r} is the output layer; its outputs cannot be removed")
    out = copy_masks(masks)
    mods = prunable_layers(model)
    wk = weight_key(layer)
    wmask = mask_for(model, out, wk).clone()
    wmask[remove] = False
    out[wk] = wmask
    if mods[layer].bias is not None:
        bmask = mask_for(model, out, bias_key(layer)).clone()
        bmask[remove] = False
        out[bias_key(layer)] = bmask
    if info.consumer is not None and bool(remove.any()):
        ck = weight_key(info.consumer)
        cmask = mask_for(model, out, ck).clone()
        cmask[:, consumer_columns(info, remove)] = False
        out[ck] = cmask
    return out


def channel_l1_norms(model: nn.Module, masks: Masks | None, layer: str) -> torch.Tensor:
    """L1 norm of each output channel's (masked) fan-in weights: the filter-pruning criterion."""
    w = prunable_layers(model)[layer].weight.detach()
    return (w.abs() * mask_for(model, masks, weight_key(layer))).flatten(1).sum(1)


# ----------------------------------------------------------------------------------------------- export

def save_masks(path: str | Path, masks: Masks) -> None:
    """Write masks on their own (atomically), e.g. for the hardware flow."""
    with atomic_path(path) as tmp:
        torch.save({k: v.bool() for k, v in masks.items()}, tmp)


def load_masks(path: str | Path) -> Masks:
    path = Path(path)
    if not path.is_file():
        raise PruneError(f"{path}: no such mask file")
    try:
        masks = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise PruneError(f"{path}: not a readable mask file ({type(err).__name__}: {err})") from None
    if not isinstance(masks, dict) or not all(isinstance(v, torch.Tensor) for v in masks.values()):
        raise PruneError(f"{path}: expected a dict of parameter name -> bool tensor")
    return {k: v.bool() for k, v in masks.items()}
