#!/usr/bin/env python
"""A slice of the design-space sweep (sw/bench/builds.py); the whole grid is `sparsegate bench --only builds`.

    .venv/bin/python scripts/bench_builds.py [--quick] [--lanes 1,4] [--devices 25f] [--out runs/bench/builds]

--quick places without routing (Fmax = nextpnr's post-placement estimate); the default routes every point.
Writes sweep.md, sweep.json (the same figures) and sweep.png in --out.
"""
import argparse
from pathlib import Path

from sparsegate.sw.bench.builds import DEVICES, LANES, run_build_sweep


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="placement only: Fmax is a post-placement estimate")
    parser.add_argument("--lanes", help=f"comma-separated subset of {','.join(map(str, LANES))}")
    parser.add_argument("--devices", help=f"comma-separated subset of {','.join(DEVICES)}")
    parser.add_argument("--clock-mhz", type=float, default=100.0)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/builds"))
    args = parser.parse_args(argv)
    try:
        lanes = [int(x) for x in args.lanes.split(",")] if args.lanes else None
        devices = args.devices.split(",") if args.devices else None
        print(run_build_sweep(args.out, args.quick, lanes=lanes, devices=devices, clock_mhz=args.clock_mhz).markdown)
    except ValueError as err:
        parser.error(str(err))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
