"""P multiply-accumulate lanes with registered multiplier inputs and outputs (on ECP5 one ``MULT18X18D`` per
lane holding ``w``, ``a`` and the product in its own registers: :mod:`.dsp_multiplier`), one 32-bit
accumulator per lane.

Items carry ``w[P]``, ``a[P]`` and the pass flags: ``first`` restarts every accumulator, ``last`` copies
the P sums (with the pass context) into the output register, which doubles as the shadow bank the
output stage drains while the next pass accumulates. The array never stalls (``i`` is ``always_ready``):
the engine's command queue spaces ``last`` items so that one reaches the accumulators only when the
output register is free or being read in that cycle (``o.ready``). That load enables P x 32 sum bits and the
context: it comes from flip-flops, one copy per ``LANES_PER_LOAD`` lanes, one for the context and one for
the walker's copy of its fields (``walk``; kept apart through synthesis: ``REPLICA``), set a cycle ahead
from ``s1``'s flags (one enable net had grown to ~600 loads, late at 125 MHz on the 85F)::

    i -> [s1: w, a (DSP input regs)] -> w*a -> [s2: products (DSP output regs)] -> acc += -> [o: sums]
"""
from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from sparsegate.hw.engine.dsp_multiplier import DspMultiplier
from sparsegate.hw.engine.layouts import ACC_BITS, EngineGeometry, mac_in_layout, mac_out_layout
from sparsegate.hw.engine.pipeline_registers import pipeline_register, pipeline_register_like
from sparsegate.hw.platform.replicated_registers import replicas

__all__ = ["MacArray", "LATENCY", "LANES_PER_LOAD"]

#: Cycles from an item on ``i`` to the cycle its ``last`` loads the output register (``o.valid`` one later).
LATENCY = 2
#: Lanes whose output registers one copy of the load enable drives.
LANES_PER_LOAD = 4


class MacArray(wiring.Component):
    """P registered multiply-accumulate lanes (module docstring: pipeline, pass flags).

    Members
    -------
    i : ``In(stream.Signature(mac_in_layout), always_ready=True)``
        Weights, activations and the pass context; never stalls.
    o : ``Out(stream.Signature(mac_out_layout))``
        A pass's P sums with its context, held until the output stage takes the pass.
    busy : ``Out(1)``
        Items in the pipeline or a pass in the output register.
    """

    def __init__(self, geometry: EngineGeometry):
        self.g = geometry
        super().__init__({
            "i": In(stream.Signature(mac_in_layout(geometry), always_ready=True)),
            "o": Out(stream.Signature(mac_out_layout(geometry))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.g.lanes
        i = self.i.payload

        s1_valid = Signal()
        s1_first = pipeline_register()
        s1_last = pipeline_register()
        s2_valid = Signal()
        s2_first = pipeline_register()
        s1_ctx = pipeline_register_like(i.ctx)
        s2_ctx = pipeline_register_like(i.ctx)
        s2_prod = []        # s1: the multipliers' operand registers, s2: their product registers
        for j in range(p):
            mul = m.submodules[f"mul{j}"] = DspMultiplier(signed(8), signed(8))
            m.d.comb += [mul.a.eq(i.w[j]), mul.b.eq(i.a[j])]
            s2_prod.append(mul.p)
        acc = [pipeline_register(signed(ACC_BITS), name=f"acc{j}") for j in range(p)]

        m.d.sync += [s1_valid.eq(self.i.valid), s1_first.eq(i.first), s1_last.eq(i.last), s1_ctx.eq(i.ctx),
                     s2_valid.eq(s1_valid), s2_first.eq(s1_first), s2_ctx.eq(s1_ctx)]
        # s2 ends its pass: the output register loads (copies: lane groups, the context and `valid`, the
        # walker's copy of its fields)
        loads = replicas(-(-p // LANES_PER_LOAD) + 2, name="load")
        m.d.sync += [load.eq(s1_valid & s1_last) for load in loads]

        # the output register: data held for the output stage, read only under `o.valid`
        out = pipeline_register(mac_out_layout(self.g))
        m.d.comb += self.o.payload.eq(out)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        for j in range(p):
            total = Signal(signed(ACC_BITS), name=f"total{j}")
            m.d.comb += total.eq(Mux(s2_first, 0, acc[j]) + s2_prod[j])
            with m.If(s2_valid):
                m.d.sync += acc[j].eq(total)
            with m.If(loads[j // LANES_PER_LOAD]):
                m.d.sync += out.acc[j].eq(total)
        with m.If(loads[-2]):
            m.d.sync += [self.o.valid.eq(1), out.ctx.eq(s2_ctx)]
        walk = out.walk
        with m.If(loads[-1]):
            m.d.sync += [getattr(walk, name).eq(getattr(s2_ctx, name)) for name, _ in walk.shape()]
        m.d.comb += self.busy.eq(s1_valid | s2_valid | self.o.valid)
        return m
