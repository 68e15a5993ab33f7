"""The pruning path's selection rules under validation noise: how far from the round a noise-free reading
would pick each rule lands, simulated on measured pruning paths.

Truth: every iterative method's path in a pruning benchmark's JSON (:mod:`sparsegate.sw.bench.prune`; per fold,
the paired test drop after every path round), its drop fitted non-decreasing in log compression
(:func:`~sparsegate.sw.ml.stats.fitted_drop`): true accuracy = dense test accuracy - fitted drop. A validation
reading of a round is Binomial(n, true accuracy) / n, drawn independently per round, n the fold's validation
digits times 1, 2 or 3 (a larger ``val_fraction``; the fit digits it takes away are not modelled). Each rule
picks a round from the readings and is scored on the truth: the true drop of its pick, how often that is more
than 0.2 points over the budget, and its compression against the oracle's (the sparsest round whose true drop
is within the budget).

Rules (:data:`RULES`): ``windowed`` (the previous rule: each round averaged with its two neighbours, against
the start's one reading), ``isotonic`` (readings fitted non-increasing, the start included; the sparsest round
whose fitted drop from the fitted start is within the budget) and ``fitted`` (the loop's rule,
:func:`~sparsegate.sw.prune.iterative.select_fitted`: the same with a concave, non-increasing fit in log
compression). Independent draws overstate the noise of drops between similar models read on the same digits,
and the truth carries the test digits' own noise: the figures rank the rules, they do not predict a run.
Where the source run recorded its validation readings along each path, every rule is also applied to those
real readings (:func:`recorded_picks`) and read on the recorded test curve.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sparsegate.sw.bench.results import BenchResult, write_results
from sparsegate.sw.ml.stats import fitted_drop, isotonic
from sparsegate.sw.prune.iterative import select_fitted, select_windowed

__all__ = ["RULES", "measured_paths", "recorded_picks", "run_selection_benchmark", "simulate"]

SKIP = ("SRA+NRP",)  # continues from SRA's selected round on SRA's path: SRA's path stands for it


def _isotonic_rule(readings, compressions, budget: float) -> int:
    fit = -isotonic(-np.asarray(readings, dtype=float))
    return int(np.nonzero(fit[0] - fit <= budget + 1e-9)[0][-1])


RULES = {
    "windowed": lambda readings, compressions, budget: select_windowed(list(readings), readings[0], budget),
    "isotonic": _isotonic_rule,
    "fitted": lambda readings, compressions, budget: select_fitted(readings, compressions, budget),
}


def measured_paths(source: dict) -> list[dict]:
    """Per job and iterative method of a pruning benchmark's JSON: the path's weight compressions (the start
    first), its true accuracies and the fold's validation digit count."""
    paths = []
    for job in source["jobs"]:
        for name, r in job["results"].items():
            if name in SKIP:
                continue
            curve = r["curve"][:r["rounds"] + 1]  # the start, then the rounds (the final result is last)
            compressions = [c for c, _ in curve]
            truth = job["dense_test_accuracy"] - fitted_drop(curve, compressions)
            paths.append({"method": name, "fold": job["fold"], "seed": job["seed"], "compressions": compressions,
                          "accuracy": truth.tolist(), "val_digits": job["digits"]["val"]})
    return paths


def recorded_picks(source: dict, budget: float) -> dict:
    """Each rule applied to the validation readings a run recorded along each path (``path_val_accuracy``;
    none in runs before it was recorded): per method, the rounds picked and, at the pick, the weight
    compression and the paired test drop before the final fine-tune, folds x seeds pooled."""
    out: dict[str, dict] = {}
    for job in source["jobs"]:
        for name, r in job["results"].items():
            if name in SKIP or "path_val_accuracy" not in r:
                continue
            curve = r["curve"][:r["rounds"] + 1]
            for rule, pick in RULES.items():
                i = pick(np.asarray(r["path_val_accuracy"]), np.asarray([c for c, _ in curve]), budget)
                row = out.setdefault(name, {}).setdefault(rule, {"rounds": [], "compression": [], "test_drop": []})
                row["rounds"].append(i)
                row["compression"].append(curve[i][0])
                row["test_drop"].append(curve[i][1])
    for rules in out.values():
        for row in rules.values():
            row["compression_geomean"] = float(np.exp(np.mean(np.log(row["compression"]))))
            row["test_drop_mean"] = float(np.mean(row["test_drop"]))
    return out


def simulate(paths: list[dict], rule: str, budget: float, scale: float, draws: int, seed: int = 0) -> dict:
    """``draws`` noisy readings of every path at ``scale`` x its validation digits, picked by ``rule``."""
    rng = np.random.default_rng(seed)
    drops, log_ratio, over = [], [], 0
    for p in paths:
        truth, c = np.asarray(p["accuracy"]), np.asarray(p["compressions"])
        oracle = int(np.nonzero(truth[0] - truth <= budget + 1e-9)[0][-1])
        n = int(round(p["val_digits"] * scale))
        for _ in range(draws):
            pick = RULES[rule](rng.binomial(n, truth) / n, c, budget)
            drops.append(truth[0] - truth[pick])
            log_ratio.append(np.log(c[pick] / c[oracle]))
            over += truth[0] - truth[pick] > budget + 0.002
    return {"rule": rule, "val_scale": scale, "draws": draws * len(paths), "true_drop_mean": float(np.mean(drops)),
            "over_budget_share": over / (draws * len(paths)),
            "compression_vs_oracle": float(np.exp(np.mean(log_ratio)))}


def run_selection_benchmark(out_dir: str | Path, quick: bool = False,
                            source: str | Path = "docs/results/prune_lenet5.json", budget: float = 0.003,
                            scales: tuple[float, ...] = (1, 2, 3), draws: int = 400, seed: int = 0) -> BenchResult:
    """Simulate every rule at every validation scale on the paths of ``source``; write
    ``out_dir/prune_selection.md`` and ``.json``."""
    data = json.loads(Path(source).read_text())
    paths = measured_paths(data)
    draws = 20 if quick else draws
    rows = [simulate(paths, rule, budget, scale, draws, seed) for scale in scales for rule in RULES]
    oracle = [float(np.asarray(p["compressions"])[np.nonzero(np.asarray(p["accuracy"])[0] - np.asarray(
        p["accuracy"]) <= budget + 1e-9)[0][-1]]) for p in paths]
    result = {"source": str(source), "source_command": data.get("command"), "budget": budget, "seed": seed,
              "paths": len(paths), "val_digits": sorted({p["val_digits"] for p in paths}), "quick": quick,
              "oracle_compression_geomean": float(np.exp(np.mean(np.log(oracle)))), "rows": rows,
              "recorded": recorded_picks(data, budget)}
    return write_results("prune_selection", _markdown(result), result, out_dir)


def _markdown(d: dict) -> str:
    lines = ["# Path selection rules under validation noise", ""]
    if d["quick"]:
        lines += ["**Quick mode** (smoke test budget) — not a measurement.", ""]
    lines += [f"Simulated on the {d['paths']} measured paths of `{d['source']}` (`{d['source_command']}`; "
              f"{', '.join(map(str, d['val_digits']))} validation digits a fold), budget {100 * d['budget']:.1f} "
              f"points, seed {d['seed']}; truth, noise model and rules: `sw/bench/selection_noise.py`. "
              f"Oracle (the sparsest round whose true drop is within the budget): "
              f"{d['oracle_compression_geomean']:.1f}x geometric mean.", "",
              "| rule | validation digits | true drop of the pick (points) | picks > budget + 0.2 points "
              "| compression / oracle's | draws |", "|---|---:|---:|---:|---:|---:|"]
    for r in d["rows"]:
        lines.append(f"| {r['rule']} | {r['val_scale']:g}x | {100 * r['true_drop_mean']:+.2f} "
                     f"| {100 * r['over_budget_share']:.0f}% | {r['compression_vs_oracle']:.2f}x | {r['draws']:,} |")
    if d["recorded"]:
        lines += ["", "On the validation readings the run recorded along the same paths (real, not simulated): each "
                  "rule's rounds per fold, and at its pick the weight compression (geometric mean) and the paired "
                  "test drop before the final fine-tune (mean). Only the source run's own rule went on to the "
                  "final fine-tune.", "",
                  "| method | rule | rounds | weight compression | test drop at the pick (points) |",
                  "|---|---|---|---:|---:|"]
        for name, rules in d["recorded"].items():
            for rule, r in rules.items():
                lines.append(f"| {name} | {rule} | {', '.join(map(str, r['rounds']))} "
                             f"| {r['compression_geomean']:.1f}x | {100 * r['test_drop_mean']:+.2f} |")
    return "\n".join(lines) + "\n"
