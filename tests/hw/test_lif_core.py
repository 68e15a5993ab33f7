"""The LIF core in Amaranth's simulator: bit-exact with the integer golden model under random stalls."""
from __future__ import annotations

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from sparsegate.hw.lif.core import (CoreGeometry, LifCore, LifNetwork, check_source, encode_source,
                                    pack_weight_banks)
from sparsegate.sw.ir.snn_golden import IntSNN, LifParams, event_matmul, lif_update


def golden_layer(weights, params, mask, spikes_in):
    """Per-step output spike sets and final (v, fired, refrac, count) of one layer."""
    n = weights.shape[0]
    v = np.zeros(n, np.int64)
    fired = np.zeros(n, bool)
    refrac = np.zeros(n, np.int64)
    count = np.zeros(n, np.int64)
    steps = []
    currents = event_matmul(spikes_in, weights)
    for t in range(len(spikes_in)):
        v, fired, refrac = lif_update(v, fired, refrac, currents[t], params, mask)
        count = np.minimum(count + fired, params.count_max)
        steps.append(set(np.flatnonzero(fired).tolist()))
    return steps, v, fired, refrac, count


async def readback(ctx, core, n):
    out = []
    for neuron in range(n):
        unit, slot = core.geom.place(neuron)
        ctx.set(core.rd.unit, unit)
        ctx.set(core.rd.slot, slot)
        await ctx.tick()
        out.append((ctx.get(core.rd.v), ctx.get(core.rd.fired), ctx.get(core.rd.count)))
    return out


def run_core(core, spikes_in, *, seed, valid_prob=0.7, ready_prob=0.6, clear_first=True, mask_writes=()):
    """Drive ``spikes_in (T, n_in)`` through ``core``; return (per-step spike sets, readback, counters)."""
    rng = random.Random(seed)
    n = core.geom.n_neurons
    received: list[set] = [set()]
    result = {}

    async def testbench(ctx):
        if clear_first:
            ctx.set(core.clear, 1)
            await ctx.tick()
            ctx.set(core.clear, 0)
            for _ in range(core.geom.slots + 2):
                await ctx.tick()
        for unit, slot, enable in mask_writes:
            ctx.set(core.mask_we, 1)
            ctx.set(core.mask_unit, unit)
            ctx.set(core.mask_slot, slot)
            ctx.set(core.mask_enable, enable)
            await ctx.tick()
        ctx.set(core.mask_we, 0)
        items = []
        for row in spikes_in:
            js = list(np.flatnonzero(row))
            rng.shuffle(js)  # arrival order must not matter
            items += [(j, 0) for j in js] + [(0, 1)]
        for index, end in items:
            while rng.random() >= valid_prob:
                ctx.set(core.i.valid, 0)
                await ctx.tick()
            ctx.set(core.i.valid, 1)
            ctx.set(core.i.payload, {"index": index, "end": end})
            await ctx.tick().until(core.i.ready)
        ctx.set(core.i.valid, 0)
        while len(received) <= len(spikes_in) or not ctx.get(core.idle):
            await ctx.tick()
        result["readback"] = await readback(ctx, core, n)
        result["steps"] = ctx.get(core.steps)
        result["synops"] = ctx.get(core.synops)
        result["busy"] = ctx.get(core.busy_cycles)

    async def sink(ctx):
        payload_when_stalled = None
        while True:
            ready = rng.random() < ready_prob
            ctx.set(core.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(core.o.valid, core.o.payload)
            if payload_when_stalled is not None:
                assert valid and payload == payload_when_stalled, "output changed while stalled"
            payload_when_stalled = None
            if valid and ready:
                if payload.end:
                    received.append(set())
                else:
                    assert payload.index not in received[-1], "neuron emitted twice in one step"
                    received[-1].add(payload.index)
            elif valid:
                payload_when_stalled = payload

    sim = Simulator(core)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.add_testbench(sink, background=True)
    sim.run()
    return received[:-1], result


PARAMS = {
    "shift-subtract": LifParams(threshold=90, leak="shift", leak_shift=3, reset="subtract", v_width=12,
                                count_width=3),
    "mult-zero-refractory": LifParams(threshold=60, leak="mult", leak_mult=200, leak_frac=8, reset="zero",
                                      refractory=2, v_width=10, count_width=8),
    "integrator": LifParams.integrator(v_width=14),
}


@pytest.mark.parametrize("name", sorted(PARAMS))
@pytest.mark.parametrize("units,per_word", [(4, 2), (3, 1)])
def test_core_matches_golden_under_stalls(name, units, per_word):
    params = PARAMS[name]
    rng = np.random.default_rng(units * 7 + per_word + len(name))
    n_in, n, steps = 21, 13, 7
    weights = rng.integers(-127, 128, size=(n, n_in))
    weights[rng.random(weights.shape) < 0.1] = 127  # saturation and count wrap get exercised
    mask = rng.random(n) < 0.75
    spikes = rng.random((steps, n_in)) < 0.35
    spikes[3] = False  # a step without input still leaks and may fire
    core = LifCore(weights, params, units=units, per_word=per_word, mask=mask)
    got_steps, result = run_core(core, spikes, seed=units + per_word)
    want_steps, v, fired, refrac, count = golden_layer(weights, params, mask, spikes)
    assert got_steps == want_steps
    assert [r[0] for r in result["readback"]] == v.tolist()
    assert [r[1] for r in result["readback"]] == fired.astype(int).tolist()
    assert [r[2] for r in result["readback"]] == count.tolist()
    assert result["steps"] == steps
    assert result["synops"] == int(spikes.sum()) * int(mask.sum())
    if name != "integrator":
        assert any(want_steps), "the test should make neurons fire"


def test_mask_write_skips_neurons_and_saves_rounds():
    params = PARAMS["shift-subtract"]
    rng = np.random.default_rng(5)
    weights = rng.integers(0, 60, size=(12, 10))
    spikes = rng.random((4, 10)) < 0.5
    core = LifCore(weights, params, units=4, per_word=1)
    disable = [(u, s, 0) for u in range(4) for s in (0, 2)]  # neurons 0-3 and 8-11 off
    got, result = run_core(core, spikes, seed=1, valid_prob=1.0, ready_prob=1.0, mask_writes=disable)
    mask = np.zeros(12, bool)
    mask[4:8] = True
    want, v, *_ = golden_layer(weights, params, mask, spikes)
    assert got == want and any(want)
    assert [r[0] for r in result["readback"]] == v.tolist()
    full, full_result = run_core(LifCore(weights, params, units=4, per_word=1), spikes, seed=1,
                                 valid_prob=1.0, ready_prob=1.0)
    assert result["busy"] < full_result["busy"]  # one round per step instead of three


def test_pack_weight_banks_layout():
    geom = CoreGeometry(n_inputs=3, n_neurons=5, units=2, per_word=2)
    assert (geom.slots, geom.words_per_input, geom.bank_depth) == (4, 2, 6)
    w = np.arange(15).reshape(5, 3) - 7
    banks = pack_weight_banks(w, geom)
    # unit 1 holds neurons 1 and 3 in slots 0 and 1: word j*2 + 0 packs w[1, j] and w[3, j]
    for j in range(3):
        word = banks[1][j * 2]
        assert (word & 0xFF) == (w[1, j] & 0xFF) and (word >> 8) == (w[3, j] & 0xFF)
    assert banks[0][2 * 1 + 1] & 0xFF == w[4, 1] & 0xFF  # neuron 4: unit 0, slot 2
    with pytest.raises(ValueError, match="int8"):
        pack_weight_banks(w * 100, geom)
    with pytest.raises(ValueError, match="power of two"):
        CoreGeometry(3, 5, 2, 3)


def test_network_runs_free_and_matches_golden():
    rng = np.random.default_rng(11)
    n_in, n_hidden, n_out, steps = 16, 10, 3, 5
    hidden = LifParams(threshold=100, leak="shift", leak_shift=2, v_width=16)
    w1 = rng.integers(-40, 100, size=(n_hidden, n_in))
    w2 = rng.integers(-127, 128, size=(n_out, n_hidden))
    mask = np.ones(n_hidden, bool)
    mask[[1, 6]] = False
    snn = IntSNN(w1, w2, hidden, LifParams.integrator(v_width=16), mask, steps).with_mask(mask)
    samples = [rng.random((steps, n_in)) < 0.4 for _ in range(2)]
    golden = snn.run(np.stack(samples, axis=1))
    net = LifNetwork(snn, samples, units=3, per_word=2)
    got = []

    async def testbench(ctx):
        for _ in range(len(samples)):
            ctx.set(net.start, 1)
            await ctx.tick()
            ctx.set(net.start, 0)
            await ctx.tick().until(net.done)
            cycles = ctx.get(net.cycles)
            counts, outs = [], []
            for neuron in range(n_hidden):
                unit, slot = net.hidden.geom.place(neuron)
                ctx.set(net.hidden_rd.unit, unit)
                ctx.set(net.hidden_rd.slot, slot)
                await ctx.tick()
                counts.append(ctx.get(net.hidden_rd.count))
            for neuron in range(n_out):
                unit, slot = net.readout.geom.place(neuron)
                ctx.set(net.readout_rd.unit, unit)
                ctx.set(net.readout_rd.slot, slot)
                await ctx.tick()
                outs.append(ctx.get(net.readout_rd.v))
            got.append((counts, outs, cycles, ctx.get(net.hidden_synops)))

    sim = Simulator(net)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    for b, (counts, outs, cycles, synops) in enumerate(got):
        assert counts == golden.hidden.counts[b].tolist()
        assert outs == golden.readout.v[b].tolist()
        assert synops == golden.hidden.synops[b]
        assert 0 < cycles < 2000


def test_source_rejects_unterminated_memory():
    words = encode_source([np.zeros((2, 4), bool)], 4)
    check_source(words, 4)
    with pytest.raises(ValueError, match="last"):
        check_source(words[:-1], 4)
    with pytest.raises(ValueError, match="at least one"):
        check_source([], 4)
    with pytest.raises(ValueError, match=r"\(steps, 4\)"):
        encode_source([np.zeros((2, 5), bool)], 4)


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_threshold_is_strict_and_reset_is_delayed(reset):
    """A membrane equal to the threshold does not fire; one above fires and is reset a step later."""
    params = LifParams(threshold=50, leak="shift", leak_shift=1, reset=reset, v_width=10)
    weights = np.array([[50, 0], [51, 0], [-3, 0]])
    spikes = np.array([[1, 0], [0, 0], [0, 0], [1, 0]], bool)
    core = LifCore(weights, params, units=2, per_word=2)
    got, result = run_core(core, spikes, seed=3)
    want, v, *_ = golden_layer(weights, params, np.ones(3, bool), spikes)
    # by hand: neuron 0 sits exactly at threshold at t=0 (no spike); neuron 1 fires at t=0 and is reset
    # at t=1: "subtract" leaves 51 - 25 - 50 = -24, "zero" leaves 0, so only "zero" lets it fire at t=3
    assert want == ([{1}, set(), set(), {0}] if reset == "subtract" else [{1}, set(), set(), {0, 1}])
    assert v[2] == -3  # -3 -> -1 -> 0 -> -3: the shift leak floors toward minus infinity
    assert got == want
    assert [r[0] for r in result["readback"]] == v.tolist()
