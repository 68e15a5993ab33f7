"""``sparsegate simulate``: run a weight image on the cycle-accurate sparse engine and check it bit-exactly
against the golden model (:mod:`sparsegate.sw.flow.simulate`, docs/engine.md). Exit status 1 when the
engine disagrees with the golden model."""
from __future__ import annotations

import argparse
from pathlib import Path

from sparsegate.sw.flow.simulate import DEFAULT_BUILD_DIR, MAX_SAMPLES, SIMS


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", type=Path, required=True, help="weight image (image.bin)")
    parser.add_argument("--samples", type=int, default=20, help=f"inputs to run, 1..{MAX_SAMPLES} (default 20)")
    parser.add_argument("--sim", choices=SIMS, default="verilator", help="simulator (default verilator)")
    parser.add_argument("--lanes", type=int, default=16, help="MAC lanes P: a power of two (default 16)")
    parser.add_argument("--vcd", type=Path, help="also write a VCD of the first sample (Amaranth simulator)")
    parser.add_argument("--build-dir", type=Path, default=DEFAULT_BUILD_DIR,
                        help=f"simulator build folder (default {DEFAULT_BUILD_DIR})")


def run(args: argparse.Namespace) -> int:
    from sparsegate.sw.flow.simulate import simulate

    result = simulate(args.image, args.samples, args.sim, args.lanes, args.vcd, args.build_dir)
    print("\n".join(result.lines()))
    return 0 if result.ok else 1
