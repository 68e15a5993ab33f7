"""A training setting chosen per fold on validation digits: the nested choice across pruning-benchmark runs.

Several reports of the cross-validated benchmark (:mod:`sparsegate.sw.bench.prune`) that cut the same folds and
hold the same accuracy budget, but train differently (weight decay, distillation, rewinding, epochs, the warp),
are candidates. For each seed x fold x method the nested rule keeps the candidate whose selected result is the
most compressed, ties going to the higher validation accuracy, then to the earlier report. Its round was picked
on validation digits and NRP's cut is guarded on them, so the choice reads validation digits only; the chosen rows
then get the benchmark's figures (intervals, compression at equal drop, the paired ratio, the goals), read on
test digits that no decision saw. Picking one setting for all folds from the reports' test figures instead would
choose it on the digits it is then measured on. The best of several selections on the same validation digits is
optimistic, though: the report shows each run alone beside the choice.

Each method chooses for itself (the baseline gets its best-trained setting too). The drop stays paired with the
dense model of the chosen candidate, which its setting trained.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from numbers import Real
from pathlib import Path
from typing import Callable

from sparsegate.sw.bench.job_map import MapJobs, finished, job_mapper, sequential_map
from sparsegate.sw.bench.prune import (TITLES, BenchSettings, aggregate, check_model, figure_lines, format_ci,
                                       method_rows, prune_job, write_prune_report)
from sparsegate.sw.bench.results import BenchResult, write_results
from sparsegate.sw.flow.tradeoff_plot import at_drop_curve, plot_tradeoff
from sparsegate.sw.jobs import RunnerOptions
from sparsegate.sw.ml.train import check_weight_decay

__all__ = ["Choice", "ChoiceError", "MAX_REPORT_BYTES", "check_strengths", "choose_on_validation", "load_report",
           "run_weight_decay_choice", "write_choice_report"]

MAX_REPORT_BYTES = 64 << 20  # a benchmark report (the recorded ones: ~0.5 MB), refused before it is read
# the candidates must cut the same folds, hold the same budget and draw the same kind of curve
SHARED = ("model", "quick", "dataset", "data_path", "folds", "val_fraction", "fit_fraction", "max_drop", "finish_from",
          "finish_every")
# settings that older reports lack, at the values those runs trained with (and the path curves they drew)
LEGACY = {"fit_fraction": 1.0, "augment_rotate": 0.0, "augment_scale": 0.0, "weight_decay": 0.0, "finish_from": None,
          "finish_every": 2}
IGNORED = ("methods", "only_folds", "threads")  # which jobs ran, and how: not what a job is


class ChoiceError(ValueError):
    """A report that cannot take part in the choice: which file, which field, what was expected."""


@dataclass(frozen=True)
class Choice:
    """The chosen rows (one job dict per seed x fold x method, tagged with its candidate) and what they came
    from: the shared settings, the candidates and the settings that tell them apart, the picks per method."""

    model: str
    quick: bool
    settings: dict
    varied: tuple[str, ...]
    candidates: list[dict]  # {"label", "source", "settings": the varied values, "jobs"}
    jobs: list[dict]
    picks: dict[str, dict[str, int]]  # method -> candidate label -> how many seed x fold rows chose it


def _number(v) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)


def _index(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_curve(v) -> bool:
    return isinstance(v, list) and bool(v) and all(
        isinstance(p, list) and len(p) == 2 and all(map(_number, p)) and p[0] > 0 for p in v)


def _or_null(kind: tuple[str, Callable]) -> tuple[str, Callable]:
    return f"{kind[0]} or null", lambda v: v is None or kind[1](v)


_NUMBER, _WHOLE = ("a finite number", _number), ("a whole number", _index)
_WHOLES = ("a list of whole numbers", lambda v: isinstance(v, list) and all(map(_index, v)))
_TEXT = ("a string", lambda v: isinstance(v, str))
# setting -> (what it must hold, its check): every setting a report's figures, its Markdown or a merged run read
SETTINGS = {
    **dict.fromkeys(("max_drop", "nrp_drop", "step", "late_step", "lr", "val_fraction", "fit_fraction", "distill",
                     "augment_rotate", "augment_scale", "weight_decay"), _NUMBER),
    **dict.fromkeys(("max_rounds", "epochs_per_round", "final_epochs", "folds", "finish_every"), _WHOLE),
    "base_epochs": _or_null(_WHOLE), "seeds": _WHOLES, "rewind": ("true or false", lambda v: isinstance(v, bool)),
    "dataset": _TEXT, "data_path": _or_null(_TEXT), "finish_from": _or_null(_NUMBER),
}
OPTIONAL = {"methods": ("a list of method names", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v)),
            "only_folds": _or_null(_WHOLES), "threads": _or_null(_WHOLE)}  # run options, IGNORED by the choice


def _check_row(where: str, r) -> None:
    if not isinstance(r, dict):
        raise ChoiceError(f"{where}: expected an object")
    for key in ("compression", "weight_compression", "drop", "val_accuracy"):
        if not _number(r.get(key)):
            raise ChoiceError(f"{where}.{key}: expected a finite number")
    for key in ("compression", "weight_compression"):
        if r[key] <= 0:
            raise ChoiceError(f"{where}.{key}: expected a positive compression, got {r[key]}")
    curve = r.get("curve")
    if not _is_curve(curve):
        raise ChoiceError(f"{where}.curve: expected [[compression > 0, drop], ...]")
    if "finished_curve" in r and not _is_curve(r["finished_curve"]):
        raise ChoiceError(f"{where}.finished_curve: expected [[compression > 0, drop], ...]")
    path = r.get("path_sparsity")
    if not isinstance(path, list) or not all(_number(x) and 0 <= x < 1 for x in path):
        raise ChoiceError(f"{where}.path_sparsity: expected a list of sparsities in [0, 1)")
    if not _index(r.get("rounds")) or not _index(r.get("selected_round")) or r["selected_round"] > len(path):
        raise ChoiceError(f"{where}.selected_round: expected a round in 0..{len(path)} of the path, and rounds")
    if "path_val_accuracy" in r:
        val = r["path_val_accuracy"]
        if not isinstance(val, list) or not all(map(_number, val)):
            raise ChoiceError(f"{where}.path_val_accuracy: expected a list of accuracies")
        for key in ("selected_round", "selected_round_windowed"):
            if not _index(r.get(key)) or r[key] >= len(curve):
                raise ChoiceError(f"{where}.{key}: expected a round on the curve (0..{len(curve) - 1})")


def load_report(path: str | Path) -> dict:
    """Read one ``prune_<model>.json`` report and check every field the choice and its figures read; a
    :class:`ChoiceError` naming the file and field otherwise."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_REPORT_BYTES:
            raise ChoiceError(f"{path}: {size:,} bytes; a pruning report is at most {MAX_REPORT_BYTES:,}")
        d = json.loads(path.read_bytes())
    except OSError as err:
        raise ChoiceError(f"{path}: cannot read ({err.strerror or err})") from None
    except (ValueError, RecursionError) as err:
        raise ChoiceError(f"{path}: not JSON ({err})") from None
    if not isinstance(d, dict) or d.get("model") not in ("lenet5", "lenet300") or not isinstance(d.get("jobs"), list):
        raise ChoiceError(f"{path}: expected a pruning benchmark report (prune_lenet5.json or prune_lenet300.json:"
                          " model, settings, jobs)")
    if "recovery" in d:
        raise ChoiceError(f"{path}: a recovery study's report; the choice takes the benchmark's own reports")
    s = d.get("settings")
    if not isinstance(s, dict) or not isinstance(d.get("quick"), bool):
        raise ChoiceError(f"{path}: settings and quick: expected an object and true/false")
    for key, (what, ok) in {**SETTINGS, **OPTIONAL}.items():
        if key not in s and key not in LEGACY and key not in OPTIONAL:
            raise ChoiceError(f"{path}: settings.{key}: missing")
        if key in s and not ok(s[key]):
            raise ChoiceError(f"{path}: settings.{key}: expected {what}, got {str(s[key])[:40]!r}")
    finish_from, finish_every = s.get("finish_from"), s.get("finish_every", LEGACY["finish_every"])
    if not (finish_from is None or finish_from > 0) or finish_every < 1:
        raise ChoiceError(f"{path}: settings.finish_from / finish_every: expected null or a compression > 0, and "
                          "a whole number >= 1")
    if not _number(d.get("wall_time_s", 0.0)):
        raise ChoiceError(f"{path}: wall_time_s: expected a finite number of seconds")
    for i, job in enumerate(d["jobs"]):
        where = f"{path}: jobs[{i}]"
        if not isinstance(job, dict) or not all(isinstance(job.get(k), int) for k in ("seed", "fold")):
            raise ChoiceError(f"{where}: expected an object with integer seed and fold")
        if not isinstance(job.get("results"), dict) or not isinstance(job.get("digits"), dict):
            raise ChoiceError(f"{where}: expected results and digits objects")
        for name, r in job["results"].items():
            _check_row(f"{where}.results[{name!r}]", r)
    return d


def _settings(d: dict) -> dict:
    s = {**LEGACY, **d["settings"], "model": d["model"], "quick": d["quick"]}
    return {k: v for k, v in s.items() if k not in IGNORED}


def _label(values: dict) -> str:
    return ", ".join(f"{k} {v:g}" if _number(v) else f"{k} {v}" for k, v in values.items())


def choose_on_validation(reports: list[tuple[str, dict]]) -> Choice:
    """The nested choice over ``reports`` ((source, report dict) pairs, as :func:`load_report` gives them): per
    method, every seed x fold that all candidates ran keeps the candidate whose selected result is the most
    compressed (tie: the higher validation accuracy, then the earlier report)."""
    if len(reports) < 2:
        raise ChoiceError(f"expected at least two reports to choose between, got {len(reports)}")
    settings = [_settings(d) for _, d in reports]
    first_source, first = reports[0][0], settings[0]
    for (source, _), s in zip(reports[1:], settings[1:]):
        for key in SHARED:
            if s[key] != first[key]:
                raise ChoiceError(f"{source}: settings.{key} is {s[key]!r}, {first_source} has {first[key]!r}: the "
                                  "candidates must cut the same folds, hold the same budget and draw the same kind "
                                  "of curve")
    varied = tuple(k for k in first if any(_jsonable(s[k]) != _jsonable(first[k]) for s in settings)
                   and k not in ("seeds",))
    if not varied:
        raise ChoiceError(f"{' and '.join(src for src, _ in reports)}: the reports ran the same settings; nothing "
                          "to choose between")
    candidates = []
    for (source, d), s in zip(reports, settings):
        label = _label({k: s[k] for k in varied})
        if any(c["label"] == label for c in candidates):
            raise ChoiceError(f"{source}: the same settings as another report ({label})")
        candidates.append({"label": label, "source": source, "settings": {k: s[k] for k in varied},
                           "jobs": d["jobs"]})
    rows = [method_rows(c["jobs"]) for c in candidates]
    holder = [{(name, j["seed"], j["fold"]): j for j in c["jobs"] for name in j["results"]} for c in candidates]
    methods = [name for name in rows[0] if all(name in r for r in rows[1:])]
    jobs, picks = [], {}
    for name in methods:
        keys = sorted(set.intersection(*(set(r[name]) for r in rows)))
        picks[name] = {c["label"]: 0 for c in candidates}
        for key in keys:
            best = max(range(len(candidates)),
                       key=lambda i: (rows[i][name][key]["compression"], rows[i][name][key]["val_accuracy"]))
            picks[name][candidates[best]["label"]] += 1
            job = holder[best][(name, *key)]  # the job that ran this row: its dense model, its digits
            jobs.append({**{k: v for k, v in job.items() if k != "results"}, "candidate": candidates[best]["label"],
                         "results": {name: rows[best][name][key]}})
    if not jobs:
        raise ChoiceError(f"{' and '.join(src for src, _ in reports)}: no method ran the same seed x fold in "
                          "every report")
    shared = {k: first[k] for k in first if k not in varied and k not in ("model", "quick")}
    return Choice(first["model"], first["quick"], shared, varied, candidates, jobs, picks)


def _jsonable(v):
    return tuple(v) if isinstance(v, list) else v


def write_choice_report(out_dir: str | Path, choice: Choice, command: str | None = None, name: str | None = None
                        ) -> BenchResult:
    """Write ``out_dir/prune_<model>_chosen.md`` / ``.json`` and the trade-off plot: the nested choice's figures
    (as the benchmark reports them), each candidate's own figures on the same seed x fold rows beside them, and
    every row's pick."""
    out_dir = Path(out_dir)
    name = name or f"prune_{choice.model}_chosen"
    summary = aggregate(choice.jobs)
    for n, m in summary["methods"].items():
        m["dense_test_accuracy_mean"] = _dense(choice.jobs, n)
    plot = f"{name}_tradeoff.png"
    curves = {n: [at_drop_curve(by_key[k]) for k in sorted(by_key)] for n, by_key in method_rows(choice.jobs).items()}
    plot_tradeoff(curves, summary["methods"], out_dir / plot,
                  f"{choice.model}, {', '.join(choice.varied)} chosen on validation: paired test drop, 95% band")
    keys = {n: set(by_key) for n, by_key in method_rows(choice.jobs).items()}
    own = {}
    for c in choice.candidates:  # each candidate alone, on the rows the choice compared
        mine = [dict(j, results={n: r for n, r in j["results"].items() if (j["seed"], j["fold"]) in keys.get(n, ())})
                for j in c["jobs"]]
        mine = [j for j in mine if j["results"]]
        own[c["label"]] = {n: {**m, "dense_test_accuracy_mean": _dense(mine, n)}
                           for n, m in aggregate(mine)["methods"].items()}
    d = {"model": choice.model, "quick": choice.quick, "command": command, "settings": choice.settings,
         "varied": list(choice.varied), "picks": choice.picks,
         "candidates": [{"label": c["label"], "source": c["source"], "settings": c["settings"],
                         "methods": own[c["label"]]} for c in choice.candidates],
         "summary": summary, "methods": summary["methods"], "plot": plot, "jobs": choice.jobs}
    return write_results(name, _markdown(d), d, out_dir)


def check_strengths(strengths, field: str = "weight decay") -> None:
    """Weight-decay strengths to choose between: each in range, at least two different; a :class:`ChoiceError`
    naming ``field`` otherwise (before any job runs)."""
    for wd in strengths:
        try:
            check_weight_decay(wd)
        except ValueError as err:
            raise ChoiceError(f"{field}: {err}") from None
    if len(set(strengths)) < 2:
        raise ChoiceError(f"{field}: expected at least two different strengths to choose between, got "
                          f"{list(strengths)}")


def run_weight_decay_choice(out_dir: str | Path, model: str, strengths: tuple[float, ...],
                            settings: BenchSettings | None = None, quick: bool = False,
                            map_jobs: MapJobs = sequential_map, command: str | None = None,
                            jobs: RunnerOptions | None = None) -> BenchResult:
    """The benchmark at each weight-decay strength (every run's jobs in one map, so workers stay busy; each run's
    report in ``out_dir/weight_decay_<strength>/``), then the nested choice over them in ``out_dir``."""
    check_model(model)
    check_strengths(strengths)
    base = settings or (BenchSettings.quick() if quick else BenchSettings())
    runs = {wd: replace(base, weight_decay=wd) for wd in dict.fromkeys(strengths)}
    start = time.perf_counter()
    results = job_mapper(map_jobs, jobs)(prune_job, [c for s in runs.values() for c in s.calls(model)])
    n = len(base.calls(model))
    out_dir, reports = Path(out_dir), []
    for i, (wd, s) in enumerate(runs.items()):
        run = write_prune_report(out_dir / f"weight_decay_{wd:g}", model, finished(results[i * n:(i + 1) * n]), s,
                                 quick, f"{command or 'a weight-decay choice'} (its run at weight decay {wd:g}; "
                                 "the wall time is the whole choice's)",
                                 time.perf_counter() - start)
        reports.append((str(run.json_path.relative_to(out_dir)), run.data))  # the report as written
    return write_choice_report(out_dir, choose_on_validation(reports), command)


def _dense(jobs: list[dict], name: str) -> float | None:
    """Mean test accuracy of the dense models behind ``name``'s rows (the drop is paired with them)."""
    acc = [j["dense_test_accuracy"] for j in jobs if name in j["results"] and _number(j.get("dense_test_accuracy"))]
    return sum(acc) / len(acc) if acc else None


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.2f}%"


def _markdown(d: dict) -> str:
    s, methods = d["settings"], d["summary"]["methods"]
    title = TITLES[d["model"]]
    varied = ", ".join(f"`{k}`" for k in d["varied"])
    lines = [f"# Pruning benchmark: {title}, {varied} chosen per fold on validation digits", ""]
    if d["quick"]:
        lines += ["**Quick mode** (smoke test budget) — not a measurement.", ""]
    lines += [
        (f"Command: `{d['command']}`. " if d["command"] else "")
        + f"{len(d['candidates'])} runs of the cross-validated benchmark ({s['folds']} folds, "
        f"{'the embedded 5,000 MNIST digits' if s['dataset'] == 'mnist5k' else 'full MNIST'}, the same digits in "
        f"every fold of every run, the same {100 * s['max_drop']:.1f}-point validation budget) differ in "
        f"{varied}. For each seed x fold x method the nested rule keeps the run whose selected result is the most "
        "compressed (tie: the higher validation accuracy, then the earlier run): the round was picked on the fold's "
        "validation digits and NRP's cut is guarded on them, so no choice reads a test digit. Each method chooses "
        "for itself, the baseline too; the drop is paired with the dense model its chosen run trained. The best of "
        "several selections on the same validation digits is optimistic: the chosen rows can sit further down on "
        "the test digits than any one run's (the table of each run alone shows it). Figures as in the benchmark's "
        "report: mean [95% CI] over the folds x seeds that every run finished (compressions geometric).",
        "", "| run | " + " | ".join(f"picked for {n}" for n in d["picks"]) + " | report |",
        "|---|" + "---:|" * len(d["picks"]) + "---|"]
    for c in d["candidates"]:
        lines.append(f"| {c['label']} | " + " | ".join(str(p[c["label"]]) for p in d["picks"].values())
                     + f" | `{c['source']}` |")
    lines += ["", "## Chosen on validation", ""]
    lines += figure_lines(d["model"], d, d["summary"].get("comparisons", {}))
    lines += ["## Each run alone, on the same folds x seeds", "",
              "Each run's own figures on the rows the choice compared, and the chosen rows' beside them; the dense "
              "test accuracy is the mean of the dense models the drops are paired with.", "",
              "| method | run | compression | accuracy drop (points) | at 0.3 points | dense test accuracy |",
              "|---|---|---:|---:|---:|---:|"]
    for name, chosen in methods.items():
        runs = [(c["label"], c["methods"][name]) for c in d["candidates"] if name in c["methods"]]
        for label, m in runs + [("**chosen on validation**", chosen)]:
            a = m["compression_at_drop"]["0.3"]
            lines.append(f"| {name} | {label} | {format_ci(m['compression_mean'], m['compression_ci95'], unit='x')} "
                         f"| {format_ci(m['drop_mean'], m['drop_ci95'], 100, '+.2f')} "
                         f"| {format_ci(a['compression_mean'], a['compression_ci95'], unit='x')} "
                         f"| {_pct(m.get('dense_test_accuracy_mean'))} |")
    lines += ["", "## Per fold", "", "| seed | fold | method | chosen run | compression | drop (points) "
              "| validation accuracy |", "|---:|---:|---|---|---:|---:|---:|"]
    for job in d["jobs"]:
        for name, r in job["results"].items():
            lines.append(f"| {job['seed']} | {job['fold']} | {name} | {job['candidate']} | {r['compression']:.1f}x "
                         f"| {100 * r['drop']:+.2f} | {100 * r['val_accuracy']:.1f}% |")
    lines.append("")
    return "\n".join(lines)
