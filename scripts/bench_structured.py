#!/usr/bin/env python3
"""Run the structured-pruning benchmark (KEP, coarse, filter-level, magnitude; task-guided; shrinking) and
write docs/results/structured.md (+ structured.json).

    .venv/bin/python scripts/bench_structured.py                  # full budget, one torch thread
    .venv/bin/python scripts/bench_structured.py --quick --out runs/bench
"""
from __future__ import annotations

import argparse
import sys
import time

from sparsegate.sw.bench.structured import run_structured_benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/results", help="folder for structured.md/.json")
    parser.add_argument("--quick", action="store_true", help="smoke-test budget (not a measurement)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: fastest when other jobs share the cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    print(run_structured_benchmark(args.out, quick=args.quick, progress=not args.no_progress, seed=args.seed,
                                   threads=args.threads))
    print(f"[structured: {time.perf_counter() - start:.0f} s]", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
