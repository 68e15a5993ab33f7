"""NRP — neuron re-pruning (after Guo, Zhou, Zhou & Kimura, ISCAS 2018).

Weight pruning leaves neurons (fc) and channels (conv) that are redundant as a whole. NRP removes them
after the usual weight pruning — the neuron's fan-in weights, its bias, and its now-useless fan-out
weights in the next layer — while guarding accuracy. Two stages, repeated until nothing changes:

1. **Exact clean-up.** Neurons that are *dead* (identically zero, or read by nothing that is live; see
   :func:`sparsegate.sw.prune.counting.liveness`) are cut. Neurons with no live fan-in but a positive bias
   output the constant ``relu(b)``; that constant is folded into the consumer's bias (exact for a linear
   consumer or an unpadded conv consumer) and the neuron is cut. Outputs do not change.
2. **Low-contribution re-pruning.** Remaining hidden neurons are scored by their contribution to the next
   layer, ``E|a_j| * sum_p |W_pj|`` (mean absolute activation on calibration data times the L1 norm of the
   kept fan-out weights). Per layer, a binary search finds the largest number of lowest-scoring neurons
   whose removal — with the removed neurons' mean activation folded into the consumer bias — keeps the
   **guard**: relative to the model NRP started from, on the guard data, the accuracy drops by at most
   ``max_accuracy_drop`` and (if set) no logit moves by more than ``max_output_change``.

Every accepted change is checked against the guard cumulatively (against the starting model, not the
previous step), so the guard bounds the total change NRP makes; a rejected change is rolled back.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Iterable

import torch
from torch import nn
from torch.utils.data import TensorDataset

from sparsegate.sw.prune.counting import liveness
from sparsegate.sw.prune.masks import Masks, PruneError, apply_masks, bias_key, check_fraction, consumer_columns, copy_masks, \
    mask_for, remove_channels, resolve_layers, topology, weight_key
from sparsegate.sw.ml.data import first_samples
from sparsegate.sw.ml.models import prunable_layers
from sparsegate.sw.prune.api import PruneOptions, PruneResult
from sparsegate.sw.prune.params import param


@dataclass
class NRPGuard:
    """What NRP may change, measured on the guard data against the model it started from."""

    max_accuracy_drop: float = 0.0  # fraction (0.002 = 0.2 points)
    max_output_change: float | None = None  # max |logit change| over all guard samples and classes

    def __post_init__(self):
        self.max_accuracy_drop = check_fraction(self.max_accuracy_drop, "max_accuracy_drop")
        if self.max_output_change is not None and not self.max_output_change >= 0:
            raise PruneError(f"max_output_change must be >= 0, got {self.max_output_change!r}")


@dataclass
class NRPResult:
    masks: Masks
    removed: dict[str, list[int]]  # per layer: indices of removed neurons/channels
    exact_removed: dict[str, int]  # of which removed by the exact clean-up
    folded: int  # constant neurons folded into the consumer bias
    reference_accuracy: float
    accuracy: float
    max_output_change: float
    history: list[dict] = field(default_factory=list)

    @property
    def total_removed(self) -> int:
        return sum(len(v) for v in self.removed.values())


class _Guard:
    """Evaluates a candidate model against the reference logits."""

    def __init__(self, model: nn.Module, ds: TensorDataset, guard: NRPGuard):
        self.x, self.y = ds.tensors
        self.guard = guard
        self.ref_logits = self.logits(model)
        self.ref_acc = self._acc(self.ref_logits)

    @torch.no_grad()
    def logits(self, model: nn.Module) -> torch.Tensor:
        model.eval()
        return torch.cat([model(self.x[i:i + 1000]) for i in range(0, len(self.x), 1000)])

    def _acc(self, logits: torch.Tensor) -> float:
        return float((logits.argmax(1) == self.y).float().mean())

    def check(self, model: nn.Module) -> tuple[bool, float, float]:
        logits = self.logits(model)
        acc = self._acc(logits)
        change = float((logits - self.ref_logits).abs().max()) if len(logits) else 0.0
        ok = self.ref_acc - acc <= self.guard.max_accuracy_drop + 1e-9
        if self.guard.max_output_change is not None:
            ok = ok and change <= self.guard.max_output_change
        return ok, acc, change


def _fold_into_consumer(model: nn.Module, topo, layer: str, channels: torch.Tensor, values: torch.Tensor) -> None:
    """Add the contribution of constant inputs ``values`` (one per removed channel of ``layer``, per consumer
    input feature of its group) to the consumer's bias."""
    info = topo[layer]
    consumer = prunable_layers(model)[info.consumer]
    if consumer.bias is None:
        return
    cols = consumer_columns(info, channels)
    with torch.no_grad():
        w = consumer.weight.detach()
        if w.dim() == 4:
            consumer.bias.add_((w[:, cols].sum((2, 3)) * values.view(1, -1)).sum(1))
        else:
            consumer.bias.add_((w[:, cols] * values.view(1, -1)).sum(1))


def _foldable(topo, layer: str) -> bool:
    info = topo[layer]
    return info.consumer is not None and not info.consumer_padded


def _stored(model: nn.Module, masks: Masks, topo, layer: str) -> torch.Tensor:
    """Per output of ``layer``: is anything still stored for it (fan-in weight, bias, fan-out weight)?"""
    mods = prunable_layers(model)
    m, info = mods[layer], topo[layer]
    stored = ((m.weight.detach() != 0) & mask_for(model, masks, weight_key(layer))).flatten(1).any(1)
    if m.bias is not None:
        stored |= (m.bias.detach() != 0) & mask_for(model, masks, bias_key(layer))
    if info.consumer is not None:
        c = mods[info.consumer].weight.detach()
        cols = ((c != 0) & mask_for(model, masks, weight_key(info.consumer)))
        cols = cols.any(0).flatten(1).any(1) if cols.dim() == 4 else cols.any(0)
        stored |= cols.view(info.out_units, info.group).any(1)
    return stored


def exact_cleanup(model: nn.Module, masks: Masks, topo=None, layers: Iterable[str] | None = None) \
        -> tuple[Masks, dict[str, list[int]], int]:
    """Stage 1 (in place on the model's biases): cut dead neurons and fold constant ones.
    Returns (masks, removed indices per layer, number folded)."""
    topo = topo or topology(model)
    names = resolve_layers(model, layers)
    mods = prunable_layers(model)
    masks = copy_masks(masks)
    removed: dict[str, list[int]] = {n: [] for n in names}
    folded = 0
    for _ in range(4 * len(topo) + 1):
        apply_masks(model, masks)
        live = liveness(model, masks, topo)
        changed = False
        for name in names:
            info = topo[name]
            if info.consumer is None:
                continue
            k, _, out = live[name]
            m = mods[name]
            dead = ~out & _stored(model, masks, topo, name)
            constant = out & ~k.flatten(1).any(1)
            if m.bias is not None and bool(constant.any()) and _foldable(topo, name):
                idx = torch.nonzero(constant).flatten()
                values = torch.relu(m.bias.detach()[idx]).repeat_interleave(info.group)
                _fold_into_consumer(model, topo, name, idx, values)
                folded += len(idx)
                dead = dead | constant
            if bool(dead.any()):
                masks = remove_channels(model, masks, name, dead, topo)
                removed[name].extend(int(i) for i in torch.nonzero(dead).flatten())
                changed = True
        if not changed:
            break
    apply_masks(model, masks)
    return masks, removed, folded


@torch.no_grad()
def contributions(model: nn.Module, masks: Masks, ds: TensorDataset, layer: str, topo=None) \
        -> tuple[torch.Tensor, torch.Tensor]:
    """Per output neuron/channel of ``layer``: (contribution score, mean activation per consumer input
    feature in its group, shape (out_units, group))."""
    topo = topo or topology(model)
    info = topo[layer]
    if info.consumer is None:
        raise PruneError(f"layer {layer!r} is the output layer; its neurons are not re-pruned")
    consumer = prunable_layers(model)[info.consumer]
    seen: list[torch.Tensor] = []
    hook = consumer.register_forward_hook(lambda m, i, o: seen.append(i[0].detach()))
    try:
        model.eval()
        x = ds.tensors[0]
        for i in range(0, len(x), 1000):
            model(x[i:i + 1000])
    finally:
        hook.remove()
    acts = torch.cat(seen)
    if acts.dim() == 4:  # conv consumer: (N, C, H, W) -> per channel
        mean_abs = acts.abs().mean((0, 2, 3))
        mean = acts.mean((0, 2, 3))
        w = (consumer.weight.detach() * mask_for(model, masks, weight_key(info.consumer))).abs().sum((0, 2, 3))
    else:
        mean_abs = acts.abs().mean(0)
        mean = acts.mean(0)
        w = (consumer.weight.detach() * mask_for(model, masks, weight_key(info.consumer))).abs().sum(0)
    score = (mean_abs * w).view(info.out_units, info.group).sum(1)
    return score, mean.view(info.out_units, info.group)


def nrp_prune(model: nn.Module, masks: Masks | None, guard_ds: TensorDataset, guard: NRPGuard | None = None,
              calib_ds: TensorDataset | None = None, layers: Iterable[str] | None = None, compensate: bool = True,
              passes: int = 2) -> NRPResult:
    """Neuron re-pruning in place (biases may change by folding); returns the new masks and a log.

    ``guard_ds`` is the data the guard is measured on, ``calib_ds`` (default: ``guard_ds``) the data the
    contribution scores and mean activations come from; ``layers`` limits which layers lose neurons.
    """
    guard = guard or NRPGuard()
    topo = topology(model)
    names = [n for n in resolve_layers(model, layers) if topo[n].consumer is not None]
    calib_ds = calib_ds or guard_ds
    masks = copy_masks(masks)
    apply_masks(model, masks)
    checker = _Guard(model, guard_ds, guard)
    removed: dict[str, list[int]] = {n: [] for n in names}
    exact: dict[str, int] = {n: 0 for n in names}
    folded_total = 0
    history: list[dict] = []

    def snapshot():
        return copy.deepcopy(model.state_dict()), copy_masks(masks)

    def run_exact():
        nonlocal masks, folded_total
        state, old = snapshot()
        new_masks, cut, folded = exact_cleanup(model, masks, topo, names)
        ok, acc, change = checker.check(model)
        if ok:
            masks = new_masks
            folded_total += folded
            for n, idx in cut.items():
                removed[n].extend(idx)
                exact[n] += len(idx)
            if any(cut.values()):
                history.append({"stage": "exact", "removed": {n: len(v) for n, v in cut.items() if v},
                                "folded": folded, "accuracy": acc, "output_change": change})
        else:
            model.load_state_dict(state)
            masks = old
            history.append({"stage": "exact", "rejected": True, "accuracy": acc, "output_change": change})

    run_exact()
    for _ in range(max(0, passes)):
        any_removed = False
        for name in names:
            live = liveness(model, masks, topo)[name][2]
            candidates = torch.nonzero(live).flatten()
            if len(candidates) <= 1:
                continue
            score, mean = contributions(model, masks, calib_ds, name, topo)
            order = candidates[torch.argsort(score[candidates], stable=True)]
            base_state, base_masks = snapshot()

            def trial(k: int) -> tuple[bool, float, float]:
                model.load_state_dict(base_state)
                idx = order[:k]
                if compensate and _foldable(topo, name):
                    _fold_into_consumer(model, topo, name, idx, mean[idx].flatten())
                rm = torch.zeros(topo[name].out_units, dtype=torch.bool)
                rm[idx] = True
                trial.masks = remove_channels(model, base_masks, name, rm, topo)
                apply_masks(model, trial.masks)
                return checker.check(model)

            lo, hi = 0, len(order) - 1  # keep at least one neuron per layer
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if trial(mid)[0]:
                    lo = mid
                else:
                    hi = mid - 1
            if lo > 0:
                ok, acc, change = trial(lo)
                if ok:  # always true when the search accepted lo; kept as the final gate
                    masks = trial.masks
                    removed[name].extend(int(i) for i in order[:lo])
                    history.append({"stage": "contribution", "layer": name, "removed": lo, "accuracy": acc,
                                    "output_change": change})
                    any_removed = True
                    continue
            model.load_state_dict(base_state)
            masks = base_masks
        run_exact()
        if not any_removed:
            break
    apply_masks(model, masks)
    ok, acc, change = checker.check(model)
    if not ok:  # cannot happen: every accepted change passed the cumulative guard
        raise PruneError("NRP guard violated after re-pruning (internal error)")
    return NRPResult(masks, {n: sorted(v) for n, v in removed.items()}, exact, folded_total, checker.ref_acc, acc,
                     change, history)


CALIB_SAMPLES = 1000  # training digits NRP's contribution scores read (and, inside SRA's loop, its guard)


@dataclass
class NRPParams:
    """The parameters of ``nrp`` as a method of its own (the guard's accuracy budget is ``PruneOptions.nrp_drop``,
    shared with ``PruneOptions.nrp``, which runs NRP after another method)."""

    calib_samples: int = param(CALIB_SAMPLES, "nrp: training samples the contribution scores are measured on")

    def __post_init__(self):
        if not isinstance(self.calib_samples, int) or self.calib_samples < 1:
            raise PruneError(f"calib_samples must be a positive integer, got {self.calib_samples!r}")


def nrp_finetuned(model: nn.Module, masks: Masks, options: PruneOptions, fit_ds: TensorDataset,
                  val_ds: TensorDataset, calib_samples: int = CALIB_SAMPLES) -> tuple[NRPResult, dict]:
    """NRP guarded on ``val_ds`` (drop ``options.nrp_drop``), then a fine-tune (3 epochs by default); returns
    the result and its JSON log."""
    from sparsegate.sw.prune.iterative import accuracy, finetune

    before = accuracy(model, val_ds)
    calib = first_samples(fit_ds, calib_samples)
    res = nrp_prune(model, masks, val_ds, NRPGuard(max_accuracy_drop=options.nrp_drop), calib_ds=calib,
                    layers=options.layers)
    finetune(model, fit_ds, res.masks, options.finetune_config(3), 777)
    log = {"removed": {k: len(v) for k, v in res.removed.items()}, "exact_removed": res.exact_removed,
           "folded": res.folded, "val_accuracy_before": before, "val_accuracy_after_nrp": res.accuracy,
           "val_accuracy_after_finetune": accuracy(model, val_ds), "history": res.history}
    return res, log


def run_nrp(model: nn.Module, options: PruneOptions, fit_ds: TensorDataset, val_ds: TensorDataset, masks: Masks,
            monitor_ds: TensorDataset | None = None) -> PruneResult:
    """Registry entry of ``nrp``: neuron re-pruning of an (already pruned) model, then a fine-tune."""
    res, log = nrp_finetuned(model, masks, options, fit_ds, val_ds, options.params.calib_samples)
    return PruneResult("nrp", model, res.masks, log["val_accuracy_after_finetune"], res.history,
                       {k: v for k, v in log.items() if k != "history"}, res)
