"""Amaranth-simulator helpers for the engine's block tests: drive ``lib.stream`` inputs and drain outputs
with seeded random valid gaps and ready stalls, checking the stream rules on every output."""
from __future__ import annotations

import random

from amaranth.sim import Simulator

__all__ = ["run_streams"]


def run_streams(dut, sources: dict, sinks: dict, *, seed: int, valid_prob: float = 0.7, ready_prob: float = 0.6,
                setup=None, max_cycles: int = 100_000, settle: int = 8):
    """Simulate ``dut``: ``sources`` maps an input stream to the payloads to send (values for
    ``ctx.set(stream.payload, ...)``), ``sinks`` maps an output stream to the number of items to expect.
    ``setup(ctx)`` runs first (static inputs). Returns ``{sink: [payload as int, ...]}``; raises
    AssertionError on a stream-rule violation, a timeout, or an extra item."""
    rng = random.Random(seed)
    received = {port: [] for port in sinks}
    state = {"ready": False}

    async def driver(ctx, port, items, prng):
        while not state["ready"]:
            await ctx.tick()
        for item in items:
            while prng.random() >= valid_prob:
                ctx.set(port.valid, 0)
                await ctx.tick()
            ctx.set(port.payload, item)
            ctx.set(port.valid, 1)
            await ctx.tick().until(port.ready)
        ctx.set(port.valid, 0)

    async def monitor(ctx, port, count, prng):
        while not state["ready"]:
            await ctx.tick()
        stalled = None
        cycles = 0
        always_ready = port.signature.always_ready      # a never-stalling output: its ready is a constant 1
        while len(received[port]) < count:
            ready = int(always_ready or prng.random() < ready_prob)
            if not always_ready:
                ctx.set(port.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(port.valid, port.payload.as_value())
            cycles += 1
            if stalled is not None:
                assert valid, "valid dropped while an item was stalled"
                assert payload == stalled, "payload changed while stalled"
            stalled = payload if valid and not ready else None
            if valid and ready:
                received[port].append(payload)
            assert cycles < max_cycles, f"timed out with {len(received[port])}/{count} items"
        if not always_ready:
            ctx.set(port.ready, 1)
        for _ in range(settle):
            _, _, valid = await ctx.tick().sample(port.valid)
            assert not valid, "an extra item appeared after the expected ones"

    async def init(ctx):
        if setup is not None:
            await setup(ctx)
        state["ready"] = True

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(init)
    def bind(function, *args):
        async def bench(ctx):
            await function(ctx, *args)
        return bench

    for port, items in sources.items():
        sim.add_testbench(bind(driver, port, items, random.Random(rng.random())))
    for port, count in sinks.items():
        sim.add_testbench(bind(monitor, port, count, random.Random(rng.random())))
    sim.run()
    return received
