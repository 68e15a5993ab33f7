"""The structured-pruning benchmark, cross-validated: KEP, coarse (feature map / kernel / both, random vs
least-adversarial masks), filter-level and unstructured magnitude pruning side by side, plus task-guided filter
pruning and physical shrinking, on K folds x seeds of the digit pool, figures with 95% intervals.

For each seed the embedded 5,000 digits are cut into K folds (:mod:`sparsegate.sw.ml.folds`): fold i tests on
its own block and splits the rest into fit and validation digits, disjoint. Per model (LeNet-5-Caffe on the
digits, the small VGG on the same digits as 32x32x3) and fold:

1. a dense base model is trained on the fold's fit digits; every pruning decision reads the fold's validation
   digits; the fold's test digits only feed the table;
2. every method prunes a copy of it on the conv layers round by round through the shared loop
   (:func:`sparsegate.sw.prune.iterative.iterative_prune`, one call per round): prune to the next conv-sparsity
   target, fine-tune. The result is the sparsest round before the first one whose validation accuracy falls
   more than the budget below the reference (the dense base after the same fine-tune without pruning). So the
   methods are compared at equal accuracy (budget), and each row says how far its granularity lets it go.
   (Not the loop's own window-averaged path selection: with steps this large, a destructive next round would
   drag a good round's average below the budget.) KEP spends its penalty epoch inside the round's budget;
3. the chosen model gets the same final fine-tune, then is measured on the fold's test digits beside the
   fold's dense base (the drop is paired): conv-layer sparsity, params and MACs removed
   (:func:`sparsegate.sw.prune.counting.layer_table`: zero weights and dead channels skipped), test accuracy
   and its drop, and the index bits per kept conv weight (:func:`sparsegate.sw.prune.kep.index_cost`);
4. random vs least-adversarial masks are also compared one-shot at the same ratio (85% conv sparsity,
   feature maps + kernels): the spread of the candidates' validation accuracy, and the test accuracy of the
   best and of a plain random candidate after the same fine-tune;
5. the coarse and filter-level models are shrunk for real (:mod:`sparsegate.sw.prune.shrink`) and checked.

Task-guided filter pruning, in every LeNet-5 fold: the fold's base is specialised to a sub-task (digits 3, 5,
8) on the fold's fit digits, its filters and hidden neurons are scored on them and removed at two ratios,
compared with task-agnostic L1-norm and random filter choice at the same ratios; the task-pruned model is shrunk.

Each model x fold x seed is one call of :func:`structured_job` — a pure top-level function of its arguments
returning a plain dict — mapped through one hook, ``map_jobs(fn, calls)`` (default: in order, in this
process), or the Dask job runner when runner options are given (``sparsegate bench --workers/--cache``).
:func:`aggregate` gives per method the mean and Student-t 95% interval over the folds x seeds that finished
(:mod:`sparsegate.sw.ml.stats`); the report renders any finished subset and says when it is partial.
"""
from __future__ import annotations

import copy
import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from sparsegate.sw.bench.job_map import MapJobs, finished, job_mapper, sequential_map
from sparsegate.sw.bench.results import BenchResult, write_results
from sparsegate.sw.jobs import RunnerOptions
from sparsegate.sw.jobs.digest import follows_code
from sparsegate.sw.ml.data import first_samples, to_rgb32
from sparsegate.sw.ml.folds import digit_pool, fold_datasets, kfold
from sparsegate.sw.ml.models import build_model
from sparsegate.sw.ml.stats import mean_ci
from sparsegate.sw.ml.threads import JOB_THREADS, pinned_threads
from sparsegate.sw.ml.train import TrainConfig, train
from sparsegate.sw.prune import MODEL_CODE
from sparsegate.sw.prune.coarse import CoarseConfig, coarse_masks, coarse_step, ratios_for_sparsity
from sparsegate.sw.prune.counting import layer_table
from sparsegate.sw.prune.iterative import FineTuneConfig, Schedule, accuracy, finetune, iterative_prune
from sparsegate.sw.prune.kep import KEPConfig, conv_layers, index_cost, kep_step
from sparsegate.sw.prune.masks import apply_masks, channel_l1_norms, copy_masks
from sparsegate.sw.prune.shrink import shrink_model
from sparsegate.sw.prune.task_guided import subtask_dataset, subtask_model, task_filter_masks, task_scores

__all__ = ["BENCH_METHODS", "METRICS", "METHODS", "ModelSettings", "StructuredSettings", "TaskSettings",
           "aggregate", "rerender_markdown", "run_structured_benchmark", "structured_job", "write_structured_report"]

METHODS = {
    "kep-pattern": "KEP, shared patterns",
    "kep-free": "KEP, free per plane",
    "filter-l1": "filter-level (L1 norm)",
    "coarse-fmap": "coarse: feature maps (least adv.)",
    "coarse-kernel": "coarse: kernels (least adv.)",
    "coarse-both": "coarse: both (least adv.)",
    "coarse-both-random": "coarse: both (random mask)",
    "magnitude": "unstructured magnitude (global)",
}
# benchmark key -> the registered method it runs (sparsegate.sw.prune.registry), with the step built in _step
BENCH_METHODS = {"kep-pattern": "kep", "kep-free": "kep", "filter-l1": "coarse", "coarse-fmap": "coarse",
                 "coarse-kernel": "coarse", "coarse-both": "coarse", "coarse-both-random": "coarse",
                 "magnitude": "global"}
# the per-fold row figures aggregated over folds x seeds (mean and 95% interval each)
METRICS = ("conv_sparsity", "params_removed", "conv_mac_reduction", "mac_reduction", "test_accuracy",
           "accuracy_drop", "index_bits_per_kept", "flat_index_bits_per_kept", "rounds", "wall_time_s")
TASK_METRICS = ("test_before_finetune", "test_accuracy", "accuracy_drop", "params_removed", "mac_reduction")
ONESHOT_METRICS = ("val_worst", "val_mean", "val_best", "best_before", "best_test", "plain_before", "plain_test")


@dataclass
class ModelSettings:
    model: str
    base_epochs: int
    base_lr: float = 2e-3
    targets: tuple = (0.65, 0.8, 0.88, 0.93, 0.96)  # conv-weight sparsity after each round
    max_drop: float = 0.008  # validation-accuracy budget of every method (margin for < 1 point on test)
    epochs_per_round: int = 3
    lr: float = 1e-3
    final_epochs: int = 1
    fit_subset: int | None = None  # fine-tuning samples (None: the fold's whole fit split)
    candidates: int = 20
    search: str = "layer"
    eval_samples: int | None = None
    patterns: int = 8
    penalty: float = 4.0
    penalty_epochs: int = 1
    oneshot_sparsity: float = 0.85
    oneshot_epochs: int = 2
    calibrate: bool = True  # budget against the base after one round's fine-tune without pruning
    methods: tuple = tuple(METHODS)


@dataclass
class TaskSettings:
    classes: tuple = (3, 5, 8)
    subtask_epochs: int = 2
    ratios: tuple = (0.75, 0.9)
    criteria: tuple = ("fisher", "between", "l1", "random")
    epochs: int = 4
    lr: float = 1e-3


@dataclass
class StructuredSettings:
    """The models and their schedules, the task section, and the cross-validation: ``folds`` of the digit
    pool (its first ``pool_size`` digits; None: all 5,000) for each of ``seeds``, ``val_fraction`` of each
    fold's non-test digits held out for validation; ``threads``: torch threads inside each job."""

    models: list[ModelSettings] = field(default_factory=lambda: [
        ModelSettings("lenet5", base_epochs=10, final_epochs=4, candidates=10, eval_samples=200,
                      oneshot_epochs=4),
        ModelSettings("vgg", base_epochs=8, targets=(0.5, 0.75, 0.875), epochs_per_round=2, final_epochs=0,
                      candidates=8, search="network", eval_samples=200, oneshot_sparsity=0.5, oneshot_epochs=3,
                      methods=("kep-pattern", "filter-l1", "coarse-fmap", "coarse-kernel", "coarse-both",
                               "magnitude")),
    ])
    task: TaskSettings | None = field(default_factory=TaskSettings)
    folds: int = 3
    seeds: tuple = (0,)
    val_fraction: float = 0.25  # 5,000 digits, 3 folds: 2,500 fit / 833 validation / 1,667 test per fold
    pool_size: int | None = None
    threads: int | None = JOB_THREADS

    @classmethod
    def quick(cls) -> "StructuredSettings":
        common = dict(base_epochs=1, targets=(0.5,), epochs_per_round=1, final_epochs=0, fit_subset=600,
                      candidates=2, eval_samples=100, penalty_epochs=1, oneshot_epochs=0, calibrate=False)
        return cls(models=[ModelSettings("lenet5", **common),
                           ModelSettings("vgg", search="network", **common)],
                   task=TaskSettings(subtask_epochs=1, ratios=(0.75,), criteria=("fisher", "l1"), epochs=1),
                   folds=2, pool_size=2000)

    def model(self, name: str) -> ModelSettings:
        return next(m for m in self.models if m.model == name)

    def calls(self) -> list[tuple]:
        """The argument tuples of :func:`structured_job`, one per model x seed x fold."""
        return [(m.model, fold, seed, self) for m in self.models for seed in self.seeds
                for fold in range(self.folds)]


TITLES = {"lenet5": "LeNet-5-Caffe, embedded MNIST (28x28x1)", "vgg": "small VGG, embedded MNIST as 32x32x3"}
INPUTS = {"lenet5": lambda ds: ds, "vgg": to_rgb32}  # the pool's digits as each model reads them


def measure(model: nn.Module, masks, conv: list[str], test_ds: TensorDataset, base_test: float) -> dict:
    """The table columns for one pruned model."""
    table = layer_table(model, masks)
    t = table.total
    rows = [table[n] for n in conv]
    conv_w = sum(r.weights for r in rows)
    conv_kept = sum(r.nonzero_weights for r in rows)
    conv_dense_macs = sum(r.dense_macs for r in rows)
    idx = index_cost(model, masks, conv)
    acc = accuracy(model, test_ds)
    return {"conv_sparsity": 1 - conv_kept / conv_w, "conv_kept": conv_kept, "conv_weights": conv_w,
            "params_removed": 1 - t.nonzero_params / t.params, "nonzero_params": t.nonzero_params,
            "params": t.params, "conv_mac_reduction": 1 - sum(r.macs for r in rows) / conv_dense_macs,
            "mac_reduction": t.mac_reduction, "test_accuracy": acc, "accuracy_drop": base_test - acc,
            "index_bits_per_kept": idx.bits_per_kept, "flat_index_bits_per_kept": idx.flat_bits_per_kept,
            "index_encoding": ", ".join(f"{c.layer}: {c.encoding}" for c in idx.layers),
            "table": table.to_dict()}


def _step(key: str, fit_ds, val_ds, s: ModelSettings, conv, seed: int):
    """(the method's prune step for the shared loop, its fine-tune config per round)."""
    ft = FineTuneConfig(epochs=s.epochs_per_round, lr=s.lr, seed=seed)
    if key.startswith("kep-"):
        cfg = KEPConfig(mode=key.split("-", 1)[1], patterns=s.patterns, penalty=s.penalty,
                        penalty_epochs=s.penalty_epochs)
        # the same training per round as every other method: the penalty epochs replace fine-tune epochs
        ft = FineTuneConfig(epochs=max(0, s.epochs_per_round - s.penalty_epochs), lr=s.lr, seed=seed)
        return kep_step(fit_ds, cfg, conv, ft.train_config(0), val_ds), ft
    if key == "magnitude":
        from sparsegate.sw.prune.magnitude import global_step
        return global_step(conv), ft
    granularity, selection, candidates = {
        "filter-l1": ("feature_map", "l1", 1), "coarse-fmap": ("feature_map", "random", s.candidates),
        "coarse-kernel": ("kernel", "random", s.candidates), "coarse-both": ("both", "random", s.candidates),
        "coarse-both-random": ("both", "random", 1)}[key]
    cfg = CoarseConfig(granularity=granularity, selection=selection, candidates=candidates, search=s.search,
                       eval_samples=s.eval_samples, seed=seed)
    return coarse_step(val_ds, cfg, conv), ft


def _prune(key: str, model: nn.Module, fit_ds, val_ds, s: ModelSettings, conv, seed: int,
           reference: float) -> tuple[dict, list]:
    """Prune ``model`` in place round by round (one :func:`iterative_prune` round per target) and keep the
    sparsest round before the first one whose validation accuracy falls more than the budget below
    ``reference``; returns (masks, [(sparsity, val accuracy, within budget) per round])."""
    step, ft = _step(key, fit_ds, val_ds, s, conv, seed)
    masks: dict = {}
    sparsity = 0.0
    best = (copy.deepcopy(model.state_dict()), {})
    history = []
    for target in s.targets:
        if target <= sparsity + 1e-9:
            continue  # an earlier round already went past this target
        res = iterative_prune(model, step, fit_ds, val_ds, Schedule(target_sparsity=target, step=0.999), ft,
                              masks, conv, progress=False, desc=f"{key} -> {target:.2f}")
        if res.sparsity <= sparsity + 1e-9:
            break  # the method cannot prune further
        masks, sparsity = res.masks, res.sparsity
        ok = reference - res.val_accuracy <= s.max_drop + 1e-9
        history.append((sparsity, res.val_accuracy, ok))
        if not ok:
            break
        best = (copy.deepcopy(model.state_dict()), copy_masks(masks))
    model.load_state_dict(best[0])
    apply_masks(model, best[1])
    return best[1], history


def _oneshot(base: nn.Module, fit_ds, val_ds, test_ds, s: ModelSettings, conv, base_test: float, seed: int) -> dict:
    """Random vs least-adversarial masks at one ratio: candidate spread, then best vs plain random fine-tuned."""
    cfg = CoarseConfig(granularity="both", candidates=max(2, s.candidates), search="network", seed=seed)
    rf, rk = ratios_for_sparsity(base, None, s.oneshot_sparsity, cfg, conv)
    sel = coarse_masks(base, val_ds, rf, rk, cfg, None, conv, torch.Generator().manual_seed(seed + 77),
                       keep_candidates=True)
    scores, cands = sel.scores["network"], sel.candidates["network"]
    best = sel.chosen["network"]
    plain = 1 if best == 0 else 0  # a plain random mask: the first candidate drawn (unless it is the best)
    out = {"fmap_ratio": rf, "kernel_ratio": rk, "candidates": len(scores),
           "val_worst": min(x.accuracy for x in scores), "val_mean": sum(x.accuracy for x in scores) / len(scores),
           "val_best": scores[best].accuracy, "val_plain": scores[plain].accuracy}
    for label, idx in (("best", best), ("plain", plain)):
        m = copy.deepcopy(base)
        masks = cands[idx]
        apply_masks(m, masks)
        pre = accuracy(m, test_ds)
        finetune(m, fit_ds, masks, FineTuneConfig(epochs=s.oneshot_epochs, lr=s.lr, seed=seed), 9)
        met = measure(m, masks, conv, test_ds, base_test)
        out[label] = {"test_before_finetune": pre, "test_accuracy": met["test_accuracy"],
                      "conv_sparsity": met["conv_sparsity"]}
    return out


def _shrink_row(label: str, model: nn.Module, masks, test_ds: TensorDataset) -> dict:
    res = shrink_model(model, masks)
    x = test_ds.tensors[0]
    masked = copy.deepcopy(model)
    apply_masks(masked, masks)
    masked.eval()
    res.model.eval()
    with torch.no_grad():
        t0 = time.perf_counter()
        a = masked(x)
        t1 = time.perf_counter()
        b = res.model(x)
        t2 = time.perf_counter()
    return {"method": label, "widths": {k: list(v) for k, v in res.widths.items()},
            "params_before": res.params_before, "params_after": res.params_after,
            "macs_before": res.macs_before, "macs_after": res.macs_after,
            "max_abs_diff_random": res.max_abs_diff, "max_abs_diff_test": float((a - b).abs().max()),
            "same_predictions": bool((a.argmax(1) == b.argmax(1)).all()),
            "masked_ms": 1000 * (t1 - t0), "shrunk_ms": 1000 * (t2 - t1)}


def run_model(s: ModelSettings, seed: int, fit_all: TensorDataset, val_ds: TensorDataset,
              test_ds: TensorDataset) -> dict:
    """One model on one fold: the dense base, every method's pruned model, the one-shot mask comparison and
    the shrink checks ("base": the dense model, for the task section)."""
    start = time.perf_counter()
    fit_ds = first_samples(fit_all, s.fit_subset)
    torch.manual_seed(seed)
    base = build_model(s.model)
    t0 = time.perf_counter()
    train(base, fit_all, TrainConfig(epochs=s.base_epochs, lr=s.base_lr, seed=seed, progress=False),
          desc=f"base {s.model}")
    base_s = time.perf_counter() - t0
    conv = conv_layers(base)
    base_test, base_val = accuracy(base, test_ds), accuracy(base, val_ds)
    rows = [dict(method="dense (base)", key="dense", wall_time_s=base_s, rounds=0,
                 **measure(base, {}, conv, test_ds, base_test))]
    reference = base_val
    if s.calibrate:  # what one round's fine-tune does to the dense base: the budget's reference
        m, t0 = copy.deepcopy(base), time.perf_counter()
        finetune(m, fit_ds, {}, FineTuneConfig(epochs=s.epochs_per_round, lr=s.lr, seed=seed), 1)
        reference = accuracy(m, val_ds)
        rows.append(dict(method="dense + one round's fine-tune (budget reference)", key="reference",
                         wall_time_s=time.perf_counter() - t0, rounds=0, **measure(m, {}, conv, test_ds, base_test)))
    pruned = {}
    for key in s.methods:
        m, t0 = copy.deepcopy(base), time.perf_counter()
        masks, history = _prune(key, m, fit_ds, val_ds, s, conv, seed, reference)
        finetune(m, fit_ds, masks, FineTuneConfig(epochs=s.final_epochs, lr=s.lr, seed=seed), 4242)
        row = dict(method=METHODS[key], key=key, wall_time_s=time.perf_counter() - t0,
                   rounds=len(history), path=history, **measure(m, masks, conv, test_ds, base_test))
        rows.append(row)
        pruned[key] = (m, masks)
    t0 = time.perf_counter()
    oneshot = _oneshot(base, fit_ds, val_ds, test_ds, s, conv, base_test, seed)
    oneshot_s = time.perf_counter() - t0
    shrinks = [_shrink_row(METHODS[k], *pruned[k], test_ds) for k in ("coarse-both", "filter-l1") if k in pruned]
    return {"model": s.model, "settings": asdict(s), "base_test_accuracy": base_test, "base_val_accuracy": base_val,
            "val_size": len(val_ds), "test_size": len(test_ds), "reference_val_accuracy": reference,
            "rows": rows, "oneshot": oneshot, "oneshot_s": oneshot_s, "shrink": shrinks,
            "wall_time_s": time.perf_counter() - start, "fit_size": len(fit_ds), "base_fit_size": len(fit_all),
            "base": base}


def run_task(t: TaskSettings, base: nn.Module, seed: int, fit_all: TensorDataset, val_all: TensorDataset,
             test_ds: TensorDataset) -> dict:
    """Task-guided filter pruning of a LeNet-5 base on the sub-task ``t.classes`` (the base's fold: its fit
    digits score and fine-tune, its test digits measure)."""
    start = time.perf_counter()
    fit_ds, val_ds, sub_test = (subtask_dataset(d, t.classes) for d in (fit_all, val_all, test_ds))
    full_on_sub = accuracy(base, TensorDataset(sub_test.tensors[0], torch.tensor(t.classes)[sub_test.tensors[1]]))
    sub = subtask_model(base, t.classes)
    transfer = accuracy(sub, sub_test)
    finetune(sub, fit_ds, {}, FineTuneConfig(epochs=t.subtask_epochs, lr=t.lr, seed=seed), 1)
    sub_acc = accuracy(sub, sub_test)
    layers = [n for n in conv_layers(sub)] + ["fc1"]
    dense = layer_table(sub, {})
    rows = []
    best = None
    for ratio in t.ratios:
        for crit in t.criteria:
            m = copy.deepcopy(sub)
            if crit == "l1":
                scores = {n: channel_l1_norms(m, None, n) for n in layers}
            elif crit == "random":
                g = torch.Generator().manual_seed(seed + 5)
                mods = dict(m.named_modules())
                scores = {n: torch.rand(mods[n].weight.shape[0], generator=g) for n in layers}
            else:
                scores = task_scores(m, fit_ds, crit, layers)
            masks = task_filter_masks(m, scores, ratio)
            apply_masks(m, masks)
            pre = accuracy(m, sub_test)
            finetune(m, fit_ds, masks, FineTuneConfig(epochs=t.epochs, lr=t.lr, seed=seed), 2)
            table = layer_table(m, masks)
            acc = accuracy(m, sub_test)
            rows.append({"ratio": ratio, "criterion": crit, "test_before_finetune": pre, "test_accuracy": acc,
                         "val_accuracy": accuracy(m, val_ds), "accuracy_drop": sub_acc - acc,
                         "params_removed": 1 - table.total.nonzero_params / dense.total.params,
                         "mac_reduction": table.total.mac_reduction,
                         "live": {r.name: f"{r.live_out}/{r.out_units}" for r in table.layers}})
            if crit == t.criteria[0] and (best is None or ratio >= best[0]):
                best = (ratio, m, masks)
    shrink = _shrink_row(f"task-guided ({t.criteria[0]}), {int(100 * best[0])}% of filters", best[1], best[2],
                         sub_test) if best else None
    return {"classes": list(t.classes), "fit_size": len(fit_ds), "test_size": len(sub_test),
            "full_model_on_subtask": full_on_sub, "transfer_accuracy": transfer, "subtask_accuracy": sub_acc,
            "rows": rows, "shrink": shrink, "settings": asdict(t), "wall_time_s": time.perf_counter() - start}


def fold_data(model: str, fold: int, seed: int, s: StructuredSettings):
    """(fit, validation, test) digits of ``fold`` for ``seed``, as ``model`` reads them."""
    pool = first_samples(digit_pool("mnist5k"), s.pool_size)
    f = kfold(len(pool), s.folds, seed, s.val_fraction)[fold]
    return tuple(INPUTS[model](ds) for ds in fold_datasets(pool, f))


@follows_code(*MODEL_CODE, __name__, libraries=("torch",))
def structured_job(model: str, fold: int, seed: int, s: StructuredSettings) -> dict:
    """One model x fold x seed of the benchmark (a pure function of its arguments and of the code it runs,
    which is in its cache key; a plain dict back): the
    fold's dense base and every method's rows, read on the fold's test digits; for LeNet-5 also the
    task-guided section on the same fold."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    with pinned_threads(s.threads) as threads:
        fit_ds, val_ds, test_ds = fold_data(model, fold, seed, s)
        out = run_model(s.model(model), seed, fit_ds, val_ds, test_ds)
        base = out.pop("base")
        out["task"] = run_task(s.task, base, seed, fit_ds, val_ds, test_ds) \
            if model == "lenet5" and s.task is not None else None
    return {**out, "fold": fold, "seed": seed, "threads": threads,
            "digits": {"fit": len(fit_ds), "val": len(val_ds), "test": len(test_ds)},
            "job_wall_time_s": time.perf_counter() - t0, "job_cpu_time_s": time.process_time() - cpu0}


def run_structured_benchmark(out_dir: str | Path, quick: bool = False, settings: StructuredSettings | None = None,
                             map_jobs: MapJobs = sequential_map, command: str | None = None,
                             jobs: RunnerOptions | None = None) -> BenchResult:
    """Run the benchmark over folds x seeds; write ``out_dir/structured.md`` and ``structured.json`` (per
    model and method: ``<metric>_mean``, ``<metric>_ci95``, ``n``, ``folds``, ``seeds``; every job's rows).
    ``map_jobs`` runs the :func:`structured_job` calls; ``jobs`` (runner options) sends them to the Dask job
    runner instead."""
    s = settings or (StructuredSettings.quick() if quick else StructuredSettings())
    start = time.perf_counter()
    results = finished(job_mapper(map_jobs, jobs)(structured_job, s.calls()))
    return write_structured_report(out_dir, results, s, quick, command, time.perf_counter() - start)


# ----------------------------------------------------------------------------------------------- figures

def _stats(rows: dict[tuple[int, int], dict], metrics) -> dict:
    """``<metric>_mean`` / ``<metric>_ci95`` over the (seed, fold) rows, with n, folds and seeds."""
    keys = sorted(rows)
    out = {"n": len(keys), "folds": sorted({k[1] for k in keys}), "seeds": sorted({k[0] for k in keys})}
    for metric in metrics:
        ci = mean_ci(rows[k][metric] for k in keys)
        out[f"{metric}_mean"], out[f"{metric}_ci95"] = ci.mean, ci.as_pair()
    return out


def paired_difference(a: dict[tuple[int, int], dict], b: dict[tuple[int, int], dict], metric: str) -> dict:
    """Mean and 95% interval of ``a - b`` in ``metric`` over the (seed, fold) keys both have (paired)."""
    keys = sorted(set(a) & set(b))
    ci = mean_ci(a[k][metric] - b[k][metric] for k in keys)
    return {"mean": ci.mean, "ci95": ci.as_pair(), "n": ci.n}


def _by_fold(jobs: list[dict], model: str) -> list[dict]:
    return sorted((j for j in jobs if j["model"] == model), key=lambda j: (j["seed"], j["fold"]))


def aggregate(jobs: list[dict]) -> dict:
    """Per model (in the order the jobs name them): per method key the figures of :data:`METRICS` as mean and
    95% interval over the finished folds x seeds, the base's test accuracy, the one-shot mask comparison and
    (LeNet-5) the task-guided rows per ratio x criterion, the same way."""
    out: dict[str, dict] = {}
    for model in dict.fromkeys(j["model"] for j in jobs):
        js = _by_fold(jobs, model)
        rows: dict[str, dict[tuple[int, int], dict]] = {}
        for j in js:
            for row in j["rows"]:
                rows.setdefault(row["key"], {})[j["seed"], j["fold"]] = row
        key = {(j["seed"], j["fold"]): j for j in js}
        oneshot = {k: {"val_worst": j["oneshot"]["val_worst"], "val_mean": j["oneshot"]["val_mean"],
                       "val_best": j["oneshot"]["val_best"],
                       "best_before": j["oneshot"]["best"]["test_before_finetune"],
                       "best_test": j["oneshot"]["best"]["test_accuracy"],
                       "plain_before": j["oneshot"]["plain"]["test_before_finetune"],
                       "plain_test": j["oneshot"]["plain"]["test_accuracy"]} for k, j in key.items() if j["oneshot"]}
        summary = {
            "methods": {k: {"method": next(iter(r.values()))["method"], **_stats(r, METRICS)} for k, r in rows.items()},
            "base": _stats({k: {"test_accuracy": j["base_test_accuracy"], "val_accuracy": j["base_val_accuracy"]}
                            for k, j in key.items()}, ("test_accuracy", "val_accuracy")),
            "oneshot": {**_stats(oneshot, ONESHOT_METRICS),
                        "best_minus_plain_test": paired_difference(
                            {k: {"x": v["best_test"]} for k, v in oneshot.items()},
                            {k: {"x": v["plain_test"]} for k, v in oneshot.items()}, "x")} if oneshot else None,
            "comparisons": _comparisons(rows),
        }
        tasks = {k: j["task"] for k, j in key.items() if j.get("task")}
        if tasks:
            cells: dict[tuple, dict] = {}
            for k, t in tasks.items():
                for r in t["rows"]:
                    cells.setdefault((r["ratio"], r["criterion"]), {})[k] = r
            summary["task"] = {
                "subtask": _stats({k: {"transfer_accuracy": t["transfer_accuracy"],
                                       "subtask_accuracy": t["subtask_accuracy"]} for k, t in tasks.items()},
                                  ("transfer_accuracy", "subtask_accuracy")),
                "rows": [{"ratio": ratio, "criterion": crit, **_stats(r, TASK_METRICS)}
                         for (ratio, crit), r in cells.items()]}
        out[model] = summary
    return out


def _comparisons(rows: dict[str, dict[tuple[int, int], dict]]) -> dict:
    """The paired differences the verdicts read: coarse both vs the better single granularity, least
    adversarial vs random masks, each KEP mode vs filter-level (conv sparsity and conv MACs)."""
    out = {}
    singles = [k for k in ("coarse-fmap", "coarse-kernel") if k in rows]
    if "coarse-both" in rows and singles:
        best = max(singles, key=lambda k: mean_ci(r["conv_sparsity"] for r in rows[k].values()).mean)
        out["both_vs_best_single"] = {"single": best, **paired_difference(rows["coarse-both"], rows[best],
                                                                          "conv_sparsity")}
    if "coarse-both" in rows and "coarse-both-random" in rows:
        out["least_adversarial_vs_random"] = paired_difference(rows["coarse-both"], rows["coarse-both-random"],
                                                               "conv_sparsity")
    for kep in ("kep-pattern", "kep-free"):
        if kep in rows and "filter-l1" in rows:
            out[f"{kep}_vs_filter"] = {m: paired_difference(rows[kep], rows["filter-l1"], m)
                                       for m in ("conv_sparsity", "conv_mac_reduction", "params_removed",
                                                 "accuracy_drop")}
    return out


def write_structured_report(out_dir: str | Path, jobs: list[dict], s: StructuredSettings, quick: bool = False,
                            command: str | None = None, wall_time_s: float = 0.0) -> BenchResult:
    """Aggregate ``jobs`` (:func:`structured_job` dicts, any subset of the models x folds x seeds) and write
    the Markdown and the JSON; also how a resumed or distributed run reports what it finished."""
    command = command or "sparsegate bench --only structured" + (" --quick" if quick else "")
    expected = [(m, seed, fold) for m, fold, seed, _ in s.calls()]
    done = {(j["model"], j["seed"], j["fold"]) for j in jobs}
    d = {"quick": quick, "command": command, "settings": asdict(s), "folds": s.folds, "seeds": list(s.seeds),
         "missing": [list(k) for k in expected if k not in done], "wall_time_s": wall_time_s,
         "cpu_time_s": sum(j["job_cpu_time_s"] for j in jobs), "summary": aggregate(jobs), "jobs": jobs}
    return write_results("structured", render_markdown(d), d, Path(out_dir))


def rerender_markdown(out_dir: str | Path) -> BenchResult:
    """Rewrite ``structured.md`` from the benchmark's JSON (no re-run)."""
    out_dir = Path(out_dir)
    d = json.loads((out_dir / "structured.json").read_text())
    return write_results("structured", render_markdown(d), d, out_dir)


# ----------------------------------------------------------------------------------------------- report

def _pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"


def _ci(m: dict, metric: str, digits: int = 1, scale: float = 100, sign: str = "", unit: str = "%") -> str:
    """``mean [low, high]`` of ``metric`` in a :func:`_stats` dict (just the mean when n = 1)."""
    mean, (lo, hi) = m[f"{metric}_mean"], m[f"{metric}_ci95"]
    f = f"{sign}.{digits}f"
    text = f"{scale * mean:{f}}{unit}"
    return text if m["n"] < 2 else f"{text} [{scale * lo:{f}}, {scale * hi:{f}}]"


def _diff(c: dict, scale: float = 100, unit: str = " pts") -> str:
    lo, hi = c["ci95"]
    return f"{scale * c['mean']:+.1f}{unit}" + (f" [{scale * lo:+.1f}, {scale * hi:+.1f}]" if c["n"] > 1 else "")


def _reading(c: dict) -> str:
    """What a paired difference's interval says."""
    if c["n"] < 2:
        return "one result, no interval"
    if c["ci95"][0] > 0:
        return "interval above 0"
    if c["ci95"][1] < 0:
        return "interval below 0"
    return "interval spans 0: not resolved"


def render_markdown(d: dict) -> str:
    s, summary, jobs = d["settings"], d["summary"], d["jobs"]
    n_total = len(s["models"]) * s["folds"] * len(s["seeds"])
    digits = jobs[0]["digits"] if jobs else {}
    lines = ["# Structured pruning benchmark: KEP, coarse, filter-level, magnitude; task-guided; shrinking — "
             f"{s['folds']}-fold cross-validation x {len(s['seeds'])} seed(s)", ""]
    if d["missing"]:
        lines += [f"**Partial run**: {n_total - len(d['missing'])} of the {n_total} model x fold x seed jobs "
                  f"finished; missing (model, seed.fold): "
                  f"{', '.join(f'{m} {seed}.{fold}' for m, seed, fold in d['missing'])}. Every figure below is over "
                  "the finished ones only (n per row).", ""]
    if d["quick"]:
        lines += ["**Quick mode** (smoke-test budget) — not a measurement.", ""]
    pool = f"the first {s['pool_size']:,} of the embedded 5,000 MNIST digits" if s["pool_size"] else \
        "the embedded 5,000 MNIST digits"
    lines += [
        f"Command: `{d['command']}`. Cross-validation: for each seed {list(s['seeds'])}, {pool} are cut into "
        f"{s['folds']} folds; fold i tests on its own block and splits the rest into fit and validation digits "
        f"({digits.get('fit', 0):,} fit / {digits.get('val', 0):,} validation / {digits.get('test', 0):,} test "
        "per fold, disjoint). In each fold each model's dense base is trained on the fit digits; every pruning "
        "decision (round selection, least-adversarial mask scores, the budget's reference) reads the validation "
        "digits only; the drop is paired: the fold's dense base minus the pruned model on the same test digits. "
        f"Figures: mean [95% CI], Student t over the n = folds x seeds results of each row (n = "
        f"{s['folds'] * len(s['seeds'])} when complete; the folds share training digits, so the interval is, if "
        "anything, optimistic); a row with n = 1 shows its value alone. The t factor is large for few results "
        "(4.30 at n = 3), and the selection stops at the first round over budget, so one fold that stops early "
        "widens a row's interval a lot; for a bounded figure it can then run past 0 or 100% — that is its width, "
        "read the per-fold table below.", "",
        "Every method prunes the **conv layers** of the fold's dense base round by round (each round one "
        "`iterative_prune` step: prune to the next conv-sparsity target, fine-tune); the result is the "
        "sparsest round before the first one whose validation accuracy falls more than the budget below the "
        "reference — so rows compare granularities **at equal accuracy** (budget). Then one final fine-tune. "
        "*Conv sparsity*: pruned fraction of the conv weights. *Params removed*: of all network params (weights "
        "+ biases; removing a conv feature map also removes the fc weights reading it). *MACs removed*: "
        "multiply-accumulates a zero-skipping engine skips (zero weights and dead channels), conv layers / whole "
        "network. *Index bits / kept weight*: bits needed to locate the kept conv weights — removed channels "
        "cost nothing (physically shrunk), then a plane bitmap per live filter and per kept plane a bitmap, a "
        "shared-pattern id or an element list, whichever is cheapest (`kep.index_cost`); the flat per-weight "
        "(cin, ky, kx) index of the v1 weight image is given for reference.", ""]
    for model, m in summary.items():
        js = _by_fold(jobs, model)
        ms = js[0]["settings"]
        b = m["base"]
        lines += [f"## {TITLES[model]}", "",
                  f"Base: {ms['base_epochs']} epochs on each fold's {js[0]['base_fit_size']:,} fit digits, test "
                  f"accuracy {_ci(b, 'test_accuracy', 2)} (validation {_ci(b, 'val_accuracy', 2)}). Rounds to "
                  f"conv sparsity {', '.join(_pct(t, 1) for t in ms['targets'])}, {ms['epochs_per_round']} "
                  f"fine-tune epoch(s) per round on {js[0]['fit_size']:,} digits (Adam, peak lr {ms['lr']:g}), "
                  f"validation budget {100 * ms['max_drop']:.1f} points below "
                  + ("the dense base after one round's fine-tune, " if ms["calibrate"] else "the dense base, ")
                  + f"final fine-tune {ms['final_epochs']} epoch(s). KEP: {ms['patterns']} shared patterns "
                  f"(pattern mode), penalty exponent {ms['penalty']:g} over {ms['penalty_epochs']} epoch per round "
                  f"in place of that round's fine-tune epoch (same training per round for every method), global "
                  f"keep allocation. Least-adversarial: best of {ms['candidates']} random masks per "
                  f"{ms['search']} choice, scored on {ms['eval_samples'] or js[0]['val_size']} validation digits.",
                  "",
                  "| method | conv sparsity | params removed | MACs removed conv | MACs removed net | accuracy drop "
                  "(pts, paired) | index bits / kept weight | n |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for row in m["methods"].values():
            lines.append(f"| {row['method']} | {_ci(row, 'conv_sparsity')} | {_ci(row, 'params_removed')} "
                         f"| {_ci(row, 'conv_mac_reduction')} | {_ci(row, 'mac_reduction')} "
                         f"| {_ci(row, 'accuracy_drop', 2, sign='+', unit='')} "
                         f"| {_ci(row, 'index_bits_per_kept', 2, 1, unit='')} | {row['n']} |")
        lines.append("")
        lines += _verdicts(m)
        o = m["oneshot"]
        if o:
            lines += [f"**Random vs least-adversarial mask, one shot** at {_pct(ms['oneshot_sparsity'], 0)} conv "
                      f"sparsity (feature maps, then kernels; the fold's validation digits score the candidates): "
                      f"{max(2, ms['candidates'])} random candidates scored "
                      f"{_ci(o, 'val_worst')} (worst) / {_ci(o, 'val_mean')} (mean) / {_ci(o, 'val_best')} (best) "
                      f"on validation before fine-tuning. After {ms['oneshot_epochs']} fine-tune epoch(s), on the "
                      f"test digits: least adversarial {_ci(o, 'best_before')} → {_ci(o, 'best_test', 2)}, a plain "
                      f"random mask {_ci(o, 'plain_before')} → {_ci(o, 'plain_test', 2)}; least adversarial minus "
                      f"plain {_diff(o['best_minus_plain_test'])} ({_reading(o['best_minus_plain_test'])}).", ""]
        shrinks = [(j, r) for j in js for r in j["shrink"]]
        if shrinks:
            lines += _shrink_table(shrinks)
        lines += _per_fold(js)
    lenet = summary.get("lenet5", {})
    if lenet.get("task"):
        lines += _task_section(lenet["task"], _by_fold(jobs, "lenet5"))
    threads = sorted({j["threads"] for j in jobs})
    lines += [f"Total wall time {d['wall_time_s'] / 60:.1f} min on {platform.machine()}, {d['cpu_time_s'] / 60:.1f} "
              f"min of CPU time in the jobs ({'/'.join(map(str, threads))} torch thread(s) per job; the machine is "
              "shared, so wall times per row are noisy).", ""]
    return "\n".join(lines)


def _verdicts(m: dict) -> list[str]:
    """The questions the benchmark asks, answered from the means, with the intervals (and, for comparisons,
    the paired per-fold differences) beside them."""
    rows, cmp = m["methods"], m["comparisons"]
    out = []
    coarse = [rows[k] for k in ("coarse-both", "coarse-fmap", "coarse-kernel") if k in rows]
    if coarse:
        ok = [c for c in coarse if c["conv_sparsity_mean"] >= 0.85 and c["accuracy_drop_mean"] < 0.01]
        detail = "; ".join(f"{c['method']}: {_ci(c, 'conv_sparsity')} at "
                           f"{_ci(c, 'accuracy_drop', 2, sign='+', unit='')} pts" for c in coarse)
        out.append(f"- Target (coarse, Anwar & Sung: >= 85% conv sparsity at < 1 point loss, on the means): "
                   f"**{'met' if ok else 'not met'}**{' by ' + ', '.join(c['method'] for c in ok) if ok else ''} "
                   f"— {detail}.")
    if "both_vs_best_single" in cmp:
        c = cmp["both_vs_best_single"]
        out.append(f"- Both granularities vs the better single one ({rows[c['single']]['method']}), paired conv "
                   f"sparsity difference: {_diff(c)} ({_reading(c)}).")
    if "least_adversarial_vs_random" in cmp:
        c = cmp["least_adversarial_vs_random"]
        out.append(f"- Least-adversarial vs random masks (both granularities, same budget), paired conv sparsity "
                   f"difference: {_diff(c)} ({_reading(c)}).")
    for key in ("kep-pattern", "kep-free"):
        c = cmp.get(f"{key}_vs_filter")
        if c:
            sp, mac = c["conv_sparsity"], c["conv_mac_reduction"]
            ahead = sp["n"] > 1 and sp["ci95"][0] > 0 and mac["ci95"][0] > 0
            behind = sp["n"] > 1 and sp["ci95"][1] < 0 and mac["ci95"][1] < 0
            word = "KEP ahead" if ahead else "KEP behind" if behind else "no resolved difference"
            out.append(f"- {rows[key]['method']} minus filter-level at equal budget, paired: conv params removed "
                       f"{_diff(sp)}, conv MACs removed {_diff(mac)}, network params removed "
                       f"{_diff(c['params_removed'])}, drop {_diff(c['accuracy_drop'])}: **{word}** on conv params "
                       f"and MACs (ahead / behind: both paired intervals above / below 0).")
    mag = rows.get("magnitude")
    if mag:
        out.append(f"- Unstructured magnitude at the same budget: {_ci(mag, 'conv_sparsity')} conv sparsity, but "
                   f"{_ci(mag, 'index_bits_per_kept', 1, 1, unit='')} index bits per kept weight.")
    return out + [""]


def _per_fold(js: list[dict]) -> list[str]:
    lines = ["Per fold:", "", "| seed | fold | method | conv sparsity | params removed | MACs removed (conv / net) "
             "| test acc. | drop (pts) | index bits / kept weight (flat) | rounds | time |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for j in js:
        for row in j["rows"]:
            lines.append(
                f"| {j['seed']} | {j['fold']} | {row['method']} | {_pct(row['conv_sparsity'])} "
                f"| {_pct(row['params_removed'])} | {_pct(row['conv_mac_reduction'])} / {_pct(row['mac_reduction'])} "
                f"| {_pct(row['test_accuracy'], 2)} | {100 * row['accuracy_drop']:+.2f} "
                f"| {row['index_bits_per_kept']:.2f} ({row['flat_index_bits_per_kept']:.1f}) | {row['rounds']} "
                f"| {row['wall_time_s']:.0f} s |")
    idx = [(j, row) for j in js for row in j["rows"] if row["key"] == "kep-pattern"]
    if idx:
        lines += ["", "KEP index detail (pattern mode): " + "; ".join(
            f"{j['seed']}.{j['fold']}: {row['index_encoding']}" for j, row in idx) + "."]
    return lines + [""]


def _shrink_table(shrinks: list[tuple[dict, dict]]) -> list[str]:
    lines = ["Physical shrinking (`shrink.shrink_model`): the removed channels taken out of the model for real.", "",
             "| seed.fold | pruned model | layer widths (in→out) | params | dense MACs | max \\|Δ output\\| "
             "| same predictions | test set on CPU: masked / shrunk |", "|---|---|---|---:|---:|---:|---|---:|"]
    for j, s in shrinks:
        widths = ", ".join(f"{k} {v[0]}→{v[1]}" for k, v in s["widths"].items())
        lines.append(f"| {j['seed']}.{j['fold']} | {s['method']} | {widths} | {s['params_before']:,} → "
                     f"{s['params_after']:,} | {s['macs_before']:,} → {s['macs_after']:,} "
                     f"| {s['max_abs_diff_test']:.1e} "
                     f"| {'yes' if s['same_predictions'] else 'no'} | {s['masked_ms']:.0f} / {s['shrunk_ms']:.0f} ms |")
    return lines + [""]


def _task_section(t: dict, js: list[dict]) -> list[str]:
    first = next(j["task"] for j in js if j.get("task"))
    st, sub = first["settings"], t["subtask"]
    live = {(r["ratio"], r["criterion"]): r["live"] for r in first["rows"]}
    lines = ["## Task-guided filter pruning (LeNet-5, sub-task: digits " + ", ".join(map(str, first["classes"])) + ")",
             "",
             "In every LeNet-5 fold, on that fold's base and digits: the ten-digit base, restricted to the sub-task's "
             f"output rows, scores {_ci(sub, 'transfer_accuracy', 2)} on the sub-task's test digits "
             f"({first['test_size']} in fold {js[0]['seed']}.{js[0]['fold']}; {_ci(sub, 'subtask_accuracy', 2)} after "
             f"{st['subtask_epochs']} fine-tune epochs on its {first['fit_size']:,} fit digits). Filters of "
             "conv1, conv2 and neurons of fc1 are scored on the sub-task's fit digits — *between*: between-class "
             "scatter of the class-conditional mean responses; *fisher*: that over the within-class scatter; *l1*: "
             "task-agnostic filter L1 norm; *random* — and the lowest fraction of each layer is removed, then "
             f"{st['epochs']} fine-tune epochs. Drops are paired against the fold's fine-tuned sub-task model.", "",
             "| filters removed | criterion | test before fine-tune | test after | drop (pts) | params removed "
             "| MACs removed | live conv1 / conv2 / fc1 | n |", "|---:|---|---:|---:|---:|---:|---:|---|---:|"]
    for r in t["rows"]:
        lv = live.get((r["ratio"], r["criterion"]), {})
        lines.append(f"| {_pct(r['ratio'], 0)} | {r['criterion']} | {_ci(r, 'test_before_finetune')} "
                     f"| {_ci(r, 'test_accuracy', 2)} | {_ci(r, 'accuracy_drop', 2, sign='+', unit='')} "
                     f"| {_ci(r, 'params_removed')} | {_ci(r, 'mac_reduction')} "
                     f"| {' / '.join(lv.get(n, '?') for n in ('conv1', 'conv2', 'fc1'))} | {r['n']} |")
    lines.append("")
    shrinks = [(j, j["task"]["shrink"]) for j in js if j.get("task") and j["task"]["shrink"]]
    if shrinks:
        lines += _shrink_table(shrinks)
    lines += [f"Task section: {sum(j['task']['wall_time_s'] for j in js if j.get('task')):.0f} s over the folds.", ""]
    return lines
