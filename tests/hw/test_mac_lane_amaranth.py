"""The MAC lane under Amaranth's own simulator: random stalls against the golden model, plus the
stream rules (held output under backpressure, full throughput without it) and the golden model itself."""
from __future__ import annotations

import random

import pytest
from amaranth.sim import Simulator

from sparsegate.hw.engine.mac_lane import MAC_INPUT, MacLane, golden_mac, pack_input, random_items, wrap_signed


def run_lane(dut: MacLane, items, *, seed: int, valid_prob: float, ready_prob: float, trace=None):
    """Stream ``items`` through ``dut`` with seeded random valid gaps and ready stalls.

    Returns ``(sums, cycles, trace)``: the received sums in order, the cycles until the last one,
    and per-cycle ``(i_ready, o_valid, o_ready, o_payload)`` samples at each clock edge.
    """
    expected = sum(1 for item in items if item[3])
    rng_in, rng_out = random.Random(seed), random.Random(seed + 1_000_003)
    sums, samples, state = [], [], {"cycles": 0}

    async def driver(ctx):
        for weight, activation, first, last in items:
            while rng_in.random() >= valid_prob:
                ctx.set(dut.i.valid, 0)
                await ctx.tick()
            ctx.set(dut.i.payload, {"weight": weight, "activation": activation, "first": first, "last": last})
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def monitor(ctx):
        stalled = None
        limit = 20 * (len(items) + 20)
        while len(sums) < expected:
            ready = int(rng_out.random() < ready_prob)
            ctx.set(dut.o.ready, ready)
            _, _, i_ready, valid, payload = await ctx.tick().sample(dut.i.ready, dut.o.valid, dut.o.payload)
            state["cycles"] += 1
            samples.append((i_ready, valid, ready, payload))
            if stalled is not None:
                assert valid, f"o.valid dropped while a sum ({stalled}) was stalled"
                assert payload == stalled, f"o.payload changed while stalled: {stalled} -> {payload}"
            stalled = payload if valid and not ready else None
            if valid and ready:
                sums.append(payload)
            assert state["cycles"] < limit, f"timed out with {len(sums)}/{expected} sums"
        # Nothing more may come out.
        ctx.set(dut.o.ready, 1)
        for _ in range(8):
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            assert not valid, "an extra sum appeared after the expected ones"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(driver)
    sim.add_testbench(monitor)
    if trace:
        with sim.write_vcd(trace):
            sim.run()
    else:
        sim.run()
    return sums, state["cycles"], samples


def test_golden_model():
    items = [(2, 3, True, False), (4, 5, False, True), (-128, -128, True, True), (7, -1, False, True)]
    assert golden_mac(items) == [26, 16384, 16384 - 7]
    assert golden_mac([(-128, -128, True, False), (-128, -128, False, True)], acc_width=16) == [wrap_signed(32768, 16)]
    assert wrap_signed(32768, 16) == -32768 and wrap_signed(-1, 8) == -1 and wrap_signed(255, 8) == -1


def test_pack_input_matches_layout():
    assert pack_input(-1, 2, True, False) == 0xFF | (2 << 8) | (1 << 16)
    assert pack_input(0, -128, False, True) == (0x80 << 8) | (1 << 17)
    assert MAC_INPUT.size == 18


def test_acc_width_is_checked():
    with pytest.raises(ValueError, match="acc_width"):
        MacLane(acc_width=8)


@pytest.mark.parametrize("seed,max_group", [(0, 12), (1, 4), (2, 4)])
def test_random_stalls_match_golden(seed, max_group):
    items = random_items(random.Random(seed), 300, max_group=max_group)
    sums, _, samples = run_lane(MacLane(), items, seed=seed, valid_prob=0.7, ready_prob=0.5)
    assert len(sums) >= 300 // max_group
    assert sums == golden_mac(items)
    # The random stalls did exercise backpressure: sums were held back at the output.
    assert any(o_valid and not o_ready for _, o_valid, o_ready, _ in samples)
    if max_group <= 4:  # short groups stall often enough to push back on the input too
        assert any(not i_ready for i_ready, *_ in samples)


def test_heavy_backpressure_holds_output():
    items = random_items(random.Random(7), 60, max_group=1)  # every item produces a sum
    sums, _, samples = run_lane(MacLane(), items, seed=7, valid_prob=1.0, ready_prob=0.1)
    assert sums == golden_mac(items)
    stalled_edges = [s for s in samples if s[1] and not s[2]]
    assert len(stalled_edges) > 100


def test_full_throughput_without_stalls():
    items = random_items(random.Random(3), 200)
    sums, cycles, samples = run_lane(MacLane(), items, seed=3, valid_prob=1.0, ready_prob=1.0)
    assert sums == golden_mac(items)
    assert all(i_ready for i_ready, *_ in samples), "the lane stalled although its output was always ready"
    assert cycles <= len(items) + 4


def test_accumulator_wraps_at_its_width():
    items = [(-128, -128, k == 0, k == 4) for k in range(5)]  # 5 * 16384 overflows 16 bits
    sums, _, _ = run_lane(MacLane(acc_width=16), items, seed=0, valid_prob=1.0, ready_prob=1.0)
    assert sums == golden_mac(items, acc_width=16) == [wrap_signed(5 * 16384, 16)]
    assert sums != [5 * 16384]
