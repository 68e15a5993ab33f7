"""ACRA — automatic compression ratio allocation (after Liu, Kong & Yu, ICMLC 2020).

Two strategies that reach a target FLOPs reduction of the whole network (we count FLOPs as the MACs a
zero-skipping engine needs, :func:`sparsegate.sw.prune.counting.layer_table`):

* **uniform** (:func:`acra_uniform`): one compression ratio ``r`` for every layer; a binary search over
  ``r`` finds the ratio whose network MAC reduction is within ``tolerance`` (default 0.01 = one percent of
  the dense network's MACs) of the target.
* **sensitivity-based** (:func:`acra_sensitivity`): from each layer's accuracy sensitivity curve
  (:mod:`sparsegate.sw.prune.sensitivity`), a layer gets the largest ratio whose accuracy drop stays under a
  common threshold ``t``; a binary search over ``t`` meets the same FLOPs target. Insensitive layers are
  pruned harder, sensitive ones are spared.

Both work at **filter** granularity as in the paper — a ratio removes that fraction of a layer's remaining
output channels (fc: neurons) with the smallest filter L1 norm, together with the consumer's weights that
read them; the output layer keeps its outputs — and at **weight** granularity (fraction of the remaining
weights, smallest |w| first, every layer). The pruned model is then fine-tuned (:func:`acra_prune`).

Pruning at filter granularity moves the MAC count in steps (one channel of a small layer can be several
percent of the network); when no ratio lands within the tolerance, :class:`TargetUnreachableError` names
the nearest reachable reductions.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

from torch import nn
from torch.utils.data import TensorDataset

from sparsegate.sw.prune.counting import layer_table
from sparsegate.sw.prune.masks import Masks, PruneError, TargetUnreachableError, apply_masks, check_ratio, copy_masks, \
    resolve_layers, topology
from sparsegate.sw.prune.api import PruneOptions, PruneResult
from sparsegate.sw.prune.params import param
from sparsegate.sw.prune.iterative import FineTuneConfig, accuracy, finetune as finetune_model
from sparsegate.sw.prune.sensitivity import DEFAULT_RATIOS, GRANULARITIES, SensitivityResult, prune_fraction, sensitivity_analysis

STRATEGIES = ("uniform", "sensitivity")
TIE_SLOPE = 1e-6  # makes flat (zero-drop) stretches of a sensitivity curve strictly increasing


@dataclass
class AcraResult:
    strategy: str
    granularity: str
    target: float  # requested MAC reduction
    achieved: float  # measured MAC reduction of the returned masks
    masks: Masks
    ratios: dict[str, float]  # per-layer fraction of the remaining channels/weights pruned
    parameter: float  # the searched value: the ratio (uniform) or the accuracy-drop threshold (sensitivity)
    iterations: int
    search: list[dict] = field(default_factory=list)  # (parameter, reduction) of each probe
    sensitivity: SensitivityResult | None = None

    def summary(self) -> dict:
        return {"strategy": self.strategy, "granularity": self.granularity, "target_flops_reduction": self.target,
                "achieved_flops_reduction": self.achieved, "parameter": self.parameter,
                "ratios": self.ratios, "iterations": self.iterations}


def _layers_for(model: nn.Module, granularity: str, layers: Iterable[str] | None):
    if granularity not in GRANULARITIES:
        raise PruneError(f"granularity: expected one of {list(GRANULARITIES)}, got {granularity!r}")
    topo = topology(model)
    names = resolve_layers(model, layers)
    if granularity == "filter":
        if layers is not None:
            out = [n for n in names if topo[n].consumer is None]
            if out:
                raise PruneError(f"layers: {out[0]!r} is the output layer; filter granularity cannot prune it")
        names = [n for n in names if topo[n].consumer is not None]
    return topo, names


def masks_for_ratios(model: nn.Module, ratios: dict[str, float], granularity: str, masks: Masks | None = None,
                     topo=None) -> Masks:
    """Prune each layer by its ratio (fraction of its remaining channels / weights)."""
    topo = topo or topology(model)
    out = copy_masks(masks)
    for name, r in ratios.items():
        if r > 0:
            out = prune_fraction(model, out, name, r, granularity, topo)
    return out


def _reduction(model: nn.Module, masks: Masks) -> float:
    return layer_table(model, masks).total.mac_reduction


def _binary_search(evaluate: Callable[[float], tuple[float, Masks]], lo: float, hi: float, target: float,
                   tolerance: float, max_iter: int, field_name: str, what: str) -> tuple[float, float, Masks, int, list]:
    """Find p in [lo, hi] with |evaluate(p) - target| <= tolerance; evaluate is non-decreasing in p."""
    search = []
    f_lo, m_lo = evaluate(lo)
    search.append({"parameter": lo, "reduction": f_lo})
    if abs(f_lo - target) <= tolerance:
        return lo, f_lo, m_lo, 1, search
    f_hi, m_hi = evaluate(hi)
    search.append({"parameter": hi, "reduction": f_hi})
    if f_hi < target - tolerance:
        raise TargetUnreachableError(
            f"{field_name}={target:.4f} is unreachable: the largest {what} ({hi:.4f}) removes only "
            f"{100 * f_hi:.2f}% of the MACs")
    if abs(f_hi - target) <= tolerance:
        return hi, f_hi, m_hi, 2, search
    if f_lo > target + tolerance:
        raise TargetUnreachableError(
            f"{field_name}={target:.4f} is unreachable: the model already has {100 * f_lo:.2f}% fewer MACs than dense")
    for it in range(max_iter):
        mid = 0.5 * (lo + hi)
        f_mid, m_mid = evaluate(mid)
        search.append({"parameter": mid, "reduction": f_mid})
        if abs(f_mid - target) <= tolerance:
            return mid, f_mid, m_mid, it + 3, search
        if f_mid < target:
            lo, f_lo = mid, f_mid
        else:
            hi, f_hi = mid, f_mid
        if hi - lo <= 1e-12 * max(1.0, abs(hi)):
            break
    raise TargetUnreachableError(
        f"{field_name}={target:.4f} cannot be met within ±{tolerance:.4f}: at this granularity the MAC "
        f"reduction jumps from {100 * f_lo:.2f}% ({what} {lo:.5f}) to {100 * f_hi:.2f}% ({what} {hi:.5f}); "
        f"use a larger tolerance, another target or weight granularity")


def _check_target(target_flops: float, tolerance: float) -> tuple[float, float]:
    target_flops = check_ratio(target_flops, "target_flops")
    if not 0 < tolerance < 1:
        raise PruneError(f"tolerance must be in (0, 1), got {tolerance!r}")
    return target_flops, tolerance


def acra_uniform(model: nn.Module, target_flops: float, granularity: str = "filter", masks: Masks | None = None,
                 layers: Iterable[str] | None = None, tolerance: float = 0.01, max_iter: int = 80) -> AcraResult:
    """Binary search of one ratio for all layers hitting ``target_flops`` (MAC reduction vs dense)."""
    target_flops, tolerance = _check_target(target_flops, tolerance)
    topo, names = _layers_for(model, granularity, layers)
    base = copy_masks(masks)
    hi = 0.999

    def evaluate(r: float):
        m = masks_for_ratios(model, {n: r for n in names}, granularity, base, topo)
        return _reduction(model, m), m

    ratio, achieved, found, iters, search = _binary_search(evaluate, 0.0, hi, target_flops, tolerance, max_iter,
                                                           "target_flops", "ratio")
    return AcraResult("uniform", granularity, target_flops, achieved, found, {n: ratio for n in names}, ratio,
                      iters, search)


def acra_sensitivity(model: nn.Module, target_flops: float, ds: TensorDataset | None = None,
                     sensitivity: SensitivityResult | None = None, granularity: str = "filter",
                     masks: Masks | None = None, layers: Iterable[str] | None = None, tolerance: float = 0.01,
                     ratios=DEFAULT_RATIOS, max_iter: int = 80, progress: bool = False) -> AcraResult:
    """Per-layer ratios from accuracy sensitivity curves, a binary search over the common accuracy-drop
    threshold meeting ``target_flops``. Give ``sensitivity`` (same granularity) or ``ds`` to measure it on."""
    target_flops, tolerance = _check_target(target_flops, tolerance)
    topo, names = _layers_for(model, granularity, layers)
    base = copy_masks(masks)
    if sensitivity is None:
        if ds is None:
            raise PruneError("acra_sensitivity needs ds (data to measure sensitivity on) or a sensitivity result")
        sensitivity = sensitivity_analysis(model, ds, base, names, ratios, granularity, progress=progress)
    if sensitivity.granularity != granularity:
        raise PruneError(f"sensitivity was measured at {sensitivity.granularity!r} granularity, "
                         f"not {granularity!r}")
    missing = [n for n in names if n not in sensitivity.curves]
    if missing:
        raise PruneError(f"sensitivity: no curve for layer {missing[0]!r}")
    top = max(max(sensitivity.drops(n)) for n in names) + 2 * TIE_SLOPE

    def evaluate(t: float):
        r = {n: sensitivity.max_ratio(n, t, "accuracy", TIE_SLOPE) for n in names}
        m = masks_for_ratios(model, r, granularity, base, topo)
        evaluate.ratios = r
        return _reduction(model, m), m

    t, achieved, found, iters, search = _binary_search(evaluate, 0.0, top, target_flops, tolerance, max_iter,
                                                       "target_flops", "accuracy-drop threshold")
    evaluate(t)
    return AcraResult("sensitivity", granularity, target_flops, achieved, found, dict(evaluate.ratios), t, iters,
                      search, sensitivity)


def acra_prune(model: nn.Module, fit_ds: TensorDataset, val_ds: TensorDataset, target_flops: float,
               strategy: str = "uniform", granularity: str = "filter", finetune: FineTuneConfig | None = None,
               masks: Masks | None = None, layers: Iterable[str] | None = None, tolerance: float = 0.01,
               progress: bool = False) -> AcraResult:
    """ACRA allocation, pruning and fine-tuning (in place); sensitivity is measured on ``val_ds``."""
    if strategy not in STRATEGIES:
        raise PruneError(f"strategy: expected one of {list(STRATEGIES)}, got {strategy!r}")
    if strategy == "uniform":
        result = acra_uniform(model, target_flops, granularity, masks, layers, tolerance)
    else:
        result = acra_sensitivity(model, target_flops, val_ds, None, granularity, masks, layers, tolerance,
                                  progress=progress)
    apply_masks(model, result.masks)
    finetune_model(model, fit_ds, result.masks, finetune or FineTuneConfig())
    result.search.append({"val_accuracy_after_finetune": accuracy(model, val_ds)})
    return result


@dataclass
class AcraParams:
    """The parameters of ``acra-uniform`` / ``acra-sensitivity``."""

    target_flops: float | None = param(None, "MAC (FLOPs) reduction of the whole network, in [0, 1)", type=float)
    granularity: str = param("filter", "prune whole filters/neurons or single weights", choices=GRANULARITIES)
    tolerance: float = param(0.01, "allowed |achieved - target| MAC reduction")

    def __post_init__(self):
        if self.target_flops is None:
            raise PruneError("needs target_flops (--target-flops)")
        self.target_flops, self.tolerance = _check_target(self.target_flops, self.tolerance)
        if self.granularity not in GRANULARITIES:
            raise PruneError(f"granularity: expected one of {list(GRANULARITIES)}, got {self.granularity!r}")


def run_acra(model: nn.Module, options: PruneOptions, fit_ds: TensorDataset, val_ds: TensorDataset, masks: Masks,
             monitor_ds: TensorDataset | None = None) -> PruneResult:
    """Registry entry of ``acra-uniform`` and ``acra-sensitivity`` (``options.params``: :class:`AcraParams`;
    one fine-tune of 6 epochs by default)."""
    p: AcraParams = options.params
    res = acra_prune(model, fit_ds, val_ds, p.target_flops, options.method.split("-", 1)[1], p.granularity,
                     options.finetune_config(6), masks, options.layers, p.tolerance, progress=options.progress)
    val = res.search[-1]["val_accuracy_after_finetune"]
    return PruneResult(options.method, model, res.masks, val, res.search[:-1], dict(res.summary(), val_accuracy=val),
                       res, sensitivity=res.sensitivity)
