"""The prune -> fine-tune loop shared by the iterative methods (magnitude, global, torch L1, SRA).

Every iterative method is a *step*: ``step(model, masks, sparsity) -> masks`` that prunes more weights
so that the fraction ``sparsity`` of the selected layers' weights is gone. :func:`iterative_prune` drives
the steps under one schedule, so methods compared side by side get the same fine-tune budget. Each round
removes the fraction ``step`` of the weights still kept (geometric schedule; ``late_step`` once only
``late_after`` of the weights are left, where each weight matters more), fine-tunes for
``finetune.epochs`` epochs on the fit split and measures accuracy on the validation split.

When to stop (:class:`Schedule`):

* ``target_sparsity`` only: run the schedule to the target.
* ``max_accuracy_drop`` with ``selection="path"`` (default): run the schedule without looking back —
  to ``target_sparsity`` if given, else until the validation accuracy has fallen more than
  ``overshoot`` below the budget for two rounds — keeping every round's state; then pick one round by
  :func:`select_fitted`. The path never depends on the validation split, only the one final choice does.
* ``max_accuracy_drop`` with ``selection="gate"``: accept a round only if the validation drop is within
  the budget (after ``recovery_rounds`` extra fine-tunes), otherwise roll back and retry with half the
  step, down to ``min_step``.

Why "path" is the default: gating every round on a small validation split overfits it. Each accepted
state carries its lucky validation errors into the next round, so the validation accuracy stays pinned at
the budget while the true accuracy drifts away (on LeNet-5 / 500 validation digits the accepted rounds
stayed at 97.4-98.4% validation accuracy while the test accuracy fell from 98.0% to 95.8%).

The selection rule, :func:`select_fitted` ("fitted path"): the validation accuracies of the whole path,
the start model first, are fitted by least squares as a concave, non-increasing function of log compression
(:func:`sparsegate.sw.ml.stats.concave_nonincreasing`), and the sparsest round whose *fitted* accuracy is
within the budget of the *fitted* start is chosen. A validation split of a few hundred digits reads each
model to +-0.7 points (one standard error at 98%, 417 digits) while the budget is 0.3 points. The previous
rule (:func:`select_windowed`: each round averaged with its two neighbours, against one raw reading of the
start) let one high start reading end every method's path at its fourth round, and, taking the last of many
noisy rounds that passes, often picked rounds far past the budget. An isotonic (non-increasing only) fit
does not help: its start value is the largest mean of the leading readings, so a high start stays high.
Concavity (accuracy falls ever faster with log compression, as pruning paths do until far past any budget)
ties the start to the trend of every round after it. Measured on real paths it is robust but conservative
(it leaves part of the budget unused); docs/pruning.md has the measurements.

The validation split is carved from the training set (:func:`split_validation`); the test set is only
ever used for reporting (``monitor_ds``).
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset
from tqdm import tqdm

from sparsegate.sw.ml.stats import concave_nonincreasing
from sparsegate.sw.prune.masks import Masks, PruneError, RatioError, apply_masks, check_fraction, check_ratio, copy_masks, \
    resolve_layers, weight_sparsity
from sparsegate.sw.ml.train import TrainConfig, check_augmentation, check_weight_decay, train
from sparsegate.sw.prune.params import param

PruneStep = Callable[[nn.Module, Masks, float], Masks]


@dataclass
class FineTuneConfig:
    """Fine-tuning after each pruning round (Adam + one-cycle, masks held at zero)."""

    epochs: int = 2
    lr: float = 1e-3
    batch_size: int = 64
    augment_shift: int = 2
    augment_rotate: float = 0.0  # with augment_scale: the random affine warp of TrainConfig
    augment_scale: float = 0.0
    weight_decay: float = 0.0  # L2 inside Adam (TrainConfig.weight_decay)
    seed: int = 0
    distill: float = 0.0  # knowledge distillation from the loop's start model (weight of its loss; 0: off)
    temperature: float = 4.0

    def __post_init__(self):
        if self.epochs < 0:
            raise PruneError(f"finetune epochs must be >= 0, got {self.epochs}")
        if not self.lr > 0:
            raise PruneError(f"finetune lr must be > 0, got {self.lr}")
        if not 0.0 <= self.distill <= 1.0 or not self.temperature > 0:
            raise PruneError(f"distill must be in [0, 1] and temperature > 0, got {self.distill}, {self.temperature}")
        try:
            check_augmentation(self.augment_shift, self.augment_rotate, self.augment_scale)
            check_weight_decay(self.weight_decay)
        except ValueError as err:
            raise PruneError(str(err)) from None

    def train_config(self, round_index: int = 0, epochs: int | None = None) -> TrainConfig:
        return TrainConfig(epochs=self.epochs if epochs is None else epochs, batch_size=self.batch_size,
                           lr=self.lr, seed=self.seed + round_index, augment_shift=self.augment_shift,
                           augment_rotate=self.augment_rotate, augment_scale=self.augment_scale,
                           weight_decay=self.weight_decay,
                           progress=False, distill=self.distill, temperature=self.temperature)


SELECTIONS = ("path", "gate")


@dataclass
class Schedule:
    """When to stop pruning. At least one of ``target_sparsity`` and ``max_accuracy_drop`` is needed."""

    target_sparsity: float | None = None  # fraction of the selected weights to remove, in [0, 1)
    max_accuracy_drop: float | None = None  # validation-accuracy budget, a fraction (0.003 = 0.3 points)
    step: float = 0.3  # fraction of the kept weights removed per round
    late_step: float | None = None  # smaller step once the kept fraction is at most late_after (None: step)
    late_after: float = 0.1
    max_rounds: int = 40
    selection: str = "path"  # how max_accuracy_drop picks the result: "path" or "gate" (module docstring)
    overshoot: float = 0.02  # path: stop once the validation drop exceeds budget + overshoot twice running
    min_step: float = 0.05  # gate: give up refining after a failed round once the step falls below this
    recovery_rounds: int = 1  # gate: extra fine-tune rounds a failing round gets before it is rolled back
    calibrate: bool = False  # gate: budget against the start model after one fine-tune round without pruning

    def __post_init__(self):
        if self.target_sparsity is None and self.max_accuracy_drop is None:
            raise PruneError("schedule: give target_sparsity or max_accuracy_drop (or both)")
        if self.target_sparsity is not None:
            self.target_sparsity = check_ratio(self.target_sparsity, "target_sparsity")
        if self.max_accuracy_drop is not None:
            self.max_accuracy_drop = check_fraction(self.max_accuracy_drop, "max_accuracy_drop")
        self.step = check_ratio(self.step, "step")
        if self.step <= 0:
            raise RatioError(f"step must be in (0, 1), got {self.step}")
        if self.late_step is not None:
            self.late_step = check_ratio(self.late_step, "late_step")
            if self.late_step <= 0:
                raise RatioError(f"late_step must be in (0, 1), got {self.late_step}")
        self.late_after = check_fraction(self.late_after, "late_after")
        self.min_step = check_ratio(self.min_step, "min_step")
        self.overshoot = check_fraction(self.overshoot, "overshoot")
        if self.selection not in SELECTIONS:
            raise PruneError(f"selection: expected one of {list(SELECTIONS)}, got {self.selection!r}")
        if self.max_rounds < 1:
            raise PruneError(f"max_rounds must be >= 1, got {self.max_rounds}")
        if self.recovery_rounds < 0:
            raise PruneError(f"recovery_rounds must be >= 0, got {self.recovery_rounds}")


@dataclass
class ScheduleParams:
    """The parameters of an iterative method (magnitude, global, torch-l1, SRA; KEP and coarse with a sparsity
    target): a :class:`Schedule` as the command line spells it."""

    target_sparsity: float | None = param(None, "fraction of the (selected) weights to prune, in [0, 1)", type=float)
    max_drop: float | None = param(None, "prune while validation accuracy drops by at most this fraction (0.003 = "
                                         "0.3 points)", type=float)
    step: float = param(0.3, "fraction of the kept weights removed per round")
    late_step: float | None = param(0.15, "the step once only 10%% of the weights are left", type=float)
    rounds: int = param(40, "maximum prune/fine-tune rounds")
    selection: str = param("path", "with a max drop: run the schedule and pick the sparsest round within budget "
                                   "(path), or roll back rounds that break it (gate)", choices=SELECTIONS)

    def __post_init__(self):
        if self.target_sparsity is None and self.max_drop is None:
            raise PruneError("needs target_sparsity (--target-sparsity) or max_drop (--max-drop)")
        self.schedule()  # checks every field

    @property
    def iterative(self) -> bool:
        return self.target_sparsity is not None or self.max_drop is not None

    def schedule(self) -> "Schedule":
        return Schedule(target_sparsity=self.target_sparsity, max_accuracy_drop=self.max_drop, step=self.step,
                        late_step=self.late_step, max_rounds=self.rounds, selection=self.selection)


def iterative_summary(res: "IterativeResult") -> dict:
    """The JSON summary of an iterative run."""
    return {"val_reference_accuracy": res.base_val_accuracy, "val_start_accuracy": res.start_val_accuracy,
            "val_accuracy": res.val_accuracy, "weight_sparsity": res.sparsity, "rounds": len(res.history)}


@dataclass
class RoundRecord:
    round: int
    step: float
    target_sparsity: float
    sparsity: float
    val_accuracy: float
    accepted: bool
    info: dict = field(default_factory=dict)


@dataclass
class IterativeResult:
    masks: Masks
    base_val_accuracy: float
    val_accuracy: float
    sparsity: float
    history: list[RoundRecord]
    start_val_accuracy: float | None = None  # before any fine-tuning (base_val_accuracy may be calibrated)
    # path selection: (sparsity, state dict, masks, validation accuracy) of the start and of every round, the
    # states the choice was made among (what a benchmark finishes to draw a method's curve); gate: the start only
    path: list[tuple[float, dict, Masks, float]] = field(default_factory=list, repr=False)

    def history_dicts(self) -> list[dict]:
        return [asdict(r) for r in self.history]


VAL_SIZE = 500  # training digits held out of training and read by every pruning decision (prune, train, demo, zoo, low-rank)


def split_validation(train_ds: TensorDataset, val_size: int, seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """Split ``val_size`` samples off the training set (seeded): (fit, val)."""
    x, y = train_ds.tensors
    if not 0 < val_size < len(x):
        raise PruneError(f"val_size must be between 1 and {len(x) - 1} (training set size - 1), got {val_size}")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(10_000 + seed))
    val, fit = order[:val_size], order[val_size:]
    return TensorDataset(x[fit], y[fit]), TensorDataset(x[val], y[val])


def fit_digits(train_ds: TensorDataset, held_out: int, seed: int = 0) -> TensorDataset:
    """The training digits outside the seeded validation split of ``held_out`` (all of them when it is 0): what
    training and QAT fit, so that the hold-out stays unseen for a later prune."""
    return split_validation(train_ds, held_out, seed)[0] if held_out else train_ds


@torch.no_grad()
def evaluate_metrics(model: nn.Module, ds: TensorDataset, batch_size: int = 1000) -> tuple[float, float]:
    """(top-1 accuracy, mean cross-entropy) on ``ds``."""
    model.eval()
    x, y = ds.tensors
    correct, loss = 0, 0.0
    for i in range(0, len(x), batch_size):
        out = model(x[i:i + batch_size])
        correct += int((out.argmax(1) == y[i:i + batch_size]).sum())
        loss += float(nn.functional.cross_entropy(out, y[i:i + batch_size], reduction="sum"))
    return correct / len(x), loss / len(x)


def accuracy(model: nn.Module, ds: TensorDataset) -> float:
    return evaluate_metrics(model, ds)[0]


def finetune(model: nn.Module, ds: TensorDataset, masks: Masks, config: FineTuneConfig, round_index: int = 0,
             epochs: int | None = None, teacher: nn.Module | None = None) -> None:
    """Fine-tune in place with the masks held at zero (no-op for 0 epochs, which still applies the masks);
    distilling from ``teacher`` when ``config.distill`` > 0."""
    cfg = config.train_config(round_index, epochs)
    if cfg.epochs > 0:
        train(model, ds, cfg, masks=masks, desc="finetune", teacher=teacher)
    else:
        apply_masks(model, masks)


def iterative_prune(model: nn.Module, step_fn: PruneStep, fit_ds: TensorDataset, val_ds: TensorDataset,
                    schedule: Schedule, finetune_config: FineTuneConfig | None = None, masks: Masks | None = None,
                    layers: Iterable[str] | None = None, progress: bool = True, desc: str = "prune",
                    base_val_accuracy: float | None = None, monitor_ds: TensorDataset | None = None) -> IterativeResult:
    """Run prune -> fine-tune rounds (see the module docstring); ``model`` is left in the chosen state.

    ``monitor_ds`` (e.g. the test set) is only *recorded* after each round (``info["monitor_accuracy"]``),
    for accuracy-vs-sparsity curves; no decision reads it."""
    finetune_config = finetune_config or FineTuneConfig()
    layers = resolve_layers(model, layers)
    masks = copy_masks(masks)
    apply_masks(model, masks)
    start_acc = accuracy(model, val_ds)
    teacher = copy.deepcopy(model) if finetune_config.distill > 0 else None  # KD from the start model
    base = start_acc if base_val_accuracy is None else base_val_accuracy
    budget = schedule.max_accuracy_drop
    gate = budget is not None and schedule.selection == "gate"
    if base_val_accuracy is None and gate and schedule.calibrate and finetune_config.epochs > 0:
        # Fine-tuning alone moves the validation accuracy by a few samples; measure that on a copy so the
        # budget charges only what pruning costs.
        probe = copy.deepcopy(model)
        finetune(probe, fit_ds, masks, finetune_config, 0)
        base = accuracy(probe, val_ds)
        del probe
    sparsity = weight_sparsity(model, masks, layers)
    # path: (sparsity, state, masks, val accuracy) of round 0 and every round after it
    path = [(sparsity, copy.deepcopy(model.state_dict()), copy_masks(masks), start_acc)]
    good = path[0]
    step = schedule.step
    history: list[RoundRecord] = []
    target = schedule.target_sparsity
    beyond = 0  # path: consecutive rounds past budget + overshoot
    bar = tqdm(total=schedule.max_rounds, desc=desc, unit="round", disable=not progress, leave=False)
    try:
        for rnd in range(1, schedule.max_rounds + 1):
            if target is not None and sparsity >= target - 1e-9:
                break
            if schedule.late_step is not None and 1.0 - sparsity <= schedule.late_after + 1e-12:
                step = min(step, schedule.late_step)
            next_sparsity = 1.0 - (1.0 - sparsity) * (1.0 - step)
            if target is not None:
                next_sparsity = min(next_sparsity, target)
            new_masks = step_fn(model, copy_masks(masks), next_sparsity)
            apply_masks(model, new_masks)
            achieved = weight_sparsity(model, new_masks, layers)
            if achieved <= sparsity + 1e-12:
                bar.write(f"{desc}: round {rnd} removed nothing at sparsity {100 * sparsity:.2f}%; stopping")
                model.load_state_dict(path[-1][1])
                break
            finetune(model, fit_ds, new_masks, finetune_config, rnd, teacher=teacher)
            acc = accuracy(model, val_ds)
            ok = budget is None or base - acc <= budget + 1e-9
            for extra in range(schedule.recovery_rounds if gate and not ok else 0):
                finetune(model, fit_ds, new_masks, finetune_config, 1000 * rnd + extra, teacher=teacher)
                acc = accuracy(model, val_ds)
                ok = base - acc <= budget + 1e-9
                if ok:
                    break
            info = dict(getattr(step_fn, "last_info", None) or {})
            if monitor_ds is not None:
                info["monitor_accuracy"] = accuracy(model, monitor_ds)
            history.append(RoundRecord(rnd, step, next_sparsity, achieved, acc, ok or not gate, info))
            bar.update(1)
            bar.set_postfix(sparsity=f"{100 * achieved:.2f}%", val=f"{100 * acc:.2f}%")
            if not gate:
                masks, sparsity = new_masks, achieved
                path.append((sparsity, copy.deepcopy(model.state_dict()), copy_masks(masks), acc))
                if budget is not None and target is None:
                    beyond = beyond + 1 if base - acc > budget + schedule.overshoot else 0
                    if beyond >= 2:
                        break
            elif ok:
                masks, sparsity = new_masks, achieved
                good = (sparsity, copy.deepcopy(model.state_dict()), copy_masks(masks), acc)
            else:
                model.load_state_dict(good[1])
                masks = copy_masks(good[2])
                step /= 2
                if step < schedule.min_step:
                    break
    finally:
        bar.close()
    if not gate:
        good = path[-1] if budget is None else path[select_fitted(
            [p[3] for p in path], [1.0 / max(1e-12, 1.0 - p[0]) for p in path], budget, base_val_accuracy)]
        for rec in history:
            rec.accepted = rec.round <= len(path) - 1 and path[rec.round][0] <= good[0] + 1e-12
    model.load_state_dict(good[1])
    apply_masks(model, good[2])
    return IterativeResult(good[2], base, good[3], good[0], history, start_acc, path)


def select_fitted(val_accuracies: list[float], compressions: list[float], budget: float,
                  reference: float | None = None) -> int:
    """The path's selection rule (module docstring): index of the sparsest point whose fitted validation
    accuracy is within ``budget`` of the fitted start, or of ``reference`` when given (the caller's reading of
    an earlier model). ``val_accuracies`` and ``compressions`` (weights before / kept) in path order, the
    start first; the fit is concave and non-increasing in log compression. Index 0 is the fallback."""
    fit = concave_nonincreasing(np.log(np.asarray(compressions, dtype=float)), val_accuracies)
    ref = fit[0] if reference is None else reference
    within = np.nonzero(ref - fit <= budget + 1e-9)[0]
    return int(within[-1]) if within.size else 0


def select_windowed(val_accuracies: list[float], reference: float, budget: float, window: int = 3) -> int:
    """The previous selection rule, kept so the benchmark reports its choice on the same paths: index of the
    last point whose validation drop, averaged over a centred window on the path, is within ``budget`` of
    ``reference`` (one raw reading of the start; index 0 is the fallback)."""
    half = window // 2
    best = 0
    for i in range(len(val_accuracies)):
        near = val_accuracies[max(0, i - half):i + half + 1]
        if reference - sum(near) / len(near) <= budget + 1e-9:
            best = i
    return best


def kept_fraction_schedule(start_sparsity: float, target: float, step: float) -> list[float]:
    """The sparsity targets of a geometric schedule (used in docs and tests)."""
    out, s = [], start_sparsity
    while s < target - 1e-9:
        s = min(target, 1.0 - (1.0 - s) * (1.0 - step))
        out.append(s)
        if len(out) > 10_000:
            raise PruneError("schedule does not converge")
    return out


def rounds_needed(target: float, step: float) -> int:
    return 0 if target <= 0 else math.ceil(math.log(1 - target) / math.log(1 - step))
