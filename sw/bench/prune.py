"""The pruning benchmark, cross-validated: every method on K folds x several seeds, figures with 95% intervals,
and the methods compared at equal accuracy.

For each seed the digit pool (the embedded 5,000 digits, or full MNIST from IDX files) is cut into K folds
(:mod:`sparsegate.sw.ml.folds`): fold i tests on its own block of digits and splits the rest into fit and
validation digits, disjoint. In every fold a dense model is trained on the fit digits and copies of it are
pruned with

* ``torch global L1`` — ``torch.nn.utils.prune.global_unstructured`` (L1), the peer baseline;
* ``magnitude`` — layer-uniform magnitude pruning;
* ``SRA`` — sparseness ratio allocation; ``SRA+NRP`` — the SRA model after neuron re-pruning.

All share one path schedule and fine-tune budget; each picks its round on the fold's validation digits only
(the test digits are recorded along the path, never read by a decision). Every result then gets the same
final fine-tune and is read on the fold's test digits beside the dense model: the drop is paired.

Each fold x seed x method is one call of :func:`prune_job` — a pure top-level function of its arguments
returning a plain dict — and the benchmark maps over the calls through one hook, ``map_jobs(fn, calls)``
(default: in order, in this process), so a job runner can spread them over workers.

Figures (:mod:`sparsegate.sw.ml.stats`): mean and Student-t 95% interval over folds x seeds of the
compression and the drop; each method's per-fold curve of paired test drop against weight compression, fitted
monotone and read at 0.3 / 0.5 / 1.0 points of drop; the ratio SRA+NRP / torch global L1 there, with a paired
t-test on the per-fold log ratios. The curve's points are path rounds *finished* as the selected result is
(:func:`finished_rounds`: NRP for SRA+NRP, then the final fine-tune, read on the test digits), so each is what
the method returns had it stopped there; without them (``finish_from=None``, the runs before 2026-12-06) the
path's own readings before the final fine-tune, on which SRA+NRP's curve is SRA's but for its last point.

Recovery (:data:`RECOVERY`, :func:`run_recovery_benchmark`): knowledge distillation from the dense model,
learning-rate rewinding and a longer final fine-tune, each an option of the plain SRA loop (fine-tunes at
``lr``), and L2 weight decay on top of rewinding, measured against the plain loop on the same folds. Rewinding,
then weight decay, bought the most, and both are the benchmark's default for every method.
"""
from __future__ import annotations

import copy
import json
import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from sparsegate.sw.bench.job_map import MapJobs, finished, job_mapper, sequential_map
from sparsegate.sw.bench.results import BenchResult, write_results
from sparsegate.sw.flow.tradeoff_plot import at_drop_curve, plot_tradeoff
from sparsegate.sw.jobs import RunnerOptions
from sparsegate.sw.jobs.digest import follows_code
from sparsegate.sw.ml.folds import digit_pool, fold_datasets, kfold, with_fit_fraction
from sparsegate.sw.ml.models import build_model
from sparsegate.sw.ml.stats import compression_at_drop, geometric_ci, mean_ci, paired_test, sparsity_compression
from sparsegate.sw.ml.threads import JOB_THREADS, pinned_threads
from sparsegate.sw.ml.train import RECIPES, WEIGHT_DECAY, TrainConfig, train
from sparsegate.sw.prune import MODEL_CODE, NRPParams, PruneOptions, ScheduleParams, prune_model
from sparsegate.sw.prune.counting import layer_table
from sparsegate.sw.prune.iterative import FineTuneConfig, accuracy, finetune, select_windowed
from sparsegate.sw.prune.masks import copy_masks

__all__ = ["BenchSettings", "DROPS", "JOB_METHODS", "RECOVERY", "TITLES", "aggregate", "check_model",
           "figure_lines", "format_ci", "method_rows", "prune_job", "rerender_markdown", "run_prune_benchmark",
           "run_recovery_benchmark", "write_prune_report", "write_recovery_report"]

GOAL, BASELINE = "SRA+NRP", "torch global L1"
EVERY_ROUND = "SRA+NRP every round"
CONTENDERS = (GOAL, EVERY_ROUND)  # the SRA+NRP readings the goals are checked on, each paired with BASELINE
# job method -> the table rows it produces (SRA+NRP continues from the SRA model of the same job)
JOB_METHODS = {"torch-l1": ("torch global L1",), "magnitude": ("magnitude (layer-uniform)",),
               "sra": ("SRA", GOAL), "sra-nrp": (EVERY_ROUND,)}
TITLES = {"lenet5": "LeNet-5-Caffe", "lenet300": "LeNet-300-100"}  # report titles of the benchmark's models
DROPS = (0.003, 0.005, 0.010)  # compression is read at these drops (fractions: 0.3, 0.5, 1.0 points)

PUBLISHED = {
    "lenet5": "Reported: Han et al. 12x; DNS 108x; SRA+NRP (Guo et al., ISCAS 2018) 149.3x at 0.1% drop; "
              "Sparse VD 280x (full 60k MNIST).",
    "lenet300": "Reported: Han et al. 12x; DNS 56x; Sparse VD 68x (full 60k MNIST).",
}


@dataclass(frozen=True)
class BenchSettings:
    """The schedule, the cross-validation, the training and the recovery options (:data:`RECOVERY`)."""

    max_drop: float = 0.003  # validation-accuracy budget of the iterative methods
    nrp_drop: float = 0.002  # NRP guard on the validation split, before its fine-tune
    step: float = 0.3
    late_step: float = 0.15  # once 10% of the weights are left
    max_rounds: int = 30
    epochs_per_round: int = 3
    lr: float = FineTuneConfig.lr  # the plain loop's peak (every fine-tune peaks at the recipe's with rewind)
    final_epochs: int = 4
    base_epochs: int | None = None  # None: the model's training recipe
    folds: int = 5
    seeds: tuple[int, ...] = (0, 1)
    only_folds: tuple[int, ...] | None = None  # run only these of the K folds (cut as for all K; None: every fold)
    val_fraction: float = 0.125  # of the non-test digits (5,000 digits, 5 folds: 3,500 fit / 500 val / 1,000 test)
    fit_fraction: float = 1.0  # train on a seeded share of each fold's fit digits (a learning curve; folds.py)
    methods: tuple[str, ...] = ("torch-l1", "magnitude", "sra", "sra-nrp")
    distill: float = 0.0  # recovery: KD weight in every fine-tune of the loop and the final one (0: off)
    rewind: bool = True  # recovery: fine-tunes restart the base training's peak learning rate (False: at lr)
    augment_rotate: float = 0.0  # every training call warps its digits: rotation up to this many degrees
    augment_scale: float = 0.0  # and zoom up to this fraction (both 0: shifts only, as the recorded runs)
    weight_decay: float = WEIGHT_DECAY  # L2 in every training call, the dense model's and each fine-tune (Adam, coupled)
    dataset: str = "mnist5k"
    data_path: str | None = None
    threads: int | None = JOB_THREADS  # torch threads per job (sw/ml/threads.py: results must not follow the machine)
    # the at-equal-accuracy curves: path rounds from this weight compression on, every finish_every-th counted from
    # the selected one, are finished as the selected one is (NRP for SRA+NRP, the final fine-tune) and read on the
    # test digits; None: the path's own readings (the recorded runs before 2026-12-06)
    finish_from: float | None = 10.0
    finish_every: int = 2

    @classmethod
    def quick(cls) -> "BenchSettings":
        return cls(max_rounds=2, epochs_per_round=1, final_epochs=0, base_epochs=1, step=0.5, late_step=0.5,
                   folds=2, seeds=(0,), finish_from=1.0, finish_every=1)

    def calls(self, model: str) -> list[tuple]:
        """The argument tuples of :func:`prune_job`, one per seed x fold x method; each job gets these settings
        without the run's method list and fold subset (it reads neither), so a job of two runs that differ only
        there has one cache key."""
        folds = range(self.folds) if self.only_folds is None else self.only_folds
        job = replace(self, methods=(), only_folds=None)
        return [(model, fold, seed, method, job) for seed in self.seeds for fold in folds for method in self.methods]


# recovery variant -> its settings: each changes the plain loop (fine-tunes at lr, no teacher, the default final
# fine-tune, no weight decay); measured by run_recovery_benchmark against "plain". "weight-decay" adds L2 to the
# rewound loop; it is the benchmark's default.
_PLAIN_LOOP = {"rewind": False, "weight_decay": 0.0}
RECOVERY = {"plain": _PLAIN_LOOP, "rewind": {**_PLAIN_LOOP, "rewind": True},
            "distill": {**_PLAIN_LOOP, "distill": 0.5}, "long-final": {**_PLAIN_LOOP, "final_epochs": 12},
            "weight-decay": {**_PLAIN_LOOP, "rewind": True, "weight_decay": WEIGHT_DECAY}}
PLAIN = "plain"


def _curve(rounds: list[dict], dense_test: float, final: tuple[float, float] | None) -> list[list[float]]:
    """[[weight compression, paired test drop], ...]: the dense start, each path round, the final result."""
    pts = [[1.0, 0.0]] + [[sparsity_compression(r["sparsity"]), dense_test - r["info"]["monitor_accuracy"]]
                          for r in rounds if "monitor_accuracy" in r.get("info", {})]
    return pts + ([list(final)] if final else [])


def finished_rounds(path_sparsity: list[float], selected: int, s: BenchSettings) -> list[int]:
    """The path rounds a result's finished curve reads (:attr:`BenchSettings.finish_from`, not None): from
    ``finish_from`` weight compression on, every ``finish_every``-th counted from the selected round, which is
    always one (its finished model is the result itself; round 0 is the dense start)."""
    return sorted({r for r, sp in enumerate(path_sparsity, 1)
                   if sparsity_compression(sp) >= s.finish_from and (r - selected) % s.finish_every == 0}
                  | {selected})


@follows_code(*MODEL_CODE, __name__, libraries=("torch",))
def prune_job(model: str, fold: int, seed: int, method: str, s: BenchSettings) -> dict:
    """One fold x seed x method of the benchmark (a pure function of its arguments and of the code it runs,
    which is in its cache key; a plain dict back): train the fold's dense model, prune a copy, fine-tune, read
    both on the fold's test digits; at ``s.threads`` torch threads, whatever the machine."""
    with pinned_threads(s.threads) as threads:
        return {**_prune_job(model, fold, seed, method, s), "threads": threads}


def _prune_job(model: str, fold: int, seed: int, method: str, s: BenchSettings) -> dict:
    pool = digit_pool(s.dataset, s.data_path)
    f = with_fit_fraction(kfold(len(pool), s.folds, seed, s.val_fraction)[fold], s.fit_fraction)
    fit_ds, val_ds, test_ds = fold_datasets(pool, f)
    recipe = RECIPES[model][1]
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    base = build_model(model)
    training = dict(augment_rotate=s.augment_rotate, augment_scale=s.augment_scale, weight_decay=s.weight_decay)
    train(base, fit_ds, TrainConfig(epochs=s.base_epochs or recipe.epochs, lr=recipe.lr, seed=seed, progress=False,
                                    **training))
    dense_test, dense_val = accuracy(base, test_ds), accuracy(base, val_ds)
    lr = recipe.lr if s.rewind else s.lr
    common = dict(finetune_epochs=s.epochs_per_round, lr=lr, seed=seed, progress=False, distill=s.distill,
                  nrp_drop=s.nrp_drop, **training)
    schedule = ScheduleParams(max_drop=s.max_drop, step=s.step, late_step=s.late_step, rounds=s.max_rounds)
    loop = PruneOptions(method, schedule, **common)
    ft = loop.finetune_config(s.epochs_per_round)  # the loop's fine-tune settings, for the final fine-tune too
    out = {"model": model, "fold": fold, "seed": seed, "method": method, "dataset": s.dataset,
           "digits": {"fit": len(f.fit), "val": len(f.val), "test": len(f.test)},
           "dense_test_accuracy": dense_test, "dense_val_accuracy": dense_val,
           "base_train_s": time.perf_counter() - t0, "results": {}}

    def finish(m, masks, nrp: bool):
        """What a result gets after its round (NRP for SRA+NRP, then the final fine-tune), and its reading:
        (masks, what NRP removed, the layer table's total, test accuracy)."""
        removed = None
        if nrp:
            res = prune_model(m, PruneOptions("nrp", NRPParams(), **common), fit_ds, val_ds, masks)
            masks, removed = res.masks, res.info.get("removed", {})
        finetune(m, fit_ds, masks, ft, 4242, epochs=s.final_epochs, teacher=base)
        return masks, removed, layer_table(m, masks).total, accuracy(m, test_ds)

    def result(name, m, masks, rounds, selected, t_start, nrp=False):
        """Finish the selected model, then the row; its curve: the whole path, then this final result."""
        masks, removed, t, acc = finish(m, masks, nrp)
        weight_c = t.weight_compression
        out["results"][name] = {
            "compression": t.compression, "weight_compression": weight_c, "kept_weights": t.nonzero_weights,
            "nonzero_params": t.nonzero_params, "params": t.params, "mac_reduction": t.mac_reduction,
            "test_accuracy": acc, "drop": dense_test - acc, "val_accuracy": accuracy(m, val_ds),
            "rounds": len(rounds), "selected_round": selected,
            "path_sparsity": [r["sparsity"] for r in rounds], "path_val_accuracy": path_val,
            "selected_round_windowed": select_windowed(path_val, path_val[0], s.max_drop),
            "curve": _curve(rounds, dense_test, (weight_c, dense_test - acc)),
            "wall_time_s": time.perf_counter() - t_start, **({"nrp_removed": removed} if nrp else {})}
        return out["results"][name]

    def finished_curve(row: dict, path: list, nrp: bool) -> None:
        """The row's finished curve (:func:`finished_rounds`): the dense start, then each read round's model
        finished as the selected one was; the selected round is the row itself."""
        if s.finish_from is None:
            return
        t_start, points = time.perf_counter(), [[1.0, 0.0]]
        rounds = finished_rounds(row["path_sparsity"], row["selected_round"], s)
        for r in rounds:
            if r == row["selected_round"]:
                points.append([row["weight_compression"], row["drop"]])
                continue
            m = copy.deepcopy(base)
            m.load_state_dict(path[r][1])
            _, _, t, acc = finish(m, copy_masks(path[r][2]), nrp)
            points.append([t.weight_compression, dense_test - acc])
        row.update(finished_rounds=rounds, finished_curve=points, finish_time_s=time.perf_counter() - t_start)

    m, t0 = copy.deepcopy(base), time.perf_counter()
    res = prune_model(m, loop, fit_ds, val_ds, monitor_ds=test_ds)
    path = res.iterative.path
    selected = sum(1 for r in res.history if r["accepted"])
    path_val = [res.info["val_start_accuracy"]] + [r["val_accuracy"] for r in res.history]  # start first
    if method != "sra":
        finished_curve(result(JOB_METHODS[method][0], m, res.masks, res.history, selected, t0), path, False)
        return out
    sra_time = time.perf_counter() - t0
    sra = result("SRA", copy.deepcopy(m), res.masks, res.history, selected, t0)  # m goes on to NRP unchanged
    t1 = time.perf_counter()
    nrp = result("SRA+NRP", m, res.masks, res.history, selected, t1 - sra_time, nrp=True)  # its time counts SRA's
    finished_curve(sra, path, False)
    finished_curve(nrp, path, True)
    return out


def method_rows(jobs: list[dict]) -> dict[str, dict[tuple[int, int], dict]]:
    """method -> (seed, fold) -> its result row; methods in table order (:data:`JOB_METHODS`, then others in
    the order they come)."""
    rows: dict[str, dict[tuple[int, int], dict]] = {}
    for job in jobs:
        for name, r in job["results"].items():
            rows.setdefault(name, {})[job["seed"], job["fold"]] = r
    order = [n for names in JOB_METHODS.values() for n in names]
    return dict(sorted(rows.items(), key=lambda item: order.index(item[0]) if item[0] in order else len(order)))


def aggregate(jobs: list[dict], drops=DROPS) -> dict:
    """Per method: means and 95% intervals over folds x seeds, the compression-at-drop table (read on
    :func:`at_drop_curve`); and the paired comparison of each SRA+NRP reading (:data:`CONTENDERS`) with torch
    global L1 at each drop (``comparisons``, for the contenders that ran beside it; ``path_comparisons``: the
    same on the path curves, where the run drew finished ones)."""
    methods: dict[str, dict] = {}
    at: dict[str, dict[float, dict]] = {}
    on_path: dict[str, dict[float, dict]] = {}
    for name, by_key in method_rows(jobs).items():
        rs = [by_key[k] for k in sorted(by_key)]
        c, wc = (geometric_ci(r[key] for r in rs) for key in ("compression", "weight_compression"))
        d = mean_ci(r["drop"] for r in rs)
        at[name] = _at_drops(by_key, at_drop_curve, drops)
        if any(r.get("finished_curve") for r in rs):  # the path curves' reading beside it, as the earlier runs
            on_path[name] = _at_drops(by_key, lambda r: r["curve"], drops)
        methods[name] = {
            "compression_mean": c.mean, "compression_ci95": c.as_pair(), "drop_mean": d.mean, "drop_ci95": d.as_pair(),
            "weight_compression_mean": wc.mean, "weight_compression_ci95": wc.as_pair(),
            "folds": sorted({k[1] for k in by_key}), "seeds": sorted({k[0] for k in by_key}), "n": len(rs),
            "compression_at_drop": {f"{100 * drop:.1f}": {
                "compression_mean": (ci := geometric_ci(v[0] for v in at[name][drop].values())).mean,
                "compression_ci95": ci.as_pair(), "lower_bounds": sum(v[1] for v in at[name][drop].values())}
                for drop in drops}}
    comparisons = {name: _comparison(at, name, drops) for name in CONTENDERS if name in at and BASELINE in at}
    summary = {"methods": methods, "comparisons": comparisons, "selection": _selection_rules(jobs)}
    if on_path:
        summary["path_comparisons"] = {name: _comparison(on_path, name, drops) for name in CONTENDERS
                                       if name in on_path and BASELINE in on_path}
    return summary


def _at_drops(by_key: dict, curve_of, drops) -> dict[float, dict]:
    """drop -> (seed, fold) -> (compression, censored), each row read on ``curve_of(row)``."""
    return {drop: {k: compression_at_drop(curve_of(r), drop) for k, r in by_key.items()} for drop in drops}


def _comparison(at: dict[str, dict[float, dict]], name: str, drops) -> dict:
    """Per drop: the paired test of ``name`` over the baseline, and the readings it pools (``per_fold``: seed,
    fold, both compressions, whether each is a lower bound) so one fold's reading can be told from the mean."""
    comparison = {}
    for drop in drops:
        mine, base = at[name][drop], at[BASELINE][drop]
        keys = sorted(set(mine) & set(base))
        test = paired_test([mine[k][0] for k in keys], [base[k][0] for k in keys])
        comparison[f"{100 * drop:.1f}"] = {**test.to_dict(), "per_fold": [
            {"seed": k[0], "fold": k[1], "compression": mine[k][0], "lower_bound": mine[k][1],
             "baseline_compression": base[k][0], "baseline_lower_bound": base[k][1]} for k in keys]}
    return comparison


def _selection_rules(jobs: list[dict]) -> dict:
    """The fitted-path rule (the loop's) beside the previous windowed rule on the same paths, per iterative
    method: the round each picks, its weight compression and its paired test drop before the final fine-tune
    (the path point of the curve), over folds x seeds. Empty for jobs that did not record their validation
    path."""
    out = {}
    for name, by_key in method_rows(jobs).items():
        rs = [by_key[k] for k in sorted(by_key) if "path_val_accuracy" in by_key[k]]
        if not rs or name == GOAL:  # SRA+NRP continues from SRA's selected round: SRA's row says it
            continue
        out[name] = {}
        for rule, key in (("fitted", "selected_round"), ("windowed", "selected_round_windowed")):
            points = [r["curve"][r[key]] for r in rs]  # curve: the start, then one point per path round
            c, d = geometric_ci(p[0] for p in points), mean_ci(p[1] for p in points)
            out[name][rule] = {"rounds": [r[key] for r in rs], "weight_compression_mean": c.mean,
                               "weight_compression_ci95": c.as_pair(), "path_drop_mean": d.mean,
                               "path_drop_ci95": d.as_pair()}
    return out


def format_ci(mean: float, ci: list[float], scale: float = 1.0, fmt: str = ".1f", unit: str = "") -> str:
    return f"{mean * scale:{fmt}}{unit} [{ci[0] * scale:{fmt}}, {ci[1] * scale:{fmt}}]"


def _every(n: int) -> str:
    return "round" if n == 1 else f"{n} rounds"


def _p(p: float | None) -> str:
    return "—" if p is None else f"{p:.3g}"


def _markdown(model: str, d: dict, command: str) -> str:
    s, summary, jobs = d["settings"], d["summary"], d["jobs"]
    methods = summary["methods"]
    # reports written before the every-round contender hold SRA+NRP's comparison alone, as "comparison"
    comparisons = summary.get("comparisons") or ({GOAL: summary["comparison"]} if summary.get("comparison") else {})
    title = TITLES[model]
    digits = jobs[0]["digits"] if jobs else {}
    ran = sorted({(j["seed"], j["fold"]) for j in jobs})
    only = s.get("only_folds")
    n = len(s["seeds"]) * (s["folds"] if only is None else len(only))
    lines = [f"# Pruning benchmark: {title}, {s['folds']}-fold cross-validation x {len(s['seeds'])} seed(s) "
             f"on {'the embedded 5,000 MNIST digits' if s['dataset'] == 'mnist5k' else 'full MNIST'}", ""]
    if only is not None:
        lines += [f"Folds {', '.join(map(str, only))} of the {s['folds']} only (`--only-folds`).", ""]
    if len(ran) < n:
        lines += [f"**Partial run**: {len(ran)} of the {n} fold x seed results finished (seed, fold: "
                  f"{', '.join(f'{a}.{b}' for a, b in ran)}); every figure below is over these only (n per row).",
                  ""]
    if d["quick"]:
        lines += ["**Quick mode** (smoke test budget) — not a measurement.", ""]
    lines += [
        f"Command: `{command}`. Each fold: {digits.get('fit', 0):,} fit / {digits.get('val', 0):,} validation / "
        f"{digits.get('test', 0):,} test digits, disjoint; seeds {list(s['seeds'])} re-cut the folds and re-seed "
        f"training; n = {n} results per method when complete. Every pruning decision reads the validation digits only; the drop "
        f"is paired: dense minus pruned accuracy on the same test digits of the same fold. Iterative methods share "
        f"one path schedule: each round removes {s['step'] * 100:.0f}% of the kept weights "
        f"({s['late_step'] * 100:.0f}% once 10% are left) and fine-tunes {s['epochs_per_round']} epochs; the result "
        + (f"is picked by the fitted-path rule (validation accuracy of the whole path, the dense start included, "
           f"fitted concave and non-increasing in log compression; the sparsest round whose fitted accuracy is "
           f"within {s['max_drop'] * 100:.1f} points of the fitted start)" if summary.get("selection") else
           f"is the sparsest round whose validation accuracy, averaged with its two path neighbours, is within "
           f"{s['max_drop'] * 100:.1f} points of the dense model (the previous rule)")
        + f". SRA+NRP: neuron re-pruning of the SRA result (guard "
        f"{s['nrp_drop'] * 100:.1f} points on validation), then {s['epochs_per_round']} fine-tune epochs"
        + (f"; SRA+NRP every round: SRA whose every round re-prunes neurons after its weights, before the round's "
           f"fine-tune (guard {s['nrp_drop'] * 100:.1f} points on 1,000 training digits, which SRA's sensitivity "
           f"probe reads too, so the validation digits only judge the path)" if EVERY_ROUND in methods else "")
        + ". Every "
        f"result gets the same final fine-tune of {s['final_epochs']} epochs"
        + (f", distilled from the dense model (weight {s['distill']})" if s["distill"] else "")
        + (", at the base training's peak learning rate (rewound)" if s["rewind"] else "")
        + (f". Every training call (the dense model, each fine-tune) sees its digits rotated by up to "
           f"{s['augment_rotate']:g} degrees, zoomed by up to {100 * s['augment_scale']:g}% and shifted by up to "
           f"{TrainConfig.augment_shift} pixels (random affine warp)" if s.get("augment_rotate") or s.get("augment_scale") else "")
        + (f". Every training call adds L2 weight decay of {s['weight_decay']:g} to Adam's gradients"
           if s.get("weight_decay") else "")
        + (f". Only a seeded {100 * s['fit_fraction']:g}% of each fold's fit digits train (the dense model and every "
           f"fine-tune; `--fit-fraction`); the validation and test digits are the whole run's"
           if s.get("fit_fraction", 1) < 1 else "")
        + ". Figures: mean [95% CI], Student t over the n folds x seeds (folds share training digits, so the "
          "interval is optimistic); compressions are geometric means with the interval taken on log compression. "
          "Compression = dense params / nonzero params (weights + biases).", ""]
    lines += figure_lines(model, d, comparisons)
    lines += ["## Per fold", "", "| seed | fold | method | compression | drop (points) | selected round "
              "| weight compression at selected round |", "|---:|---:|---|---:|---:|---:|---:|"]
    for job in jobs:
        for name, r in job["results"].items():
            sel = r["selected_round"]
            lines.append(f"| {job['seed']} | {job['fold']} | {name} | {r['compression']:.1f}x | "
                         f"{100 * r['drop']:+.2f} | {sel} of {r['rounds']} | {_path_compression(r):.1f}x |")
    lines += ["", f"Wall time {d['wall_time_s'] / 60:.1f} min on {platform.machine()} ({d['threads']} torch thread(s) per job).",
              ""]
    return "\n".join(lines)


def _path_compression(r: dict) -> float:
    """Weight compression at a result's selected path round (1 for the dense start)."""
    sel = r["selected_round"]
    return sparsity_compression(r["path_sparsity"][sel - 1]) if sel else 1.0


def _per_fold_ratios(name: str, comparison: dict) -> list[str]:
    """The per-fold readings behind a comparison's ratios (reports that stored them): where one fold's curve
    crosses a budget far from its neighbours' the mean rests on it, and this table shows which."""
    if not all("per_fold" in c for c in comparison.values()):
        return []
    heads = list(comparison)

    def reading(c: float, lower_bound: bool) -> str:
        return f"{'>=' if lower_bound else ''}{c:.1f}x"

    def cell(r: dict) -> str:
        return (f"{reading(r['baseline_compression'], r['baseline_lower_bound'])} / "
                f"{reading(r['compression'], r['lower_bound'])} = {r['compression'] / r['baseline_compression']:.2f}")

    lines = ["", f"Per fold: {BASELINE} / {name} compression at equal drop = their ratio (>=: a lower bound, the "
             "curve ended below the drop).", "", "| seed | fold | " + " | ".join(f"at {h} points" for h in heads)
             + " |", "|---:|---:|" + "---:|" * len(heads)]
    for row in zip(*(comparison[h]["per_fold"] for h in heads)):  # every drop reads the same seed x fold rows
        lines.append(f"| {row[0]['seed']} | {row[0]['fold']} | " + " | ".join(map(cell, row)) + " |")
    return lines


def figure_lines(model: str, d: dict, comparisons: dict) -> list[str]:
    """The report's figures (Markdown lines): the selected results, compression at equal accuracy, the paired
    ratios, the selection rules, the plot and the goals; the runs' own report and a nested choice across runs
    (:mod:`sparsegate.sw.bench.prune_choice`) share them."""
    s, summary, methods = d["settings"], d["summary"], d["summary"]["methods"]
    lines = ["| method | compression | accuracy drop (points) | weight compression | n |", "|---|---:|---:|---:|---:|"]
    for name, m in methods.items():
        lines.append(f"| {name} | {format_ci(m['compression_mean'], m['compression_ci95'], unit='x')} "
                     f"| {format_ci(m['drop_mean'], m['drop_ci95'], 100, '+.2f')} "
                     f"| {format_ci(m['weight_compression_mean'], m['weight_compression_ci95'], unit='x')} | {m['n']} |")
    heads = list(next(iter(methods.values()))["compression_at_drop"]) if methods else []
    finish_from = s.get("finish_from")
    drawn = (f"Each method's curve per fold: paired test drop against weight compression at the dense start and at "
             f"path rounds finished as the selected one is — every {_every(s.get('finish_every', 1))} from "
             f"{finish_from:g}x weight compression on, counted from the selected round (itself a point): the round's "
             f"model gets NRP (SRA+NRP) and the final fine-tune and is read on the test digits, so each point is "
             f"what the method would have returned had it stopped there, and SRA+NRP's curve is SRA+NRP's at every "
             f"point." if finish_from is not None else
             "Each method's curve per fold: paired test drop against weight compression at the dense start, at "
             "every path round (after its fine-tune, before the final one) and at its final result. SRA+NRP's curve "
             "is SRA's path with SRA+NRP's final result as its last point (NRP runs once, after the selected "
             "round), so below that point it reads as SRA; SRA+NRP every round has a path of its own.")
    lines += ["", "## At equal accuracy", "",
              drawn + " The drop is fitted as a non-decreasing function of log compression (isotonic least squares) "
              "and read where the fit first exceeds the drop (linear in log compression between points). A curve "
              "that stays below counts its largest compression (a lower bound; how many, in brackets). This reads "
              "the test digits, as any accuracy-vs-compression figure does; no method's choice depends on it.", "",
              "| method | " + " | ".join(f"at {h} points" for h in heads) + " |",
              "|---|" + "---:|" * len(heads)]
    for name, m in methods.items():
        cells = []
        for h in heads:
            a = m["compression_at_drop"][h]
            cells.append(format_ci(a["compression_mean"], a["compression_ci95"], unit="x")
                         + (f" ({a['lower_bounds']} lower bounds)" if a["lower_bounds"] else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for name, comparison in comparisons.items():
        lines += ["", f"{name} / {BASELINE} at equal drop: geometric mean of the per-fold ratios [95% CI], paired "
                  "t-test of the per-fold log ratios (two-sided) and the Wilcoxon signed-rank p beside it.", "",
                  "| drop (points) | ratio | paired t p | Wilcoxon p | n |", "|---:|---:|---:|---:|---:|"]
        for h, c in comparison.items():
            lines.append(f"| {h} | {format_ci(c['ratio_geomean'], c['ratio_ci95'], fmt='.2f', unit='x')} "
                         f"| {_p(c['paired_t_p'])} | {_p(c['wilcoxon_p'])} | {c['n']} |")
        lines += _per_fold_ratios(name, comparison)
        on_path = summary.get("path_comparisons", {}).get(name)
        if on_path:
            lines += ["", "Read on the path curves instead (the rounds before the final fine-tune, SRA+NRP's being SRA's "
                      "path; how the runs before finished curves read it): " + "; ".join(
                          f"at {h} points {format_ci(c['ratio_geomean'], c['ratio_ci95'], fmt='.2f', unit='x')}, "
                          f"p = {_p(c['paired_t_p'])}" for h, c in on_path.items()) + "."]
    if summary.get("selection"):
        lines += ["", "## Selection rule on the same paths", "",
                  f"The loop's rule (fitted path: validation accuracy over the whole path, the dense start "
                  f"included, fitted concave and non-increasing in log compression; the sparsest round whose fitted "
                  f"accuracy is within {s['max_drop'] * 100:.1f} points of the fitted start) beside the previous one (windowed: "
                  f"validation accuracy averaged with its two path neighbours, within {s['max_drop'] * 100:.1f} "
                  f"points of the dense model's single reading), each applied to the same validation path of each "
                  f"fold; read at the selected round before the final fine-tune: weight compression and paired "
                  f"test drop, mean [95% CI]. Only the fitted choice goes on to the final fine-tune (and NRP).", "",
                  "| method | rule | selected rounds (per fold) | weight compression | test drop at the round "
                  "(points) |", "|---|---|---|---:|---:|"]
        for name, rules in summary["selection"].items():
            for rule, r in rules.items():
                lines.append(f"| {name} | {rule} | {', '.join(map(str, r['rounds']))} "
                             f"| {format_ci(r['weight_compression_mean'], r['weight_compression_ci95'], unit='x')} "
                             f"| {format_ci(r['path_drop_mean'], r['path_drop_ci95'], 100, '+.2f')} |")
    lines += ["", f"![accuracy drop vs compression]({d['plot']})", "", PUBLISHED[model], ""]
    for name, comparison in comparisons.items():
        goal, cmp3 = methods[name], comparison.get("0.3")
        if cmp3 is None:
            continue
        target = 149 if model == "lenet5" else None
        met_c = target is None or (goal["compression_mean"] >= target and goal["drop_mean"] <= 0.003)
        met_r = cmp3["ratio_geomean"] >= 1.5 and cmp3["paired_t_p"] is not None and cmp3["paired_t_p"] < 0.05
        if target:
            lines.append(f"Goal ({name} mean compression >= {target}x at mean drop <= 0.3 points): "
                         f"**{'met' if met_c else 'not met'}** — {goal['compression_mean']:.1f}x at "
                         f"{100 * goal['drop_mean']:+.2f} points.")
        lines += [f"Goal ({name} >= 1.5x {BASELINE} at 0.3 points, significant at 5%): "
                  f"**{'met' if met_r else 'not met'}** — {cmp3['ratio_geomean']:.2f}x, p = {_p(cmp3['paired_t_p'])}.",
                  ""]
    return lines


def write_prune_report(out_dir: str | Path, model: str, jobs: list[dict], s: BenchSettings, quick: bool = False,
                       command: str | None = None, wall_time_s: float = 0.0, recovery: dict | None = None,
                       name: str | None = None) -> BenchResult:
    """Aggregate ``jobs`` (:func:`prune_job` dicts, any subset of the folds x seeds) and write the Markdown,
    the JSON and the trade-off plot; also how a resumed or distributed run reports what it finished."""
    out_dir = Path(out_dir)
    name = name or (f"prune_recovery_{model}" if recovery is not None else f"prune_{model}")
    command = command or ("sparsegate bench --only " + ("prune-recovery" if recovery is not None else
                                                          "prune" if model == "lenet5" else "prune-" + model))
    summary = aggregate(jobs)
    plot = f"{name}_tradeoff.png"
    curves = {n: [at_drop_curve(by_key[k]) for k in sorted(by_key)] for n, by_key in method_rows(jobs).items()}
    plot_tradeoff(curves, summary["methods"], out_dir / plot,
                  f"{model}: paired test drop vs compression, mean and 95% band over folds x seeds")
    d = {"model": model, "quick": quick, "command": command, "settings": asdict(s), "summary": summary,
         "methods": summary["methods"], "wall_time_s": wall_time_s, "threads": s.threads or torch.get_num_threads(),
         "plot": plot, "jobs": jobs}
    if recovery is not None:
        d["recovery"] = recovery
    return write_results(name, _markdown(model, d, command) if recovery is None else _recovery_markdown(model, d),
                         d, out_dir)


def check_model(model: str) -> None:
    if model not in ("lenet5", "lenet300"):
        raise ValueError(f"model: the pruning benchmark runs 'lenet5' or 'lenet300', got {model!r}")


def run_prune_benchmark(out_dir: str | Path, model: str = "lenet5", quick: bool = False,
                        settings: BenchSettings | None = None, map_jobs: MapJobs = sequential_map,
                        command: str | None = None, jobs: RunnerOptions | None = None) -> BenchResult:
    """Run the cross-validated benchmark for ``model`` ("lenet5" or "lenet300"); write
    ``out_dir/prune_<model>.md``, its ``.json`` (per method: ``compression_mean``, ``compression_ci95``,
    ``drop_mean``, ``drop_ci95``, ``folds``, ``seeds``, ``compression_at_drop``; every job's dict) and the
    trade-off plot. ``map_jobs`` runs the :func:`prune_job` calls; ``jobs`` (runner options) sends them to
    the Dask job runner instead."""
    check_model(model)
    s = settings or (BenchSettings.quick() if quick else BenchSettings())
    start = time.perf_counter()
    results = finished(job_mapper(map_jobs, jobs)(prune_job, s.calls(model)))
    return write_prune_report(out_dir, model, results, s, quick, command, time.perf_counter() - start)


def run_recovery_benchmark(out_dir: str | Path, model: str = "lenet5", quick: bool = False,
                           settings: BenchSettings | None = None, map_jobs: MapJobs = sequential_map,
                           variants: tuple[str, ...] = tuple(RECOVERY), command: str | None = None,
                           jobs: RunnerOptions | None = None) -> BenchResult:
    """Each recovery variant of SRA's loop (:data:`RECOVERY`) on the same folds and seeds: what SRA+NRP
    compresses at 0.3 points of drop with it, paired against the plain loop."""
    check_model(model)
    base = replace(settings or (BenchSettings.quick() if quick else BenchSettings(folds=3, seeds=(0,))),
                   methods=("sra",))
    start = time.perf_counter()
    per_variant = {v: replace(base, **RECOVERY[v]) for v in variants}
    results = job_mapper(map_jobs, jobs)(prune_job, [c for vs in per_variant.values() for c in vs.calls(model)])
    n = len(base.calls(model))
    by_variant = {v: finished(results[i * n:(i + 1) * n]) for i, v in enumerate(per_variant)}
    return write_recovery_report(out_dir, model, by_variant, base, quick, command, time.perf_counter() - start)


def write_recovery_report(out_dir: str | Path, model: str, by_variant: dict[str, list[dict]], s: BenchSettings,
                          quick: bool = False, command: str | None = None, wall_time_s: float = 0.0) -> BenchResult:
    """The recovery table from each variant's :func:`prune_job` dicts (compared on the folds x seeds that the
    variant shares with the plain loop)."""
    def at_budget(jobs):
        return {(j["seed"], j["fold"]): compression_at_drop(at_drop_curve(j["results"][GOAL]), 0.003)[0] for j in jobs}
    ref = at_budget(by_variant.get(PLAIN, []))
    table = {}
    for variant, jobs in by_variant.items():
        at = at_budget(jobs)
        keys = sorted(set(at) & set(ref))
        vs_plain = paired_test([at[k] for k in keys], [ref[k] for k in keys]).to_dict() \
            if variant != PLAIN and keys else None
        table[variant] = {"settings": RECOVERY[variant], **aggregate(jobs, (0.003,))["methods"][GOAL],
                          "vs_plain": vs_plain}
    # one "method" per variant: its SRA+NRP result, so the plot and the per-fold rows show the variants
    jobs_all = [dict(j, method=v, results={v: j["results"][GOAL]}) for v, js in by_variant.items() for j in js]
    return write_prune_report(out_dir, model, jobs_all, s, quick, command, wall_time_s, table)


def _recovery_markdown(model: str, d: dict) -> str:
    s, table = d["settings"], d["recovery"]
    ran = sorted({(j["seed"], j["fold"]) for j in d["jobs"]})
    lines = [f"# Recovery in SRA's loop: {model}, {s['folds']}-fold cross-validation, compared on seed.fold "
             f"{', '.join(f'{a}.{b}' for a, b in ran)}", ""]
    if d["quick"]:
        lines += ["**Quick mode** (smoke test budget) — not a measurement.", ""]
    lines += [f"Command: `{d['command']}`. Each variant changes the plain loop, which fine-tunes at "
              f"a peak learning rate of {s['lr']:g} without weight decay (rewind: every fine-tune restarts the base "
              f"training's peak learning rate instead; distill: knowledge distillation from the dense model in every "
              f"fine-tune, loss 0.5 CE + 0.5 T^2 KL at T = 4; long-final: 12 final fine-tune epochs instead of "
              f"{s['final_epochs']}; weight-decay: rewind plus L2 weight decay of {WEIGHT_DECAY:g} in every training "
              f"call, the dense model's too: the benchmark's default) and runs SRA+NRP on the same folds and seeds. "
              f"Read at 0.3 points of paired "
              f"test drop (the at-equal-accuracy curve reading), and the selected result, over the variant's n folds "
              f"x seeds; 'vs plain' is the geometric mean of the per-fold ratios on the folds x seeds it shares with "
              f"the plain loop (paired n) with the paired t-test p.", "",
              "| variant | n | compression at 0.3 points | selected: compression | selected: drop (points) "
              "| vs plain at 0.3 points | paired n | p |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for v, r in table.items():
        a = r["compression_at_drop"]["0.3"]
        vd = r["vs_plain"]
        lines.append(f"| {v} | {r['n']} | {format_ci(a['compression_mean'], a['compression_ci95'], unit='x')} "
                     f"| {format_ci(r['compression_mean'], r['compression_ci95'], unit='x')} "
                     f"| {format_ci(r['drop_mean'], r['drop_ci95'], 100, '+.2f')} "
                     f"| {format_ci(vd['ratio_geomean'], vd['ratio_ci95'], fmt='.2f', unit='x') if vd else '—'} "
                     f"| {vd['n'] if vd else '—'} | {_p(vd['paired_t_p']) if vd else '—'} |")
    lines += ["", f"![accuracy drop vs compression]({d['plot']})", "",
              f"Wall time {d['wall_time_s'] / 60:.1f} min ({d['threads']} torch thread(s) per job).", ""]
    return "\n".join(lines)


def rerender_markdown(out_dir: str | Path, model: str = "lenet5") -> BenchResult:
    """Rewrite ``prune_<model>.md`` from the benchmark's JSON (no re-run)."""
    out_dir = Path(out_dir)
    d = json.loads((out_dir / f"prune_{model}.json").read_text())
    return write_results(f"prune_{model}", _markdown(model, d, d["command"]), d, out_dir)
