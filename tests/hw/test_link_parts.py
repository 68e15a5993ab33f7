"""The host link's parts alone (Amaranth simulator): the frame decoder's records (good frame, bad CRC,
oversized and truncated frames), the reply encoder's frames (CRC equal to the host's), and the frame CRC
(``amaranth.lib.crc`` catalog entry) against the original bitwise CRC-16/CCITT-FALSE."""
from __future__ import annotations

import random
import struct

from amaranth.sim import Simulator

from sparsegate.hw.engine.engine import CORE_NAME as SPARSE
from sparsegate.hw.lif.design import CORE_NAME as LIF
from sparsegate.hw.link.frame_decoder import FrameDecoder
from sparsegate.hw.link.protocol import CMD, CORE_KINDS, SOF_REQ, SOF_RSP, STATUS, crc16
from sparsegate.hw.link.reply_encoder import ReplyEncoder
from sparsegate.sw.host.driver import frame

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


def _decode(raw: bytes, idle: int = 0, records: int = 1):
    """Feed ``raw`` (then ``idle`` quiet cycles) to a frame decoder; returns its records as dicts, and the
    frame buffer writes as ``{addr: byte}``."""
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
    assert len(got) == records, got
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


def test_decoder_rejects_oversized_length_after_the_line_is_quiet():
    raw = bytes([SOF_REQ, CMD["WRITE_MEM"]]) + struct.pack("<H", MAX_PAYLOAD + 1) + bytes(30)
    (rec,), writes = _decode(raw, idle=TIMEOUT + 10)
    assert rec["status"] == STATUS["BAD_LEN"] and writes == {}


def test_decoder_times_out_on_a_truncated_frame():
    (rec,), _ = _decode(frame(CMD["RUN"], b"\x00\x00")[:5], idle=TIMEOUT + 10)
    assert rec["status"] == STATUS["TIMEOUT"]


def test_decoder_ignores_bytes_outside_frames():
    (rec,), _ = _decode(bytes([0x00, 0x13, SOF_RSP]) + frame(CMD["ID"]))
    assert rec["cmd"] == CMD["ID"] and rec["status"] == STATUS["OK"] and rec["length"] == 0


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
