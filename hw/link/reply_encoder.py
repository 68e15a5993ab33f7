"""Reply encoder: reply headers and payload bytes in, reply frames out (:mod:`sparsegate.hw.link.protocol`):
``5A | cmd | status | len lo | len hi | payload[len] | crc lo | crc hi``, the CRC over every byte after SOF."""
from __future__ import annotations

from amaranth.hdl import Array, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from sparsegate.hw.link.protocol import FRAME_CRC, SOF_RSP, reply_layout

__all__ = ["ReplyEncoder"]


class ReplyEncoder(wiring.Component):
    """Reply records → framed bytes with CRC.

    Members
    -------
    i : ``In(stream.Signature(reply_layout))``
        Reply headers; one is accepted when the previous frame has been sent.
    payload : ``In(stream.Signature(8))``
        The header's ``length`` payload bytes, forwarded as they come.
    tx : ``Out(stream.Signature(8))``
        Reply bytes to the host.
    idle : ``Out(1)``
        No frame being sent.
    """

    def __init__(self):
        super().__init__({
            "i": In(stream.Signature(reply_layout)),
            "payload": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = crc = FRAME_CRC.create()
        tx = self.tx
        fire = tx.valid & tx.ready
        hdr = Signal(reply_layout)
        cnt = Signal(2)             # header / CRC byte index
        left = Signal(16)           # payload bytes still to send
        m.d.comb += crc.data.eq(tx.payload)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.i.ready.eq(1), self.idle.eq(1)]
                with m.If(self.i.valid):
                    m.d.comb += crc.start.eq(1)
                    m.d.sync += [hdr.eq(self.i.payload), left.eq(self.i.payload.length), cnt.eq(0)]
                    m.next = "SOF"
            with m.State("SOF"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(SOF_RSP)]
                with m.If(tx.ready):
                    m.next = "HEAD"
            with m.State("HEAD"):           # cmd, status, length lo, length hi
                fields = Array([hdr.cmd, hdr.status, hdr.length[:8], hdr.length[8:]])
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(fields[cnt]), crc.valid.eq(fire)]
                with m.If(fire):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt == 3):
                        with m.If(left == 0):
                            m.next = "CRC"
                        with m.Else():
                            m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                m.d.comb += [tx.valid.eq(self.payload.valid), tx.payload.eq(self.payload.payload),
                             self.payload.ready.eq(tx.ready), crc.valid.eq(fire)]
                with m.If(fire):
                    m.d.sync += left.eq(left - 1)
                    with m.If(left == 1):
                        m.next = "CRC"
            with m.State("CRC"):            # crc lo, crc hi
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(crc.crc.word_select(cnt[0], 8))]
                with m.If(fire):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt[0]):
                        m.next = "IDLE"
        return m
