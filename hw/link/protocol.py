"""The host link's wire protocol, shared by the gateware (:mod:`sparsegate.hw.link.host_link`) and the host
driver: frame markers, command and status codes, the frame checksum, the identity (ID) reply, and the
records the link's components pass to each other.

Frames (little-endian; CRC-16/CCITT-FALSE = ``amaranth.lib.crc.catalog.CRC16_CCITT_FALSE``: poly 0x1021,
init 0xFFFF, not reflected; over the request's body, over every reply byte after SOF)::

    request:  00 | COBS(cmd | len lo | len hi | payload[len] | crc lo | crc hi) | 00
    reply:    5A | cmd | status | len lo | len hi | payload[len] | crc lo | crc hi

A request is COBS-encoded (consistent overhead byte stuffing: no 0x00 inside) between 0x00 delimiters, so
the device resynchronises on every delimiter: a garbage byte costs at most the frame it lands in.
"""
from __future__ import annotations

import struct

from amaranth.lib import data
from amaranth.lib.crc.catalog import CRC16_CCITT_FALSE

__all__ = ["FRAME_DELIM", "SOF_RSP", "PROTOCOL_VERSION", "IDENT_MAGIC", "CMD", "STATUS", "IDENT_FIELDS",
           "LIF_IDENT_FIELDS", "CORE_KINDS", "ARG_BYTES", "FRAME_CRC", "crc16", "cobs_encode", "cobs_decode", "word_bytes", "identity_bytes",
           "parse_identity", "request_layout", "reply_layout"]

FRAME_DELIM = 0x00
SOF_RSP = 0x5A
PROTOCOL_VERSION = 4  # 3: engine descriptors carry activation region bases (residual adds, issue #17);
#                       4: the engine's identity names its output-stage drains (descriptor bit drain2) and
#                          its activation banks per lane
IDENT_MAGIC = b"SPGT"
CMD = {"ID": 0x01, "WRITE_MEM": 0x02, "RUN": 0x03, "READ_REGS": 0x04, "READ_OUTPUTS": 0x05, "RESET": 0x06}
#: ``BAD_DESC``: RUN refused, a layer descriptor cannot run (payload: the layer index, u8); ``RUN_TIMEOUT``:
#: the core did not finish within the link's cycle budget (it was aborted); ``ABORTED``: a RESET came while
#: the core was running (the RUN's reply; the RESET is answered after it).
STATUS = {"OK": 0, "BAD_CRC": 1, "BAD_LEN": 2, "UNKNOWN_CMD": 3, "TIMEOUT": 4, "BAD_ARG": 5, "BAD_DESC": 6,
          "RUN_TIMEOUT": 7, "ABORTED": 8}
#: EngineGeometry fields in the identity reply (u16 each), after magic, version, core kind, n_regs.
IDENT_FIELDS = ("lanes", "slot_bits", "weight_depth", "act_depth", "chan_depth", "param_depth", "n_layers",
                "input_depth", "n_samples", "pool_width", "n_results", "drains", "bank_ratio")
#: LIF core fields in the identity reply (u16 each; ``hw.lif.design.LifDesign.ident_values``).
LIF_IDENT_FIELDS = ("n_inputs", "n_hidden", "n_outputs", "units", "per_word", "slots", "readout_units",
                    "source_depth", "n_samples", "v_width", "count_width", "leak", "leak_shift", "leak_mult",
                    "leak_frac", "reset", "refractory", "readout_v_width", "readout_count_width")
#: The core kind byte of the identity reply, by core name (``hw.engine.engine.CORE_NAME``,
#: ``hw.lif.design.CORE_NAME``): the one place the wire protocol names the cores.
CORE_KINDS = {"sparse": 0, "lif": 1}
_CORE_FIELDS = {"sparse": IDENT_FIELDS, "lif": LIF_IDENT_FIELDS}

#: Request payload bytes the gateware keeps as command arguments (WRITE_MEM's mem, addr, count is the most).
ARG_BYTES = 5
#: The frames' checksum, one byte per step (software :func:`crc16` and gateware ``.create()``).
FRAME_CRC = CRC16_CCITT_FALSE(data_width=8)


def crc16(data: bytes) -> int:
    """The frames' checksum (CRC-16/CCITT-FALSE) of ``data``."""
    return FRAME_CRC.compute(data)


def cobs_encode(data: bytes) -> bytes:
    """``data`` COBS-encoded: blocks of a code byte ``n`` (1..255) and ``n - 1`` non-zero bytes; a block
    shorter than 255 stands for its bytes and a 0x00 (dropped after the last block)."""
    out, block = bytearray(), bytearray()
    for b in data:
        if not b:
            out += bytes([len(block) + 1]) + block
            block.clear()
            continue
        block.append(b)
        if len(block) == 254:
            out += b"\xff" + block
            block.clear()
    out += bytes([len(block) + 1]) + block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    """The inverse of :func:`cobs_encode` (the gateware's frame decoder does the same, byte by byte)."""
    out, i = bytearray(), 0
    while i < len(data):
        code = data[i]
        if code == 0:
            raise ValueError("COBS data contains 0x00")
        out += data[i + 1:i + code]
        i += code
        if code < 255 and i < len(data):
            out.append(0)
    return bytes(out)


def word_bytes(bits: int) -> int:
    """Bytes a ``bits``-wide memory word takes in a WRITE_MEM payload."""
    return (bits + 7) // 8


def identity_bytes(geometry, n_regs: int, core: str, clk_hz: int = 0) -> bytes:
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


#: A received frame, frame decoder → executor: ``status`` is ``OK`` (CRC checked) or the framing error
#: (``BAD_CRC``, ``BAD_LEN`` for an oversized frame, ``TIMEOUT``); ``args`` the first payload bytes (0 past
#: ``length``).
request_layout = data.StructLayout({"cmd": 8, "status": 8, "length": 16, "args": data.ArrayLayout(8, ARG_BYTES)})

#: A reply header, executor → reply encoder; ``length`` payload bytes follow on the executor's byte stream.
reply_layout = data.StructLayout({"cmd": 8, "status": 8, "length": 16})
