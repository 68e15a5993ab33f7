"""Runs of the pruning benchmark over disjoint seeds, merged into one report.

Each seed cuts its own folds and seeds its own training, so a job is the same whichever other seeds run beside
it: ``prune-bench --seeds 0 1`` and ``--seeds 2 3`` run between them exactly the jobs of ``--seeds 0 1 2 3``.
Merging their reports pools the recorded jobs and aggregates them with the benchmark's own figures (intervals,
compression at equal drop, the paired ratio over every seed x fold), so more seeds can be added to a finished
run, or seeds spread over machines, without re-running a job. Everything but the seeds must match: a merged
report that mixed training recipes or budgets would be neither run's figures.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from sparsegate.sw.bench.prune import BenchSettings, write_prune_report
from sparsegate.sw.bench.prune_choice import LEGACY
from sparsegate.sw.bench.results import BenchResult

__all__ = ["MergeError", "Merged", "merge_seed_runs", "write_merged_report"]

FIELDS = tuple(f.name for f in fields(BenchSettings))


class MergeError(ValueError):
    """Reports that cannot be merged: which file, which field, what was expected."""


@dataclass(frozen=True)
class Merged:
    """The pooled jobs of runs over disjoint seeds, with the settings they share (seeds: the union, in the
    order given) and their wall times added."""

    model: str
    quick: bool
    settings: BenchSettings
    jobs: list[dict]
    wall_time_s: float
    sources: tuple[str, ...]


def _settings(source: str, d: dict) -> dict:
    s = {**LEGACY, **d["settings"]}
    unknown = sorted(set(s) - set(FIELDS))
    if unknown:
        raise MergeError(f"{source}: settings.{unknown[0]}: not a setting of the pruning benchmark")
    return {k: tuple(v) if isinstance(v, list) else v for k, v in s.items()}


def merge_seed_runs(reports: list[tuple[str, dict]]) -> Merged:
    """Pool ``reports`` ((source, report dict) pairs, as :func:`~sparsegate.sw.bench.prune_choice.load_report`
    checks them): runs of one model with the same settings but for their seeds, which must not overlap."""
    if len(reports) < 2:
        raise MergeError(f"expected at least two reports to merge, got {len(reports)}")
    for source, d in reports:
        if "varied" in d:
            raise MergeError(f"{source}: a nested choice's report; merge the runs it chose among, then choose")
    parsed = [_settings(source, d) for source, d in reports]
    first_source, first = reports[0]
    first_s = parsed[0]
    seeds: list[int] = []
    for (source, d), s in zip(reports, parsed):
        for key in ("model", "quick"):
            if d[key] != first[key]:
                raise MergeError(f"{source}: {key} is {d[key]!r}, {first_source} has {first[key]!r}")
        for key in FIELDS:
            if key != "seeds" and s[key] != first_s[key]:
                raise MergeError(f"{source}: settings.{key} is {s[key]!r}, {first_source} has {first_s[key]!r}: "
                                 "only the seeds may differ")
        shared = sorted(set(s["seeds"]) & set(seeds))
        if shared:
            raise MergeError(f"{source}: seed {shared[0]} is in another report too; the runs must not share a seed")
        strays = sorted({job["seed"] for job in d["jobs"]} - set(s["seeds"]))
        if strays:
            raise MergeError(f"{source}: jobs hold seed {strays[0]}, which settings.seeds does not list")
        seeds += s["seeds"]
    settings = BenchSettings(**{**first_s, "seeds": tuple(seeds)})
    return Merged(first["model"], first["quick"], settings, [job for _, d in reports for job in d["jobs"]],
                  sum(d.get("wall_time_s", 0.0) for _, d in reports),
                  tuple(source for source, _ in reports))


def write_merged_report(out_dir: str | Path, merged: Merged, command: str | None = None) -> BenchResult:
    """Write ``out_dir/prune_<model>.md`` / ``.json`` and the trade-off plot of the pooled jobs, as the
    benchmark writes a run's (``wall_time_s``: the runs' added)."""
    command = command or "sparsegate prune-merge " + " ".join(merged.sources)
    return write_prune_report(out_dir, merged.model, merged.jobs, merged.settings, merged.quick, command,
                              merged.wall_time_s)
