"""A multiply-accumulate lane: the toolchain smoke component and the seed of the sparse engine's lanes.

Items arrive on a ``lib.stream`` carrying :data:`MAC_INPUT` (signed int8 weight and activation plus
``first``/``last`` flags). An item flagged ``first`` restarts the accumulator; an item flagged ``last``
emits the running sum (including its own product) on the output stream. The accumulator wraps at
``acc_width`` bits (two's complement), like the golden model in :func:`golden_mac`.

Pipeline (three registers deep, so the multiplier sits between registers and maps to an ECP5
``MULT18X18D`` with fabric pipeline registers on both sides)::

    i -> [s1: w, a, flags] -> (w * a) -> [s2: product, flags] -> acc +/= product -> [o: sum]

Backpressure: the whole pipeline advances together unless the accumulate stage holds a ``last``
item while the output register is still full and not accepted. ``i.ready`` therefore depends
combinationally on ``o.ready`` (allowed by the stream rules); ``o.valid`` and ``o.payload`` come
straight from registers and never depend on ``o.ready``.
"""
from __future__ import annotations

import random
from collections.abc import Iterable

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["MAC_INPUT", "MacLane", "golden_mac", "random_items", "pack_input", "wrap_signed"]

#: Payload of the lane's input stream.
MAC_INPUT = data.StructLayout({
    "weight": signed(8),
    "activation": signed(8),
    "first": 1,
    "last": 1,
})


def wrap_signed(value: int, width: int) -> int:
    """``value`` reduced to a ``width``-bit two's-complement integer."""
    value &= (1 << width) - 1
    return value - (1 << width) if value >> (width - 1) else value


def golden_mac(items: Iterable[tuple[int, int, bool, bool]], acc_width: int = 32) -> list[int]:
    """Reference model: the sums the lane emits for ``(weight, activation, first, last)`` items."""
    acc, sums = 0, []
    for weight, activation, first, last in items:
        acc = wrap_signed((0 if first else acc) + weight * activation, acc_width)
        if last:
            sums.append(acc)
    return sums


def random_items(rng: random.Random, count: int, max_group: int = 12) -> list[tuple[int, int, bool, bool]]:
    """``count`` random ``(weight, activation, first, last)`` items in groups of 1..``max_group``.

    Values favour the int8 extremes (-128, 127, 0) a fifth of the time; the last group is cut
    short at ``count`` (its final item is always flagged ``last``).
    """
    def value() -> int:
        return rng.choice((-128, 127, 0, -1)) if rng.random() < 0.2 else rng.randint(-128, 127)

    items: list[tuple[int, int, bool, bool]] = []
    while len(items) < count:
        size = min(rng.randint(1, max_group), count - len(items))
        items += [(value(), value(), k == 0, k == size - 1) for k in range(size)]
    return items


def pack_input(weight: int, activation: int, first: bool, last: bool) -> int:
    """The :data:`MAC_INPUT` bit pattern of one item, as the integer a simulator port takes."""
    fields = {"weight": weight, "activation": activation, "first": int(first), "last": int(last)}
    bits = 0
    for name, field in MAC_INPUT:
        bits |= (fields[name] & ((1 << field.width) - 1)) << field.offset
    return bits


class MacLane(wiring.Component):
    """Signed int8 x int8 multiply-accumulate lane with stream input and output.

    Parameters
    ----------
    acc_width : int
        Width of the signed accumulator and of the output payload (at least 16).

    Members
    -------
    i : ``In(stream.Signature(MAC_INPUT))``
        Weight/activation pairs with ``first``/``last`` group flags.
    o : ``Out(stream.Signature(signed(acc_width)))``
        One accumulated sum per item flagged ``last``.
    """

    def __init__(self, acc_width: int = 32):
        if not isinstance(acc_width, int) or acc_width < 16:
            self._MustUse__silence = True  # never built, so Amaranth must not warn that it went unused
            raise ValueError(f"acc_width must be an integer >= 16 (an int8 x int8 product), not {acc_width!r}")
        self.acc_width = acc_width
        super().__init__({
            "i": In(stream.Signature(MAC_INPUT)),
            "o": Out(stream.Signature(signed(acc_width))),
        })

    def elaborate(self, platform):
        m = Module()

        # Stage 1: registered multiplier inputs.
        s1_valid = Signal()
        s1_w = Signal(signed(8))
        s1_a = Signal(signed(8))
        s1_first = Signal()
        s1_last = Signal()
        # Stage 2: registered product.
        s2_valid = Signal()
        s2_prod = Signal(signed(16))
        s2_first = Signal()
        s2_last = Signal()
        # Stage 3: accumulator (the output register is self.o.payload).
        acc = Signal(signed(self.acc_width))

        blocked = s2_valid & s2_last & self.o.valid & ~self.o.ready
        advance = Signal()
        m.d.comb += [
            advance.eq(~blocked),
            self.i.ready.eq(advance),
        ]

        with m.If(advance):
            m.d.sync += [
                s1_valid.eq(self.i.valid),
                s1_w.eq(self.i.payload.weight),
                s1_a.eq(self.i.payload.activation),
                s1_first.eq(self.i.payload.first),
                s1_last.eq(self.i.payload.last),
                s2_valid.eq(s1_valid),
                s2_prod.eq(s1_w * s1_a),
                s2_first.eq(s1_first),
                s2_last.eq(s1_last),
            ]

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        total = Signal(signed(self.acc_width))
        m.d.comb += total.eq(Mux(s2_first, 0, acc) + s2_prod)
        with m.If(advance & s2_valid):
            m.d.sync += acc.eq(total)
            with m.If(s2_last):
                m.d.sync += [
                    self.o.payload.eq(total),
                    self.o.valid.eq(1),
                ]

        return m
