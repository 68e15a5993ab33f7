"""The sparse engine on a Verilator C++ main loop: the fastest cycle-accurate whole-network runs.

No cocotb and no Python per cycle: a small C++ driver (:data:`DRIVER`) resets the engine, then per sample
sets ``sample``, pulses ``start``, toggles the clock until ``done``, and reads every debug register through
``dbg_sel``/``dbg_data``. It prints the same record as the cocotb bench (:mod:`sparsegate.sim.benches.
engine_bench`), so both feed one checker. The memories are preloaded at elaboration (the program's
``init``), so the hardware runs free.
"""
from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from sparsegate.sim.cocotb_runner import SimulationFailed
from sparsegate.sim.verilator_cpp import build_executable

__all__ = ["CppEngine", "build_engine_cpp", "run_engine_cpp", "DRIVER"]

DRIVER = r"""// sparsegate: free-running whole-network runs of the sparse engine (generated; see engine_verilator.py)
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include "verilated.h"
#include "V{top}.h"

int main(int argc, char** argv) {{
    if (argc < 3) {{ std::fprintf(stderr, "usage: %s N_REGS TIMEOUT_CYCLES SAMPLE...\n", argv[0]); return 2; }}
    const int n_regs = std::atoi(argv[1]);
    const long timeout = std::atol(argv[2]);
    VerilatedContext context;
    V{top} top{{&context}};
    auto tick = [&]() {{ top.clk = 0; top.eval(); top.clk = 1; top.eval(); }};
    top.rst = 1; top.start = 0; top.sample = 0; top.dbg_sel = 0;
    for (int i = 0; i < 3; ++i) tick();
    top.rst = 0;
    tick();
    double busy = 0.0;
    std::printf("{{\"runs\": [");
    for (int a = 3; a < argc; ++a) {{
        top.sample = std::atoi(argv[a]);
        top.start = 1;
        tick();
        top.start = 0;
        const auto t0 = std::chrono::steady_clock::now();
        long cycles = 0;
        while (!top.done) {{
            tick();
            if (++cycles > timeout) {{
                std::fprintf(stderr, "sample %s: no done after %ld cycles\n", argv[a], timeout);
                return 3;
            }}
        }}
        busy += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf(a > 3 ? ", [" : "[");
        for (int r = 0; r < n_regs; ++r) {{
            top.dbg_sel = r;
            tick();                              // the engine registers its debug read in three stages
            tick();
            tick();
            std::printf(r ? ", %u" : "%u", (unsigned)top.dbg_data);
        }}
        std::printf("]");
        tick();
    }}
    std::printf("], \"run_wall_s\": %.6f}}\n", busy);
    top.final();
    return 0;
}}
"""


@dataclass(frozen=True)
class CppEngine:
    """A built C++ model of one engine program."""

    binary: Path
    build_dir: Path
    names: tuple[str, ...]   # debug registers in ``dbg_sel`` order


def build_engine_cpp(engine, names: list[str], toplevel: str, build_dir: str | Path) -> CppEngine:
    """The engine's Verilog and :data:`DRIVER`, built by Verilator into one executable (cached)."""
    binary = build_executable(engine, DRIVER.format(top=toplevel), toplevel=toplevel, build_dir=build_dir)
    return CppEngine(binary, binary.parent.parent, tuple(names))


def run_engine_cpp(built: CppEngine, samples: list[int], timeout_cycles: int) -> tuple[list[dict], float]:
    """Run ``samples``; ``(per-sample {register: value}, wall seconds of the free-running runs)``."""
    t0 = time.perf_counter()
    done = subprocess.run([str(built.binary), str(len(built.names)), str(timeout_cycles), *map(str, samples)],
                          capture_output=True, text=True, cwd=built.build_dir,
                          timeout=60 + timeout_cycles * len(samples) / 1e5)
    if done.returncode != 0:
        raise SimulationFailed(f"{built.binary.name} failed (exit {done.returncode}) after "
                               f"{time.perf_counter() - t0:.1f} s: {done.stderr.strip()[-2000:]}")
    result = json.loads(done.stdout)
    runs = [dict(zip(built.names, values)) for values in result["runs"]]
    return runs, result["run_wall_s"]
