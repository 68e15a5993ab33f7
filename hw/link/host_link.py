"""Host link: the framed command protocol between a host and the sparse engine, over a byte stream
(the UART in :mod:`sparsegate.hw.platform.board_top`, or a simulator transport).

Frames (little-endian; CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, over every byte after SOF)::

    request:  A5 | cmd | len lo | len hi | payload[len] | crc lo | crc hi
    reply:    5A | cmd | status | len lo | len hi | payload[len] | crc lo | crc hi

Commands (``payload`` → reply payload):

=====  ============  ===========================================================  ===========================
code   name          request payload                                              reply payload
=====  ============  ===========================================================  ===========================
0x01   ID            —                                                            identity (:func:`identity_bytes`)
0x02   WRITE_MEM     mem u8, addr u16, count u16, count words of ceil(bits/8) B   —
0x03   RUN           sample u16                                                   total cycles u32
0x04   READ_REGS     first u8, count u8 (debug registers, ``hw.engine.dbg_map``) count × u32
0x05   READ_OUTPUTS  —                                                            ``n_results`` × int8 (sparse)
                                                                                  or × int32 (LIF membranes)
=====  ============  ===========================================================  ===========================

The same link serves either core (``hw.board_top``): the ID reply's core kind says which is built
(``sparse``: geometry = :data:`IDENT_FIELDS`; ``lif``: :data:`LIF_IDENT_FIELDS`, memories and registers in
``hw.lif_top``), so a host knows how to load it.

``WRITE_MEM`` to memories 0-3 (descriptors, channel table, parameters, weight words: ``HOST_MEMS``) is
how a weight image is loaded; to memory 4 (input samples) how an input is loaded. The host compiles
(``hw.engine_program``); the device only stores words. A request is executed only after its CRC checks,
so a damaged frame never writes anything.

Errors are replies with an error status and no payload: ``BAD_CRC``; ``BAD_LEN`` (a length over
``max_payload`` — the rest of the frame is discarded until the line is quiet for ``timeout`` cycles —
or a length that does not match the command); ``UNKNOWN_CMD``; ``TIMEOUT`` (a frame truncated: no byte
for ``timeout`` cycles mid-frame); ``BAD_ARG`` (memory index, address range, sample or register out of
range). Bytes outside a frame that are not SOF are ignored (resynchronisation). After any error the
link is back in its idle state, ready for the next frame.
"""
from __future__ import annotations

import struct

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["HostLink", "attach_core", "crc16", "identity_bytes", "parse_identity", "SOF_REQ", "SOF_RSP", "CMD", "STATUS",
           "PROTOCOL_VERSION", "IDENT_MAGIC", "IDENT_FIELDS", "LIF_IDENT_FIELDS", "CORE_KINDS", "word_bytes"]

SOF_REQ = 0xA5
SOF_RSP = 0x5A
PROTOCOL_VERSION = 1
IDENT_MAGIC = b"SPGT"
CMD = {"ID": 0x01, "WRITE_MEM": 0x02, "RUN": 0x03, "READ_REGS": 0x04, "READ_OUTPUTS": 0x05}
STATUS = {"OK": 0, "BAD_CRC": 1, "BAD_LEN": 2, "UNKNOWN_CMD": 3, "TIMEOUT": 4, "BAD_ARG": 5}
#: EngineGeometry fields in the identity reply (u16 each), after magic, version, core kind, n_regs.
IDENT_FIELDS = ("lanes", "slot_bits", "weight_depth", "act_depth", "chan_depth", "param_depth", "n_layers",
                "input_depth", "n_samples", "pool_width", "n_results")
#: LIF core fields in the identity reply (u16 each; ``hw.lif_top.LifDesign.ident_values``).
LIF_IDENT_FIELDS = ("n_inputs", "n_hidden", "n_outputs", "units", "per_word", "slots", "readout_units",
                    "source_depth", "n_samples", "v_width", "count_width", "leak", "leak_shift", "leak_mult",
                    "leak_frac", "reset", "refractory", "readout_v_width", "readout_count_width")
CORE_KINDS = {"sparse": 0, "lif": 1}
_CORE_FIELDS = {"sparse": IDENT_FIELDS, "lif": LIF_IDENT_FIELDS}


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (the frames' checksum)."""
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def word_bytes(bits: int) -> int:
    return (bits + 7) // 8


def identity_bytes(geometry, n_regs: int, core: str = "sparse", clk_hz: int = 0) -> bytes:
    """The ID reply: magic, protocol version, core kind, debug register count, the core's geometry (an
    object or a dict with the core's fields: :data:`IDENT_FIELDS` / :data:`LIF_IDENT_FIELDS`), clock."""
    fields = _CORE_FIELDS[core]
    values = [geometry[f] if isinstance(geometry, dict) else getattr(geometry, f) for f in fields]
    for f, v in zip(fields, values):
        if not 0 <= int(v) <= 0xFFFF:
            raise ValueError(f"identity field {f!r} = {v} does not fit a u16")
    return (IDENT_MAGIC + bytes([PROTOCOL_VERSION, CORE_KINDS[core], n_regs])
            + struct.pack(f"<{len(values)}H", *values) + struct.pack("<I", int(clk_hz)))


def parse_identity(data: bytes) -> dict:
    """The ID reply as ``{version, core, n_regs, geometry (dict), clk_hz}``; the core kind picks the fields."""
    if len(data) < 11 or data[:4] != IDENT_MAGIC:
        raise ValueError(f"not a sparsegate identity reply: {data[:8].hex()}...")
    kinds = {v: k for k, v in CORE_KINDS.items()}
    core = kinds.get(data[5])
    if core is None:
        raise ValueError(f"identity reply names core kind {data[5]}, unknown to this host (known: "
                         f"{', '.join(f'{v} {k}' for k, v in CORE_KINDS.items())})")
    fields = _CORE_FIELDS[core]
    n = len(fields)
    if len(data) != 7 + 2 * n + 4:
        raise ValueError(f"identity reply for a {core} core is {len(data)} bytes, expected {7 + 2 * n + 4}")
    values = struct.unpack(f"<{n}H", data[7:7 + 2 * n])
    return {"version": data[4], "core": core, "n_regs": data[6],
            "geometry": dict(zip(fields, values)), "clk_hz": struct.unpack("<I", data[-4:])[0]}


def _crc_terms():
    """For each CRC output bit, the (crc bits, data bits) whose XOR gives it: CRC-16 is linear over GF(2)."""
    terms = []
    for out_bit in range(16):
        crc_bits = [i for i in range(16) if (crc16(b"\0", 1 << i) ^ crc16(b"\0", 0)) >> out_bit & 1]
        data_bits = [j for j in range(8) if (crc16(bytes([1 << j]), 0) ^ crc16(b"\0", 0)) >> out_bit & 1]
        terms.append((crc_bits, data_bits))
    return terms


_CRC_TERMS = _crc_terms()


def _crc_update(crc, byte):
    """One byte of CRC-16/CCITT-FALSE as logic: one XOR tree per output bit."""
    bits = []
    for crc_bits, data_bits in _CRC_TERMS:
        operands = [crc[i] for i in crc_bits] + [byte[j] for j in data_bits]
        value = operands[0]
        for o in operands[1:]:
            value = value ^ o
        bits.append(value)
    return Cat(*bits)


class HostLink(wiring.Component):
    """Frame decoder / command executor / reply encoder between a byte stream and the engine's host ports.

    ``mems``: ``[(word bits, depth)]`` of the writable memories (``hw.engine.host_memories`` order);
    ``n_regs``: debug registers; ``result_base``/``n_results``: where the outputs start in the debug map;
    ``ident``: the ID reply payload; ``timeout``: cycles of silence that end a truncated frame;
    ``result_bytes``: READ_OUTPUTS sends each result register's low byte (1, the engine's int8 outputs) or
    the whole register (4, the LIF readout's membranes).
    """

    def __init__(self, *, mems, n_samples: int, n_regs: int, result_base: int, n_results: int, ident: bytes,
                 timeout: int, max_payload: int = 2048, result_bytes: int = 1):
        if result_bytes not in (1, 4):
            raise ValueError(f"result_bytes must be 1 or 4, got {result_bytes}")
        if not 1 <= len(mems) <= 256:
            raise ValueError(f"the link addresses 1..256 memories, got {len(mems)}")
        self.result_bytes = result_bytes
        self.mems = list(mems)
        self.n_samples, self.n_regs = n_samples, n_regs
        self.result_base, self.n_results = result_base, n_results
        self.ident = bytes(ident)
        self.timeout = int(timeout)
        self.max_payload = max_payload
        self.max_wb = max(word_bytes(w) for w, _ in self.mems)
        if max_payload < 5 + self.max_wb:
            raise ValueError(f"max_payload {max_payload} cannot hold one {self.max_wb}-byte word")
        addr_bits = max((d - 1).bit_length() for _, d in self.mems)
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "start": Out(1), "sample": Out(16), "busy": In(1),
            "dbg_sel": Out(8), "dbg_data": In(32),
            "wr_en": Out(1), "wr_mem": Out(8), "wr_addr": Out(max(1, addr_bits)), "wr_data": Out(8 * self.max_wb),
            "frames_ok": Out(16), "frames_bad": Out(16),
            "idle": Out(1),         # between frames (waiting for SOF)
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.buf = buf = Memory(shape=8, depth=self.max_payload, init=[])
        buf_wr, buf_rd = buf.write_port(), buf.read_port()

        rx, tx = self.rx, self.tx
        byte = rx.payload
        fire = rx.valid & rx.ready

        crc = Signal(16)
        cmd = Signal(8)
        length = Signal(16)
        cnt = Signal(16)
        hdr = [Signal(8, name=f"hdr{i}") for i in range(5)]
        crc_lo = Signal(8)
        status = Signal(8)
        quiet = Signal(range(self.timeout + 1))
        timed_out = Signal()        # registered: `timeout` cycles without a byte (one-cycle pulse)
        with m.If(fire | timed_out):
            m.d.sync += [quiet.eq(0), timed_out.eq(0)]
        with m.Else():
            m.d.sync += [quiet.eq(quiet + 1), timed_out.eq(quiet == self.timeout - 1)]

        # reply
        kind = Signal(2)        # 0 none, 1 identity, 2 registers as u32, 3 registers as one byte
        first = Signal(8)
        rlen = Signal(16)
        idx = Signal(16)
        pay_byte = Signal(8)
        sel = Signal(8)
        dbg_word = Signal(32)
        m.d.comb += self.dbg_sel.eq(sel)
        tcrc = Signal(16)

        # WRITE_MEM
        mem = Signal(8)
        waddr = Signal(16)
        left = Signal(16)
        k = Signal(range(self.max_wb + 1))
        word = Signal(8 * self.max_wb)
        rd_byte = Signal(8)
        wbytes = Signal(range(self.max_wb + 1))
        count = Signal(16)
        m.d.comb += [count.eq(Cat(hdr[3], hdr[4])), self.wr_data.eq(word), self.wr_mem.eq(mem),
                     self.wr_addr.eq(waddr)]

        # command checks, pipelined over four registers (hdr settles in PAY; EXEC comes at least four
        # cycles later: CRC0, CRC1, CHECK, CHECK2), so the multiply and the compares stay off the FSM
        mem_ok, need_len, range_ok = Signal(), Signal(32), Signal()
        sample_ok, regs_ok = Signal(), Signal()
        addr0 = Cat(hdr[1], hdr[2])
        sel_wb = Signal(range(self.max_wb + 1))
        sel_depth = Signal(range(max(d for _, d in self.mems) + 1))
        sel_count, sel_end, payload_len = Signal(16), Signal(17), Signal(32)
        m.d.sync += [mem_ok.eq(0), sel_wb.eq(0), sel_depth.eq(0)]
        with m.Switch(hdr[0]):
            for i, (bits, depth) in enumerate(self.mems):
                with m.Case(i):
                    m.d.sync += [mem_ok.eq(1), sel_wb.eq(word_bytes(bits)), sel_depth.eq(depth)]
        m.d.sync += [sel_count.eq(count), sel_end.eq(addr0 + count),
                     payload_len.eq(sel_count * sel_wb), range_ok.eq(sel_end <= sel_depth),
                     need_len.eq(payload_len + 5)]
        # the frame length against what each command needs, registered (length is fixed since LEN1)
        len_is0, len_is2, len_short, len_match = Signal(), Signal(), Signal(), Signal()
        m.d.sync += [len_is0.eq(length == 0), len_is2.eq(length == 2), len_short.eq(length < 5),
                     len_match.eq(length == need_len)]
        m.d.sync += [sample_ok.eq(Cat(hdr[0], hdr[1]) < self.n_samples),
                     regs_ok.eq((hdr[1] != 0) & (hdr[0] + hdr[1] <= self.n_regs))]
        with m.Switch(mem):
            for i, (bits, _) in enumerate(self.mems):
                with m.Case(i):
                    m.d.comb += wbytes.eq(word_bytes(bits))
        sample = Cat(hdr[0], hdr[1])

        def reply(st, kind_=0, first_=0, rlen_=0):
            m.d.sync += [status.eq(st), kind.eq(kind_), first.eq(first_), rlen.eq(rlen_), idx.eq(0)]
            if st == STATUS["OK"]:
                m.d.sync += self.frames_ok.eq(self.frames_ok + 1)
            else:
                m.d.sync += self.frames_bad.eq(self.frames_bad + 1)
            m.next = "T_SOF"

        def error(st):
            reply(STATUS[st])

        def on_timeout():
            with m.If(timed_out):
                error("TIMEOUT")

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [rx.ready.eq(1), self.idle.eq(1)]
                with m.If(fire & (byte == SOF_REQ)):
                    m.d.sync += crc.eq(0xFFFF)
                    m.next = "CMD"
            with m.State("CMD"):
                m.d.comb += rx.ready.eq(1)
                with m.If(fire):
                    m.d.sync += [cmd.eq(byte), crc.eq(_crc_update(crc, byte))]
                    m.next = "LEN0"
                with m.Else():
                    on_timeout()
            with m.State("LEN0"):
                m.d.comb += rx.ready.eq(1)
                with m.If(fire):
                    m.d.sync += [length[:8].eq(byte), crc.eq(_crc_update(crc, byte))]
                    m.next = "LEN1"
                with m.Else():
                    on_timeout()
            with m.State("LEN1"):
                m.d.comb += rx.ready.eq(1)
                with m.If(fire):
                    full = Cat(length[:8], byte)
                    m.d.sync += [length[8:].eq(byte), crc.eq(_crc_update(crc, byte)), cnt.eq(0)]
                    m.d.sync += [h.eq(0) for h in hdr]
                    with m.If(full > self.max_payload):
                        m.next = "DISCARD"
                    with m.Elif(full == 0):
                        m.next = "CRC0"
                    with m.Else():
                        m.next = "PAY"
                with m.Else():
                    on_timeout()
            with m.State("PAY"):
                m.d.comb += rx.ready.eq(1)
                m.d.comb += [buf_wr.en.eq(fire), buf_wr.addr.eq(cnt), buf_wr.data.eq(byte)]
                with m.If(fire):
                    m.d.sync += [cnt.eq(cnt + 1), crc.eq(_crc_update(crc, byte))]
                    for i, h in enumerate(hdr):
                        with m.If(cnt == i):
                            m.d.sync += h.eq(byte)
                    with m.If(cnt == length - 1):
                        m.next = "CRC0"
                with m.Else():
                    on_timeout()
            with m.State("CRC0"):
                m.d.comb += rx.ready.eq(1)
                with m.If(fire):
                    m.d.sync += crc_lo.eq(byte)
                    m.next = "CRC1"
                with m.Else():
                    on_timeout()
            with m.State("CRC1"):
                m.d.comb += rx.ready.eq(1)
                with m.If(fire):
                    with m.If(Cat(crc_lo, byte) != crc):
                        error("BAD_CRC")
                    with m.Else():
                        m.next = "CHECK"
                with m.Else():
                    on_timeout()
            with m.State("CHECK"):          # the pipelined command checks settle
                m.next = "CHECK2"
            with m.State("CHECK2"):
                m.next = "EXEC"
            with m.State("DISCARD"):        # oversized frame: drop bytes until the line is quiet
                m.d.comb += rx.ready.eq(1)
                with m.If(timed_out):
                    error("BAD_LEN")
            with m.State("EXEC"):
                with m.Switch(cmd):
                    with m.Case(CMD["ID"]):
                        with m.If(~len_is0):
                            error("BAD_LEN")
                        with m.Else():
                            reply(STATUS["OK"], 1, 0, len(self.ident))
                    with m.Case(CMD["WRITE_MEM"]):
                        with m.If(len_short):
                            error("BAD_LEN")
                        with m.Elif(~mem_ok):
                            error("BAD_ARG")
                        with m.Elif(~len_match):
                            error("BAD_LEN")
                        with m.Elif(~range_ok):
                            error("BAD_ARG")
                        with m.Elif(count == 0):
                            reply(STATUS["OK"])
                        with m.Else():
                            m.d.sync += [mem.eq(hdr[0]), waddr.eq(addr0), left.eq(count), cnt.eq(5), k.eq(0)]
                            m.next = "W_RD"
                    with m.Case(CMD["RUN"]):
                        with m.If(~len_is2):
                            error("BAD_LEN")
                        with m.Elif(~sample_ok):
                            error("BAD_ARG")
                        with m.Else():
                            m.next = "RUN_START"
                    with m.Case(CMD["READ_REGS"]):
                        with m.If(~len_is2):
                            error("BAD_LEN")
                        with m.Elif(~regs_ok):
                            error("BAD_ARG")
                        with m.Else():
                            reply(STATUS["OK"], 2, hdr[0], hdr[1] << 2)
                    with m.Case(CMD["READ_OUTPUTS"]):
                        with m.If(~len_is0):
                            error("BAD_LEN")
                        with m.Else():
                            if self.result_bytes == 4:
                                reply(STATUS["OK"], 2, self.result_base, 4 * self.n_results)
                            else:
                                reply(STATUS["OK"], 3, self.result_base, self.n_results)
                    with m.Default():
                        error("UNKNOWN_CMD")
            with m.State("W_RD"):           # buffer address presented
                m.d.comb += buf_rd.addr.eq(cnt)
                m.next = "W_GET"
            with m.State("W_GET"):          # buffer byte available: registered next to the block RAM
                m.d.sync += [rd_byte.eq(buf_rd.data), cnt.eq(cnt + 1)]
                m.next = "W_PUT"
            with m.State("W_PUT"):          # into the word
                m.d.sync += word.word_select(k, 8).eq(rd_byte)
                with m.If(k == wbytes - 1):
                    m.next = "W_WR"
                with m.Else():
                    m.d.sync += k.eq(k + 1)
                    m.next = "W_RD"
            with m.State("W_WR"):
                m.d.comb += self.wr_en.eq(1)
                m.d.sync += [waddr.eq(waddr + 1), left.eq(left - 1), k.eq(0)]
                with m.If(left == 1):
                    reply(STATUS["OK"])
                with m.Else():
                    m.next = "W_RD"
            with m.State("RUN_START"):
                m.d.comb += [self.start.eq(1), self.sample.eq(sample)]
                m.next = "RUN_WAIT"
            with m.State("RUN_WAIT"):
                m.d.comb += self.sample.eq(sample)
                with m.If(~self.busy):
                    reply(STATUS["OK"], 2, 0, 4)     # total.cycles

            # ---- reply encoder
            def send(value, nxt, crc_it=True):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(value)]
                with m.If(tx.ready):
                    if crc_it:
                        m.d.sync += tcrc.eq(_crc_update(tcrc, value))
                    m.next = nxt

            with m.State("T_SOF"):
                m.d.sync += tcrc.eq(0xFFFF)
                send(SOF_RSP, "T_CMD", crc_it=False)
            with m.State("T_CMD"):
                send(cmd, "T_STATUS")
            with m.State("T_STATUS"):
                send(status, "T_LEN0")
            with m.State("T_LEN0"):
                send(rlen[:8], "T_LEN1")
            with m.State("T_LEN1"):
                send(rlen[8:], "T_SEL")
            with m.State("T_SEL"):          # register select and byte look-up: short paths at 100+ MHz
                m.d.sync += sel.eq(Mux(kind == 2, first + (idx >> 2), first + idx))
                m.next = "T_FETCH"
            with m.State("T_FETCH"):        # debug register read (registered), then the byte look-up
                with m.If(idx == rlen):
                    m.next = "T_CRC0"
                with m.Else():
                    m.d.sync += dbg_word.eq(self.dbg_data)
                    m.next = "T_BYTE"
            with m.State("T_BYTE"):
                ident = Array(Const(b, 8) for b in self.ident)
                with m.Switch(kind):
                    with m.Case(1):
                        m.d.sync += pay_byte.eq(ident[idx[:max(1, (len(self.ident) - 1).bit_length())]])
                    with m.Case(2):
                        m.d.sync += pay_byte.eq(dbg_word.word_select(idx[:2], 8))
                    with m.Default():
                        m.d.sync += pay_byte.eq(dbg_word[:8])
                m.next = "T_PAY"
            with m.State("T_PAY"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(pay_byte)]
                with m.If(tx.ready):
                    m.d.sync += [tcrc.eq(_crc_update(tcrc, pay_byte)), idx.eq(idx + 1)]
                    m.next = "T_SEL"
            with m.State("T_CRC0"):
                send(tcrc[:8], "T_CRC1", crc_it=False)
            with m.State("T_CRC1"):
                send(tcrc[8:], "IDLE", crc_it=False)
        return m


def attach_core(m, link: HostLink, core, top) -> None:
    """Wire ``core`` (the engine's or the LIF device's port set: start/sample/busy, dbg_sel/dbg_data,
    wr_en/wr_mem/wr_addr/wr_data) behind ``link``, and ``top``'s byte streams and status outputs
    (rx, tx, busy, idle, frames_ok, frames_bad) to them."""
    wiring.connect(m, wiring.flipped(top.rx), link.rx)
    wiring.connect(m, link.tx, wiring.flipped(top.tx))
    m.d.comb += [core.start.eq(link.start), core.sample.eq(link.sample), link.busy.eq(core.busy),
                 core.dbg_sel.eq(link.dbg_sel), link.dbg_data.eq(core.dbg_data),
                 core.wr_en.eq(link.wr_en), core.wr_mem.eq(link.wr_mem), core.wr_addr.eq(link.wr_addr),
                 core.wr_data.eq(link.wr_data),
                 top.busy.eq(core.busy), top.idle.eq(link.idle & ~core.busy),
                 top.frames_ok.eq(link.frames_ok), top.frames_bad.eq(link.frames_bad)]
