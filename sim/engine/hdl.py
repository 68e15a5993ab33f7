"""The sparse engine as Verilog, run whole-network and free-running: on Verilator's C++ main loop
(``verilator``, the fast path: :mod:`sparsegate.sim.engine.verilator`), or through cocotb on Verilator
(``verilator-cocotb``) or Icarus (``icarus``) with :mod:`sparsegate.sim.benches.engine_bench`. All three
return the debug registers per sample, for one checker."""
from __future__ import annotations

import json
import time
from pathlib import Path

from sparsegate.hw.engine.engine import SparseEngine, dbg_map
from sparsegate.sim.cocotb_runner import build_sim
from sparsegate.sim.engine.verilator import CppEngine, build_engine_cpp, run_engine_cpp
from sparsegate.sim.verilator_cpp import FAST_ARGS

__all__ = ["ENGINE_SIMULATORS", "build_engine", "run_engine_hdl", "TOPLEVEL"]

TOPLEVEL = "sparse_engine"
ENGINE_SIMULATORS = ("verilator", "verilator-cocotb", "icarus")


def build_engine(program, sim: str, build_dir: str | Path, waves: bool = False):
    """Build the engine for ``sim`` (one of :data:`ENGINE_SIMULATORS`); returns ``(build, seconds)``."""
    if sim not in ENGINE_SIMULATORS:
        raise ValueError(f"unknown engine simulator {sim!r}; expected one of {', '.join(ENGINE_SIMULATORS)}")
    t0 = time.perf_counter()
    if sim == "verilator" and not waves:
        built = build_engine_cpp(SparseEngine(program.contents), list(dbg_map(program.geometry)), TOPLEVEL, build_dir)
    else:
        simulator = "icarus" if sim == "icarus" else "verilator"
        built = build_sim(SparseEngine(program.contents), toplevel=TOPLEVEL, sim=simulator, build_dir=build_dir,
                          build_args=FAST_ARGS if simulator == "verilator" else (), waves=waves)
    return built, time.perf_counter() - t0


def run_engine_hdl(program, built, samples=None, *, timeout_cycles: int = 5_000_000, name: str = "engine",
                   waves: bool = False) -> tuple[list[dict], int, float]:
    """Run ``samples`` on a built engine; ``(per-sample dbg dicts, simulated cycles, wall seconds of the
    free-running runs)``."""
    samples = list(range(len(program.inputs))) if samples is None else list(samples)
    if isinstance(built, CppEngine):
        runs, wall = run_engine_cpp(built, samples, timeout_cycles)
        return runs, sum(r["total.cycles"] for r in runs), wall
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
