"""Task-guided filter pruning: keep the filters whose feature representations matter to the target task.

A network trained for a broad task (all ten digits) is specialised to a sub-task (a subset of the classes):
:func:`subtask_model` keeps only the sub-task's output rows and :func:`subtask_dataset` relabels the data.
Many of its filters then respond to patterns the sub-task never needs. :func:`response_statistics` runs the
task's own data through the network and collects, for every filter/neuron, class-conditional statistics of
its (post-ReLU) response map — per class and per output position the mean, and the variance within each
class. The relevance scores (:data:`CRITERIA`) read them:

* ``between`` — between-class scatter of the class-conditional mean responses, summed over
  positions: how much of the task's class information the filter's response carries, in the units the next
  layer sees. A filter that is silent on the task's data, or answers every task class alike, scores ~0.
* ``fisher`` (default) — the same scatter divided by the within-class scatter (Fisher's discriminant ratio):
  scale-free discriminability. In the benchmark it keeps the most accuracy right after the cut and after
  fine-tuning at high pruning ratios.
* ``response`` — the mean response energy on the task's data (used at all, regardless of class).

:func:`task_filter_masks` removes the lowest-scored fraction of each layer's filters (output channels of conv
layers, neurons of hidden linear layers) with :func:`sparsegate.sw.prune.masks.remove_channels`;
:func:`task_prune` scores, cuts and fine-tunes on the task. :mod:`sparsegate.sw.prune.shrink` then removes the cut
filters for real.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.data import TensorDataset

from sparsegate.sw.prune.masks import Masks, PruneError, apply_masks, bias_key, check_ratio, copy_masks, mask_for, remove_channels, \
    resolve_layers, topology, weight_key
from sparsegate.sw.ml.models import prunable_layers
from sparsegate.sw.prune.api import PruneOptions, PruneResult
from sparsegate.sw.prune.params import param
from sparsegate.sw.prune.iterative import FineTuneConfig, accuracy, finetune
from sparsegate.sw.prune.shrink import _replace, check_supported

CRITERIA = ("fisher", "between", "response")

__all__ = ["CRITERIA", "parse_classes", "subtask_dataset", "subtask_model", "subtask_masks", "ResponseStats", "response_statistics",
           "task_scores", "task_filter_masks", "TaskPruneResult", "task_prune", "filter_layers"]


def parse_classes(classes, num_classes: int | None = None) -> tuple[int, ...]:
    """A sorted tuple of distinct class indices (from a sequence or a "3,5,8" string), checked."""
    if isinstance(classes, str):
        try:
            classes = [int(c) for c in classes.split(",") if c.strip()]
        except ValueError:
            raise PruneError(f"classes: expected comma-separated class indices, got {classes!r}") from None
    try:
        out = tuple(sorted(int(c) for c in classes))
    except (TypeError, ValueError):
        raise PruneError(f"classes: expected class indices, got {classes!r}") from None
    if len(out) < 2:
        raise PruneError(f"classes: a sub-task needs at least 2 classes, got {list(out)}")
    if len(set(out)) != len(out):
        raise PruneError(f"classes: duplicate class in {list(out)}")
    if out[0] < 0 or (num_classes is not None and out[-1] >= num_classes):
        raise PruneError(f"classes: {list(out)} out of range; the model has classes 0..{(num_classes or 1) - 1}")
    return out


def subtask_dataset(ds: TensorDataset, classes: Sequence[int]) -> TensorDataset:
    """The samples of ``classes``, relabelled 0..len(classes)-1 in the order of ``classes``."""
    classes = parse_classes(classes)
    x, y = ds.tensors
    lookup = torch.full((int(max(int(y.max()), classes[-1])) + 1,), -1, dtype=torch.long)
    lookup[torch.tensor(classes)] = torch.arange(len(classes))
    keep = lookup[y] >= 0
    if not bool(keep.any()):
        raise PruneError(f"classes: the dataset has no samples of classes {list(classes)}")
    return TensorDataset(x[keep], lookup[y[keep]])


def subtask_model(model: nn.Module, classes: Sequence[int]) -> nn.Module:
    """A copy of ``model`` whose output layer keeps only the rows of ``classes`` (same order)."""
    mods = prunable_layers(model)
    name, out_layer = list(mods.items())[-1]
    if not isinstance(out_layer, nn.Linear):
        raise PruneError(f"subtask_model: the output layer {name!r} must be nn.Linear, got {type(out_layer).__name__}")
    classes = parse_classes(classes, out_layer.out_features)
    idx = torch.tensor(classes)
    small = copy.deepcopy(model)
    new = nn.Linear(out_layer.in_features, len(classes), bias=out_layer.bias is not None)
    with torch.no_grad():
        new.weight.copy_(out_layer.weight[idx])
        if out_layer.bias is not None:
            new.bias.copy_(out_layer.bias[idx])
    _replace(small, name, new)
    return small


def subtask_masks(model: nn.Module, masks: Masks | None, classes: Sequence[int]) -> Masks:
    """``masks`` of ``model`` carried over to :func:`subtask_model`'s copy (output-layer rows of ``classes``)."""
    name = list(prunable_layers(model))[-1]
    idx = torch.tensor(parse_classes(classes))
    out = copy_masks(masks)
    for key in (weight_key(name), bias_key(name)):
        if key in out:
            out[key] = out[key][idx].clone()
    return out


def filter_layers(model: nn.Module, layers: Iterable[str] | None = None) -> list[str]:
    """The layers whose filters/neurons task pruning may remove: all but the output layer (default)."""
    topo = topology(model)
    names = resolve_layers(model, layers)
    out = [n for n in names if topo[n].consumer is None]
    if layers is not None and out:
        raise PruneError(f"layers: {out[0]!r} is the output layer; its outputs are the task's classes")
    return [n for n in names if topo[n].consumer is not None]


@dataclass
class ResponseStats:
    """Class-conditional response statistics of one layer's filters over a dataset."""

    layer: str
    counts: torch.Tensor  # (K,) samples per class
    class_means: torch.Tensor  # (K, C, P) mean post-ReLU response per class, channel and output position
    within: torch.Tensor  # (C,) within-class variance summed over positions (class-weighted)
    between: torch.Tensor  # (C,) between-class scatter of the class means, summed over positions
    response: torch.Tensor  # (C,) mean squared response per position

    def score(self, criterion: str) -> torch.Tensor:
        if criterion == "between":
            return self.between
        if criterion == "fisher":
            return self.between / (self.within + 1e-8 * float(self.within.mean() + 1e-12))
        if criterion == "response":
            return self.response
        raise PruneError(f"criterion: expected one of {list(CRITERIA)}, got {criterion!r}")


@torch.no_grad()
def response_statistics(model: nn.Module, ds: TensorDataset, layers: Iterable[str] | None = None,
                        masks: Masks | None = None, batch_size: int = 500) -> dict[str, ResponseStats]:
    """Per layer: class-conditional statistics of each filter's post-ReLU response on ``ds`` (the model, with
    ``masks`` applied, is not changed)."""
    names = filter_layers(model, layers)
    mods = prunable_layers(model)
    x, y = ds.tensors
    classes = torch.unique(y)
    k = classes.numel()
    index = torch.searchsorted(classes, y)
    sums: dict[str, torch.Tensor] = {}
    sq: dict[str, torch.Tensor] = {}
    current = {}

    def hook(name):
        def f(module, inp, out):
            current[name] = torch.relu(out).flatten(2) if out.dim() == 4 else torch.relu(out)[:, :, None]
        return f

    params = dict(model.named_parameters())
    masked = {n: (p * masks[n].to(p.dtype) if masks and n in masks else p) for n, p in params.items()}
    handles = [mods[n].register_forward_hook(hook(n)) for n in names]
    was = model.training
    model.eval()
    try:
        for i in range(0, len(x), batch_size):
            functional_call(model, masked, (x[i:i + batch_size],))
            onehot = nn.functional.one_hot(index[i:i + batch_size], k).to(x.dtype)  # (B, K)
            for n in names:
                a = current[n]  # (B, C, P)
                s = torch.einsum("bk,bcp->kcp", onehot, a)
                q = torch.einsum("bk,bcp->kcp", onehot, a * a)
                sums[n] = s if n not in sums else sums[n] + s
                sq[n] = q if n not in sq else sq[n] + q
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    counts = torch.bincount(index, minlength=k).to(x.dtype)
    p = counts / counts.sum()
    out = {}
    for n in names:
        means = sums[n] / counts[:, None, None]
        var = (sq[n] / counts[:, None, None] - means ** 2).clamp(min=0)
        grand = (p[:, None, None] * means).sum(0)
        between = (p[:, None, None] * (means - grand) ** 2).sum(0).sum(1)
        within = (p[:, None, None] * var).sum(0).sum(1)
        response = (sq[n].sum(0) / counts.sum()).mean(1)
        out[n] = ResponseStats(n, counts, means, within, between, response)
    return out


def task_scores(model: nn.Module, ds: TensorDataset, criterion: str = "fisher", layers: Iterable[str] | None = None,
                masks: Masks | None = None) -> dict[str, torch.Tensor]:
    """Task relevance of every filter/neuron of ``layers`` on the task data ``ds`` (higher = keep)."""
    if criterion not in CRITERIA:
        raise PruneError(f"criterion: expected one of {list(CRITERIA)}, got {criterion!r}")
    return {n: s.score(criterion) for n, s in response_statistics(model, ds, layers, masks).items()}


def _alive(model: nn.Module, masks: Masks | None, layer: str) -> torch.Tensor:
    m = prunable_layers(model)[layer]
    alive = ((m.weight.detach() != 0) & mask_for(model, masks, weight_key(layer))).flatten(1).any(1)
    if m.bias is not None:
        alive |= (m.bias.detach() != 0) & mask_for(model, masks, bias_key(layer))
    return alive


def task_filter_masks(model: nn.Module, scores: Mapping[str, torch.Tensor], ratio: float | Mapping[str, float],
                      masks: Masks | None = None) -> Masks:
    """Masks with the lowest-scored filters of each scored layer removed, so that the fraction ``ratio`` (one
    number or per layer) of the layer's outputs is gone (counting those already gone; >= 1 stays)."""
    topo = topology(model)
    names = filter_layers(model, list(scores))
    ratios = {n: check_ratio(ratio[n] if isinstance(ratio, Mapping) else ratio, f"ratio of layer {n!r}")
              for n in names if not isinstance(ratio, Mapping) or n in ratio}
    out = copy_masks(masks)
    for n, r in ratios.items():
        alive = _alive(model, out, n)
        total = alive.numel()
        extra = min(int(round(r * total)), total - 1) - (total - int(alive.sum()))
        if extra <= 0:
            continue
        s = torch.where(alive, scores[n].float(), torch.full((total,), float("inf")))
        remove = torch.zeros(total, dtype=torch.bool)
        remove[torch.argsort(s, stable=True)[:extra]] = True
        out = remove_channels(model, out, n, remove, topo)
    return out


@dataclass
class TaskPruneResult:
    masks: Masks
    scores: dict[str, torch.Tensor]
    val_accuracy_before: float
    val_accuracy_pruned: float
    val_accuracy: float
    removed: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict:
        return {"val_accuracy_before": self.val_accuracy_before, "val_accuracy_pruned": self.val_accuracy_pruned,
                "val_accuracy": self.val_accuracy, "removed": self.removed}


def task_prune(model: nn.Module, fit_ds: TensorDataset, val_ds: TensorDataset, ratio: float | Mapping[str, float],
               criterion: str = "fisher", finetune_config: FineTuneConfig | None = None, masks: Masks | None = None,
               layers: Iterable[str] | None = None, score_ds: TensorDataset | None = None) -> TaskPruneResult:
    """In place: score filters on the task data (``score_ds``, default ``fit_ds``), remove the least
    relevant ``ratio`` of each layer's filters, fine-tune on ``fit_ds``. The datasets are the sub-task's."""
    check_supported(model, structural=True, what="task pruning")
    masks = copy_masks(masks)
    apply_masks(model, masks)
    before = accuracy(model, val_ds)
    scores = task_scores(model, score_ds or fit_ds, criterion, layers, masks)
    new = task_filter_masks(model, scores, ratio, masks)
    apply_masks(model, new)
    pruned = accuracy(model, val_ds)
    finetune(model, fit_ds, new, finetune_config or FineTuneConfig(), 1)
    removed = {n: int((~_alive(model, new, n)).sum()) for n in scores}
    return TaskPruneResult(new, scores, before, pruned, accuracy(model, val_ds), removed)


@dataclass
class TaskParams:
    """The parameters of ``task``: the sub-task's classes and the fraction of filters to remove."""

    classes: str | tuple[int, ...] | None = param(None, "the sub-task's classes, e.g. 3,5,8", type=str)
    filter_ratio: float | None = param(None, "fraction of each layer's filters removed", type=float)
    criterion: str = param("fisher", "filter relevance score", choices=CRITERIA)
    subtask_epochs: int = param(2, "fine-tune epochs on the sub-task before scoring")

    def __post_init__(self):
        if self.classes is None or self.filter_ratio is None:
            raise PruneError("method 'task' needs --classes (e.g. 3,5,8) and --filter-ratio")
        if isinstance(self.filter_ratio, (int, float)):
            self.filter_ratio = check_ratio(self.filter_ratio, "filter_ratio")
        if self.criterion not in CRITERIA:
            raise PruneError(f"criterion: expected one of {list(CRITERIA)}, got {self.criterion!r}")
        if self.subtask_epochs < 0:
            raise PruneError(f"subtask_epochs must be >= 0, got {self.subtask_epochs}")
        self.classes = parse_classes(self.classes)

    def check(self, model: nn.Module, options: PruneOptions, masks: Masks) -> None:
        """The checks that need the model (classes against its outputs)."""
        check_supported(model, structural=True, what="task")
        parse_classes(self.classes, list(model.modules())[-1].out_features)


def run_task(model: nn.Module, options: PruneOptions, fit_ds: TensorDataset, val_ds: TensorDataset, masks: Masks,
             monitor_ds: TensorDataset | None = None) -> PruneResult:
    """Registry entry of ``task`` (:class:`TaskParams`). ``fit_ds``/``val_ds`` are the full task's splits: the
    model is specialised to the sub-task (its output rows), fine-tuned on it, then its least task-relevant
    filters are removed and it is fine-tuned again (4 epochs by default). The result's ``model`` is the new
    sub-task model; evaluate it on ``subtask_dataset(ds, result.classes)``."""
    import copy

    p: TaskParams = options.params
    classes = p.classes
    fit_ds, val_ds = subtask_dataset(fit_ds, classes), subtask_dataset(val_ds, classes)
    full = accuracy(model, TensorDataset(val_ds.tensors[0], torch.tensor(classes)[val_ds.tensors[1]]))
    masks = subtask_masks(model, masks, classes)
    sub = subtask_model(model, classes)
    finetune(sub, fit_ds, masks, replace(options.finetune_config(0), epochs=p.subtask_epochs), 0)  # no teacher: no KD
    start = copy.deepcopy(sub)
    res = task_prune(sub, fit_ds, val_ds, p.filter_ratio, p.criterion, options.finetune_config(4), masks,
                     options.layers)
    info = {"full_model_subtask_val_accuracy": full, **res.summary(), "classes": list(classes),
            "criterion": p.criterion}
    return PruneResult("task", sub, res.masks, res.val_accuracy, [], info, res, classes=classes, start_model=start)
