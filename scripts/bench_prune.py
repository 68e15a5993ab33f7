#!/usr/bin/env python3
"""Run the pruning benchmark (all allocation methods side by side) and write docs/results/prune_<model>.md.

    .venv/bin/python scripts/bench_prune.py                     # LeNet-5 and LeNet-300-100, full budget
    .venv/bin/python scripts/bench_prune.py --model lenet5 --quick --out runs/bench
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from sparsegate.sw.bench.prune import run_prune_benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("lenet5", "lenet300", "all"), default="all")
    parser.add_argument("--out", default="docs/results", help="folder for prune_<model>.md/.json/_paths.png")
    parser.add_argument("--quick", action="store_true", help="smoke-test budget (not a measurement)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (1 is fastest when other jobs share the cores)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    for model in (("lenet5", "lenet300") if args.model == "all" else (args.model,)):
        start = time.perf_counter()
        print(run_prune_benchmark(args.out, model, quick=args.quick, progress=not args.no_progress))
        print(f"[{model}: {time.perf_counter() - start:.0f} s]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
