"""Frame decoder: request bytes in, checked command records out (:mod:`sparsegate.hw.link.protocol`).

It hunts for SOF (other bytes between frames are ignored: resynchronisation), takes the command and the
length, stores the payload in the link's frame buffer (its first ``ARG_BYTES`` also into the record's
``args``), checks the CRC and hands one :data:`~sparsegate.hw.link.protocol.request_layout` record per frame
to the executor. Framing errors are records too: ``BAD_CRC``; ``BAD_LEN`` for a length over ``max_payload``
(the rest of the frame is dropped until the line has been quiet for ``timeout`` cycles); ``TIMEOUT`` when
no byte came for ``timeout`` cycles mid-frame. The record is held until the executor accepts it, which it
does once the command has run: the frame buffer is only rewritten after that.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from sparsegate.hw.link.protocol import FRAME_CRC, SOF_REQ, STATUS, request_layout

__all__ = ["FrameDecoder"]


class FrameDecoder(wiring.Component):
    """Bytes → request records, CRC checked.

    Members
    -------
    rx : ``In(stream.Signature(8))``
        Request bytes from the host.
    o : ``Out(stream.Signature(request_layout))``
        One record per frame (or framing error); held until accepted.
    buf : ``In(WritePort.Signature(...))``
        Write port into the frame buffer (``max_payload`` bytes): payload byte ``k`` at address ``k``.
    idle : ``Out(1)``
        Between frames (waiting for SOF).
    """

    def __init__(self, *, max_payload: int, timeout: int):
        self.max_payload, self.timeout = max_payload, int(timeout)
        super().__init__({
            "rx": In(stream.Signature(8)),
            "o": Out(stream.Signature(request_layout)),
            "buf": In(WritePort.Signature(addr_width=max(1, ceil_log2(max_payload)), shape=8)),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = crc = FRAME_CRC.create()
        rx, rec = self.rx, self.o.payload
        byte = rx.payload
        fire = rx.valid & rx.ready
        m.d.comb += crc.data.eq(byte)

        quiet = Signal(range(self.timeout + 1))
        timed_out = Signal()        # registered: `timeout` cycles without a byte (one-cycle pulse)
        with m.If(fire | timed_out):
            m.d.sync += [quiet.eq(0), timed_out.eq(0)]
        with m.Else():
            m.d.sync += [quiet.eq(quiet + 1), timed_out.eq(quiet == self.timeout - 1)]

        cnt = Signal(16)            # byte index inside the header, the payload or the CRC
        crc_lo, crc_hi = Signal(8), Signal(8)

        def finish(status):
            m.d.sync += rec.status.eq(STATUS[status])
            m.next = "HAND_OFF"

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [rx.ready.eq(1), self.idle.eq(1)]
                with m.If(fire & (byte == SOF_REQ)):
                    m.d.comb += crc.start.eq(1)
                    m.d.sync += cnt.eq(0)
                    m.next = "HEAD"
            with m.State("HEAD"):           # cmd, length lo, length hi
                m.d.comb += [rx.ready.eq(1), crc.valid.eq(fire)]
                with m.If(fire):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.Switch(cnt):
                        with m.Case(0):
                            m.d.sync += rec.cmd.eq(byte)
                        with m.Case(1):
                            m.d.sync += rec.length[:8].eq(byte)
                        with m.Case(2):
                            length = Cat(rec.length[:8], byte)
                            m.d.sync += [rec.length[8:].eq(byte), cnt.eq(0)]
                            m.d.sync += [a.eq(0) for a in rec.args]
                            with m.If(length > self.max_payload):
                                m.next = "DISCARD"
                            with m.Elif(length == 0):
                                m.next = "CRC"
                            with m.Else():
                                m.next = "PAYLOAD"
                with m.Elif(timed_out):
                    finish("TIMEOUT")
            with m.State("PAYLOAD"):
                m.d.comb += [rx.ready.eq(1), crc.valid.eq(fire),
                             self.buf.en.eq(fire), self.buf.addr.eq(cnt), self.buf.data.eq(byte)]
                with m.If(fire):
                    m.d.sync += cnt.eq(cnt + 1)
                    for i, arg in enumerate(rec.args):
                        with m.If(cnt == i):
                            m.d.sync += arg.eq(byte)
                    with m.If(cnt == rec.length - 1):
                        m.d.sync += cnt.eq(0)
                        m.next = "CRC"
                with m.Elif(timed_out):
                    finish("TIMEOUT")
            with m.State("CRC"):            # crc lo, crc hi
                m.d.comb += rx.ready.eq(1)
                with m.If(fire):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt == 0):
                        m.d.sync += crc_lo.eq(byte)
                    with m.Else():
                        m.d.sync += crc_hi.eq(byte)
                        m.next = "CHECK"
                with m.Elif(timed_out):
                    finish("TIMEOUT")
            with m.State("CHECK"):          # the compare between registers
                with m.If(Cat(crc_lo, crc_hi) == crc.crc):
                    finish("OK")
                with m.Else():
                    finish("BAD_CRC")
            with m.State("DISCARD"):        # oversized frame: drop bytes until the line is quiet
                m.d.comb += rx.ready.eq(1)
                with m.If(timed_out):
                    finish("BAD_LEN")
            with m.State("HAND_OFF"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.next = "IDLE"
        return m
