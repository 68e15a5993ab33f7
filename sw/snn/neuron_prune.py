"""Spike-count neuron pruning: hidden neurons that fire too little are disabled online, during training.

Every ``interval`` batches, :class:`SpikeCountPruner` (the ``on_batch`` hook of
:func:`~.snn.train_snn`) looks at each alive neuron's recent activity (an exponential moving average of
its spikes per sample) and prunes those below an adaptive threshold::

    threshold = ratio * mean activity of the alive neurons

The threshold follows the network's activity (it is relative to the mean), and ``ratio`` adapts to the
pruning schedule: when fewer neurons than the schedule allows fall below it, ``ratio`` grows by
``adapt``; when many more do, it shrinks. The number pruned so far never exceeds the schedule's quota,
``target * (1 - (1 - progress)**3)`` (fast at first, gentle at the end), and the last event prunes the
least active alive neurons until exactly ``target`` are gone -- so the pruned percentage is set by the
user (e.g. 400 of 800) while the choice of neurons is made by their spike counts. The epochs after
``end_epoch`` fine-tune the survivors.

A pruned neuron is disabled in ``model.neuron_mask``; its weights are zeroed and stay zero. The engine
keeps the dense weight layout and skips disabled neurons through its enable mask.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils.data import TensorDataset

from sparsegate.sw.snn.model import SNNTrainConfig, SNNTrainResult, SpikingMLP, apply_neuron_mask, train_snn

__all__ = ["PruneConfig", "SpikeCountPruner", "prune_snn"]


@dataclass
class PruneConfig:
    target: int = 400            # hidden neurons to prune in all
    start_epoch: int = 0         # first epoch (0-based) in which pruning may happen
    end_epoch: int | None = None  # the epoch at whose end ``target`` is reached (default: 60% of the epochs)
    interval: int = 5            # batches between pruning events
    ratio: float = 0.1           # initial threshold, relative to the mean activity of alive neurons
    adapt: float = 1.25          # factor by which the ratio adapts
    ema: float = 0.8             # smoothing of the per-neuron activity

    def check(self, n_hidden: int, epochs: int) -> None:
        if not 0 <= self.target < n_hidden:
            raise ValueError(f"prune target must be in 0..{n_hidden - 1} neurons, got {self.target}")
        end = self.resolved_end(epochs)
        if not 0 <= self.start_epoch <= end < epochs:
            raise ValueError(f"pruning epochs must satisfy 0 <= start ({self.start_epoch}) <= end ({end}) "
                             f"< epochs ({epochs})")
        if self.interval < 1 or not 0 < self.ratio or not self.adapt > 1 or not 0 <= self.ema < 1:
            raise ValueError("prune interval >= 1, ratio > 0, adapt > 1 and 0 <= ema < 1 are required")

    def resolved_end(self, epochs: int) -> int:
        return self.end_epoch if self.end_epoch is not None else max(self.start_epoch, int(0.6 * epochs) - 1)


@dataclass
class SpikeCountPruner:
    """The ``on_batch`` hook that prunes by spike count; ``history`` records every pruning event."""

    config: PruneConfig
    n_hidden: int
    batches_per_epoch: int
    epochs: int
    activity: torch.Tensor | None = None
    history: list[dict] = field(default_factory=list)

    def __post_init__(self):
        self.config.check(self.n_hidden, self.epochs)
        self.ratio = self.config.ratio
        self._first = self.config.start_epoch * self.batches_per_epoch
        self._last = (self.config.resolved_end(self.epochs) + 1) * self.batches_per_epoch - 1

    def quota(self, batch_index: int) -> int:
        """Neurons that may be pruned by global batch ``batch_index`` (cubic schedule)."""
        if batch_index < self._first:
            return 0
        progress = min(1.0, (batch_index - self._first + 1) / max(1, self._last - self._first + 1))
        return int(round(self.config.target * (1 - (1 - progress) ** 3)))

    def __call__(self, model: SpikingMLP, counts: torch.Tensor, epoch: int, batch: int) -> None:
        per_sample = counts.float().mean(0)
        if self.activity is None:
            self.activity = per_sample.clone()
        else:
            self.activity.mul_(self.config.ema).add_(per_sample, alpha=1 - self.config.ema)
        g = epoch * self.batches_per_epoch + batch
        if g < self._first or g > self._last:
            return
        if (g - self._first) % self.config.interval and g != self._last:
            return
        self.prune_step(model, self.quota(g), force=g == self._last, step=g)

    @torch.no_grad()
    def prune_step(self, model: SpikingMLP, quota: int, force: bool = False, step: int = 0) -> int:
        """Prune alive neurons below the adaptive threshold, up to ``quota`` pruned in all; returns how many."""
        mask = model.neuron_mask
        pruned = int((~mask).sum())
        need = max(0, quota - pruned)
        activity = self.activity
        alive = mask.clone()
        mean = float(activity[alive].mean()) if bool(alive.any()) else 0.0
        threshold = self.ratio * mean
        candidates = torch.nonzero(alive & (activity < threshold)).flatten()
        candidates = candidates[torch.argsort(activity[candidates], stable=True)]
        if force:  # the last event reaches the target exactly: least active alive neurons first
            order = torch.nonzero(alive).flatten()
            order = order[torch.argsort(activity[order], stable=True)]
            chosen = order[:need]
        else:
            chosen = candidates[:need]
            if len(candidates) < need:
                self.ratio *= self.config.adapt
            elif len(candidates) > 2 * need:
                self.ratio /= self.config.adapt
        mask[chosen] = False
        apply_neuron_mask(model)
        self.history.append({"batch": step, "threshold": threshold, "ratio": self.ratio, "mean_activity": mean,
                             "quota": quota, "pruned_now": len(chosen), "pruned": pruned + len(chosen),
                             "forced": bool(force)})
        return len(chosen)


def prune_snn(model: SpikingMLP, train_ds: TensorDataset, config: SNNTrainConfig, prune: PruneConfig,
              test_ds: TensorDataset | None = None) -> tuple[SNNTrainResult, SpikeCountPruner]:
    """Train ``model`` (fresh or pre-trained) while pruning ``prune.target`` hidden neurons online."""
    batches = -(-len(train_ds) // config.batch_size)
    pruner = SpikeCountPruner(prune, model.config.n_hidden, batches, config.epochs)
    result = train_snn(model, train_ds, config, test_ds=test_ds, on_batch=pruner, desc="prune snn")
    return result, pruner
