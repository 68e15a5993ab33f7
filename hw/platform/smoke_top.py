"""Bitstream smoke design: a :class:`~sparsegate.hw.engine.mac_lane.MacLane` fed by an LFSR, its sums
XOR-reduced onto an LED, so synthesis must keep the whole lane, multiplier included.

The LFSR supplies weight, activation and a pseudo-random output ``ready`` (so the backpressure
logic is kept too); a 3-bit counter cuts the input into groups of eight. Without a platform (for
simulation) the LED is the ``led`` attribute.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Elaboratable, Module, Mux, Signal
from amaranth.lib import io

from sparsegate.hw.engine.mac_lane import MacLane

__all__ = ["SmokeTop", "LFSR_TAPS"]

#: Galois LFSR feedback for x^32 + x^22 + x^2 + x + 1 (maximal length).
LFSR_TAPS = 0x80200003


class SmokeTop(Elaboratable):
    """LFSR -> MAC lane -> XOR-reduce -> LED 0 (``led`` when elaborated without a platform)."""

    def __init__(self, acc_width: int = 32):
        self.acc_width = acc_width
        self.led = Signal()

    def elaborate(self, platform):
        m = Module()
        m.submodules.lane = lane = MacLane(self.acc_width)

        lfsr = Signal(32, init=1)
        m.d.sync += lfsr.eq(Cat(lfsr[1:], 0) ^ Mux(lfsr[0], LFSR_TAPS, 0))

        index = Signal(3)
        with m.If(lane.i.ready):
            m.d.sync += index.eq(index + 1)
        m.d.comb += [
            lane.i.valid.eq(1),
            lane.i.payload.weight.eq(lfsr[0:8]),
            lane.i.payload.activation.eq(lfsr[8:16]),
            lane.i.payload.first.eq(index == 0),
            lane.i.payload.last.eq(index == 7),
            lane.o.ready.eq(lfsr[20]),
        ]
        with m.If(lane.o.valid & lane.o.ready):
            m.d.sync += self.led.eq(lane.o.payload.xor())

        if platform is not None:
            m.submodules.led_buf = led_buf = io.Buffer("o", platform.request("led", 0, dir="-"))
            m.d.comb += led_buf.o.eq(self.led)
        return m
