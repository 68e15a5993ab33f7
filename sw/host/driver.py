"""Host driver for the board top level (``hw/platform/board_top.py``): one :class:`HostDriver` speaks the framed
protocol of :mod:`sparsegate.hw.link.host_link` over any byte :class:`Transport`:

* :class:`~sparsegate.sw.host.serial_port.SerialTransport` — a real board's UART (pyserial);
* :mod:`sparsegate.sim.transports` — the same top level in Amaranth's simulator or compiled by Verilator.

``sparsegate run --board-port PORT`` and ``sparsegate run --sim`` (and the tests) differ only in the transport.
The ID reply names the core the device holds; the core registry (:mod:`sparsegate.hw.platform.cores`) gives
its debug registers and result width, and :mod:`sparsegate.sw.host.loaders` its loader: the sparse engine
(``load_image``/``load_input``/``classify``) or the LIF core (``load_snn``/``load_spikes``/``classify_spikes``).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sparsegate.hw.link.protocol import (CMD, FRAME_DELIM, PROTOCOL_VERSION, SOF_RSP, STATUS, cobs_encode, crc16,
                                         parse_identity, word_bytes)
from sparsegate.hw.platform.cores import ENGINE, LIF, Core, core_named
from sparsegate.sw.host.loaders import LOADERS

__all__ = ["HostDriver", "Transport", "DeviceError", "LinkError", "frame", "Reply"]

_STATUS_NAMES = {v: k for k, v in STATUS.items()}


class LinkError(OSError):
    """No (valid) reply: timeout, broken reply frame, port trouble, a device speaking another protocol."""


class DeviceError(ValueError):
    """The device answered with an error status; ``status`` is its name (``BAD_CRC``, ``BAD_LEN``, ...)."""

    def __init__(self, message: str, status: str):
        super().__init__(message)
        self.status = status


def frame(cmd: int, payload: bytes = b"") -> bytes:
    """One request frame: the body and its CRC, COBS-encoded between two delimiters (the leading one ends
    whatever noise came before)."""
    body = bytes([cmd & 0xFF]) + struct.pack("<H", len(payload)) + bytes(payload)
    delim = bytes([FRAME_DELIM])
    return delim + cobs_encode(body + struct.pack("<H", crc16(body))) + delim


@dataclass
class Reply:
    cmd: int
    status: int
    payload: bytes

    @property
    def status_name(self) -> str:
        return _STATUS_NAMES.get(self.status, f"status {self.status}")


class Transport(Protocol):
    """What :class:`HostDriver` needs of a byte link to the device."""

    def write(self, data: bytes) -> None:
        """Send ``data`` to the device."""

    def read(self, n: int, timeout_s: float) -> bytes:
        """Up to ``n`` bytes from the device; fewer (or none) once ``timeout_s`` has passed without them."""

    def close(self) -> None:
        """Release the link (port, simulator, child process)."""


# ----------------------------------------------------------------------------------------------- driver

class HostDriver:
    """The protocol: identify, load an image (compiled for the device's geometry), load inputs, run, read
    outputs and counters. Every method is a request/reply exchange; errors raise :class:`DeviceError`."""

    def __init__(self, transport: Transport, *, timeout_s: float = 5.0):
        self.transport = transport
        self.timeout_s = timeout_s
        self._ident = None
        self._loader = self._loader_ident = None

    # ---- framing
    def exchange(self, cmd: int, payload: bytes = b"", *, raw: bytes | None = None) -> Reply:
        """Send one request (or ``raw`` bytes) and read its reply frame; a reply for another command
        (the device answering line noise that looked like a frame) is skipped."""
        self.transport.write(frame(cmd, payload) if raw is None else raw)
        reply = self.read_reply()
        while raw is None and reply.cmd != cmd & 0xFF:
            reply = self.read_reply()
        return reply

    def read_reply(self) -> Reply:
        t = self.transport
        head = t.read(1, self.timeout_s)
        while head and head[0] != SOF_RSP:     # skip line noise before the reply
            head = t.read(1, self.timeout_s)
        if not head:
            raise LinkError("no reply from the device (timeout)")
        rest = t.read(4, self.timeout_s)
        if len(rest) < 4:
            raise LinkError("reply truncated in its header")
        cmd, status, length = rest[0], rest[1], struct.unpack("<H", rest[2:4])[0]
        body = t.read(length + 2, self.timeout_s)
        if len(body) < length + 2:
            raise LinkError(f"reply truncated: {len(body)} of {length + 2} bytes")
        payload, crc = body[:length], struct.unpack("<H", body[length:])[0]
        if crc16(rest + payload) != crc:
            raise LinkError("reply CRC mismatch")
        return Reply(cmd, status, payload)

    def command(self, name: str, payload: bytes = b"") -> bytes:
        reply = self.exchange(CMD[name], payload)
        if reply.status == STATUS["BAD_DESC"] and len(reply.payload) == 1:
            raise DeviceError(f"{name}: device answered BAD_DESC: layer {reply.payload[0]}'s descriptor cannot "
                              "run (no weight image loaded, or a partial one)", "BAD_DESC")
        if reply.status != STATUS["OK"]:
            raise DeviceError(f"{name}: device answered {reply.status_name}", reply.status_name)
        return reply.payload

    def reset(self) -> None:
        """Abort whatever the core is doing (``RESET``); a run in progress is answered ``ABORTED`` first."""
        self.transport.write(frame(CMD["RESET"]))
        reply = self.read_reply()
        while reply.cmd != CMD["RESET"]:
            reply = self.read_reply()
        if reply.status != STATUS["OK"]:
            raise DeviceError(f"RESET: device answered {reply.status_name}", reply.status_name)

    # ---- commands
    def identify(self) -> dict:
        ident = parse_identity(self.command("ID"))
        if ident["version"] != PROTOCOL_VERSION:
            raise LinkError(f"the device speaks link protocol {ident['version']}, this host {PROTOCOL_VERSION}: "
                            "rebuild and program the bitstream (sparsegate build)")
        self._ident = ident
        return ident

    @property
    def ident(self) -> dict:
        return self._ident or self.identify()

    @property
    def core(self) -> str:
        """The name of the core the device was built with (``"sparse"`` or ``"lif"``, :data:`~sparsegate.hw.platform.cores.CORES`)."""
        return self.ident["core"]

    @property
    def loader(self):
        """The loader of the device's core (:data:`~sparsegate.sw.host.loaders.LOADERS`), for the identity read."""
        ident = self.ident
        if self._loader_ident is not ident:
            self._loader, self._loader_ident = LOADERS[ident["core"]](self), ident
        return self._loader

    def _loader_for(self, core: Core):
        if self.core != core.name:
            raise DeviceError(f"the device holds the {self.core} core, not the {core.title}", "WRONG_CORE")
        return self.loader

    def write_mem(self, mem: int, addr: int, words, bits: int, max_payload: int = 2048) -> None:
        wb = word_bytes(bits)
        per = max(1, (max_payload - 5) // wb)
        words = list(words)
        for i in range(0, len(words), per):
            chunk = words[i:i + per]
            data = b"".join(int(w).to_bytes(wb, "little") for w in chunk)
            self.command("WRITE_MEM", struct.pack("<BHH", mem, addr + i, len(chunk)) + data)

    def run(self, sample: int = 0) -> int:
        """Run the loaded network on input slot ``sample``; returns the engine's total cycles."""
        return struct.unpack("<I", self.command("RUN", struct.pack("<H", sample)))[0]

    def read_regs(self, first: int, count: int) -> list[int]:
        out = []
        for start in range(first, first + count, 255):
            n = min(255, first + count - start)
            out += list(struct.unpack(f"<{n}I", self.command("READ_REGS", bytes([start, n]))))
        return out

    def read_counters(self) -> dict:
        """Every debug register by name (the core's ``dbg_map``): counters, signatures, results (the LIF core's
        results as signed membranes)."""
        ident = self.ident
        names = core_named(ident["core"]).dbg_map(ident["geometry"])
        return self.loader.counters(dict(zip(names, self.read_regs(0, len(names)))))

    def read_outputs(self, n: int | None = None) -> np.ndarray:
        """The last run's outputs: the engine's int8 logits, or the LIF readout's int32 membranes."""
        raw = self.command("READ_OUTPUTS")
        out = np.frombuffer(raw, dtype=f"<i{core_named(self.core).result_bytes}")
        return out[:n] if n is not None else out

    # ---- the sparse engine
    def geometry(self):
        """The sparse engine's geometry (:class:`~sparsegate.hw.engine.layouts.EngineGeometry`)."""
        return self._loader_for(ENGINE).geometry

    def compile(self, image, inputs=None):
        """A weight image (path, bytes or decoded network) compiled for this device's engine."""
        return self._loader_for(ENGINE).compile(image, inputs)

    def load_program(self, program) -> None:
        """Write a (retargeted) program's weight-image memories (only the used entries)."""
        self._loader_for(ENGINE).load_program(program)

    def load_image(self, image):
        """Compile ``image`` for the device and load it; returns the program (for the host-side checks)."""
        program = self._loader_for(ENGINE).load(image)
        self.qnet = program.qnet
        return program

    def load_input(self, sample: int, x) -> None:
        """One int8 input (C, H, W) into input slot ``sample``."""
        self._loader_for(ENGINE).load_input(sample, x)

    def classify(self, x, n_outputs: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Run every input of ``x`` (N, C, H, W): ``(int8 outputs (N, n_outputs), predictions)``; ``n_outputs``
        defaults to the loaded network's."""
        if n_outputs is None:
            n_outputs = int(np.prod(self.qnet.layers[-1].out_shape))
        return self._loader_for(ENGINE).classify(x, n_outputs)

    # ---- the LIF core
    def check_snn(self, snn) -> None:
        """Raise ``ValueError`` naming every field where ``snn`` differs from the LIF core built into the device."""
        self._loader_for(LIF).check(snn)

    def load_snn(self, snn) -> None:
        """Load an integer SNN (:class:`~sparsegate.sw.ir.snn_golden.IntSNN`): weight banks, mask, threshold."""
        self._loader_for(LIF).load(snn)
        self.snn = snn

    def load_spikes(self, sample: int, spikes) -> None:
        """One sample's input spike trains ``(steps, n_inputs)`` bool into input slot ``sample``."""
        self._loader_for(LIF).load_spikes(sample, spikes)

    def classify_spikes(self, spikes) -> tuple[np.ndarray, np.ndarray]:
        """Run every sample of ``spikes (steps, B, n_inputs)``: ``(readout membranes (B, n_outputs), predictions)``."""
        return self._loader_for(LIF).classify(spikes)

    def close(self) -> None:
        self.transport.close()
