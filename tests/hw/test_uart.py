"""The 8N1 UART: transmitter -> receiver loopback in Amaranth's simulator, backpressure and framing errors."""
from __future__ import annotations

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from sparsegate.hw.link.uart import UartRx, UartTx, divisor_for


def _loopback(divisor, data, ready_every=1):
    m = Module()
    m.submodules.tx = tx = UartTx(divisor)
    m.submodules.rx = rx = UartRx(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    got = []

    async def feed(ctx):
        for b in data:
            ctx.set(tx.i.valid, 1)
            ctx.set(tx.i.payload, b)
            await ctx.tick().until(tx.i.ready)
        ctx.set(tx.i.valid, 0)

    async def sink(ctx):
        n = 0
        while len(got) < len(data):
            n += 1
            ctx.set(rx.o.ready, n % ready_every == 0)
            _, _, valid, ready, payload = await ctx.tick().sample(rx.o.valid, rx.o.ready, rx.o.payload)
            if valid and ready:
                got.append(payload)
        assert ctx.get(rx.framing_errors) == 0

    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(feed)
    sim.add_testbench(sink)
    sim.run_until(1e-8 * (len(data) + 2) * 12 * divisor + 1e-6)
    return got


@pytest.mark.parametrize("divisor", [4, 7, 16])
def test_uart_loopback(divisor):
    data = [0x00, 0xFF, 0xA5, 0x5A, 0x01, 0x80, 0x3C, 0x7E]
    assert _loopback(divisor, data) == data


def test_uart_slow_consumer_keeps_every_byte():
    # the consumer takes a byte every 3 cycles: far faster than a byte time, so nothing overruns
    data = list(range(0, 256, 17))
    assert _loopback(5, data, ready_every=3) == data


def test_uart_framing_error_is_counted_and_recovers():
    div = 4
    rx = UartRx(div)
    got = []

    async def bench(ctx):
        ctx.set(rx.o.ready, 1)

        async def send(byte, stop=1):
            for level in [0] + [(byte >> i) & 1 for i in range(8)] + [stop]:
                ctx.set(rx.rx, level)
                for _ in range(div):
                    _, _, v, p = await ctx.tick().sample(rx.o.valid, rx.o.payload)
                    if v:
                        got.append(p)
            ctx.set(rx.rx, 1)
            for _ in range(3 * div):
                _, _, v, p = await ctx.tick().sample(rx.o.valid, rx.o.payload)
                if v:
                    got.append(p)
        await send(0x12, stop=0)
        await send(0x34)
        assert ctx.get(rx.framing_errors) == 1

    sim = Simulator(rx)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert got == [0x34]


def test_divisor_for():
    assert divisor_for(100e6, 115200) == 868
    with pytest.raises(ValueError):
        divisor_for(1e6, 1_000_000)


def test_fastest_baud_keeps_the_divisor_rule():
    from sparsegate.hw.link.uart import fastest_baud
    from sparsegate.hw.platform.boards import BOARDS

    assert fastest_baud(100e6, 3_000_000) == 3_000_000          # 33 cycles per bit, 1.0% fast
    assert divisor_for(100e6, fastest_baud(100e6, 3_000_000)) == 33
    assert fastest_baud(100e6, 12_000_000) == 6_000_000         # 12M: 8 cycles, 4.2% off; 6M: 17 cycles, 2.0%
    assert fastest_baud(48e6, 12_000_000) == 12_000_000          # exactly 4 cycles
    assert fastest_baud(25e6, 3_000_000) == 1_500_000           # 3M: 8 cycles, 4.2% off; 2M: 12, 4.2%
    assert fastest_baud(100e6, 115_200) == 115_200
    with pytest.raises(ValueError, match="no standard baud rate up to 9600"):
        fastest_baud(100e6, 9600)
    assert BOARDS["ulx3s-25f"].uart_max_baud == 3_000_000 and BOARDS["orangecrab-25f"].uart_max_baud == 115_200
