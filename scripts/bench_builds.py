#!/usr/bin/env python
"""Design-space sweep of the board top level (sw/bench/builds.py): lanes x ULX3S 25F/45F/85F.

    .venv/bin/python scripts/bench_builds.py [--quick] [--lanes 1,4] [--devices 25f] [--out runs/bench/builds]

--quick places without routing (Fmax = nextpnr's post-placement estimate); the default routes every point.
"""
from sparsegate.sw.bench.builds import main

if __name__ == "__main__":
    raise SystemExit(main())
