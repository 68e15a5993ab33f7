"""The structured-pruning benchmark: KEP, coarse (feature map / kernel / both, random vs least-adversarial
masks), filter-level and unstructured magnitude pruning side by side, plus task-guided filter pruning and
physical shrinking — one run, one Markdown report.

Per model (LeNet-5-Caffe on the embedded MNIST digits, the small VGG on the same digits as 32x32x3):

1. a dense base model is trained on the fit split (1,000 training digits are held out as the validation
   split that every pruning decision reads; the 1,000 test digits only feed the table);
2. every method prunes a copy of it on the conv layers round by round through the shared loop
   (:func:`sparsegate.sw.prune.iterative.iterative_prune`, one call per round): prune to the next conv-sparsity
   target, fine-tune. The result is the sparsest round before the first one whose validation accuracy falls
   more than the budget below the reference (the dense base after the same fine-tune without pruning). So the
   methods are compared at equal accuracy (budget), and each row says how far its granularity lets it go.
   (Not the loop's own window-averaged path selection: with steps this large, a destructive next round would
   drag a good round's average below the budget.) KEP spends its penalty epoch inside the round's budget;
3. the chosen model gets the same final fine-tune, then is measured: conv-layer sparsity, params and MACs
   removed (:func:`sparsegate.sw.prune.counting.layer_table`: zero weights and dead channels skipped), test
   accuracy and its drop, and the index bits per kept conv weight (:func:`sparsegate.sw.prune.kep.index_cost`);
4. random vs least-adversarial masks are also compared one-shot at the same ratio (85% conv sparsity,
   feature maps + kernels): the spread of the candidates' validation accuracy, and the test accuracy of the
   best and of a plain random candidate after the same fine-tune;
5. the coarse and filter-level models are shrunk for real (:mod:`sparsegate.sw.prune.shrink`) and checked.

Task-guided filter pruning: the LeNet-5 base is specialised to a sub-task (digits 3, 5, 8), its filters and
hidden neurons are scored on the sub-task's data and removed at two ratios, compared with task-agnostic
L1-norm and random filter choice at the same ratios; the task-pruned model is shrunk.
"""
from __future__ import annotations

import copy
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

from sparsegate.sw.bench.results import BenchResult, write_results
from sparsegate.sw.prune.coarse import CoarseConfig, coarse_masks, coarse_step, ratios_for_sparsity
from sparsegate.sw.prune.counting import layer_table
from sparsegate.sw.ml.data import mnist_embedded, mnist_embedded_rgb32
from sparsegate.sw.prune.kep import KEPConfig, conv_layers, index_cost, kep_step
from sparsegate.sw.prune.masks import apply_masks, channel_l1_norms, copy_masks
from sparsegate.sw.ml.models import build_model
from sparsegate.sw.prune.iterative import FineTuneConfig, Schedule, accuracy, finetune, iterative_prune, split_validation
from sparsegate.sw.prune.shrink import shrink_model
from sparsegate.sw.prune.task_guided import subtask_dataset, subtask_model, task_filter_masks, task_scores
from sparsegate.sw.ml.train import TrainConfig, train

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
    fit_subset: int | None = None  # fine-tuning samples (None: the whole fit split)
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
    models: list[ModelSettings] = field(default_factory=lambda: [
        ModelSettings("lenet5", base_epochs=10, final_epochs=4, candidates=10, eval_samples=200,
                      oneshot_epochs=4),
        ModelSettings("vgg", base_epochs=8, targets=(0.5, 0.75, 0.875), epochs_per_round=2, final_epochs=0,
                      candidates=8, search="network", eval_samples=200, oneshot_sparsity=0.5, oneshot_epochs=3,
                      methods=("kep-pattern", "filter-l1", "coarse-fmap", "coarse-kernel", "coarse-both",
                               "magnitude")),
    ])
    task: TaskSettings | None = field(default_factory=TaskSettings)
    val_size: int = 1000

    @classmethod
    def quick(cls) -> "StructuredSettings":
        common = dict(base_epochs=1, targets=(0.5,), epochs_per_round=1, final_epochs=0, fit_subset=600,
                      candidates=2, eval_samples=100, penalty_epochs=1, oneshot_epochs=0, calibrate=False)
        return cls(models=[ModelSettings("lenet5", **common),
                           ModelSettings("vgg", search="network", **common)],
                   task=TaskSettings(subtask_epochs=1, ratios=(0.75,), criteria=("fisher", "l1"), epochs=1),
                   val_size=500)


LOADERS = {"lenet5": mnist_embedded, "vgg": mnist_embedded_rgb32}
TITLES = {"lenet5": "LeNet-5-Caffe, embedded MNIST (28x28x1)", "vgg": "small VGG, embedded MNIST as 32x32x3"}


def _subset(ds: TensorDataset, n: int | None) -> TensorDataset:
    if n is None or n >= len(ds):
        return ds
    x, y = ds.tensors
    return TensorDataset(x[:n], y[:n])


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


def _prune(key: str, model: nn.Module, fit_ds, val_ds, s: ModelSettings, conv, progress: bool, seed: int,
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
                              masks, conv, progress=progress, desc=f"{key} -> {target:.2f}")
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


def run_model(s: ModelSettings, seed: int, val_size: int, progress: bool) -> dict:
    start = time.perf_counter()
    train_ds, test_ds = LOADERS[s.model](seed)
    fit_all, val_ds = split_validation(train_ds, val_size, seed)
    fit_ds = _subset(fit_all, s.fit_subset)
    torch.manual_seed(seed)
    base = build_model(s.model)
    t0 = time.perf_counter()
    train(base, fit_all, TrainConfig(epochs=s.base_epochs, lr=s.base_lr, seed=seed, progress=progress),
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
        masks, history = _prune(key, m, fit_ds, val_ds, s, conv, progress, seed, reference)
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
            "val_size": len(val_ds), "reference_val_accuracy": reference,
            "rows": rows, "oneshot": oneshot, "oneshot_s": oneshot_s, "shrink": shrinks,
            "wall_time_s": time.perf_counter() - start, "fit_size": len(fit_ds), "base_fit_size": len(fit_all),
            "base": base}


def run_task(t: TaskSettings, base: nn.Module, seed: int, val_size: int) -> dict:
    """Task-guided filter pruning of the LeNet-5 base on the sub-task ``t.classes``."""
    start = time.perf_counter()
    train_ds, test_ds = mnist_embedded(seed)
    fit_all, val_all = split_validation(train_ds, val_size, seed)
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


def run_structured_benchmark(out_dir: str | Path, quick: bool = False, progress: bool = True, seed: int = 0,
                             settings: StructuredSettings | None = None, threads: int | None = None) -> BenchResult:
    """Run the benchmark; write ``out_dir/structured.md`` and ``structured.json`` with its figures."""
    s = settings or (StructuredSettings.quick() if quick else StructuredSettings())
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        results = [run_model(ms, seed, s.val_size, progress) for ms in s.models]
        task = None
        lenet = next((r for r in results if r["model"] == "lenet5"), None)
        if s.task is not None and lenet is not None:
            task = run_task(s.task, lenet["base"], seed, s.val_size)
    finally:
        torch.set_num_threads(old_threads)
    total_s, cpu_s = time.perf_counter() - start, time.process_time() - cpu_start
    md = render_markdown(results, task, total_s, quick, threads or old_threads, cpu_s)
    out_dir = Path(out_dir)
    return write_results("structured", md, {
        "quick": quick, "seed": seed, "wall_time_s": total_s, "cpu_time_s": cpu_s,
        "models": [{k: v for k, v in r.items() if k != "base"} for r in results], "task": task}, out_dir)


# ----------------------------------------------------------------------------------------------- report

def _pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"


def render_markdown(results: list[dict], task: dict | None, total_s: float, quick: bool, threads: int,
                    cpu_s: float | None = None) -> str:
    lines = ["# Structured pruning benchmark: KEP, coarse, filter-level, magnitude; task-guided; shrinking", ""]
    if quick:
        lines += ["**Quick mode** (smoke-test budget) — not a measurement.", ""]
    lines += [
        "Every method prunes the **conv layers** of the same dense base round by round (each round one "
        "`prune_loop.iterative_prune` step: prune to the next conv-sparsity target, fine-tune); the result is the "
        "sparsest round before the first one whose validation accuracy falls more than the budget below the "
        "reference — so rows compare granularities **at equal accuracy** (budget). Then one final fine-tune. "
        "*Conv sparsity*: pruned fraction of the conv weights. *Params removed*: of all network params (weights "
        "+ biases; removing a conv feature map also removes the fc weights reading it). *MACs removed*: "
        "multiply-accumulates a zero-skipping engine skips (zero weights and dead channels), conv layers / whole "
        "network. *Index bits / kept weight*: bits needed to locate the kept conv weights — removed channels "
        "cost nothing (physically shrunk), then a plane bitmap per live filter and per kept plane a bitmap, a "
        "shared-pattern id or an element list, whichever is cheapest (`kep.index_cost`); the flat per-weight "
        "(cin, ky, kx) index of the v1 weight image is given for reference.", ""]
    for r in results:
        s = r["settings"]
        lines += [f"## {TITLES[r['model']]}", "",
                  f"Base: {s['base_epochs']} epochs on {r['base_fit_size']:,} digits, test accuracy "
                  f"{_pct(r['base_test_accuracy'], 2)} (validation {_pct(r['base_val_accuracy'], 2)}). Rounds to "
                  f"conv sparsity {', '.join(_pct(t, 1) for t in s['targets'])}, "
                  f"{s['epochs_per_round']} fine-tune epoch(s) per round on {r['fit_size']:,} digits (Adam, peak lr "
                  f"{s['lr']:g}), validation budget {100 * s['max_drop']:.1f} points "
                  + (f"below the dense base after one round's fine-tune ({_pct(r['reference_val_accuracy'], 2)} on "
                     f"validation), " if r.get("reference_val_accuracy") is not None else "") +
                  f"final fine-tune "
                  f"{s['final_epochs']} epoch(s). KEP: {s['patterns']} shared patterns (pattern mode), penalty "
                  f"exponent {s['penalty']:g} over {s['penalty_epochs']} epoch per round in place of that round's "
                  f"fine-tune epoch (same training per round for every method), global keep allocation. "
                  f"Least-adversarial: best of {s['candidates']} random masks per {s['search']} choice, scored on "
                  f"{s['eval_samples'] or r['val_size']} validation digits.", "",
                  "| method | conv sparsity | params removed | MACs removed (conv / net) | test acc. | drop (pts) "
                  "| index bits / kept weight (flat) | rounds | time |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in r["rows"]:
            lines.append(
                f"| {row['method']} | {_pct(row['conv_sparsity'])} | {_pct(row['params_removed'])} "
                f"| {_pct(row['conv_mac_reduction'])} / {_pct(row['mac_reduction'])} | {_pct(row['test_accuracy'], 2)} "
                f"| {100 * row['accuracy_drop']:+.2f} | {row['index_bits_per_kept']:.2f} ({row['flat_index_bits_per_kept']:.1f}) "
                f"| {row['rounds']} | {row['wall_time_s']:.0f} s |")
        lines.append("")
        lines += _verdicts(r)
        o = r["oneshot"]
        if o:
            lines += [f"**Random vs least-adversarial mask, one shot** at {_pct(r['settings']['oneshot_sparsity'], 0)} "
                      f"conv sparsity (feature maps {_pct(o['fmap_ratio'])} per layer, then kernels "
                      f"{_pct(o['kernel_ratio'])}): {o['candidates']} random candidates scored {_pct(o['val_worst'])} "
                      f"(worst) / {_pct(o['val_mean'])} (mean) / {_pct(o['val_best'])} (best) on validation before "
                      f"fine-tuning. After {r['settings']['oneshot_epochs']} fine-tune epoch(s): least adversarial "
                      f"{_pct(o['best']['test_before_finetune'])} → {_pct(o['best']['test_accuracy'], 2)} test, a plain "
                      f"random mask {_pct(o['plain']['test_before_finetune'])} → {_pct(o['plain']['test_accuracy'], 2)}.", ""]
        if r["shrink"]:
            lines += _shrink_table(r["shrink"])
        idx = [row for row in r["rows"] if row["key"] == "kep-pattern"]
        if idx:
            lines += [f"KEP index detail (pattern mode): {idx[0]['index_encoding']}.", ""]
    if task:
        lines += _task_section(task)
    cpu = f", {cpu_s / 60:.1f} min of CPU time" if cpu_s is not None else ""
    lines += [f"Total wall time {total_s / 60:.1f} min on {platform.machine()} ({threads} torch thread(s){cpu}; "
              f"the machine is shared, so wall times per row are noisy).", ""]
    return "\n".join(lines)


def _verdicts(r: dict) -> list[str]:
    rows = {row["key"]: row for row in r["rows"]}
    out = []
    both = rows.get("coarse-both")
    coarse = [rows[k] for k in ("coarse-both", "coarse-fmap", "coarse-kernel") if k in rows]
    if coarse:
        ok = [c for c in coarse if c["conv_sparsity"] >= 0.85 and c["accuracy_drop"] < 0.01]
        detail = "; ".join(f"{c['method']}: {_pct(c['conv_sparsity'])} at {100 * c['accuracy_drop']:+.2f} pts"
                           for c in coarse)
        out.append(f"- Target (coarse, Anwar & Sung: >= 85% conv sparsity at < 1 point loss): "
                   f"**{'met' if ok else 'not met'}**{' by ' + ', '.join(c['method'] for c in ok) if ok else ''} "
                   f"— {detail}.")
    if both:
        singles = [rows[k] for k in ("coarse-fmap", "coarse-kernel") if k in rows]
        if singles:
            best_single = max(s["conv_sparsity"] for s in singles)
            out.append(f"- Both granularities vs the best single one: {_pct(both['conv_sparsity'])} vs "
                       f"{_pct(best_single)} conv sparsity ({'both better' if both['conv_sparsity'] > best_single + 1e-9 else 'both not better'}).")
        rnd = rows.get("coarse-both-random")
        if rnd:
            out.append(f"- Least-adversarial vs random masks (both granularities, same budget): "
                       f"{_pct(both['conv_sparsity'])} vs {_pct(rnd['conv_sparsity'])} conv sparsity.")
    flt = rows.get("filter-l1")
    for key in ("kep-pattern", "kep-free"):
        kep = rows.get(key)
        if kep and flt:
            params = kep["conv_sparsity"] > flt["conv_sparsity"]
            macs = kep["conv_mac_reduction"] > flt["conv_mac_reduction"]
            out.append(f"- {kep['method']} vs filter-level at equal budget: conv params removed "
                       f"{_pct(kep['conv_sparsity'])} vs {_pct(flt['conv_sparsity'])}, conv MACs removed "
                       f"{_pct(kep['conv_mac_reduction'])} vs {_pct(flt['conv_mac_reduction'])}, network params removed "
                       f"{_pct(kep['params_removed'])} vs {_pct(flt['params_removed'])} "
                       f"(drops {100 * kep['accuracy_drop']:+.2f} / {100 * flt['accuracy_drop']:+.2f} pts): "
                       f"**{'KEP ahead' if params and macs else 'KEP not ahead'}** on conv params and MACs.")
    mag = rows.get("magnitude")
    if mag:
        out.append(f"- Unstructured magnitude at the same budget: {_pct(mag['conv_sparsity'])} conv sparsity, but "
                   f"{mag['index_bits_per_kept']:.1f} index bits per kept weight.")
    return out + [""]


def _shrink_table(shrinks: list[dict]) -> list[str]:
    lines = ["Physical shrinking (`shrink.shrink_model`): the removed channels taken out of the model for real.", "",
             "| pruned model | layer widths (in→out) | params | dense MACs | max \\|Δ output\\| | same predictions "
             "| test set on CPU: masked / shrunk |", "|---|---|---:|---:|---:|---|---:|"]
    for s in shrinks:
        widths = ", ".join(f"{k} {v[0]}→{v[1]}" for k, v in s["widths"].items())
        lines.append(f"| {s['method']} | {widths} | {s['params_before']:,} → {s['params_after']:,} "
                     f"| {s['macs_before']:,} → {s['macs_after']:,} | {s['max_abs_diff_test']:.1e} "
                     f"| {'yes' if s['same_predictions'] else 'no'} | {s['masked_ms']:.0f} / {s['shrunk_ms']:.0f} ms |")
    return lines + [""]


def _task_section(task: dict) -> list[str]:
    st = task["settings"]
    lines = ["## Task-guided filter pruning (LeNet-5, sub-task: digits " + ", ".join(map(str, task["classes"])) + ")", "",
             f"The ten-digit base, restricted to the sub-task's output rows, scores {_pct(task['transfer_accuracy'], 2)} on "
             f"the sub-task's {task['test_size']} test digits ({_pct(task['subtask_accuracy'], 2)} after "
             f"{st['subtask_epochs']} fine-tune epochs on its {task['fit_size']:,} training digits). Filters of "
             "conv1, conv2 and neurons of fc1 are scored on the sub-task's training digits — *between*: between-class "
             "scatter of the class-conditional mean responses; *fisher*: that over the within-class scatter; *l1*: "
             "task-agnostic filter L1 norm; *random* — and the lowest fraction of each layer is removed, then "
             f"{st['epochs']} fine-tune epochs.", "",
             "| filters removed | criterion | test before fine-tune | test after | drop (pts) | params removed "
             "| MACs removed | live conv1 / conv2 / fc1 |", "|---:|---|---:|---:|---:|---:|---:|---|"]
    for r in task["rows"]:
        live = " / ".join(r["live"].get(n, "?") for n in ("conv1", "conv2", "fc1"))
        lines.append(f"| {_pct(r['ratio'], 0)} | {r['criterion']} | {_pct(r['test_before_finetune'])} "
                     f"| {_pct(r['test_accuracy'], 2)} | {100 * r['accuracy_drop']:+.2f} | {_pct(r['params_removed'])} "
                     f"| {_pct(r['mac_reduction'])} | {live} |")
    lines.append("")
    if task["shrink"]:
        lines += _shrink_table([task["shrink"]])
    lines += [f"Task section: {task['wall_time_s']:.0f} s.", ""]
    return lines
