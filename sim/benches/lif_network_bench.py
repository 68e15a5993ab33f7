"""cocotb bench for :class:`sparsegate.hw.lif.core.LifNetwork` (toplevel ``lif_network``): whole inferences.

The design carries everything it needs in its memories (weights, enable mask, the samples' input spike
trains), so per sample the bench only pulses ``start`` and awaits ``done`` -- one trigger, no Python
per cycle while the hardware runs -- then reads every hidden neuron's spike counter and every readout
membrane back and compares them with the golden model's.

Knobs via the environment: ``LIF_EXPECTED`` (JSON written by the caller: per sample ``counts``,
``readout``, ``synops``; plus ``unit_of``/``slot_of`` per neuron for both layers), ``LIF_REPORT``
(where to write the measured cycles and wall time), ``LIF_TIMEOUT_CYCLES`` (per sample, default 2,000,000).
"""
from __future__ import annotations

import json
import os
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, with_timeout

CLOCK_NS = 10


async def _read(dut, prefix: str, unit: int, slot: int, field: str) -> int:
    getattr(dut, f"{prefix}__unit").value = unit
    getattr(dut, f"{prefix}__slot").value = slot
    await RisingEdge(dut.clk)
    await ReadOnly()
    value = getattr(dut, f"{prefix}__{field}").value
    result = value.to_signed() if field == "v" else value.to_unsigned()
    await RisingEdge(dut.clk)
    return result


@cocotb.test()
async def whole_inferences_match_golden(dut):
    """Every sample preloaded in the spike-train memory, run free and checked bit for bit."""
    with open(os.environ["LIF_EXPECTED"]) as f:
        expected = json.load(f)
    timeout_cycles = int(os.environ.get("LIF_TIMEOUT_CYCLES", "2000000"))
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    dut.rst.value = 1
    dut.start.value = 0
    dut.hidden_wload__en.value = 0
    dut.readout_wload__en.value = 0
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)

    report = {"samples": [], "run_wall_s": 0.0, "readback_wall_s": 0.0}
    hidden_place = list(zip(expected["hidden_unit"], expected["hidden_slot"]))
    readout_place = list(zip(expected["readout_unit"], expected["readout_slot"]))
    for index, want in enumerate(expected["samples"]):
        t0 = time.perf_counter()
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        await with_timeout(RisingEdge(dut.done), timeout_cycles * CLOCK_NS, "ns")
        await ReadOnly()
        cycles = dut.cycles.value.to_unsigned()
        synops = dut.hidden_synops.value.to_unsigned()
        readout_synops = dut.readout_synops.value.to_unsigned()
        await RisingEdge(dut.clk)
        t1 = time.perf_counter()
        counts = [await _read(dut, "hidden_rd", u, s, "count") for u, s in hidden_place]
        readout = [await _read(dut, "readout_rd", u, s, "v") for u, s in readout_place]
        report["run_wall_s"] += t1 - t0
        report["readback_wall_s"] += time.perf_counter() - t1
        report["samples"].append({"cycles": cycles, "synops": synops, "readout_synops": readout_synops,
                                  "counts": counts, "readout": readout})
        bad = [n for n, (a, b) in enumerate(zip(counts, want["counts"])) if a != b]
        assert not bad, (f"sample {index}: spike counters of {len(bad)} neurons differ, first neuron {bad[0]}: "
                         f"got {counts[bad[0]]}, expected {want['counts'][bad[0]]}")
        assert readout == want["readout"], f"sample {index}: readout {readout}, expected {want['readout']}"
        assert synops == want["synops"], f"sample {index}: {synops} synaptic operations, expected {want['synops']}"
        dut._log.info("sample %d: %d cycles, %d synops, class %d", index, cycles, synops,
                      max(range(len(readout)), key=readout.__getitem__))
    if os.environ.get("LIF_REPORT"):
        with open(os.environ["LIF_REPORT"], "w") as f:
            json.dump(report, f)
