"""The one table of pruning methods, and :func:`prune_model`, the call every caller (Python, the ``prune``
command, the benchmarks, the demo) dispatches through::

    from sparsegate.sw.prune import PruneOptions, ScheduleParams, prune_model
    result = prune_model(model, PruneOptions("sra", ScheduleParams(max_drop=0.003), nrp=True), fit_ds, val_ds)

Each :class:`PruneMethod` is a name, a params dataclass (its fields declare the command-line arguments, see
:func:`sparsegate.sw.prune.api.param`), a run function and a short help.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

from torch import nn
from torch.utils.data import TensorDataset

from sparsegate.sw.prune.acra import AcraParams, run_acra
from sparsegate.sw.prune.api import PruneOptions, PruneResult, UnknownMethodError
from sparsegate.sw.prune.coarse import CoarseParams, run_coarse
from sparsegate.sw.prune.counting import layer_table
from sparsegate.sw.prune.iterative import ScheduleParams
from sparsegate.sw.prune.kep import KEPParams, run_kep
from sparsegate.sw.prune.lowrank import LowRankParams, run_lowrank, save_lowrank
from sparsegate.sw.prune.lstm_gates import LSTMGateParams, lstm_table, run_lstm_gates
from sparsegate.sw.prune.magnitude import run_magnitude
from sparsegate.sw.prune.masks import Masks, PruneError, apply_masks, check_fraction, copy_masks, resolve_layers, \
    verify_masks
from sparsegate.sw.prune.nrp import NRPParams, nrp_finetuned, run_nrp
from sparsegate.sw.prune.sensitivity import SensitivityParams, run_sensitivity
from sparsegate.sw.prune.sra import run_sra, run_sra_nrp
from sparsegate.sw.prune.task_guided import TaskParams, run_task
from sparsegate.sw.ml.train import save_checkpoint


@dataclass(frozen=True)
class PruneMethod:
    """One registered method."""

    name: str
    params: type  # its parameters dataclass
    run: Callable[..., PruneResult]  # run(model, options, fit_ds, val_ds, masks, monitor_ds) -> PruneResult
    help: str
    nrp_after: bool = True  # PruneOptions.nrp may follow it
    structured: bool = False  # removes conv structure: reports conv sparsity / index cost, can be shrunk
    model_kind: str = "cnn"  # "cnn" (sparsegate.sw.ml.models) or "lstm" (sparsegate.sw.ml.lstm_model)
    checkpoint: str = "model.pt"  # the file write_outputs saves the pruned model to
    save: Callable[..., None] = save_checkpoint  # save(path, model, model_name, masks, meta=...)


REGISTRY: dict[str, PruneMethod] = {m.name: m for m in (
    PruneMethod("magnitude", ScheduleParams, run_magnitude, "iterative layer-uniform magnitude pruning"),
    PruneMethod("global", ScheduleParams, run_magnitude, "iterative global magnitude pruning (one |w| threshold)"),
    PruneMethod("torch-l1", ScheduleParams, run_magnitude,
                "iterative torch.nn.utils.prune.global_unstructured (L1), the peer baseline"),
    PruneMethod("sra", ScheduleParams, run_sra, "iterative sparseness ratio allocation from per-layer sensitivity"),
    PruneMethod("sra-nrp", ScheduleParams, run_sra_nrp,
                "sra with neuron re-pruning in every round (guard --nrp-drop on training digits)"),
    PruneMethod("acra-uniform", AcraParams, run_acra, "one ratio for every layer, binary-searched to a FLOPs target"),
    PruneMethod("acra-sensitivity", AcraParams, run_acra,
                "per-layer ratios from sensitivity curves, binary-searched to a FLOPs target"),
    PruneMethod("sensitivity", SensitivityParams, run_sensitivity,
                "per-layer sensitivity analysis only (the model is unchanged)", nrp_after=False),
    PruneMethod("nrp", NRPParams, run_nrp, "neuron re-pruning of a (pruned) model, then a fine-tune",
                nrp_after=False),
    PruneMethod("kep", KEPParams, run_kep, "kernel-element (pattern) pruning of the conv layers", nrp_after=False,
                structured=True),
    PruneMethod("coarse", CoarseParams, run_coarse, "least-adversarial feature-map / kernel pruning",
                nrp_after=False, structured=True),
    PruneMethod("task", TaskParams, run_task, "specialise to a sub-task's classes, remove its least relevant filters",
                nrp_after=False, structured=True),
    PruneMethod("lowrank", LowRankParams, run_lowrank, "SVD / channel-decomposition factorization", nrp_after=False,
                checkpoint="lowrank.pt", save=save_lowrank),
    PruneMethod("lstm-gates", LSTMGateParams, run_lstm_gates,
                "LSTM sparsification of weights, neurons and gate preactivations", nrp_after=False,
                model_kind="lstm"),
)}


def methods() -> list[str]:
    """The registered method names, in table order."""
    return list(REGISTRY)


def get_method(name: str) -> PruneMethod:
    try:
        return REGISTRY[name]
    except KeyError:
        raise UnknownMethodError(f"method: unknown method {name!r}; expected one of {methods()}") from None


def validate(model: nn.Module, options: PruneOptions, masks: Masks | None = None) -> PruneMethod:
    """Check ``options`` against ``model`` before any data is touched (fills ``options.params`` with the method's
    defaults when ``None``, resolves ``options.layers``); returns the method's record."""
    record = get_method(options.method)
    if options.params is None:
        options.params = record.params()
    if not isinstance(options.params, record.params):
        raise PruneError(f"params: method {record.name!r} takes {record.params.__name__}, "
                         f"got {type(options.params).__name__}")
    options.nrp_drop = check_fraction(options.nrp_drop, "nrp_drop")
    if options.finetune_epochs is not None and options.finetune_epochs < 0:
        raise PruneError(f"finetune_epochs must be >= 0, got {options.finetune_epochs}")
    if not options.lr > 0:
        raise PruneError(f"lr must be > 0, got {options.lr!r}")
    if options.nrp and not record.nrp_after:
        raise PruneError(f"nrp: neuron re-pruning needs a pruning method it can follow, not {record.name!r}")
    if options.layers is not None and record.model_kind == "cnn":
        options.layers = resolve_layers(model, options.layers)
    check = getattr(options.params, "check", None)
    if check is not None:
        check(model, options, copy_masks(masks))
    return record


def table_of(method: str, model: nn.Module, masks: Masks):
    """The per-layer table (:class:`sparsegate.sw.prune.counting.LayerTable`) of a model pruned by ``method``."""
    return (lstm_table if get_method(method).model_kind == "lstm" else layer_table)(model, masks)


def prune_model(model: nn.Module, options: PruneOptions, fit_ds: TensorDataset, val_ds: TensorDataset,
                masks: Masks | None = None, monitor_ds: TensorDataset | None = None) -> PruneResult:
    """Prune ``model`` (in place) with ``options.method``, then NRP when ``options.nrp``.

    ``fit_ds`` trains, ``val_ds`` takes every decision; ``masks`` are the model's existing masks (a pruned
    checkpoint); ``monitor_ds`` (e.g. the test set) is only recorded along iterative paths, never read.
    Raises :class:`sparsegate.sw.prune.masks.PruneError` subclasses for bad options.
    """
    record = validate(model, options, masks)
    start = time.perf_counter()
    masks = copy_masks(masks)
    apply_masks(model, masks)
    result = record.run(model, options, fit_ds, val_ds, masks, monitor_ds)
    if options.nrp:
        res, result.nrp = nrp_finetuned(result.model, result.masks, options, fit_ds, val_ds)
        result.masks = res.masks
        result.val_accuracy = result.nrp["val_accuracy_after_finetune"]
    apply_masks(result.model, result.masks)
    verify_masks(result.model, result.masks)
    result.compression = table_of(record.name, result.model, result.masks).total.compression
    result.wall_time_s = time.perf_counter() - start
    return result

