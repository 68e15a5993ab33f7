"""``sparsegate demo``: the main job on the embedded MNIST default, as resumable stages in a run folder.

Each stage writes its outputs under ``RUN/<stage>/`` and, last, ``RUN/<stage>/stage.json`` (atomically);
a re-run skips every stage whose ``stage.json`` exists, so an interrupted demo resumes where it stopped.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .atomic_io import write_json


def _stage_train(run: Path, results: dict, progress: bool) -> dict:
    from .train_command import train_job

    summary = train_job("lenet5", run / "train", progress=progress)
    return {"checkpoint": summary["checkpoint"], "test_accuracy": summary["test_accuracy"],
            "params": summary["params"], "macs": summary["macs"], "wall_time_s": summary["wall_time_s"]}


# (name, function, one-line description of the result for the summary)
STAGES = [
    ("train", _stage_train, lambda r: f"LeNet-5-Caffe: {100 * r['test_accuracy']:.2f}% on 1,000 held-out digits "
                                      f"({r['params']:,} params, {r['wall_time_s']:.0f} s)"),
]


def run_demo(run: Path, progress: bool = True, fresh: bool = False, log=print) -> dict:
    """Run (or resume) every stage; returns ``{stage: result}``."""
    run = Path(run)
    results: dict = {}
    for name, function, describe in STAGES:
        marker = run / name / "stage.json"
        if marker.is_file() and not fresh:
            results[name] = json.loads(marker.read_text())
            log(f"[{name}] reused from {marker.parent}")
        else:
            log(f"[{name}] running ...")
            start = time.perf_counter()
            results[name] = function(run, results, progress)
            results[name]["stage_time_s"] = time.perf_counter() - start
            write_json(marker, results[name])
        log(f"[{name}] {describe(results[name])}")
    write_json(run / "summary.json", results)
    return results


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder (default: runs/demo)")
    parser.add_argument("--fresh", action="store_true", help="redo every stage instead of resuming")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    run_demo(args.out, progress=not args.no_progress, fresh=args.fresh)
    print(f"demo finished: {args.out / 'summary.json'}")
    return 0
