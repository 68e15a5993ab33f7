#!/usr/bin/env python
"""A slice of the design-space sweep (sw/bench/builds.py); the whole grid is `sparsegate bench --only builds`.

    .venv/bin/python scripts/bench_builds.py [--quick | --route-all] [--lanes 1,4] [--devices 25f]
        [--seeds 1 2 3 4] [--out runs/bench/builds] [--scheduler tcp://HOST:8786] [--workers N] [--cache DIR]

By default the points that matter (builds.ROUTED_POINTS: 25F P=4 and the largest P that fits, 45F/85F P=16,
85F P=32) are placed and routed (sign-off Fmax, bitstream), and so are the old engine's points
(builds.V1_ROUTED_POINTS: 85F P=16, P=32, 25F P=4; rows of engine v1), and the rest of the grid is placed only
(Fmax = nextpnr's post-placement estimate, marked as such); --quick places every point of the grid (no v1
points), --route-all routes every point. Each routed point is placed and routed once per placer seed (--seeds,
default builds.ROUTED_SEEDS) and keeps the fastest; the table lists every seed's Fmax.
Writes builds.md, builds.json (the same figures) and sweep.png in --out. The points run as jobs on a local Dask
cluster (--workers, default one per core) or an existing one (--scheduler); finished points are cached in
--cache (default OUT/job-cache), so a re-run or an interrupted sweep only builds what is missing.
"""
import argparse
from pathlib import Path

from sparsegate.sw.bench.builds import DEVICES, LANES, ROUTED_POINTS, ROUTED_SEEDS, run_build_sweep
from sparsegate.sw.bench.registry import benchmark
from sparsegate.sw.jobs import RunnerOptions


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="placement only: Fmax is a post-placement estimate")
    mode.add_argument("--route-all", action="store_true", help="place and route every point (hours)")
    parser.add_argument("--lanes", help=f"comma-separated subset of {','.join(map(str, LANES))}")
    parser.add_argument("--devices", help=f"comma-separated subset of {','.join(DEVICES)}")
    parser.add_argument("--clock-mhz", type=float, default=benchmark("builds").kwargs["clock_mhz"],
                        help="target clock (default %(default)s MHz: `make bench`'s, the engine's timing goal)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(ROUTED_SEEDS),
                        help="nextpnr placer seeds of the routed points; the fastest is kept (default %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("runs/bench/builds"))
    parser.add_argument("--scheduler", help="an existing Dask scheduler, tcp://HOST:8786 (default: a local cluster)")
    parser.add_argument("--workers", type=int, help="local cluster: worker processes (default: one per core)")
    parser.add_argument("--cache", type=Path, help="folder of finished points (default OUT/job-cache)")
    args = parser.parse_args(argv)
    try:
        lanes = [int(x) for x in args.lanes.split(",")] if args.lanes else None
        devices = args.devices.split(",") if args.devices else None
        jobs = RunnerOptions(scheduler=args.scheduler, workers=args.workers, cache=args.cache or args.out / "job-cache",
                             progress=True, log=print)
        print(run_build_sweep(args.out, args.quick, routed="all" if args.route_all else ROUTED_POINTS, lanes=lanes,
                              devices=devices, clock_mhz=args.clock_mhz, jobs=jobs, seeds=args.seeds).markdown)
    except ValueError as err:
        parser.error(str(err))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
