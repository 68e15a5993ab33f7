"""Host link: the framed command protocol between a host and the sparse engine, over a byte stream
(the UART in :mod:`sparsegate.hw.platform.board_top`, or a simulator transport).

Frames (:mod:`sparsegate.hw.link.protocol`: codes, CRC, identity reply)::

    request:  00 | COBS(cmd | len lo | len hi | payload[len] | crc lo | crc hi) | 00
    reply:    5A | cmd | status | len lo | len hi | payload[len] | crc lo | crc hi

Three components joined by streams, each in its own file::

    rx bytes -> FrameDecoder -> request records -> Executor -> reply headers + payload bytes -> ReplyEncoder -> tx
                     |                              |  |
                     +------> frame buffer <--------+  +-- host port (HostPortSignature) -> the core

Commands (``payload`` → reply payload):

=====  ============  ===========================================================  ===========================
code   name          request payload                                              reply payload
=====  ============  ===========================================================  ===========================
0x01   ID            —                                                            identity (``protocol.identity_bytes``)
0x02   WRITE_MEM     mem u8, addr u16, count u16, count words of ceil(bits/8) B   —
0x03   RUN           sample u16                                                   total cycles u32
                                                                                  (``BAD_DESC``: layer u8)
0x04   READ_REGS     first u8, count u8 (debug registers, ``hw.engine.dbg_map``) count × u32
0x05   READ_OUTPUTS  —                                                            ``n_results`` × int8 (sparse)
                                                                                  or × int32 (LIF membranes)
0x06   RESET         —                                                            — (the core is aborted)
=====  ============  ===========================================================  ===========================

The same link serves either core (``hw.platform.board_top``): the ID reply's core kind says which is built
(``sparse``: geometry = ``protocol.IDENT_FIELDS``; ``lif``: ``protocol.LIF_IDENT_FIELDS``, memories and registers in
``hw.lif.design``), so a host knows how to load it.

``WRITE_MEM`` to memories 0-3 (descriptors, channel table, parameters, weight words: ``HOST_MEMS``) is
how a weight image is loaded; to memory 4 (input samples) how an input is loaded. The host compiles
(``hw.engine.program``); the device only stores words. A request is executed only after its CRC checks,
so a damaged frame never writes anything.

The device always answers: a frame cut short ends at the line's silence (``timeout`` cycles); ``RUN``
checks the layer descriptors first (a descriptor that could never finish — an unloaded device — is
answered ``BAD_DESC`` with the layer's index) and a watchdog bounds the run (``run_budget`` cycles, then
the core is aborted and the answer is ``RUN_TIMEOUT``); a ``RESET`` frame aborts a run in progress
(``ABORTED``, then ``OK``). The request framing resynchronises on every 0x00 delimiter: a garbage byte
costs at most the frame it lands in.

Errors are replies with an error status and no payload (but ``BAD_DESC``'s layer): ``BAD_CRC``;
``BAD_LEN`` (a length over ``max_payload`` — the rest of the frame is discarded up to its delimiter —,
a delimiter before or after the frame's length, or a length that does not match the command);
``UNKNOWN_CMD``; ``TIMEOUT`` (a frame truncated: no byte for ``timeout`` cycles mid-frame); ``BAD_ARG``
(memory index, address range, sample or register out of range); ``BAD_DESC``, ``RUN_TIMEOUT``,
``ABORTED`` (above). A fragment between delimiters too short to hold a header is noise, dropped without
a reply. After any error the link is back in its idle state, ready for the next frame.
"""
from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sparsegate.hw.link.executor import Executor
from sparsegate.hw.link.frame_decoder import FrameDecoder
from sparsegate.hw.link.host_port import HostPortSignature
from sparsegate.hw.link.protocol import STATUS, word_bytes
from sparsegate.hw.link.reply_encoder import ReplyEncoder
from sparsegate.hw.platform.memory_hints import READ_WRITE_DISJOINT
from sparsegate.hw.platform.replicated_registers import reset_from_copy

__all__ = ["HostLink", "LinkedCoreSignature"]


class LinkedCoreSignature(wiring.Signature):
    """A core behind the host link, as the board top sees it (``LinkedEngine``, ``LinkedLif``).

    Members
    -------
    rx : ``In(stream.Signature(8))``
        Request bytes from the host.
    tx : ``Out(stream.Signature(8))``
        Reply bytes to the host.
    busy : ``Out(1)``
        The core is running.
    idle : ``Out(1)``
        Nothing in progress: no frame, command or reply, and the core is not running.
    frames_ok, frames_bad : ``Out(16)``
        Replies sent with status OK / with an error status.
    reset : ``In(1)``
        The board's reset (held until its clock is stable): link and core start over. A board's clock
        domain has no reset of its own, so each part is reset from a copy of this one (the PLL-lock reset
        reaching every register of the engine was the 85F's critical path at 32 lanes).
    """

    def __init__(self):
        super().__init__({"rx": In(stream.Signature(8)), "tx": Out(stream.Signature(8)),
                          "busy": Out(1), "idle": Out(1), "frames_ok": Out(16), "frames_bad": Out(16),
                          "reset": In(1)})


def join_core(m: Module, top, link: HostLink, device, *, name: str, reset_device: bool = True) -> None:
    """Add ``link`` and ``device`` (a host-port component, as submodule ``name``) to ``top``'s module ``m`` and
    wire the device behind the link (``top``: a :class:`LinkedCoreSignature` component): the host port, the byte
    streams, the status outputs and the board's reset — the one wiring of every linked core. ``top.reset``
    resets the link and, with ``reset_device``, the device, each from its own registered copy; a device whose
    ``abort`` resets every register of it (``reset_device=False``) is held in reset by the link's ``abort``
    instead, which stays high while the link is reset."""
    m.submodules.link = reset_from_copy(m, top.reset, link, name="link_reset", init=1)
    m.submodules[name] = (reset_from_copy(m, top.reset, device, name=f"{name}_reset", init=1) if reset_device
                          else device)
    wiring.connect(m, link.host, device)
    wiring.connect(m, wiring.flipped(top.rx), link.rx)
    wiring.connect(m, link.tx, wiring.flipped(top.tx))
    m.d.comb += [top.busy.eq(device.busy), top.idle.eq(link.idle & ~device.busy),
                 top.frames_ok.eq(link.frames_ok), top.frames_bad.eq(link.frames_bad)]


class HostLink(wiring.Component):
    """Frame decoder → executor → reply encoder between a byte stream and a core's host port.

    ``mems``: ``[(word bits, depth)]`` of the writable memories (the core's ``wr_mem`` order);
    ``n_regs``: debug registers; ``result_base``/``n_results``: where the outputs start in the debug map;
    ``ident``: the ID reply payload; ``timeout``: cycles of silence that end a truncated frame;
    ``run_budget``: the watchdog's cycles for one RUN (the default is ~2.7 s at 100 MHz);
    ``max_payload``: the frame buffer's bytes; ``result_bytes``: READ_OUTPUTS sends each result register's
    low byte (1, the engine's int8 outputs) or the whole register (4, the LIF readout's membranes).

    Members
    -------
    rx : ``In(stream.Signature(8))``
        Request bytes.
    tx : ``Out(stream.Signature(8))``
        Reply bytes.
    host : ``In(HostPortSignature(...))``
        The core's host port (``wiring.connect(m, link.host, core)``).
    frames_ok, frames_bad : ``Out(16)``
        Replies sent with status OK / with an error status (each counted the cycle after it is taken).
    idle : ``Out(1)``
        No frame, command or reply in progress.
    """

    def __init__(self, *, mems, n_samples: int, n_regs: int, result_base: int, n_results: int, ident: bytes,
                 timeout: int, max_payload: int = 2048, result_bytes: int = 1, run_budget: int = 1 << 28):
        self.mems = list(mems)
        self.timeout, self.max_payload = int(timeout), max_payload
        max_wb = max(word_bytes(w) for w, _ in self.mems)
        if max_payload < 5 + max_wb:
            raise ValueError(f"max_payload {max_payload} cannot hold one {max_wb}-byte word")
        self.executor = Executor(mems=self.mems, n_samples=n_samples, n_regs=n_regs, result_base=result_base,
                                 n_results=n_results, ident=ident, max_payload=max_payload, result_bytes=result_bytes,
                                 run_budget=run_budget)
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "host": In(HostPortSignature.for_memories(self.mems)),
            "frames_ok": Out(16), "frames_bad": Out(16),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        # the decoder rewrites the buffer only after the executor took its record, which it does once it has
        # read the payload: no read meets a write (READ_WRITE_DISJOINT: no collision bypass between the block
        # RAM and the executor's byte register, which was late at 125 MHz on the 85F)
        m.submodules.buf = buf = Memory(shape=8, depth=self.max_payload, init=[], attrs=READ_WRITE_DISJOINT)
        m.submodules.decoder = dec = FrameDecoder(max_payload=self.max_payload, timeout=self.timeout)
        m.submodules.executor = exe = self.executor
        m.submodules.encoder = enc = ReplyEncoder()
        wiring.connect(m, wiring.flipped(self.rx), dec.rx)
        wiring.connect(m, dec.buf, buf.write_port())
        wiring.connect(m, dec.o, exe.i)
        wiring.connect(m, exe.buf, buf.read_port())
        wiring.connect(m, wiring.flipped(self.host), exe.host)
        wiring.connect(m, exe.reply, enc.i)
        wiring.connect(m, exe.payload, enc.payload)
        wiring.connect(m, enc.tx, wiring.flipped(self.tx))
        m.d.comb += self.idle.eq(dec.idle & exe.idle & enc.idle)

        # each reply counted a cycle after it is taken: the handshake and the status compare into flip-flops,
        # then the counters' enables (one logic level had grown to four in front of 32 enables)
        replied_ok, replied_bad = Signal(), Signal()
        reply_taken = exe.reply.valid & exe.reply.ready
        is_ok = exe.reply.payload.status == STATUS["OK"]
        m.d.sync += [replied_ok.eq(reply_taken & is_ok), replied_bad.eq(reply_taken & ~is_ok)]
        with m.If(replied_ok):
            m.d.sync += self.frames_ok.eq(self.frames_ok + 1)
        with m.If(replied_bad):
            m.d.sync += self.frames_bad.eq(self.frames_bad + 1)
        return m
