#!/usr/bin/env python
"""Design-space sweep of the board top level (hw/build_sweep.py): lanes x ULX3S 25F/45F/85F.

    .venv/bin/python scripts/bench_builds.py [--quick] [--out runs/bench/builds]
"""
import argparse
from pathlib import Path

from sparsegate.hw.build_sweep import run_build_sweep

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="P in {1, 4} on the 25F only")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/builds"))
    args = parser.parse_args()
    print(run_build_sweep(args.out, quick=args.quick))
