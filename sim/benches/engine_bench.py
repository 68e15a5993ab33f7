"""cocotb bench for :class:`sparsegate.hw.engine.engine.SparseEngine` (toplevel ``sparse_engine``): free-running
whole-network runs. Per sample it sets ``sample``, pulses ``start`` and waits once for ``done`` (no Python
per cycle), then reads every debug register (counters, signatures, outputs) and writes them all to JSON.

Configuration: ``ENGINE_BENCH_CONFIG`` names a JSON file ``{"names": {reg: index}, "samples": [...],
"out": path, "timeout_cycles": n}``; the checking against the golden model happens in Python afterwards
(:func:`sparsegate.sim.engine.amaranth_sim.check_run`).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, RisingEdge, Timer, with_timeout

CLOCK_NS = 10


@cocotb.test()
async def run_samples(dut):
    config = json.loads(Path(os.environ["ENGINE_BENCH_CONFIG"]).read_text())
    names = config["names"]
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    dut.rst.value = 1
    dut.start.value = 0
    dut.sample.value = 0
    dut.dbg_sel.value = 0
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    runs, busy_wall = [], 0.0
    t_start = time.perf_counter()
    for s in config["samples"]:
        dut.sample.value = s
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        t0 = time.perf_counter()
        await with_timeout(RisingEdge(dut.done), config["timeout_cycles"] * CLOCK_NS, "ns")
        busy_wall += time.perf_counter() - t0
        regs = {}
        for name, index in names.items():
            dut.dbg_sel.value = index
            for _ in range(3):                  # the engine registers its debug read in three stages
                await RisingEdge(dut.clk)
            await Timer(1, "ns")
            regs[name] = int(dut.dbg_data.value.to_unsigned())
        runs.append(regs)
        await RisingEdge(dut.clk)
    result = {"runs": runs, "wall_s": time.perf_counter() - t_start, "run_wall_s": busy_wall,
              "sim_ns": get_sim_time("ns")}
    Path(config["out"]).write_text(json.dumps(result))
