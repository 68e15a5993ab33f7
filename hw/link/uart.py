"""8N1 UART: a receiver and a transmitter with ``lib.stream`` byte interfaces.

``divisor`` is clock cycles per bit (``clk_hz // baud``). The receiver synchronises ``rx`` through two
flip-flops, times the bit centres from the start bit's falling edge and re-checks the start bit at its
centre (glitch rejection). A byte whose stop bit is low is dropped and counted as a framing error; a
byte that arrives while the previous one is still unaccepted (``o.ready`` low) is dropped and counted as
an overrun: the host link protocol above detects both (bad CRC / timeout) and recovers.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["UartRx", "UartTx", "divisor_for", "fastest_baud", "STANDARD_BAUDS"]


def divisor_for(clk_hz: float, baud: int) -> int:
    """Cycles per bit for ``baud`` at ``clk_hz``; the rate error must stay under 2%."""
    div = round(clk_hz / baud)
    if div < 4:
        raise ValueError(f"{baud} baud needs at least 4 clock cycles per bit; the clock is {clk_hz / 1e6:g} MHz")
    if abs(clk_hz / div - baud) / baud > 0.02:
        raise ValueError(f"{baud} baud is off by more than 2% at {clk_hz / 1e6:g} MHz")
    return div


#: Rates USB-serial bridges and host serial drivers offer, fastest first.
STANDARD_BAUDS = (12_000_000, 6_000_000, 4_000_000, 3_000_000, 2_000_000, 1_500_000, 1_000_000, 921_600,
                  460_800, 230_400, 115_200)


def fastest_baud(clk_hz: float, max_baud: int) -> int:
    """The fastest of :data:`STANDARD_BAUDS` up to ``max_baud`` (what the board's USB-serial bridge does) that
    :func:`divisor_for` accepts at ``clk_hz`` (at least 4 cycles per bit, under 2% rate error)."""
    for baud in STANDARD_BAUDS:
        if baud <= max_baud:
            try:
                divisor_for(clk_hz, baud)
            except ValueError:
                continue
            return baud
    raise ValueError(f"no standard baud rate up to {max_baud} works at {clk_hz / 1e6:g} MHz")


class UartRx(wiring.Component):
    """Serial line ``rx`` (idle high) -> stream ``o`` of bytes.

    Members
    -------
    rx : ``In(1, init=1)``
        The serial line (8N1, LSB first, ``divisor`` cycles per bit).
    o : ``Out(stream.Signature(8))``
        Received bytes.
    framing_errors, overruns : ``Out(16)``
        Bytes dropped: no stop bit; arrived while the previous one was still unaccepted.
    """

    def __init__(self, divisor: int):
        if divisor < 4:
            raise ValueError(f"divisor must be >= 4, got {divisor}")
        self.divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "framing_errors": Out(16),
            "overruns": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        div = self.divisor
        sync1 = Signal(init=1)
        line = Signal(init=1)
        m.d.sync += [sync1.eq(self.rx), line.eq(sync1)]

        timer = Signal(range(div))
        bit = Signal(range(9))
        shreg = Signal(8)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(div // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    with m.If(line):            # glitch: not a start bit
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [timer.eq(div - 1), bit.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(div - 1), shreg.eq(Cat(shreg[1:], line)), bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    with m.If(~line):
                        m.d.sync += self.framing_errors.eq(self.framing_errors + 1)
                        m.next = "BREAK"
                    with m.Else():
                        with m.If(self.o.valid & ~self.o.ready):
                            m.d.sync += self.overruns.eq(self.overruns + 1)
                        with m.Else():
                            m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                        m.next = "IDLE"
            with m.State("BREAK"):              # wait for the line to go idle again
                with m.If(line):
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """Stream ``i`` of bytes -> serial line ``tx``.

    Members
    -------
    i : ``In(stream.Signature(8))``
        Bytes to send; one is accepted when the line is free.
    tx : ``Out(1, init=1)``
        The serial line (8N1, LSB first, ``divisor`` cycles per bit).
    busy : ``Out(1)``
        A byte is on the line.
    """

    def __init__(self, divisor: int):
        if divisor < 4:
            raise ValueError(f"divisor must be >= 4, got {divisor}")
        self.divisor = divisor
        super().__init__({
            "i": In(stream.Signature(8)),
            "tx": Out(1, init=1),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        div = self.divisor
        timer = Signal(range(div))
        bits = Signal(10)           # start, 8 data, stop; shifted out LSB first
        left = Signal(range(11))
        m.d.comb += [self.busy.eq(left != 0), self.i.ready.eq(left == 0)]
        with m.If(left == 0):
            with m.If(self.i.valid):
                m.d.sync += [bits.eq(Cat(0, self.i.payload, 1)), left.eq(10), timer.eq(div - 1),
                             self.tx.eq(0)]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
            with m.If(timer == 0):
                # shifting ones in leaves the line high (idle) after the stop bit
                m.d.sync += [timer.eq(div - 1), left.eq(left - 1), bits.eq(Cat(bits[1:], 1)), self.tx.eq(bits[1])]
        return m
