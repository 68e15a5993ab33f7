"""cocotb bench for :class:`sparsegate.hw.engine.mac_lane.MacLane` (toplevel ``mac_lane``, ports from
``amaranth.back.verilog``: ``clk``, ``rst``, ``i__payload/valid/ready``, ``o__payload/valid/ready``).

Golden model: :func:`~sparsegate.hw.engine.mac_lane.golden_mac` (plain Python). Stimulus and stalls are
seeded from ``cocotb.RANDOM_SEED`` (the runner's ``seed``). Knobs via the environment:
``MAC_VECTORS`` (items per test, default 400), ``MAC_ACC_WIDTH`` (default 32).
"""
from __future__ import annotations

import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, RisingEdge, SimTimeoutError, with_timeout

from sparsegate.hw.engine.mac_lane import golden_mac, pack_input, random_items
from sparsegate.sim.benches.streams import InOrderChecker, StreamDriver, StreamMonitor

VECTORS = int(os.environ.get("MAC_VECTORS", "400"))
ACC_WIDTH = int(os.environ.get("MAC_ACC_WIDTH", "32"))
CLOCK_NS = 10


async def reset(dut) -> None:
    """Start the clock and hold the synchronous reset for three cycles."""
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


async def run_items(dut, items, *, seed: int, valid_prob: float, ready_prob: float) -> int:
    """Drive ``items`` through the lane with random stalls, check every sum in order; return cycles."""
    rng = random.Random(seed)
    checker = InOrderChecker(golden_mac(items, ACC_WIDTH), name="sum")
    driver = StreamDriver(dut, "i__", dut.clk, rng=random.Random(rng.random()), valid_prob=valid_prob)
    monitor = StreamMonitor(dut, "o__", dut.clk, checker, rng=random.Random(rng.random()),
                            ready_prob=ready_prob, signed=True)
    start = get_sim_time("ns")
    mon_task = cocotb.start_soon(monitor.run())
    budget_ns = CLOCK_NS * int((len(items) + 50) * 4 / max(0.05, min(valid_prob, ready_prob)))
    try:
        await with_timeout(driver.send(pack_input(*item) for item in items), budget_ns, "ns")
    except SimTimeoutError:
        raise AssertionError(f"timed out sending: {driver.sent}/{len(items)} items accepted") from None
    while not checker.done:
        await RisingEdge(dut.clk)
        if get_sim_time("ns") - start > budget_ns:
            raise AssertionError(f"timed out: {checker.matched}/{checker.total} sums received")
    await ClockCycles(dut.clk, 8)  # anything extra would arrive now and fail the checker
    mon_task.cancel()
    assert checker.matched == checker.total > 0
    return int((get_sim_time("ns") - start) // CLOCK_NS)


@cocotb.test()
async def random_groups_with_stalls(dut):
    """A few hundred random items in random groups; random valid gaps and ready stalls."""
    await reset(dut)
    rng = random.Random(cocotb.RANDOM_SEED)
    items = random_items(rng, VECTORS)
    await run_items(dut, items, seed=rng.randrange(1 << 30), valid_prob=0.7, ready_prob=0.6)
    dut._log.info("%d items, %d sums checked", len(items), sum(1 for it in items if it[3]))


@cocotb.test()
async def heavy_backpressure(dut):
    """Every item is its own group (a sum per item) while the sink is ready only 15% of the time."""
    await reset(dut)
    rng = random.Random(cocotb.RANDOM_SEED + 1)
    items = random_items(rng, max(40, VECTORS // 4), max_group=1)
    await run_items(dut, items, seed=rng.randrange(1 << 30), valid_prob=1.0, ready_prob=0.15)


@cocotb.test()
async def full_throughput(dut):
    """Without stalls the lane takes one item per cycle (pipeline latency aside)."""
    await reset(dut)
    rng = random.Random(cocotb.RANDOM_SEED + 2)
    items = random_items(rng, VECTORS)
    cycles = await run_items(dut, items, seed=rng.randrange(1 << 30), valid_prob=1.0, ready_prob=1.0)
    assert cycles <= len(items) + 8 + 6, f"{len(items)} items took {cycles} cycles"
