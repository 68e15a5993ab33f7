"""Pruning methods behind one call: ``prune_model(model, PruneOptions(method, params), fit_ds, val_ds)``.

One file per method (its algorithm, its params dataclass and its run function), :mod:`.registry` lists them,
:mod:`.outputs` writes a run's files. See docs/pruning.md.
"""
from sparsegate.sw.prune.acra import AcraParams
from sparsegate.sw.prune.api import PruneOptions, PruneResult, UnknownMethodError
from sparsegate.sw.prune.coarse import CoarseParams
from sparsegate.sw.prune.iterative import ScheduleParams
from sparsegate.sw.prune.kep import KEPParams
from sparsegate.sw.prune.lowrank import LowRankParams
from sparsegate.sw.prune.lstm_gates import LSTMGateParams
from sparsegate.sw.prune.masks import PruneError
from sparsegate.sw.prune.nrp import NRPParams
from sparsegate.sw.prune.outputs import write_outputs
from sparsegate.sw.prune.registry import REGISTRY, PruneMethod, get_method, methods, prune_model, validate
from sparsegate.sw.prune.sensitivity import SensitivityParams
from sparsegate.sw.prune.task_guided import TaskParams

#: The packages a trained or pruned model's figures follow (models, data, training, pruning): with the job or cache
#: module and torch's version, the code part of a result's cache key (``sw.jobs.digest.sources_digest``).
MODEL_CODE = ("sparsegate.sw.ml", "sparsegate.sw.prune")

__all__ = ["MODEL_CODE", "AcraParams", "CoarseParams", "KEPParams", "LSTMGateParams", "LowRankParams", "NRPParams",
           "PruneError", "PruneMethod", "PruneOptions", "PruneResult", "REGISTRY", "ScheduleParams",
           "SensitivityParams", "TaskParams", "UnknownMethodError", "get_method", "methods", "prune_model",
           "validate", "write_outputs"]
