"""``sparsegate prune-choose``: a training setting chosen per fold on validation digits across runs of the
pruning benchmark (:mod:`sparsegate.sw.bench.prune_choice`). Takes two or more ``prune_<model>.json`` reports
that cut the same folds (e.g. ``prune-bench --weight-decay`` at several strengths) and writes
``OUT/prune_<model>_chosen.md`` / ``.json`` and the trade-off plot; no training runs."""
from __future__ import annotations

import argparse
from pathlib import Path

from sparsegate.sw.cli.main import invoked_as


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reports", type=Path, nargs="+", metavar="REPORT",
                        help="prune_<model>.json reports of prune-bench runs that differ in how they train; on a tie "
                             "the earlier one wins")
    parser.add_argument("--out", type=Path, default=Path("runs/prune-choose"))


def run(args: argparse.Namespace) -> int:
    from sparsegate.sw.bench.prune_choice import choose_on_validation, load_report, write_choice_report

    choice = choose_on_validation([(str(p), load_report(p)) for p in args.reports])
    command = invoked_as("prune-choose")
    result = write_choice_report(args.out, choice, command)
    print(result.markdown)
    print(f"wrote {result.markdown_path} and {result.json_path}")
    return 0
