"""The sparse engine on Verilator or Icarus through cocotb: build once per program, run whole-network
samples free-running (:mod:`sparsegate.sim.benches.engine_bench`), return the debug registers per sample."""
from __future__ import annotations

import json
import time
from pathlib import Path

from sparsegate.hw.engine import SparseEngine, dbg_map
from sparsegate.sim.cocotb_runner import build_sim

__all__ = ["build_engine", "run_engine_hdl", "TOPLEVEL"]

TOPLEVEL = "sparse_engine"


def build_engine(program, sim: str, build_dir: str | Path, waves: bool = False):
    """Build the engine for ``sim``; returns ``(BuiltSim, build seconds)``."""
    t0 = time.perf_counter()
    args = ["-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert"] if sim == "verilator" else []
    built = build_sim(SparseEngine(program), toplevel=TOPLEVEL, sim=sim, build_dir=build_dir,
                      build_args=args, waves=waves)
    return built, time.perf_counter() - t0


def run_engine_hdl(program, built, samples=None, *, timeout_cycles: int = 5_000_000, name: str = "engine",
                   waves: bool = False) -> tuple[list[dict], int, float]:
    """Run ``samples`` on a built engine; ``(per-sample dbg dicts, simulated cycles, wall seconds of the
    free-running runs)``."""
    samples = list(range(len(program.inputs))) if samples is None else list(samples)
    build_dir = Path(built.build_dir)
    out = build_dir / f"{name}.json"
    if out.exists():
        out.unlink()
    config = build_dir / f"{name}.config.json"
    dut_names = dbg_map(program.geometry)
    config.write_text(json.dumps({"names": dut_names, "samples": samples, "out": str(out),
                                  "timeout_cycles": timeout_cycles}))
    built.test("sparsegate.sim.benches.engine_bench", extra_env={"ENGINE_BENCH_CONFIG": str(config)},
               name=name, waves=waves)
    result = json.loads(out.read_text())
    cycles = sum(r["total.cycles"] for r in result["runs"])
    return result["runs"], cycles, result["run_wall_s"]
