"""SRA — sparseness ratio allocation (after Guo, Zhou, Zhou & Kimura, ISCAS 2018).

SRA decides what percentage of each layer's weights to prune so that the network as a whole reaches a
higher sparseness at the same accuracy than a uniform or single-threshold rule. The paper's abstract
fixes the idea (per-layer pruned-weight percentage, iterative pruning with retraining, then neuron
re-pruning); the allocation rule below is our concrete reading of it, using each layer's measured
sensitivity *and* its size:

1. Each round, measure every layer's sensitivity curve on the validation split
   (:func:`sparsegate.sw.prune.sensitivity.sensitivity_analysis`, weight granularity): the cross-entropy increase
   ``d_l(q)`` when the layer alone loses the fraction ``q`` of its remaining weights (made monotone).
2. Turn each curve into cost-per-removed-weight segments: the points ``(q * n_l, d_l(q))`` where ``n_l`` is
   the layer's remaining weight count, reduced to their lower convex hull.
3. The round must remove ``R`` weights (from the geometric schedule). Take hull segments of all layers in
   order of increasing cost per removed weight until ``R`` are removed, the last one partially. This is
   the exact optimum of the convexified problem "minimise the summed predicted loss increase subject to
   removing R weights": large, insensitive layers give up the most, small sensitive layers the least.
4. Prune each layer by magnitude to its allocated fraction, fine-tune, check the validation accuracy
   (:func:`sparsegate.sw.prune.iterative.iterative_prune`), repeat.

Per round a layer loses at most ``max_layer_ratio`` of its remaining weights and never drops below
``min_kept`` weights. With ``nrp_drop`` (registry method ``sra-nrp``) each round also re-prunes neurons after its
weights, before the fine-tune; then the guard and the sensitivity probe both read training digits, so the
validation digits only judge the path.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from torch import nn
from torch.utils.data import TensorDataset

from sparsegate.sw.prune.masks import Masks, PruneError, check_ratio, layer_magnitude_masks, mask_for, resolve_layers, weight_key
from sparsegate.sw.ml.data import first_samples
from sparsegate.sw.ml.models import prunable_layers
from sparsegate.sw.prune.api import PruneOptions, PruneResult
from sparsegate.sw.prune.iterative import FineTuneConfig, IterativeResult, PruneStep, Schedule, ScheduleParams, \
    iterative_prune, iterative_summary
from sparsegate.sw.prune.nrp import CALIB_SAMPLES, NRPGuard, nrp_prune
from sparsegate.sw.prune.sensitivity import DEFAULT_RATIOS, METRICS, SensitivityResult, sensitivity_analysis


@dataclass
class SRAConfig:
    ratios: Sequence[float] = DEFAULT_RATIOS  # sensitivity grid (fractions of the remaining weights)
    metric: str = "loss"  # "loss" (smooth, default) or "accuracy"
    max_layer_ratio: float = 0.95  # at most this fraction of a layer's remaining weights per round
    min_kept: int = 8  # never prune a layer below this many weights
    probe_size: int | None = None  # measure sensitivity on the first N samples of the probe data (None: all)
    nrp_drop: float | None = None  # re-prune neurons in every round, guarded at this accuracy drop (None: off)

    def __post_init__(self):
        if self.metric not in METRICS:
            raise PruneError(f"metric: expected one of {list(METRICS)}, got {self.metric!r}")
        self.max_layer_ratio = check_ratio(self.max_layer_ratio, "max_layer_ratio")
        if self.min_kept < 0:
            raise PruneError(f"min_kept must be >= 0, got {self.min_kept}")


@dataclass
class Allocation:
    """Per-layer fraction of the remaining weights to prune this round, and the predicted costs."""

    fractions: dict[str, float]
    removed: dict[str, int]
    predicted_cost: float
    requested: int
    feasible: bool

    def as_info(self) -> dict:
        return {"fractions": {k: round(v, 5) for k, v in self.fractions.items()}, "removed": dict(self.removed),
                "predicted_cost": self.predicted_cost, "feasible": self.feasible}


def _lower_hull(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Lower convex hull of points sorted by x (monotone chain), starting at the first point."""
    hull: list[tuple[float, float]] = []
    for p in points:
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) <= 0:
                hull.pop()
            else:
                break
        hull.append(p)
    return hull


def allocate(sens: SensitivityResult, remaining: dict[str, int], n_remove: int, metric: str = "loss",
             max_layer_ratio: float = 0.95, min_kept: int = 8) -> Allocation:
    """Split ``n_remove`` weight removals over the layers (see the module docstring, steps 2-3)."""
    if n_remove < 0:
        raise PruneError(f"n_remove must be >= 0, got {n_remove}")
    segments = []  # (slope, -layer size, layer, x0, x1, y0, y1)
    for layer, n in remaining.items():
        cap = min(max_layer_ratio, 1.0 - min_kept / n) if n > 0 else 0.0
        if cap <= 0:
            continue
        curve = sens.curves[layer]
        drops = sens.drops(layer, metric)
        pts = [(0.0, 0.0)]
        for q, d in zip(curve.ratios, drops):
            if q >= cap:
                # interpolate the drop at the cap and stop
                qa, da = pts[-1][0] / n, pts[-1][1]
                d_cap = da + (d - da) * (cap - qa) / (q - qa) if q > qa else d
                pts.append((cap * n, d_cap))
                break
            pts.append((q * n, d))
        hull = _lower_hull(pts)
        for (x0, y0), (x1, y1) in zip(hull, hull[1:]):
            if x1 > x0:
                segments.append(((y1 - y0) / (x1 - x0), -n, layer, x0, x1, y0, y1))
    segments.sort(key=lambda s: (s[0], s[1]))
    taken = {layer: 0.0 for layer in remaining}
    cost, need = 0.0, float(n_remove)
    for slope, _, layer, x0, x1, y0, y1 in segments:
        if need <= 0:
            break
        take = min(x1 - x0, need)
        taken[layer] += take
        cost += slope * take
        need -= take
    fractions = {layer: (taken[layer] / n if n else 0.0) for layer, n in remaining.items()}
    removed = {layer: int(round(taken[layer])) for layer in remaining}
    return Allocation(fractions, removed, cost, n_remove, need <= 0.5)


def sra_step(probe_ds: TensorDataset, config: SRAConfig | None = None, layers: Iterable[str] | None = None,
             progress: bool = False, nrp_ds: TensorDataset | None = None) -> PruneStep:
    """A step for :func:`iterative_prune`: measure sensitivity on ``probe_ds`` (the validation digits, or with
    every-round NRP the guard's training digits), allocate, prune; with ``config.nrp_drop``, then
    re-prune neurons (:func:`sparsegate.sw.prune.nrp.nrp_prune`), guarded and calibrated on ``nrp_ds``. The last
    allocation and sensitivity are kept on the step as ``last_info`` / ``last_sensitivity``."""
    config = config or SRAConfig()
    probe = first_samples(probe_ds, config.probe_size)
    if config.nrp_drop is not None and nrp_ds is None:
        raise PruneError("nrp_ds: neuron re-pruning in every round needs the data its guard reads")

    def step(model: nn.Module, masks: Masks, sparsity: float) -> Masks:
        names = resolve_layers(model, layers)
        mods = prunable_layers(model)
        remaining = {n: int(((mods[n].weight.detach() != 0) & mask_for(model, masks, weight_key(n))).sum())
                     for n in names}
        total = sum(mods[n].weight.numel() for n in names)
        n_remove = int(round(sparsity * total)) - (total - sum(remaining.values()))
        sens = sensitivity_analysis(model, probe, masks, names, config.ratios, "weight", progress=progress)
        alloc = allocate(sens, remaining, max(0, n_remove), config.metric, config.max_layer_ratio, config.min_kept)
        ratios = {n: 1.0 - (remaining[n] - alloc.removed[n]) / mods[n].weight.numel() for n in names}
        step.last_info = {**alloc.as_info(), "kept": {n: remaining[n] - alloc.removed[n] for n in names}}
        step.last_sensitivity = sens
        masks = layer_magnitude_masks(model, ratios, masks)
        if config.nrp_drop is not None:
            nrp = nrp_prune(model, masks, nrp_ds, NRPGuard(max_accuracy_drop=config.nrp_drop), layers=names)
            step.last_info["nrp_removed"] = {n: len(v) for n, v in nrp.removed.items() if v}
            masks = nrp.masks
        return masks

    step.last_info = {}
    step.last_sensitivity = None
    return step


@dataclass
class SRAResult:
    iterative: IterativeResult
    allocations: list[dict] = field(default_factory=list)
    sensitivity: SensitivityResult | None = None

    @property
    def masks(self) -> Masks:
        return self.iterative.masks


def sra_prune(model: nn.Module, fit_ds: TensorDataset, val_ds: TensorDataset, schedule: Schedule,
              finetune: FineTuneConfig | None = None, config: SRAConfig | None = None, masks: Masks | None = None,
              layers: Iterable[str] | None = None, progress: bool = True,
              monitor_ds: TensorDataset | None = None) -> SRAResult:
    """Iterative SRA pruning with fine-tuning; ``model`` is left pruned (masks in the result)."""
    layers = resolve_layers(model, layers)
    probe_ds, nrp_ds = val_ds, None
    if config is not None and config.nrp_drop is not None:
        # every decision inside the path (NRP's guard, the sensitivity probe) reads training digits, so the
        # validation digits stay the loop's unbiased judge of a path that goes deep
        probe_ds = nrp_ds = first_samples(fit_ds, CALIB_SAMPLES)
    step = sra_step(probe_ds, config, layers, nrp_ds=nrp_ds)
    result = iterative_prune(model, step, fit_ds, val_ds, schedule, finetune, masks, layers, progress=progress,
                             desc="sra", monitor_ds=monitor_ds)
    return SRAResult(result, [r.info for r in result.history], step.last_sensitivity)


def run_sra(model: nn.Module, options: PruneOptions, fit_ds: TensorDataset, val_ds: TensorDataset, masks: Masks,
            monitor_ds: TensorDataset | None = None, config: SRAConfig | None = None) -> PruneResult:
    """Registry entry of ``sra`` (``options.params``: :class:`ScheduleParams`; 3 fine-tune epochs per round)."""
    p: ScheduleParams = options.params
    res = sra_prune(model, fit_ds, val_ds, p.schedule(), options.finetune_config(3), config, masks=masks,
                    layers=options.layers, progress=options.progress, monitor_ds=monitor_ds)
    it = res.iterative
    return PruneResult(options.method, model, it.masks, it.val_accuracy, it.history_dicts(), iterative_summary(it),
                       res, sensitivity=res.sensitivity, iterative=it)


def run_sra_nrp(model: nn.Module, options: PruneOptions, fit_ds: TensorDataset, val_ds: TensorDataset,
                masks: Masks, monitor_ds: TensorDataset | None = None) -> PruneResult:
    """Registry entry of ``sra-nrp``: SRA with neuron re-pruning in every round, before the round's fine-tune,
    guarded at ``options.nrp_drop``; the guard and the sensitivity probe read the first
    :data:`~sparsegate.sw.prune.nrp.CALIB_SAMPLES` training digits."""
    return run_sra(model, options, fit_ds, val_ds, masks, monitor_ds, SRAConfig(nrp_drop=options.nrp_drop))
