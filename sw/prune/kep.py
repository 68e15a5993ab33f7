"""KEP — kernel elements pruning (after Zhang, Zhao, Tian & Duan, "Intermediate-grained kernel elements pruning
with structured sparsity", Neural Networks).

Each k x k kernel plane (one (output, input) channel pair of a convolution) keeps only its ``keep`` most
significant elements (significance = |w|), so every kept plane does the same, smaller amount of work — a
structure the zero-skipping engine turns into saved cycles and that needs few indexes:

* ``mode="pattern"`` (the intermediate-grained structure, default): a layer has a small set of ``patterns``
  shared element patterns of ``keep`` positions each; every plane uses the one pattern that retains most of
  its significance. The patterns are found by alternating assignment and re-estimation (k-means style, each
  step never lowers the retained significance), starting from the most frequent per-plane top-``keep`` sets.
  Index cost: the pattern table plus ``ceil(log2 patterns)`` bits per kept plane. Over several rounds a
  plane only takes a pattern inside what it still has, so every plane mask stays exactly one of the layer's
  patterns.
* ``mode="free"``: each plane keeps its own top-``keep`` elements (a k*k-bit map per plane).

Training follows the paper's recipe: the elements scheduled for removal form a *prior-knowledge mask*; a
regularisation penalty (L2, applied as decoupled weight decay on exactly those elements, its strength
ramping up over the first ``ramp`` of the phase; :func:`penalty_finetune`) pushes them toward zero while the
network trains and the rest of it adapts; then they are cut (masked) and the network is fine-tuned with the
masks held at zero. ``penalty`` is the decay exponent of the phase: without an opposing data gradient the
scheduled elements would end it at ``exp(-penalty)`` of their size.

Entry points: :func:`kep_masks` (selection only), :func:`kep_prune` (penalty -> cut -> fine-tune at a given
``keep``), :func:`kep_step` / :func:`kep_prune_iterative` (the shared prune -> fine-tune loop of
:mod:`sparsegate.sw.prune.iterative`, ``keep`` following the sparsity schedule), and :func:`index_cost`, the index
bits a mask needs under the cheapest of the hierarchical encodings (used for every method in the structured
benchmark).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.data import TensorDataset

from sparsegate.sw.ir.golden import index_width
from sparsegate.sw.prune.counting import liveness
from sparsegate.sw.prune.masks import Masks, PruneError, apply_masks, check_ratio, copy_masks, mask_for, resolve_layers, topology, \
    weight_key, weight_sparsity
from sparsegate.sw.ml.models import prunable_layers
from sparsegate.sw.prune.api import PruneOptions, PruneResult
from sparsegate.sw.prune.params import param
from sparsegate.sw.prune.iterative import FineTuneConfig, IterativeResult, PruneStep, Schedule, ScheduleParams, accuracy, \
    finetune, iterative_prune
from sparsegate.sw.prune.shrink import UnsupportedLayerError, check_supported
from sparsegate.sw.ml.train import TrainConfig, train

MODES = ("pattern", "free")
ALLOCATIONS = ("global", "uniform")

__all__ = ["MODES", "ALLOCATIONS", "KEPConfig", "LayerPatterns", "KEPSelection", "KEPResult", "conv_layers", "keep_for_sparsity",
           "layer_element_mask", "kep_masks", "allocate_keep", "penalty_finetune", "kep_prune", "kep_step", "kep_prune_iterative",
           "LayerIndexCost", "IndexCost", "index_cost", "conv_sparsity"]


@dataclass
class KEPConfig:
    """How KEP selects and trains (see the module docstring)."""

    mode: str = "pattern"
    patterns: int = 8  # shared element patterns per layer (pattern mode)
    allocation: str = "global"  # how a sparsity target sets each layer's keep: "global" or "uniform"
    penalty: float = 4.0  # prior-mask penalty: decay exponent over the phase (0: no penalty phase, plain cut)
    penalty_epochs: int = 1  # epochs of training under the penalty before the cut
    ramp: float = 0.5  # the penalty grows linearly from 0 over this fraction of the penalty phase
    pattern_iters: int = 20  # assignment/re-estimation rounds of the pattern search

    def __post_init__(self):
        if self.mode not in MODES:
            raise PruneError(f"mode: expected one of {list(MODES)}, got {self.mode!r}")
        if self.allocation not in ALLOCATIONS:
            raise PruneError(f"allocation: expected one of {list(ALLOCATIONS)}, got {self.allocation!r}")
        if not isinstance(self.patterns, int) or self.patterns < 1:
            raise PruneError(f"patterns must be a positive integer, got {self.patterns!r}")
        if not (isinstance(self.penalty, (int, float)) and self.penalty >= 0 and math.isfinite(self.penalty)):
            raise PruneError(f"penalty must be a finite number >= 0, got {self.penalty!r}")
        if self.penalty_epochs < 0:
            raise PruneError(f"penalty_epochs must be >= 0, got {self.penalty_epochs}")
        self.ramp = check_ratio(self.ramp, "ramp", high_inclusive=True)
        if self.pattern_iters < 1:
            raise PruneError(f"pattern_iters must be >= 1, got {self.pattern_iters}")


@dataclass
class LayerPatterns:
    """The element structure KEP chose for one layer."""

    layer: str
    keep: int
    patterns: torch.Tensor | None  # (P, kh, kw) bool (pattern mode), None in free mode
    assignment: torch.Tensor | None  # (out, in) pattern index per plane, -1 for a plane with nothing kept
    retained: float  # fraction of the layer's |w| (over the kept entries before) that the selection keeps
    unmatched: int = 0  # planes whose earlier mask fits no pattern (they keep a pattern cut to their entries)

    def to_dict(self) -> dict:
        return {"layer": self.layer, "keep": self.keep, "retained": self.retained, "unmatched": self.unmatched,
                "patterns": None if self.patterns is None else self.patterns.int().flatten(1).tolist()}


@dataclass
class KEPSelection:
    masks: Masks
    layers: dict[str, LayerPatterns]


@dataclass
class KEPResult:
    masks: Masks
    layers: dict[str, LayerPatterns]
    val_accuracy_before: float  # the start model
    val_accuracy_cut: float  # right after the cut (after the penalty phase), before fine-tuning
    val_accuracy: float  # after fine-tuning
    penalty: dict = field(default_factory=dict)
    index: "IndexCost | None" = None

    def summary(self) -> dict:
        return {"val_accuracy_before": self.val_accuracy_before, "val_accuracy_cut": self.val_accuracy_cut,
                "val_accuracy": self.val_accuracy, "penalty": self.penalty,
                "layers": {k: v.to_dict() for k, v in self.layers.items()},
                "index": None if self.index is None else self.index.to_dict()}


def conv_layers(model: nn.Module, layers: Iterable[str] | None = None, what: str = "KEP") -> list[str]:
    """The conv layers among ``layers`` (default: all conv layers); a named linear layer is an error."""
    mods = prunable_layers(model)
    if layers is None:
        names = [n for n, m in mods.items() if isinstance(m, nn.Conv2d)]
        if not names:
            raise UnsupportedLayerError(f"{what}: the model has no conv layers")
        return names
    names = resolve_layers(model, layers)
    bad = [n for n in names if not isinstance(mods[n], nn.Conv2d)]
    if bad:
        raise UnsupportedLayerError(f"{what} prunes convolution kernels; layer {bad[0]!r} is a "
                                    f"{type(mods[bad[0]]).__name__}")
    return names


def keep_for_sparsity(elements: int, sparsity: float) -> int:
    """Elements per plane to keep so that at least the fraction ``sparsity`` of each plane is removed (>= 1)."""
    sparsity = check_ratio(sparsity, "sparsity")
    return max(1, min(elements, int(math.floor((1.0 - sparsity) * elements + 1e-9))))


def _topk_rows(score: torch.Tensor, k: int) -> torch.Tensor:
    """Bool rows marking each row's ``k`` largest entries (ties by position)."""
    order = torch.argsort(-score, dim=1, stable=True)[:, :k]
    out = torch.zeros_like(score, dtype=torch.bool)
    out.scatter_(1, order, True)
    return out


def _masked_topk(score: torch.Tensor, allowed: torch.Tensor, k: int) -> torch.Tensor:
    """Per row: the ``k`` largest entries of ``score`` among the ``allowed`` ones (fewer if not enough)."""
    return _topk_rows(torch.where(allowed, score, torch.full_like(score, -1.0)), k) & allowed


def _search_patterns(score: torch.Tensor, kept: torch.Tensor, keep: int, n_patterns: int, iters: int) \
        -> tuple[torch.Tensor, torch.Tensor, int]:
    """Shared patterns for the N planes (rows) with significance ``score`` and still-kept entries ``kept``.

    A plane may only take a pattern that is a subset of its kept entries (so its mask *is* the pattern); a
    pattern is re-estimated as the top-``keep`` of its members' summed significance within the intersection of
    their kept entries, which keeps it valid for all of them. Seeds: one pattern per distinct kept set when
    there are at most ``n_patterns`` of them (the previous round's patterns, or the dense layer), then the most
    frequent per-plane top sets. Returns (patterns (P, E), assignment (N,), planes without a valid pattern —
    they get their best pattern cut down to their kept entries; only possible after a different method)."""
    sets, group = torch.unique(kept, dim=0, return_inverse=True)
    seeds = []
    if sets.shape[0] <= n_patterns:
        for g in range(sets.shape[0]):
            seeds.append(_masked_topk(score[group == g].sum(0, keepdim=True), sets[g:g + 1], keep)[0])
    tops = _masked_topk(score, kept, keep)
    uniq, counts = torch.unique(tops, dim=0, return_counts=True)
    for idx in torch.argsort(-counts, stable=True).tolist():
        if len(seeds) >= n_patterns:
            break
        if not any(torch.equal(uniq[idx], p) for p in seeds):
            seeds.append(uniq[idx])
    patterns = torch.stack(seeds)

    def assign_rows(pats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feasible = ~(pats[None, :, :] & ~kept[:, None, :]).any(2)  # (N, P)
        retained = score @ pats.float().T
        best = torch.where(feasible, retained, torch.full_like(retained, -1.0)).argmax(1)
        none = ~feasible.any(1)
        best[none] = retained[none].argmax(1)
        return best, none

    assign, _ = assign_rows(patterns)
    for _ in range(iters):
        for p in range(patterns.shape[0]):
            members = assign == p
            if bool(members.any()):
                inter = kept[members].all(0, keepdim=True)
                patterns[p] = _masked_topk(score[members].sum(0, keepdim=True), inter, keep)[0]
        new_assign, _ = assign_rows(patterns)
        if torch.equal(new_assign, assign):
            break
        assign = new_assign
    assign, none = assign_rows(patterns)
    used = torch.unique(assign)
    remap = torch.full((patterns.shape[0],), -1, dtype=torch.long)
    remap[used] = torch.arange(used.numel())
    return patterns[used], remap[assign], int(none.sum())


def layer_element_mask(weight: torch.Tensor, keep: int, mode: str = "pattern", patterns: int = 8,
                       mask: torch.Tensor | None = None, iters: int = 20, layer: str = "layer") \
        -> tuple[torch.Tensor, LayerPatterns]:
    """The KEP mask of one conv weight ``(out, in, kh, kw)``: each plane keeps ``keep`` elements.

    Entries already masked (or zero) stay pruned and have no significance; a plane with nothing left stays
    empty. Returns (mask, structure)."""
    if weight.dim() != 4:
        raise UnsupportedLayerError(f"KEP: {layer!r} has a {weight.dim()}-D weight; it needs a conv weight "
                                    f"(out, in, kh, kw)")
    if mode not in MODES:
        raise PruneError(f"mode: expected one of {list(MODES)}, got {mode!r}")
    o, i, kh, kw = weight.shape
    elements = kh * kw
    if not isinstance(keep, int) or not 1 <= keep <= elements:
        raise PruneError(f"keep of layer {layer!r} must be an integer in [1, {elements}] (a {kh}x{kw} kernel), "
                         f"got {keep!r}")
    kept = (weight.detach() != 0) if mask is None else (weight.detach() != 0) & mask.bool()
    planes = kept.reshape(o * i, elements)
    score = (weight.detach().abs().reshape(o * i, elements) * planes).float()
    live = planes.any(1)
    total = float(score.sum()) or 1.0
    new = torch.zeros_like(planes)
    assignment = torch.full((o * i,), -1, dtype=torch.long)
    pats = None
    unmatched = 0
    if keep >= elements:  # nothing to prune: one all-kept pattern
        new = planes.clone()
        pats = torch.ones(1, elements, dtype=torch.bool)
        assignment[live] = 0
    elif bool(live.any()):
        s = score[live]
        if mode == "free":
            chosen = _topk_rows(s, keep)
        else:
            pats, assign, unmatched = _search_patterns(s, planes[live], keep, patterns, iters)
            chosen = pats[assign]
            assignment[live] = assign
        new[live] = chosen & planes[live]
    else:  # every plane is already empty
        pats = torch.zeros(0, elements, dtype=torch.bool)
    retained = float((score * new).sum()) / total
    structure = LayerPatterns(layer, keep, None if mode == "free" else pats.view(-1, kh, kw),
                              None if mode == "free" else assignment.view(o, i), retained, unmatched)
    return new.view(o, i, kh, kw), structure


def kep_masks(model: nn.Module, keep: int | Mapping[str, int], config: KEPConfig | None = None,
              masks: Masks | None = None, layers: Iterable[str] | None = None) -> KEPSelection:
    """KEP masks for ``layers`` (default: every conv layer): ``keep`` elements per plane (one number for all
    layers, or per layer). Other masks are carried over unchanged."""
    config = config or KEPConfig()
    check_supported(model, structural=False, what="KEP")
    if isinstance(keep, Mapping):
        names = conv_layers(model, list(keep))
        keeps = {n: keep[n] for n in names}
    else:
        names = conv_layers(model, layers)
        keeps = {n: keep for n in names}
    mods = prunable_layers(model)
    out = copy_masks(masks)
    structures = {}
    for n in names:
        key = weight_key(n)
        new, structure = layer_element_mask(mods[n].weight, keeps[n], config.mode, config.patterns,
                                            out.get(key), config.pattern_iters, n)
        out[key] = new
        structures[n] = structure
    return KEPSelection(out, structures)


def _current_keep(weight: torch.Tensor, mask: torch.Tensor | None) -> int:
    kept = (weight.detach() != 0) if mask is None else (weight.detach() != 0) & mask.bool()
    return int(kept.flatten(2).sum(2).max()) if kept.numel() else 0


def allocate_keep(model: nn.Module, sparsity: float, config: KEPConfig | None = None, masks: Masks | None = None,
                  layers: Iterable[str] | None = None) -> dict[str, int]:
    """Elements per plane for each conv layer so that the fraction ``sparsity`` of the layers' weights is gone.

    ``uniform``: every layer keeps ``keep_for_sparsity(kh*kw, sparsity)``. ``global`` (like a global magnitude
    threshold, but at plane-structure level): starting from each layer's current ``keep``, repeatedly lower
    the ``keep`` of the layer whose next step loses the least significance per removed weight — |w| in units
    of the layer's mean kept |w|, so layers of different weight scale compare fairly (the KEP selection is
    recomputed for every candidate ``keep``) — until the target is met; a layer never goes below 1.
    """
    config = config or KEPConfig()
    sparsity = check_ratio(sparsity, "sparsity")
    names = conv_layers(model, layers)
    mods = prunable_layers(model)
    if config.allocation == "uniform":
        return {n: keep_for_sparsity(mods[n].weight[0, 0].numel(), sparsity) for n in names}
    total = sum(mods[n].weight.numel() for n in names)
    budget = (1.0 - sparsity) * total  # weights that may stay
    options: dict[str, dict[int, tuple[float, int]]] = {}  # layer -> keep -> (retained |w|, kept count)
    current: dict[str, int] = {}
    for n in names:
        w = mods[n].weight.detach()
        mask = None if masks is None else masks.get(weight_key(n))
        top = _current_keep(w, mask)
        current[n] = max(1, top)
        options[n] = {}
        alive = (w != 0) if mask is None else (w != 0) & mask.bool()
        scale = float(w.abs()[alive].mean()) if bool(alive.any()) else 1.0  # layers compare scale-free
        for k in range(1, current[n] + 1):
            m, _ = layer_element_mask(w, k, config.mode, config.patterns, mask, config.pattern_iters, n)
            options[n][k] = (float((w.abs() * m).sum()) / scale, int(m.sum()))
    kept = sum(options[n][current[n]][1] for n in names)
    while kept > budget + 1e-9:
        best, best_cost = None, math.inf
        for n in names:
            k = current[n]
            if k <= 1:
                continue
            (r_hi, n_hi), (r_lo, n_lo) = options[n][k], options[n][k - 1]
            removed = n_hi - n_lo
            cost = (r_hi - r_lo) / removed if removed > 0 else 0.0
            if cost < best_cost:
                best, best_cost = n, cost
        if best is None:
            break  # every layer keeps one element per plane
        kept -= options[best][current[best]][1] - options[best][current[best] - 1][1]
        current[best] -= 1
    return current


# ----------------------------------------------------------------------------------------------- training

def _scheduled(model: nn.Module, masks: Masks | None, prior: Masks, names: list[str]) -> dict[str, torch.Tensor]:
    """Per layer: entries that are kept now but scheduled for removal by the prior mask."""
    mods = prunable_layers(model)
    return {n: mask_for(model, masks, weight_key(n)) & (mods[n].weight.detach() != 0) & ~prior[weight_key(n)]
            for n in names if weight_key(n) in prior}


def _scheduled_energy(model: nn.Module, scheduled: dict[str, torch.Tensor]) -> float:
    """Share of the layers' squared weight that sits on the scheduled entries."""
    mods = prunable_layers(model)
    sched = sum(float((mods[n].weight.detach()[m] ** 2).sum()) for n, m in scheduled.items())
    total = sum(float((mods[n].weight.detach() ** 2).sum()) for n in scheduled)
    return sched / total if total else 0.0


def _decay_weights(steps: int, lr: float, ramp: float) -> list[float]:
    """Per optimizer step of :func:`sparsegate.sw.ml.train.train`: the (ramp x learning rate) weight of that
    step's share of the penalty; the learning rates come from a dry run of the same one-cycle schedule."""
    dummy = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([dummy], lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, steps))
    ramp_steps = max(1, int(round(ramp * steps)))
    out = []
    for t in range(steps):
        out.append(min(1.0, (t + 1) / ramp_steps) * opt.param_groups[0]["lr"])
        opt.step()  # no gradient: a no-op that keeps the scheduler's step order legal
        sched.step()
    return out


def penalty_finetune(model: nn.Module, fit_ds: TensorDataset, masks: Masks | None, prior: Masks,
                     config: KEPConfig, train_config: TrainConfig) -> dict:
    """Train ``model`` in place for ``config.penalty_epochs`` with the prior-mask penalty on every entry that
    ``masks`` keeps but ``prior`` removes, the current ``masks`` held at zero.

    The penalty is an L2 term applied as decoupled weight decay (as AdamW does; inside Adam an L2 gradient is
    normalised away and cannot push faster than the learning rate): after each optimizer step the scheduled
    entries are scaled by ``1 - eta_t``, where ``eta_t`` follows the learning-rate schedule times a linear
    ramp over the first ``config.ramp`` of the phase, normalised so that — with no opposing data gradient —
    the entries end the phase at ``exp(-config.penalty)`` of their size. Returns the scheduled entries' share
    of the squared weight before and after the phase."""
    names = [n for n in prunable_layers(model) if weight_key(n) in prior]
    scheduled = _scheduled(model, masks, prior, names)
    before = _scheduled_energy(model, scheduled)
    info = {"penalty": config.penalty, "epochs": config.penalty_epochs, "scheduled_energy_before": before,
            "scheduled_energy_after": before}
    if config.penalty <= 0 or config.penalty_epochs <= 0 or not scheduled:
        return info
    steps = config.penalty_epochs * math.ceil(len(fit_ds) / train_config.batch_size)
    weights = _decay_weights(steps, train_config.lr, config.ramp)
    total = sum(weights) or 1.0
    etas = [1.0 - math.exp(-config.penalty * w / total) for w in weights]
    mods = prunable_layers(model)
    params = {n: mods[n].weight for n in scheduled}
    keep_factor = {n: m.to(params[n].dtype) for n, m in scheduled.items()}
    ours = {id(p) for p in params.values()}
    state = {"t": 0}

    def post_step(optimizer, args, kwargs) -> None:
        if not any(id(p) in ours for g in optimizer.param_groups for p in g["params"]):
            return  # another optimizer: not this phase's training
        eta = etas[min(state["t"], len(etas) - 1)]
        state["t"] += 1
        with torch.no_grad():
            for n, p in params.items():
                p.mul_(1.0 - eta * keep_factor[n])

    handle = register_optimizer_step_post_hook(post_step)
    try:
        cfg = TrainConfig(**{**asdict(train_config), "epochs": config.penalty_epochs})
        train(model, fit_ds, cfg, masks=copy_masks(masks), desc="kep penalty")
    finally:
        handle.remove()
    info["steps"] = state["t"]
    info["scheduled_energy_after"] = _scheduled_energy(model, scheduled)
    return info


def kep_prune(model: nn.Module, fit_ds: TensorDataset, val_ds: TensorDataset, keep: int | Mapping[str, int],
              config: KEPConfig | None = None, finetune_config: FineTuneConfig | None = None,
              masks: Masks | None = None, layers: Iterable[str] | None = None) -> KEPResult:
    """One-shot KEP in place: select (prior mask) -> train under the penalty -> cut -> fine-tune."""
    config = config or KEPConfig()
    finetune_config = finetune_config or FineTuneConfig()
    masks = copy_masks(masks)
    apply_masks(model, masks)
    before = accuracy(model, val_ds)
    selection = kep_masks(model, keep, config, masks, layers)
    penalty = penalty_finetune(model, fit_ds, masks, selection.masks, config, finetune_config.train_config(0))
    apply_masks(model, selection.masks)
    cut = accuracy(model, val_ds)
    finetune(model, fit_ds, selection.masks, finetune_config, 1)
    names = list(selection.layers)
    return KEPResult(selection.masks, selection.layers, before, cut, accuracy(model, val_ds), penalty,
                     index_cost(model, selection.masks, names))


def kep_step(fit_ds: TensorDataset | None, config: KEPConfig | None = None, layers: Iterable[str] | None = None,
             train_config: TrainConfig | None = None, val_ds: TensorDataset | None = None) -> PruneStep:
    """A step for :func:`sparsegate.sw.prune.iterative.iterative_prune`: each selected conv layer keeps the
    elements per plane that :func:`allocate_keep` gives it for the round's sparsity; with ``fit_ds`` and a
    positive penalty the model first trains under the prior-mask penalty (the step changes the model, as
    NRP does), then the scheduled elements are cut."""
    config = config or KEPConfig()
    train_config = train_config or FineTuneConfig().train_config()

    def step(model: nn.Module, masks: Masks, sparsity: float) -> Masks:
        keep = allocate_keep(model, sparsity, config, masks, layers)
        selection = kep_masks(model, keep, config, masks)
        info = {"keep": keep, "patterns": {n: (0 if s.patterns is None else int(s.patterns.shape[0]))
                                           for n, s in selection.layers.items()}}
        if fit_ds is not None:
            step.rounds += 1
            cfg = TrainConfig(**{**asdict(train_config), "seed": train_config.seed + 500 + step.rounds})
            info["penalty"] = penalty_finetune(model, fit_ds, masks, selection.masks, config, cfg)
            if val_ds is not None:  # the loop applies these masks next anyway
                apply_masks(model, selection.masks)
                info["val_accuracy_cut"] = accuracy(model, val_ds)
        step.last_info = info
        step.last_selection = selection
        return selection.masks

    step.rounds = 0
    step.last_info = {}
    step.last_selection = None
    return step


def kep_prune_iterative(model: nn.Module, fit_ds: TensorDataset, val_ds: TensorDataset, schedule: Schedule,
                        config: KEPConfig | None = None, finetune_config: FineTuneConfig | None = None,
                        masks: Masks | None = None, layers: Iterable[str] | None = None, progress: bool = True,
                        monitor_ds: TensorDataset | None = None,
                        base_val_accuracy: float | None = None) -> IterativeResult:
    """KEP under the shared schedule (target sparsity and/or accuracy budget over the conv layers);
    ``base_val_accuracy`` overrides the reference of the accuracy budget (default: the start model's)."""
    config = config or KEPConfig()
    finetune_config = finetune_config or FineTuneConfig()
    names = conv_layers(model, layers)
    step = kep_step(fit_ds, config, names, finetune_config.train_config(0), val_ds)
    return iterative_prune(model, step, fit_ds, val_ds, schedule, finetune_config, masks, names,
                           progress=progress, desc=f"kep-{config.mode}", base_val_accuracy=base_val_accuracy,
                           monitor_ds=monitor_ds)


# ----------------------------------------------------------------------------------------------- index cost

@dataclass(frozen=True)
class LayerIndexCost:
    layer: str
    kept: int  # live nonzero weights
    live_out: int
    live_in: int
    kept_planes: int
    distinct_plane_patterns: int
    plane_bits: int  # which (out, in) planes of the live filters are kept
    element_bits: int  # which elements of the kept planes are kept
    element_encoding: str  # "dense", "bitmap", "patterns" or "list"
    flat_bits: int  # per-weight (cin, ky, kx) index, as the v1 weight image stores it (unpadded)

    @property
    def bits(self) -> int:
        """The cheaper of the hierarchical (plane + element) encoding and the flat per-weight index."""
        return min(self.plane_bits + self.element_bits, self.flat_bits)

    @property
    def encoding(self) -> str:
        if self.flat_bits < self.plane_bits + self.element_bits:
            return "flat"
        plane = "planes" if self.plane_bits else ""
        elem = "" if self.element_encoding == "dense" else self.element_encoding
        return "+".join(p for p in (plane, elem) if p) or "none"

    @property
    def bits_per_kept(self) -> float:
        return self.bits / self.kept if self.kept else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(bits=self.bits, encoding=self.encoding, bits_per_kept=self.bits_per_kept)
        return d


@dataclass(frozen=True)
class IndexCost:
    layers: list[LayerIndexCost]

    @property
    def bits(self) -> int:
        return sum(c.bits for c in self.layers)

    @property
    def kept(self) -> int:
        return sum(c.kept for c in self.layers)

    @property
    def bits_per_kept(self) -> float:
        return self.bits / self.kept if self.kept else 0.0

    @property
    def flat_bits_per_kept(self) -> float:
        return sum(c.flat_bits for c in self.layers) / self.kept if self.kept else 0.0

    def to_dict(self) -> dict:
        return {"bits": self.bits, "kept": self.kept, "bits_per_kept": self.bits_per_kept,
                "flat_bits_per_kept": self.flat_bits_per_kept, "layers": [c.to_dict() for c in self.layers]}


def index_cost(model: nn.Module, masks: Masks | None = None, layers: Iterable[str] | None = None) -> IndexCost:
    """Index bits needed to locate the kept weights of the conv ``layers`` (default: all conv layers).

    Removed channels are assumed physically removed (:mod:`sparsegate.sw.prune.shrink`), so they cost nothing; in the
    remaining (live outputs x live inputs) block a layer is encoded hierarchically — a bitmap of kept planes
    per live filter (only if some plane is gone), then the kept elements of each kept plane as the cheapest
    of: nothing (all planes full), one k*k bitmap per plane, a table of the distinct plane patterns plus a
    pattern id per plane, or a list of ``bits(k*k)``-bit positions — unless the flat per-weight
    ``bits(in) + bits(kh) + bits(kw)`` index of the weight image is cheaper."""
    names = conv_layers(model, layers, what="index_cost")
    topo = topology(model)
    live = liveness(model, masks, topo)
    costs = []
    for n in names:
        k = live[n][0]
        rows = k.flatten(1).any(1)
        cols = k.any(0).flatten(1).any(1)
        sub = k[rows][:, cols]
        o, i, kh, kw = sub.shape
        elements = kh * kw
        kept = int(sub.sum())
        planes = sub.flatten(2).any(2) if sub.numel() else torch.zeros(o, i, dtype=torch.bool)
        n_planes = int(planes.sum())
        plane_bits = 0 if bool(planes.all()) else min(o * i, n_planes * index_width(i))
        pm = sub.flatten(2)[planes]  # (n_planes, elements)
        distinct = int(torch.unique(pm, dim=0).shape[0]) if n_planes else 0
        if n_planes == 0 or bool(pm.all()):
            element_bits, enc = 0, "dense"
        else:
            options = {"bitmap": n_planes * elements,
                       "patterns": distinct * elements + n_planes * index_width(distinct),
                       "list": kept * index_width(elements)}
            enc = min(options, key=lambda key: (options[key], key))
            element_bits = options[enc]
        flat = kept * (index_width(i) + index_width(kh) + index_width(kw))
        costs.append(LayerIndexCost(n, kept, o, i, n_planes, distinct, plane_bits, element_bits, enc, flat))
    return IndexCost(costs)


def conv_sparsity(model: nn.Module, masks: Masks | None = None) -> float:
    """Fraction of all conv weights that are pruned (masked or zero)."""
    return weight_sparsity(model, masks, conv_layers(model, what="conv_sparsity"))


@dataclass
class KEPParams(ScheduleParams):
    """The parameters of ``kep``: ``keep`` (elements per plane, one shot: penalty -> cut -> fine-tune) or a
    conv-weight sparsity target / accuracy budget under the shared schedule."""

    keep: int | dict[str, int] | None = param(None, "elements kept per kernel plane (one shot; a dict: per layer)",
                                              type=int)
    mode: str = param("pattern", "shared element patterns per layer, or free choice per plane", choices=MODES,
                      flag="--kep-mode")
    patterns: int = param(8, "shared patterns per layer (pattern mode)")
    penalty: float = param(4.0, "prior-mask penalty, decay exponent over the penalty phase (0: none)")
    penalty_epochs: int = param(1, "epochs under the penalty before each cut")
    allocation: str = param("global", "with a sparsity target: per-layer keep chosen globally or the same for all "
                                      "layers", choices=ALLOCATIONS)

    def __post_init__(self):
        if self.keep is None and not self.iterative:
            raise PruneError("method 'kep' needs --keep (elements per plane) or --target-sparsity/--max-drop")
        if self.keep is not None and self.iterative:
            raise PruneError("method 'kep': give --keep or --target-sparsity/--max-drop, not both")
        if self.iterative:
            self.schedule()
        self.config()

    def config(self) -> KEPConfig:
        return KEPConfig(mode=self.mode, patterns=self.patterns, penalty=self.penalty,
                         penalty_epochs=self.penalty_epochs, allocation=self.allocation)

    def check(self, model: nn.Module, options: PruneOptions, masks: Masks) -> None:
        """The checks that need the model (keep range, conv layers)."""
        check_supported(model, structural=False, what="kep")
        if self.keep is not None:
            kep_masks(model, self.keep, self.config(), masks, options.layers)
        else:
            conv_layers(model, options.layers)


def run_kep(model: nn.Module, options: PruneOptions, fit_ds: TensorDataset, val_ds: TensorDataset, masks: Masks,
            monitor_ds: TensorDataset | None = None) -> PruneResult:
    """Registry entry of ``kep`` (:class:`KEPParams`; fine-tune 4 epochs one shot, 2 per round iterative)."""
    p: KEPParams = options.params
    cfg = p.config()
    if p.keep is not None:
        res = kep_prune(model, fit_ds, val_ds, p.keep, cfg, options.finetune_config(4), masks, options.layers)
        out = PruneResult("kep", model, res.masks, res.val_accuracy, [], res.summary(), res)
    else:
        res = kep_prune_iterative(model, fit_ds, val_ds, p.schedule(), cfg, options.finetune_config(2), masks,
                                  options.layers, progress=options.progress, monitor_ds=monitor_ds)
        out = PruneResult("kep", model, res.masks, res.val_accuracy, res.history_dicts(),
                          {"val_accuracy": res.val_accuracy, "conv_sparsity": res.sparsity, "rounds": len(res.history)},
                          res, iterative=res)
    out.info["kep"] = asdict(cfg)
    return out
