"""The call shape every pruning method shares: :class:`PruneOptions` in, :class:`PruneResult` out.

Each method file defines its parameters as a dataclass whose fields are declared with
:func:`sparsegate.sw.prune.params.param` (help text,
choices and the command-line flag travel with the field, so ``sparsegate prune`` builds its arguments from
them) and a run function ``run(model, options, fit_ds, val_ds, masks, monitor_ds) -> PruneResult``;
:mod:`sparsegate.sw.prune.registry` lists them and dispatches.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from sparsegate.sw.ml.train import WEIGHT_DECAY, TrainConfig
from sparsegate.sw.prune.iterative import FineTuneConfig, IterativeResult
from sparsegate.sw.prune.masks import Masks, PruneError

# Learning-rate rewinding: every fine-tune restarts at the training recipes' peak learning rate. It was the best
# recovery measured at the 0.3-point budget (2.11x the plain loop's SRA+NRP compression on LeNet-5, 1.25x on
# LeNet-300-100; docs/pruning.md "Recovery"), so it is the default; the plain loop peaked at 1e-3.
REWOUND_LR = TrainConfig().lr


class UnknownMethodError(PruneError):
    """``PruneOptions.method`` names no registered method."""


@dataclass
class PruneOptions:
    """One pruning run: the method, its parameters (the method's params dataclass, ``None`` for its defaults)
    and what every method shares."""

    method: str
    params: Any = None
    layers: list[str] | None = None  # layer names the method may prune (default: all it prunes)
    finetune_epochs: int | None = None  # per round (iterative) or after pruning (one shot); None: the method's
    lr: float = REWOUND_LR  # fine-tune peak learning rate (default: rewound to the training's peak)
    seed: int = 0
    nrp: bool = False  # neuron re-pruning after the method, then a fine-tune
    nrp_drop: float = 0.0  # NRP guard: validation-accuracy drop allowed before its fine-tune
    progress: bool = True
    distill: float = 0.0  # iterative methods: distil from the start model in each round's fine-tune (KD weight)
    augment_rotate: float = 0.0  # fine-tunes warp their digits: rotation up to this many degrees (TrainConfig)
    augment_scale: float = 0.0  # and zoom up to this fraction
    weight_decay: float = WEIGHT_DECAY  # fine-tunes add L2 weight decay of this strength (default: the recovery #19 kept)

    def epochs(self, default: int) -> int:
        return default if self.finetune_epochs is None else self.finetune_epochs

    def finetune_config(self, default_epochs: int):
        """The fine-tune config with ``finetune_epochs`` (or the method's ``default_epochs``), lr, seed,
        distillation weight, augmentation and weight decay."""
        return FineTuneConfig(epochs=self.epochs(default_epochs), lr=self.lr, seed=self.seed, distill=self.distill,
                              augment_rotate=self.augment_rotate, augment_scale=self.augment_scale,
                              weight_decay=self.weight_decay)


@dataclass
class PruneResult:
    """What a pruning run produced. ``model`` is the pruned model: the one passed in, pruned in place, unless
    the method builds a new one (task-guided: the sub-task model)."""

    method: str
    model: nn.Module
    masks: Masks
    val_accuracy: float | None = None  # on the validation split after the method (and its fine-tune)
    history: list[dict] = field(default_factory=list)  # per round (iterative) or per search step
    info: dict = field(default_factory=dict)  # JSON-ready summary of the method's decisions
    extra: Any = None  # the method's own typed result (SRAResult, AcraResult, KEPResult, LowRankResult, ...)
    sensitivity: Any = None  # SensitivityResult, for the methods that measure it
    nrp: dict | None = None  # the neuron re-pruning log when options.nrp
    iterative: IterativeResult | None = None  # the shared loop's result (every round's state): the iterative methods
    compression: float | None = None  # params / nonzero params of the pruned model (its per-layer table)
    classes: tuple[int, ...] | None = None  # task-guided: the sub-task the model answers (its output rows)
    start_model: nn.Module | None = None  # task-guided: the sub-task model before pruning (the base to compare)
    wall_time_s: float = 0.0
