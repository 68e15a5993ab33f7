#!/usr/bin/env python3
"""Run the SNN benchmark (spike-count pruning on the LIF core) and print its markdown report.

    .venv/bin/python scripts/bench_snn.py [--out runs/bench/snn] [--quick] [--save docs/results/snn.md]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sparsegate.sw.util.atomic_io import write_text
from sparsegate.sw.bench.snn import run_snn_benchmark


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench/snn"), help="work folder (cached stages)")
    parser.add_argument("--quick", action="store_true", help="short training, one target: a smoke run")
    parser.add_argument("--samples", type=int, default=20, help="digits to run on Verilator (default 20)")
    parser.add_argument("--no-verilator", action="store_true")
    parser.add_argument("--save", type=Path, default=None, help="also write the report here")
    args = parser.parse_args(argv)
    text = run_snn_benchmark(args.out, quick=args.quick, verilator_samples=args.samples,
                             verilator=not args.no_verilator)
    if args.save:
        write_text(args.save, text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
