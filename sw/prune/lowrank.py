"""Low-rank factorization of fully connected and convolutional layers, ranks chosen for a target compression.

* **FC layers** — truncated SVD: ``W (out, in) ≈ U_r S_r V_r^T`` becomes two layers, ``first = sqrt(S_r) V_r^T``
  (in -> r, no bias) and ``second = U_r sqrt(S_r)`` (r -> out, the original bias): ``r (in + out)`` weights
  instead of ``in * out``.
* **Conv layers** — channel decomposition (Zhang et al., "Accelerating Very Deep Convolutional Networks",
  2016, without their nonlinear reconstruction; Jaderberg et al.'s scheme of a low-rank filter basis): the
  kernel unfolded as ``(C_out, C_in * kh * kw)`` is truncated by SVD into a ``kh x kw`` convolution onto ``r``
  basis maps (same stride/padding, no bias) followed by a ``1 x 1`` convolution ``r -> C_out`` with the
  original bias: ``r (C_in kh kw + C_out)`` weights instead of ``C_out C_in kh kw``. (Tucker-2/CP
  decompositions of the kernel are not implemented.)

At full rank both reproduce the original layer (up to float rounding). Ranks for a target compression
``c`` (the factorized layers keep ``1/c`` of their dense weights) are chosen by :func:`choose_ranks`:

* ``uniform`` — every layer gets ``floor(in * out / (c (in + out)))``;
* ``energy`` — one global budget: rank increments are bought greedily in order of the singular-value energy
  they keep (``sigma_k^2 / ||W||_F^2``) per weight they cost, so layers with fast-decaying spectra get lower
  ranks.

The factorized model is an ordinary model whose prunable layers are ``fc1.first``, ``fc1.second``, ...:
:func:`sparsegate.sw.prune.counting.layer_table`, the masks and fine-tuning of :mod:`sparsegate.sw.ml.train` work on it
unchanged, so it composes with pruning both ways — factorize a pruned checkpoint (the masked weights are
decomposed), and/or prune the factors afterwards (:func:`lowrank_prune` with ``sparsity``).
:func:`save_lowrank` / :func:`load_lowrank` keep the ranks with the weights.
"""
from __future__ import annotations

import heapq
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from sparsegate.sw.util.atomic_io import atomic_path
from sparsegate.sw.prune.masks import Masks, PruneError, TargetUnreachableError, apply_masks, check_ratio, copy_masks, global_magnitude_masks, \
    resolve_layers
from sparsegate.sw.ml.models import build_model, prunable_layers
from sparsegate.sw.prune.api import PruneOptions, PruneResult
from sparsegate.sw.prune.params import param

ALLOCATIONS = ("uniform", "energy")
LOWRANK_FORMAT = "sparsegate-lowrank"
LOWRANK_VERSION = 1


class LowRankLinear(nn.Module):
    """``second(first(x))``: in -> rank -> out."""

    def __init__(self, in_features: int, out_features: int, rank: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.first = nn.Linear(in_features, rank, bias=False)
        self.second = nn.Linear(rank, out_features, bias=bias)

    def forward(self, x):
        return self.second(self.first(x))


class LowRankConv2d(nn.Module):
    """A ``kh x kw`` convolution onto ``rank`` basis maps, then a ``1 x 1`` convolution to the outputs."""

    def __init__(self, conv: nn.Conv2d, rank: int):
        super().__init__()
        self.in_channels, self.out_channels, self.rank = conv.in_channels, conv.out_channels, rank
        self.first = nn.Conv2d(conv.in_channels, rank, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                               bias=False, padding_mode=conv.padding_mode)
        self.second = nn.Conv2d(rank, conv.out_channels, 1, bias=conv.bias is not None)

    def forward(self, x):
        return self.second(self.first(x))


def _matrix(layer: nn.Module) -> torch.Tensor:
    return layer.weight.detach().flatten(1)


def max_rank(layer: nn.Module) -> int:
    return min(_matrix(layer).shape)


def factor_weights(layer: nn.Module, rank: int) -> int:
    """Weights of ``layer`` factorized at ``rank``."""
    m, n = _matrix(layer).shape
    return rank * (m + n)


def break_even_rank(layer: nn.Module) -> int:
    """The largest rank whose factors hold fewer weights than the dense layer (0 if none)."""
    m, n = _matrix(layer).shape
    return min(min(m, n), (m * n - 1) // (m + n))


def _check_layer(name: str, layer: nn.Module) -> None:
    if isinstance(layer, nn.Conv2d) and layer.groups != 1:
        raise PruneError(f"layer {name!r}: grouped convolutions cannot be factorized (groups={layer.groups})")
    if not isinstance(layer, (nn.Linear, nn.Conv2d)):
        raise PruneError(f"layer {name!r} is a {type(layer).__name__}, not a Linear/Conv2d")


@torch.no_grad()
def factorize_layer(layer: nn.Module, rank: int) -> nn.Module:
    """The rank-``rank`` SVD factorization of a Linear or Conv2d layer (see the module docstring)."""
    _check_layer("layer", layer)
    limit = max_rank(layer)
    if not (isinstance(rank, int) and 1 <= rank <= limit):
        raise PruneError(f"rank must be an integer in [1, {limit}] for a {tuple(layer.weight.shape)} layer, got {rank!r}")
    w = _matrix(layer).double()
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    root = s[:rank].sqrt()
    first = (root.view(-1, 1) * vh[:rank]).to(layer.weight.dtype)
    second = (u[:, :rank] * root.view(1, -1)).to(layer.weight.dtype)
    if isinstance(layer, nn.Linear):
        new = LowRankLinear(layer.in_features, layer.out_features, rank, bias=layer.bias is not None)
        new.first.weight.copy_(first)
        new.second.weight.copy_(second)
    else:
        new = LowRankConv2d(layer, rank)
        new.first.weight.copy_(first.view(rank, *layer.weight.shape[1:]))
        new.second.weight.copy_(second.view(layer.out_channels, rank, 1, 1))
    if layer.bias is not None:
        new.second.bias.copy_(layer.bias.detach())
    return new


def default_layers(model: nn.Module) -> list[str]:
    """Every prunable layer but the last (the classifier's few outputs make it cheap and rank-hungry)."""
    return resolve_layers(model)[:-1]


def choose_ranks(model: nn.Module, target: float, layers: list[str] | None = None,
                 allocation: str = "energy") -> dict[str, int]:
    """Ranks so that the factorized ``layers`` keep at most ``1/target`` of their dense weights."""
    if allocation not in ALLOCATIONS:
        raise PruneError(f"allocation: expected one of {list(ALLOCATIONS)}, got {allocation!r}")
    try:
        target = float(target)
    except (TypeError, ValueError):
        raise PruneError(f"target_compression must be a number > 1, got {target!r}") from None
    if not (target > 1 and math.isfinite(target)):
        raise PruneError(f"target_compression must be a number > 1, got {target!r}")
    mods = prunable_layers(model)
    names = resolve_layers(model, layers) if layers is not None else default_layers(model)
    if not names:
        raise PruneError("layers: no layer to factorize")
    for n in names:
        _check_layer(n, mods[n])
    dense = {n: mods[n].weight.numel() for n in names}
    budget = sum(dense.values()) / target
    cost = {n: sum(_matrix(mods[n]).shape) for n in names}
    if allocation == "uniform":
        ranks = {n: min(max_rank(mods[n]), int(dense[n] // (target * cost[n]))) for n in names}
        low = [n for n, r in ranks.items() if r < 1]
        if low:
            raise TargetUnreachableError(f"target_compression {target:g}: layer {low[0]!r} would get rank 0 "
                                         f"(even rank 1 keeps 1/{dense[low[0]] / cost[low[0]]:.1f} of its weights)")
        return ranks
    ranks = {n: 1 for n in names}
    spent = sum(cost.values())
    if spent > budget:
        raise TargetUnreachableError(f"target_compression {target:g}: rank 1 in every layer already needs {spent:,} "
                                     f"weights, the budget is {budget:,.0f}")
    energy = {}
    for n in names:
        s = torch.linalg.svdvals(_matrix(mods[n]).double())
        energy[n] = (s.pow(2) / s.pow(2).sum().clamp(min=1e-30)).tolist()
    cap = {n: max(1, break_even_rank(mods[n])) for n in names}
    heap = [(-energy[n][1] / cost[n], i, n) for i, n in enumerate(names) if cap[n] > 1]
    heapq.heapify(heap)
    while heap:
        _, i, n = heapq.heappop(heap)
        if spent + cost[n] > budget:
            continue  # this layer's next increment does not fit; cheaper layers may still
        ranks[n] += 1
        spent += cost[n]
        if ranks[n] < cap[n]:
            heapq.heappush(heap, (-energy[n][ranks[n]] / cost[n], i, n))
    return ranks


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def factorize(model: nn.Module, ranks: dict[str, int], masks: Masks | None = None) -> nn.Module:
    """Replace each layer in ``ranks`` by its factorization, in place (masks are applied first, so a pruned
    layer's masked weights are what is decomposed); records the ranks on ``model.lowrank_ranks``."""
    mods = prunable_layers(model)
    resolve_layers(model, list(ranks), field="ranks")
    if masks:
        apply_masks(model, masks)
    for name, rank in ranks.items():
        _check_layer(name, mods[name])
        _set_module(model, name, factorize_layer(mods[name], rank))
    model.lowrank_ranks = {**getattr(model, "lowrank_ranks", {}), **ranks}
    return model


def remaining_masks(masks: Masks | None, ranks: dict[str, int]) -> Masks:
    """The masks of the layers that were not factorized (factorized layers start dense)."""
    return {k: v for k, v in copy_masks(masks).items() if k.rsplit(".", 1)[0] not in ranks}


# ---------------------------------------------------------------------------------------------- files

def save_lowrank(path: str | Path, model: nn.Module, model_name: str, masks: Masks | None = None,
                 meta: dict | None = None) -> None:
    """Weights, ranks, masks and metadata of a factorized model, written atomically."""
    payload = {"format": LOWRANK_FORMAT, "version": LOWRANK_VERSION, "model": model_name,
               "num_classes": _num_classes(model),
               "ranks": dict(getattr(model, "lowrank_ranks", {})), "state_dict": model.state_dict(),
               "masks": {k: v.bool() for k, v in (masks or {}).items()}, "meta": meta or {}}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def _num_classes(model: nn.Module) -> int:
    last = list(prunable_layers(model).values())[-1]
    return last.out_features if isinstance(last, nn.Linear) else last.out_channels


def load_lowrank(path: str | Path) -> tuple[nn.Module, Masks, dict]:
    """Inverse of :func:`save_lowrank`: (model, masks, meta)."""
    from sparsegate.sw.ml.train import CheckpointError, check_masks, load_envelope

    payload = load_envelope(path, LOWRANK_FORMAT, LOWRANK_VERSION, "low-rank model", CheckpointError)
    try:
        model = build_model(payload["model"], payload["num_classes"])
        factorize(model, {k: int(v) for k, v in payload["ranks"].items()})
        model.load_state_dict(payload["state_dict"])
        masks = payload["masks"]
        check_masks(model, masks)
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{path}: inconsistent low-rank model ({err})") from None
    return model, masks, payload["meta"]


# ------------------------------------------------------------------------------------------- pipeline

@dataclass
class LowRankResult:
    ranks: dict[str, int]
    allocation: str
    target_compression: float
    masks: Masks
    factorized_weights: int  # weights of the factorized layers after factorization
    dense_weights: int  # the same layers' dense weights
    val_accuracy_factorized: float  # right after the SVD, before fine-tuning
    val_accuracy: float
    sparsity: float | None = None  # factor-weight sparsity after the optional pruning
    val_accuracy_before_prune: float | None = None
    wall_time_s: float = 0.0
    history: list[dict] = field(default_factory=list)

    @property
    def achieved_compression(self) -> float:
        return self.dense_weights / self.factorized_weights

    def summary(self) -> dict:
        return {"ranks": self.ranks, "allocation": self.allocation, "target_compression": self.target_compression,
                "achieved_compression": self.achieved_compression, "factorized_weights": self.factorized_weights,
                "dense_weights": self.dense_weights, "val_accuracy_factorized": self.val_accuracy_factorized,
                "val_accuracy_before_prune": self.val_accuracy_before_prune, "val_accuracy": self.val_accuracy,
                "factor_sparsity": self.sparsity, "wall_time_s": self.wall_time_s}


def lowrank_prune(model: nn.Module, fit_ds: TensorDataset, val_ds: TensorDataset, target: float | None,
                  allocation: str, finetune_config, masks: Masks | None = None, layers: list[str] | None = None,
                  sparsity: float | None = None, ranks: dict[str, int] | None = None) -> LowRankResult:
    """Factorize ``model`` in place (ranks from ``target``/``allocation`` unless given), fine-tune, then
    optionally prune the factors to ``sparsity`` (global magnitude over the factorized layers) and fine-tune
    again. ``finetune_config`` is a :class:`sparsegate.sw.prune.iterative.FineTuneConfig`."""
    from sparsegate.sw.prune.iterative import accuracy, finetune

    start = time.perf_counter()
    if ranks is None:
        ranks = choose_ranks(model, target, layers, allocation)
    mods = prunable_layers(model)
    resolve_layers(model, list(ranks), field="ranks")
    dense = sum(mods[n].weight.numel() for n in ranks)
    factored = sum(factor_weights(mods[n], r) for n, r in ranks.items())
    factorize(model, ranks, masks)
    masks = remaining_masks(masks, ranks)
    acc0 = accuracy(model, val_ds)
    finetune(model, fit_ds, masks, finetune_config, 0)
    acc = accuracy(model, val_ds)
    result = LowRankResult(dict(ranks), allocation, target, masks, factored, dense, acc0, acc)
    if sparsity is not None:
        factor_layers = [f"{n}.{part}" for n in ranks for part in ("first", "second")]
        result.masks = global_magnitude_masks(model, sparsity, masks, factor_layers)
        apply_masks(model, result.masks)
        finetune(model, fit_ds, result.masks, finetune_config, 1)
        result.val_accuracy_before_prune, result.val_accuracy = acc, accuracy(model, val_ds)
        result.sparsity = sparsity
    result.wall_time_s = time.perf_counter() - start
    return result


def parse_ranks(text: str) -> dict[str, int]:
    """``"fc1=32,conv2=20"`` -> ``{"fc1": 32, "conv2": 20}``."""
    ranks = {}
    for item in (s.strip() for s in text.split(",") if s.strip()):
        name, sep, value = item.partition("=")
        try:
            ranks[name.strip()] = int(value)
        except ValueError:
            raise PruneError(f"ranks: expected LAYER=RANK items such as fc1=32, got {item!r}") from None
        if not sep:
            raise PruneError(f"ranks: expected LAYER=RANK items such as fc1=32, got {item!r}")
    if not ranks:
        raise PruneError("ranks: empty list")
    return ranks


@dataclass
class LowRankParams:
    """The parameters of ``lowrank``: a compression target or explicit ranks, then optionally prune the factors."""

    target_compression: float | None = param(None, "the factorized layers keep 1/C of their dense weights (C > 1)",
                                             type=float)
    ranks: str | dict[str, int] | None = param(None, "explicit ranks, e.g. fc1=32,conv2=20 (instead of a target)",
                                               type=str)
    rank_allocation: str = param("energy", "share the weight budget by singular-value energy per weight, or "
                                           "uniformly", choices=ALLOCATIONS)
    target_sparsity: float | None = param(None, "then prune the factors to this sparsity (global magnitude)",
                                          type=float)

    def __post_init__(self):
        if (self.target_compression is None) == (self.ranks is None):
            raise PruneError("method 'lowrank' needs --target-compression or --ranks (one of them)")
        if isinstance(self.ranks, str):
            self.ranks = parse_ranks(self.ranks)
        if self.target_sparsity is not None:
            self.target_sparsity = check_ratio(self.target_sparsity, "target_sparsity")
        if self.rank_allocation not in ALLOCATIONS:
            raise PruneError(f"rank_allocation: expected one of {list(ALLOCATIONS)}, got {self.rank_allocation!r}")

    def check(self, model: nn.Module, options: PruneOptions, masks: Masks) -> None:
        """The checks that need the model (explicit ranks against the layers)."""
        if self.ranks is None:
            return
        mods = prunable_layers(model)
        resolve_layers(model, list(self.ranks), field="ranks")
        for name, rank in self.ranks.items():
            if not 1 <= rank <= max_rank(mods[name]):
                raise PruneError(f"ranks: {name}={rank} outside [1, {max_rank(mods[name])}]")


def run_lowrank(model: nn.Module, options: PruneOptions, fit_ds: TensorDataset, val_ds: TensorDataset,
                masks: Masks, monitor_ds: TensorDataset | None = None) -> PruneResult:
    """Registry entry of ``lowrank`` (:class:`LowRankParams`; 3 fine-tune epochs after factorizing and again
    after pruning the factors). The model is factorized in place (save it with :func:`save_lowrank`)."""
    p: LowRankParams = options.params
    ranks = p.ranks
    if ranks is None:
        apply_masks(model, masks)
        ranks = choose_ranks(model, p.target_compression, options.layers, p.rank_allocation)
    res = lowrank_prune(model, fit_ds, val_ds, p.target_compression, p.rank_allocation, options.finetune_config(3),
                        masks, options.layers, p.target_sparsity, ranks=ranks)
    return PruneResult("lowrank", model, res.masks, res.val_accuracy, res.history, res.summary(), res)
