"""Magnitude baselines: layer-uniform, global, and PyTorch's own ``global_unstructured`` (L1).

* **layer-uniform** (:func:`uniform_step`): every selected layer loses the same fraction of its weights,
  the smallest |w| first.
* **global** (:func:`global_step`): one |w| threshold over all selected layers (Han et al. style).
* **torch global L1** (:func:`torch_global_l1_step`): the peer baseline, run through
  ``torch.nn.utils.prune.global_unstructured(..., pruning_method=L1Unstructured)`` on the live model; the
  resulting ``weight_mask`` buffers become our masks and the re-parametrisation is removed again, so the
  fine-tuning, schedule and reporting are the same as for every other method.

Each is a step for :func:`sparsegate.sw.prune.iterative.iterative_prune`; :func:`magnitude_prune` wraps one
of them in the iterative loop.
"""
from __future__ import annotations

from typing import Iterable

from torch import nn
from torch.nn.utils import prune as torch_prune
from torch.utils.data import TensorDataset

from sparsegate.sw.prune.masks import Masks, PruneError, apply_masks, check_ratio, copy_masks, global_magnitude_masks, \
    layer_magnitude_masks, resolve_layers, weight_key, weight_sparsity
from sparsegate.sw.ml.models import prunable_layers
from sparsegate.sw.prune.api import PruneOptions, PruneResult
from sparsegate.sw.prune.iterative import FineTuneConfig, IterativeResult, PruneStep, Schedule, ScheduleParams, \
    iterative_prune, iterative_summary

METHODS = ("magnitude", "global", "torch-l1")


def uniform_step(layers: Iterable[str] | None = None) -> PruneStep:
    """Step pruning each selected layer to the same weight sparsity."""
    def step(model: nn.Module, masks: Masks, sparsity: float) -> Masks:
        names = resolve_layers(model, layers)
        sparsity = check_ratio(sparsity, "sparsity")
        return layer_magnitude_masks(model, {n: sparsity for n in names}, masks)
    return step


def global_step(layers: Iterable[str] | None = None) -> PruneStep:
    """Step pruning with one magnitude threshold across the selected layers."""
    def step(model: nn.Module, masks: Masks, sparsity: float) -> Masks:
        return global_magnitude_masks(model, sparsity, masks, layers)
    return step


def torch_global_l1_masks(model: nn.Module, sparsity: float, masks: Masks | None = None,
                          layers: Iterable[str] | None = None) -> Masks:
    """Masks from ``torch.nn.utils.prune.global_unstructured`` (L1) reaching ``sparsity`` over ``layers``.

    Existing masks are installed first with ``prune.custom_from_mask`` so torch prunes only among the kept
    weights; the amount passed to torch is the number of *additional* weights to remove.
    """
    sparsity = check_ratio(sparsity, "sparsity")
    names = resolve_layers(model, layers)
    mods = prunable_layers(model)
    out = copy_masks(masks)
    apply_masks(model, out)
    total = sum(mods[n].weight.numel() for n in names)
    already = round(weight_sparsity(model, out, names) * total)
    extra = int(round(sparsity * total)) - already
    if extra <= 0:
        return out
    params = [(mods[n], "weight") for n in names]
    for n in names:
        torch_prune.custom_from_mask(mods[n], "weight", (mods[n].weight.detach() != 0))
    try:
        torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured, amount=extra)
        for n in names:
            out[weight_key(n)] = mods[n].weight_mask.detach().bool().clone()
    finally:
        for n in names:
            if torch_prune.is_pruned(mods[n]):
                torch_prune.remove(mods[n], "weight")
    apply_masks(model, out)
    return out


def torch_global_l1_step(layers: Iterable[str] | None = None) -> PruneStep:
    def step(model: nn.Module, masks: Masks, sparsity: float) -> Masks:
        return torch_global_l1_masks(model, sparsity, masks, layers)
    return step


STEPS = {"magnitude": uniform_step, "global": global_step, "torch-l1": torch_global_l1_step}


def magnitude_prune(model: nn.Module, fit_ds: TensorDataset, val_ds: TensorDataset, schedule: Schedule,
                    method: str = "magnitude", finetune: FineTuneConfig | None = None, masks: Masks | None = None,
                    layers: Iterable[str] | None = None, progress: bool = True,
                    monitor_ds: TensorDataset | None = None) -> IterativeResult:
    """Iterative magnitude pruning with fine-tuning; ``method`` is one of :data:`METHODS`."""
    if method not in STEPS:
        raise PruneError(f"method: unknown magnitude method {method!r}; expected one of {list(METHODS)}")
    layers = resolve_layers(model, layers)
    return iterative_prune(model, STEPS[method](layers), fit_ds, val_ds, schedule, finetune, masks, layers,
                           progress=progress, desc=method, monitor_ds=monitor_ds)


def run_magnitude(model: nn.Module, options: PruneOptions, fit_ds: TensorDataset, val_ds: TensorDataset,
                  masks: Masks, monitor_ds: TensorDataset | None = None) -> PruneResult:
    """Registry entry of ``magnitude``, ``global`` and ``torch-l1`` (``options.method``;
    ``options.params``: :class:`ScheduleParams`; fine-tune 3 epochs per round by default)."""
    p: ScheduleParams = options.params
    res = magnitude_prune(model, fit_ds, val_ds, p.schedule(), options.method, options.finetune_config(3), masks,
                          options.layers, progress=options.progress, monitor_ds=monitor_ds)
    return PruneResult(options.method, model, res.masks, res.val_accuracy, res.history_dicts(),
                       iterative_summary(res), res, iterative=res)


__all__ = ["METHODS", "uniform_step", "global_step", "torch_global_l1_masks", "torch_global_l1_step",
           "magnitude_prune", "run_magnitude"]
