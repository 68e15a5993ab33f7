"""Frame decoder: request bytes in, checked command records out (:mod:`sparsegate.hw.link.protocol`).

A request is ``00 | COBS(cmd | len lo | len hi | payload | crc lo | crc hi) | 00``. The decoder undoes the
COBS stuffing byte by byte (a code byte ``n`` announces ``n - 1`` data bytes, then a zero unless ``n`` is
255 or the frame ends) and restarts on every 0x00 delimiter: that is the resynchronisation — a garbage byte
costs at most the frame it lands in, and noise between frames is a frame of its own. The decoded bytes are
parsed as before: command, length, payload into the link's frame buffer (its first ``ARG_BYTES`` also into
the record's ``args``), CRC, then the closing delimiter. One
:data:`~sparsegate.hw.link.protocol.request_layout` record per frame goes to the executor. Framing errors
are records too: ``BAD_CRC``; ``BAD_LEN`` for a length over ``max_payload`` or a frame whose delimiter comes
before or after its length says (the rest is dropped up to the delimiter, or until the line is quiet);
``TIMEOUT`` when no byte came for ``timeout`` cycles mid-frame. A fragment of fewer than three data bytes
(noise: not even a header) is dropped silently. The record is held until the executor accepts it, which it
does once the command has run (or, for RUN, once the core has started): the frame buffer is only rewritten
after that.
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import WritePort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from sparsegate.hw.link.protocol import FRAME_CRC, FRAME_DELIM, STATUS, request_layout

__all__ = ["FrameDecoder"]


class FrameDecoder(wiring.Component):
    """Bytes → request records, COBS undone, CRC checked.

    Members
    -------
    rx : ``In(stream.Signature(8))``
        Request bytes from the host.
    o : ``Out(stream.Signature(request_layout))``
        One record per frame (or framing error); held until accepted.
    buf : ``In(WritePort.Signature(...))``
        Write port into the frame buffer (``max_payload`` bytes): payload byte ``k`` at address ``k``.
    idle : ``Out(1)``
        Between frames (no byte since the last delimiter).
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

        quiet = Signal(range(self.timeout + 1))
        timed_out = Signal()        # registered: `timeout` cycles without a byte (one-cycle pulse)
        with m.If(fire | timed_out):
            m.d.sync += [quiet.eq(0), timed_out.eq(0)]
        with m.Else():
            m.d.sync += [quiet.eq(quiet + 1), timed_out.eq(quiet == self.timeout - 1)]

        # ---- COBS: delimiter, code bytes, data bytes
        code_left = Signal(8)       # data bytes left in the current block
        zero_pending = Signal()     # the block before ended in an implicit zero
        in_frame = Signal()         # a byte came since the last delimiter
        delim = fire & (byte == FRAME_DELIM)
        d_valid = Signal()
        d_byte = Signal(8)
        m.d.comb += [d_valid.eq(fire & (byte != FRAME_DELIM) & ((code_left != 0) | zero_pending)),
                     d_byte.eq(Mux(code_left != 0, byte, 0)), crc.data.eq(d_byte)]
        with m.If(delim):
            m.d.sync += [code_left.eq(0), zero_pending.eq(0), in_frame.eq(0)]
        with m.Elif(fire & (code_left == 0)):
            m.d.sync += [code_left.eq(byte - 1), zero_pending.eq(byte != 0xFF), in_frame.eq(1)]
        with m.Elif(fire):
            m.d.sync += code_left.eq(code_left - 1)

        def resync():
            m.d.sync += [code_left.eq(0), zero_pending.eq(0), in_frame.eq(0)]

        cnt = Signal(16)            # byte index inside the header, the payload or the CRC
        payload_left = Signal(16)   # payload bytes still to come, counting the one being taken
        judge = Signal()            # the length has just come: PAYLOAD checks it before taking a byte (the
                                    # compares then read a register, not the incoming byte)
        crc_lo = Signal(8)
        crc_hi = Signal(8)

        def finish(status):
            m.d.sync += rec.status.eq(STATUS[status])
            m.next = "HAND_OFF"

        def cut_short():            # the delimiter came early, or no byte for `timeout` cycles
            with m.If(delim):
                finish("BAD_LEN")
            with m.Elif(timed_out):
                resync()
                finish("TIMEOUT")

        with m.FSM():
            with m.State("IDLE"):           # the command byte: the CRC starts with it
                m.d.comb += [rx.ready.eq(1), self.idle.eq(~in_frame), crc.start.eq(1), crc.valid.eq(d_valid)]
                with m.If(d_valid):
                    m.d.sync += [rec.cmd.eq(d_byte), cnt.eq(1)]
                    m.next = "HEAD"
                with m.Elif(timed_out):     # a lone code byte: noise
                    resync()
            with m.State("HEAD"):           # length lo, length hi
                m.d.comb += [rx.ready.eq(1), crc.valid.eq(d_valid)]
                with m.If(d_valid):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt == 1):
                        m.d.sync += rec.length[:8].eq(d_byte)
                    with m.Else():
                        m.d.sync += [rec.length[8:].eq(d_byte), cnt.eq(0)]
                        m.d.sync += [a.eq(0) for a in rec.args]
                        m.d.sync += judge.eq(1)
                        m.next = "PAYLOAD"
                with m.Elif(delim):         # not even a header: noise, dropped without a reply
                    m.next = "IDLE"
                with m.Elif(timed_out):
                    resync()
                    finish("TIMEOUT")
            with m.State("PAYLOAD"):        # first (`judge`) the length, registered, is checked: no byte
                m.d.comb += [rx.ready.eq(~judge), crc.valid.eq(d_valid),    # taken that cycle
                             self.buf.en.eq(d_valid), self.buf.addr.eq(cnt), self.buf.data.eq(d_byte)]
                with m.If(judge):
                    m.d.sync += [judge.eq(0), payload_left.eq(rec.length)]
                    with m.If(timed_out):
                        resync()
                        finish("TIMEOUT")
                    with m.Elif(rec.length > self.max_payload):
                        m.next = "DISCARD"
                    with m.Elif(rec.length == 0):
                        m.next = "CRC"
                with m.Elif(d_valid):
                    m.d.sync += cnt.eq(cnt + 1)
                    for i, arg in enumerate(rec.args):
                        with m.If(cnt == i):
                            m.d.sync += arg.eq(d_byte)
                    m.d.sync += payload_left.eq(payload_left - 1)
                    with m.If(payload_left == 1):   # (a down-counter against a constant, not cnt vs length - 1)
                        m.d.sync += cnt.eq(0)
                        m.next = "CRC"
                with m.Else():
                    cut_short()
            with m.State("CRC"):            # crc lo, crc hi
                m.d.comb += rx.ready.eq(1)
                with m.If(d_valid):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt == 0):
                        m.d.sync += crc_lo.eq(d_byte)
                    with m.Else():
                        m.d.sync += crc_hi.eq(d_byte)
                        m.next = "TAIL"
                with m.Else():
                    cut_short()
            with m.State("TAIL"):           # the closing delimiter
                m.d.comb += rx.ready.eq(1)
                with m.If(d_valid):         # more bytes than the length says
                    m.next = "DISCARD"
                with m.Elif(delim):
                    m.next = "CHECK"
                with m.Elif(timed_out):
                    resync()
                    finish("TIMEOUT")
            with m.State("CHECK"):          # the compare between registers
                with m.If(Cat(crc_lo, crc_hi) == crc.crc):
                    finish("OK")
                with m.Else():
                    finish("BAD_CRC")
            with m.State("DISCARD"):        # wrong length: drop bytes up to the delimiter, or until quiet
                m.d.comb += rx.ready.eq(1)
                with m.If(delim):
                    finish("BAD_LEN")
                with m.Elif(timed_out):
                    resync()
                    finish("BAD_LEN")
            with m.State("HAND_OFF"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.next = "IDLE"
        return m
