"""The host link's parts alone (Amaranth simulator): the frame decoder's records (good frame, bad CRC,
oversized and truncated frames, COBS resynchronisation after noise, frames with zero bytes and long COBS
blocks), the host's COBS encoder against its decoder, the reply encoder's frames (CRC equal to the host's), and the frame CRC
(``amaranth.lib.crc`` catalog entry) against the original bitwise CRC-16/CCITT-FALSE."""
from __future__ import annotations

import random
import struct

from amaranth.hdl import Array, Module, Signal
from amaranth.lib import wiring
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparsegate.hw.engine.engine import CORE_NAME as SPARSE
from sparsegate.hw.lif.design import CORE_NAME as LIF
from sparsegate.hw.link.frame_decoder import FrameDecoder
from sparsegate.hw.link.host_link import HostLink, LinkedCoreSignature, join_core
from sparsegate.hw.link.host_port import HostPortSignature
from sparsegate.hw.link.protocol import (CMD, CORE_KINDS, FRAME_DELIM, SOF_RSP, STATUS, cobs_decode, cobs_encode,
                                         crc16)
from sparsegate.hw.link.reply_encoder import ReplyEncoder
from sparsegate.sim.transports import SimTransport
from sparsegate.sw.host.driver import HostDriver, frame

TIMEOUT = 40
MAX_PAYLOAD = 16


def _bitwise_crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE as the link first computed it: poly 0x1021, init 0xFFFF, MSB first."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def test_catalog_crc_equals_bitwise_crc():
    rng = random.Random(7)
    assert crc16(b"123456789") == 0x29B1
    for n in [0, 1, 2, 5, 64, 300]:
        data = bytes(rng.randrange(256) for _ in range(n))
        assert crc16(data) == _bitwise_crc16(data)


def test_core_names_are_the_protocol_core_kinds():
    assert set(CORE_KINDS) == {SPARSE, LIF}


def _decode(raw: bytes, idle: int = 0, records: int | None = 1):
    """Feed ``raw`` (then ``idle`` quiet cycles) to a frame decoder; returns its records as dicts (``records``
    of them, unless None), and the frame buffer writes as ``{addr: byte}``."""
    dut = FrameDecoder(max_payload=MAX_PAYLOAD, timeout=TIMEOUT)
    got, writes = [], {}

    async def feed(ctx):
        for b in raw:
            ctx.set(dut.rx.payload, b)
            ctx.set(dut.rx.valid, 1)
            await ctx.tick().until(dut.rx.ready)
        ctx.set(dut.rx.valid, 0)

    async def drain(ctx):
        ctx.set(dut.o.ready, 1)
        for _ in range(len(raw) * 2 + idle + 50):
            _, _, valid, rec, en, addr, data = await ctx.tick().sample(
                dut.o.valid, dut.o.payload, dut.buf.en, dut.buf.addr, dut.buf.data)
            if en:
                writes[addr] = data
            if valid:
                got.append({"cmd": rec.cmd, "status": rec.status, "length": rec.length, "args": list(rec.args)})

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(feed)
    sim.add_testbench(drain)
    sim.run()
    assert records is None or len(got) == records, got
    return got, writes


def test_decoder_good_frame():
    payload = struct.pack("<BHH", 3, 7, 1) + b"\x11\x22"
    (rec,), writes = _decode(frame(CMD["WRITE_MEM"], payload))
    assert rec == {"cmd": CMD["WRITE_MEM"], "status": STATUS["OK"], "length": 7, "args": list(payload[:5])}
    assert writes == dict(enumerate(payload))


def test_decoder_short_payload_args_are_zero():
    (rec,), _ = _decode(frame(CMD["RUN"], b"\x01\x00"))
    assert rec["status"] == STATUS["OK"] and rec["args"] == [1, 0, 0, 0, 0]


def test_decoder_rejects_bad_crc():
    raw = bytearray(frame(CMD["RUN"], b"\x01\x00"))
    raw[-2] ^= 0x01
    (rec,), _ = _decode(bytes(raw))
    assert rec["cmd"] == CMD["RUN"] and rec["status"] == STATUS["BAD_CRC"]


def _cobs_frame(body: bytes) -> bytes:
    return bytes([FRAME_DELIM]) + cobs_encode(body) + bytes([FRAME_DELIM])


def test_decoder_rejects_oversized_length_up_to_the_delimiter():
    raw = _cobs_frame(bytes([CMD["WRITE_MEM"]]) + struct.pack("<H", MAX_PAYLOAD + 1) + bytes(30))
    (rec,), writes = _decode(raw)
    assert rec["status"] == STATUS["BAD_LEN"] and writes == {}


def test_decoder_rejects_oversized_length_after_the_line_is_quiet():
    raw = (bytes([FRAME_DELIM]) + cobs_encode(bytes([CMD["WRITE_MEM"]]) + struct.pack("<H", MAX_PAYLOAD + 1)
                                              + bytes(30)))
    (rec,), writes = _decode(raw, idle=TIMEOUT + 10)
    assert rec["status"] == STATUS["BAD_LEN"] and writes == {}


def test_decoder_times_out_on_a_truncated_frame():
    (rec,), _ = _decode(frame(CMD["RUN"], b"\x00\x00")[:5], idle=TIMEOUT + 10)
    assert rec["status"] == STATUS["TIMEOUT"]


def test_decoder_rejects_a_frame_longer_or_shorter_than_its_length():
    body = bytes([CMD["RUN"]]) + struct.pack("<H", 2) + b"\x01\x00"
    crc = struct.pack("<H", crc16(body))
    (rec,), _ = _decode(_cobs_frame(body + crc + b"\x07"))
    assert rec["status"] == STATUS["BAD_LEN"]
    (rec,), _ = _decode(_cobs_frame(body + crc[:1]))
    assert rec["status"] == STATUS["BAD_LEN"]


def test_decoder_resynchronises_after_noise():
    """Noise before a frame (a lone byte, a fragment that looks like an old-style header, bytes between
    delimiters) costs nothing: the frame after the next delimiter decodes. Noise too short for a header is
    dropped silently; a fragment with a header is answered as a frame of its own (an error record)."""
    for noise in [b"\xa5", bytes([0x13, SOF_RSP]), b"\x00\x00\x01\x02\x00", b"\x02"]:
        (rec,), _ = _decode(noise + frame(CMD["ID"]))
        assert rec["cmd"] == CMD["ID"] and rec["status"] == STATUS["OK"] and rec["length"] == 0, noise
    noise_rec, rec = _decode(b"\xa5\x7f\xff\x07" + frame(CMD["ID"]), records=2)[0]
    assert noise_rec["status"] == STATUS["BAD_LEN"] and noise_rec["cmd"] == 0x7F
    assert rec["cmd"] == CMD["ID"] and rec["status"] == STATUS["OK"]


def test_decoder_noise_inside_a_frame_costs_only_that_frame():
    good = frame(CMD["RUN"], b"\x01\x00")
    bad = bytearray(good)
    bad[3] ^= 0x10
    recs, _ = _decode(bytes(bad) + good, records=2)
    assert recs[0]["status"] != STATUS["OK"] and recs[1]["status"] == STATUS["OK"] and recs[1]["args"][0] == 1


def test_decoder_zero_bytes_and_long_blocks():
    """Zero bytes in the payload (COBS's implicit zeros) and a block of 254 non-zero bytes (code 0xFF)."""
    payload = struct.pack("<BHH", 0, 0, 0) + bytes([0, 5, 0, 0]) + bytes([1 + i % 255 for i in range(3)])
    (rec,), writes = _decode(frame(CMD["WRITE_MEM"], payload))
    assert rec["status"] == STATUS["OK"] and writes == dict(enumerate(payload))
    long = bytes([1 + i % 250 for i in range(MAX_PAYLOAD)])
    dut_max = MAX_PAYLOAD
    assert len(cobs_encode(long)) == dut_max + 1
    raw = frame(CMD["WRITE_MEM"], long)
    (rec,), writes = _decode(raw)
    assert rec["status"] == STATUS["OK"] and writes == dict(enumerate(long))


def test_cobs_roundtrip():
    rng = random.Random(3)
    for n in [0, 1, 2, 253, 254, 255, 508, 600]:
        for zeros in (0.0, 0.1, 0.9):
            data = bytes(0 if rng.random() < zeros else rng.randrange(1, 256) for _ in range(n))
            enc = cobs_encode(data)
            assert FRAME_DELIM not in enc and cobs_decode(enc) == data


def _encode(cmd: int, status: int, payload: bytes) -> bytes:
    """One reply through a reply encoder, with random stalls on both sides; returns the bytes sent."""
    dut = ReplyEncoder()
    out = bytearray()
    rng = random.Random(cmd * 256 + len(payload))
    n_out = 7 + len(payload)

    async def header(ctx):
        ctx.set(dut.i.payload, {"cmd": cmd, "status": status, "length": len(payload)})
        ctx.set(dut.i.valid, 1)
        await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def body(ctx):
        for b in payload:
            while rng.random() < 0.3:
                await ctx.tick()
            ctx.set(dut.payload.payload, b)
            ctx.set(dut.payload.valid, 1)
            await ctx.tick().until(dut.payload.ready)
            ctx.set(dut.payload.valid, 0)

    async def sink(ctx):
        while len(out) < n_out:
            ready = int(rng.random() < 0.7)
            ctx.set(dut.tx.ready, ready)
            _, _, valid, byte = await ctx.tick().sample(dut.tx.valid, dut.tx.payload)
            if valid and ready:
                out.append(byte)
        ctx.set(dut.tx.ready, 1)
        for _ in range(20):
            _, _, valid = await ctx.tick().sample(dut.tx.valid)
            assert not valid, "bytes after the frame"

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(header)
    sim.add_testbench(body)
    sim.add_testbench(sink)
    sim.run()
    return bytes(out)


def test_reply_encoder_frames_with_the_hosts_crc():
    for cmd, status, payload in [(CMD["ID"], STATUS["OK"], bytes(range(20))), (CMD["RUN"], STATUS["BAD_ARG"], b""),
                                 (CMD["READ_REGS"], STATUS["OK"], bytes([0xFF, 0x00, 0x5A, 0xA5]))]:
        body = bytes([cmd, status]) + struct.pack("<H", len(payload)) + payload
        assert _encode(cmd, status, payload) == bytes([SOF_RSP]) + body + struct.pack("<H", crc16(body))


# ---- property: random byte streams into the link (Amaranth simulator, a stub core whose debug registers
# are its memory)

STUB_WORDS = 4


class _MemCore(wiring.Component):
    """A core stub: one host memory of ``STUB_WORDS`` bytes, read back as its debug registers; a run is busy
    for three cycles."""

    def __init__(self):
        super().__init__(HostPortSignature.for_memories([(8, STUB_WORDS)]))

    def elaborate(self, platform):
        m = Module()
        mem = Array(Signal(8, name=f"mem{i}") for i in range(STUB_WORDS))
        with m.If(self.wr_en):
            m.d.sync += mem[self.wr_addr[:2]].eq(self.wr_data)
        m.d.comb += self.dbg_data.eq(mem[self.dbg_sel[:2]])
        left = Signal(2)
        with m.If(self.start):
            m.d.sync += left.eq(3)
        with m.Elif(left != 0):
            m.d.sync += left.eq(left - 1)
        m.d.comb += self.busy.eq(left != 0)
        return m


class _MemTop(wiring.Component):
    def __init__(self):
        super().__init__(LinkedCoreSignature())

    def elaborate(self, platform):
        m = Module()
        link = HostLink(mems=[(8, STUB_WORDS)], n_samples=2, n_regs=STUB_WORDS, result_base=0, n_results=STUB_WORDS,
                        ident=b"STUB", timeout=400, max_payload=16, run_budget=64)
        join_core(m, self, link, _MemCore(), name="core")
        return m


def _expected_memory(stream: bytes) -> list[int]:
    """What the link may write for ``stream``: exactly the WRITE_MEM frames that are valid (CRC, length,
    memory index, address range) between two delimiters."""
    mem = [0] * STUB_WORDS
    for frag in stream.split(bytes([FRAME_DELIM]))[:-1]:
        body = cobs_decode(frag)
        if len(body) < 5:
            continue
        length = body[1] | body[2] << 8
        if (len(body) != length + 5 or length > 16 or crc16(body[:-2]) != (body[-2] | body[-1] << 8)
                or body[0] != CMD["WRITE_MEM"] or length < 5):
            continue
        which, addr, count = struct.unpack("<BHH", body[3:8])
        if which == 0 and length == 5 + count and addr + count <= STUB_WORDS:
            mem[addr:addr + count] = body[8:8 + count]
    return mem


_valid_frames = st.one_of(
    st.builds(lambda a, d: frame(CMD["WRITE_MEM"], struct.pack("<BHH", 0, a, len(d)) + d),
              st.integers(0, STUB_WORDS), st.binary(max_size=STUB_WORDS)),
    st.sampled_from([frame(CMD["ID"]), frame(CMD["RUN"], b"\x01\x00"), frame(CMD["RESET"]),
                     frame(CMD["READ_REGS"], bytes([0, 2]))]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.binary(max_size=10), _valid_frames), max_size=5))
def test_any_byte_stream_leaves_the_link_answering_and_memory_safe(chunks):
    """Random byte streams (noise and valid frames mixed): afterwards a valid ID is answered within a bounded
    number of cycles, and the memory holds exactly what the valid WRITE_MEM frames wrote."""
    stream = b"".join(chunks)
    transport = SimTransport(_MemTop(), max_cycles=2_000)
    drv = HostDriver(transport)
    transport.write(stream + bytes([FRAME_DELIM]))
    transport.run_cycles(40 * len(stream) + 1_500)      # the stream's replies, a truncated frame's timeout
    transport.received.clear()
    assert drv.exchange(CMD["ID"]).payload == b"STUB"
    assert drv.read_regs(0, STUB_WORDS) == _expected_memory(stream + bytes([FRAME_DELIM]))
