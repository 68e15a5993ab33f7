#!/usr/bin/env python3
"""Run the sparse-engine benchmark once and save it to docs/results/engine.md.

    .venv/bin/python scripts/bench_engine.py [--quick] [--out build/engine/bench] [--lanes 16]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from sparsegate.sw.bench.engine import run_engine_benchmark

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 digits instead of 20")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "engine" / "bench")
    parser.add_argument("--lanes", type=int, default=16)
    parser.add_argument("--save", type=Path, default=ROOT / "docs" / "results" / "engine.md")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    text = run_engine_benchmark(args.out, quick=args.quick, lanes=args.lanes)
    args.save.parent.mkdir(parents=True, exist_ok=True)
    args.save.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
