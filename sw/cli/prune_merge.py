"""``sparsegate prune-merge``: runs of the pruning benchmark over disjoint seeds pooled into one report
(:mod:`sparsegate.sw.bench.prune_merge`). Takes two or more ``prune_<model>.json`` reports that differ only in
their seeds (e.g. ``prune-bench --seeds 0 1`` and ``--seeds 2 3``) and writes ``OUT/prune_<model>.md`` /
``.json`` and the trade-off plot, the figures of ``--seeds 0 1 2 3``; no training runs."""
from __future__ import annotations

import argparse
from pathlib import Path

from sparsegate.sw.cli.main import invoked_as


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reports", type=Path, nargs="+", metavar="REPORT",
                        help="prune_<model>.json reports of prune-bench runs with the same settings and no seed in "
                             "common")
    parser.add_argument("--out", type=Path, default=Path("runs/prune-merge"))


def run(args: argparse.Namespace) -> int:
    from sparsegate.sw.bench.prune_choice import load_report
    from sparsegate.sw.bench.prune_merge import merge_seed_runs, write_merged_report

    merged = merge_seed_runs([(str(p), load_report(p)) for p in args.reports])
    result = write_merged_report(args.out, merged, invoked_as("prune-merge"))
    print(result.markdown)
    print(f"wrote {result.markdown_path} and {result.json_path}")
    return 0
