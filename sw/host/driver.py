"""Host driver for the board top level (``hw/platform/board_top.py``): one :class:`HostDriver` speaks the framed
protocol of :mod:`sparsegate.hw.link.host_link` over any byte :class:`Transport`:

* :class:`SerialTransport` — a real board's UART (pyserial, e.g. ``/dev/ttyUSB0``);
* :class:`SimTransport` — the same top level in Amaranth's simulator, stepped on demand: bytes go into
  the host link's stream (``serial=False``, fast) or bit by bit into the UART's ``rx`` line (``serial=True``).

``sparsegate run --board-port PORT`` and ``sparsegate run --sim`` (and the tests) differ only in the transport.
The ID reply says which core the device holds: the sparse engine (``load_image``/``load_input``/``classify``)
or the LIF core (``load_snn``/``load_spikes``/``classify_spikes``); counters and outputs read either.
"""
from __future__ import annotations

import struct
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from sparsegate.hw.link.host_link import CMD, SOF_REQ, SOF_RSP, STATUS, crc16, parse_identity, word_bytes

__all__ = ["HostDriver", "DeviceError", "LinkError", "SerialTransport", "SimTransport", "frame", "Reply"]

_STATUS_NAMES = {v: k for k, v in STATUS.items()}


class LinkError(OSError):
    """No (valid) reply: timeout, broken reply frame, port trouble."""


class DeviceError(ValueError):
    """The device answered with an error status; ``status`` is its name (``BAD_CRC``, ``BAD_LEN``, ...)."""

    def __init__(self, message: str, status: str):
        super().__init__(message)
        self.status = status


def frame(cmd: int, payload: bytes = b"") -> bytes:
    """One request frame."""
    body = bytes([cmd & 0xFF]) + struct.pack("<H", len(payload)) + bytes(payload)
    return bytes([SOF_REQ]) + body + struct.pack("<H", crc16(body))


@dataclass
class Reply:
    cmd: int
    status: int
    payload: bytes

    @property
    def status_name(self) -> str:
        return _STATUS_NAMES.get(self.status, f"status {self.status}")


# ------------------------------------------------------------------------------------------- transports

class SerialTransport:
    """A UART through pyserial."""

    def __init__(self, port: str, baud: int = 115200):
        try:
            import serial
        except ImportError as err:      # pragma: no cover - depends on the environment
            raise LinkError("pyserial is needed for a board port: pip install pyserial") from err
        try:
            self.port = serial.Serial(port, baud, timeout=0.05)
        except serial.SerialException as err:
            raise LinkError(f"cannot open {port}: {err}") from err

    def write(self, data: bytes) -> None:
        self.port.write(data)
        self.port.flush()

    def read(self, n: int, timeout_s: float) -> bytes:
        out = bytearray()
        deadline = time.monotonic() + timeout_s
        while len(out) < n and time.monotonic() < deadline:
            out += self.port.read(n - len(out))
        return bytes(out)

    def close(self) -> None:
        self.port.close()


class SimTransport:
    """The board top level in Amaranth's simulator, advanced only while the host waits for bytes.

    ``dut``: a :class:`~sparsegate.hw.platform.board_top.LinkedEngine` (byte streams) or, with ``serial=True``, a
    :class:`~sparsegate.hw.platform.board_top.SerialTop` (``divisor`` cycles per bit on its ``rx``/``tx`` lines).
    Timeouts are in simulated cycles (``max_cycles`` per read); ``gap_cycles`` idles the line between
    written chunks (to exercise the device's truncated-frame timeout)."""

    def __init__(self, dut, *, serial: bool = False, max_cycles: int = 20_000_000, vcd: str | None = None):
        from amaranth.sim import Simulator
        self.dut, self.serial = dut, serial
        self.divisor = getattr(dut, "divisor", None)
        self.max_cycles = max_cycles
        self.pending: deque[int | None] = deque()      # None = one idle cycle (a gap)
        self.received: deque[int] = deque()
        self.cycles = 0
        self.sim = Simulator(dut)
        self.sim.add_clock(1e-8)
        self.sim.add_testbench(self._serial_bench if serial else self._stream_bench, background=True)
        self._vcd = self.sim.write_vcd(vcd) if vcd else None
        if self._vcd is not None:
            self._vcd.__enter__()

    async def _stream_bench(self, ctx):
        dut = self.dut
        ctx.set(dut.tx.ready, 1)
        while True:
            queued = bool(self.pending)         # (write() may add bytes while this process waits)
            head = self.pending[0] if queued else None
            ctx.set(dut.rx.valid, head is not None)
            if head is not None:
                ctx.set(dut.rx.payload, head)
            _, _, rx_ready, tx_valid, tx_byte = await ctx.tick().sample(dut.rx.ready, dut.tx.valid, dut.tx.payload)
            self.cycles += 1
            if queued and (head is None or rx_ready):    # a gap cycle passed, or the byte was taken
                self.pending.popleft()
            if tx_valid:
                self.received.append(tx_byte)

    async def _serial_bench(self, ctx):
        dut, div = self.dut, self.divisor
        bits: deque[int] = deque()          # rx line, one entry per cycle
        tx_state = {"phase": "idle", "count": 0, "bits": [], "value": 0}
        while True:
            if not bits and self.pending:
                b = self.pending.popleft()
                if b is None:
                    bits.extend([1] * div)
                else:
                    for level in [0] + [(b >> i) & 1 for i in range(8)] + [1]:
                        bits.extend([level] * div)
            ctx.set(dut.rx, bits.popleft() if bits else 1)
            _, _, tx = await ctx.tick().sample(dut.tx)
            self.cycles += 1
            st = tx_state
            if st["phase"] == "idle":
                if not tx:
                    st.update(phase="bits", count=div + div // 2, bits=[])
            else:
                st["count"] -= 1
                if st["count"] == 0:
                    if len(st["bits"]) < 8:
                        st["bits"].append(tx)
                        st["count"] = div
                    else:               # stop-bit centre
                        self.received.append(sum(v << i for i, v in enumerate(st["bits"])))
                        st["phase"] = "idle"

    def write(self, data: bytes) -> None:
        self.pending.extend(data)

    def idle(self, cycles: int) -> None:
        """Leave the line idle for ``cycles`` (after what is already queued)."""
        self.pending.extend([None] * cycles)

    def read(self, n: int, timeout_s: float | None = None) -> bytes:
        limit = self.cycles + self.max_cycles
        while len(self.received) < n and self.cycles < limit:
            self.sim.advance()
        return bytes(self.received.popleft() for _ in range(min(n, len(self.received))))

    def run_cycles(self, cycles: int) -> None:
        end = self.cycles + cycles
        while self.cycles < end:
            self.sim.advance()

    def close(self) -> None:
        if self._vcd is not None:
            self._vcd.__exit__(None, None, None)
            self._vcd = None


# ----------------------------------------------------------------------------------------------- driver

class HostDriver:
    """The protocol: identify, load an image (compiled for the device's geometry), load inputs, run, read
    outputs and counters. Every method is a request/reply exchange; errors raise :class:`DeviceError`."""

    def __init__(self, transport, *, timeout_s: float = 5.0):
        self.transport = transport
        self.timeout_s = timeout_s
        self._ident = None

    # ---- framing
    def exchange(self, cmd: int, payload: bytes = b"", *, raw: bytes | None = None) -> Reply:
        """Send one request (or ``raw`` bytes) and read one reply frame."""
        self.transport.write(frame(cmd, payload) if raw is None else raw)
        return self.read_reply()

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
        if reply.status != STATUS["OK"]:
            raise DeviceError(f"{name}: device answered {reply.status_name}", reply.status_name)
        return reply.payload

    # ---- commands
    def identify(self) -> dict:
        self._ident = parse_identity(self.command("ID"))
        return self._ident

    @property
    def ident(self) -> dict:
        return self._ident or self.identify()

    def geometry(self):
        """The sparse engine's geometry (:class:`~sparsegate.hw.engine.layouts.EngineGeometry`)."""
        from sparsegate.hw.engine.layouts import EngineGeometry
        if self.core != "sparse":
            raise DeviceError(f"the device holds the {self.core} core, not the sparse engine (load a network "
                              "with load_snn)", "WRONG_CORE")
        return EngineGeometry(**self.ident["geometry"])

    def write_mem(self, mem: int, addr: int, words, bits: int, max_payload: int = 2048) -> None:
        wb = word_bytes(bits)
        per = max(1, (max_payload - 5) // wb)
        words = list(words)
        for i in range(0, len(words), per):
            chunk = words[i:i + per]
            data = b"".join(int(w).to_bytes(wb, "little") for w in chunk)
            self.command("WRITE_MEM", struct.pack("<BHH", mem, addr + i, len(chunk)) + data)

    def _mems(self):
        from sparsegate.hw.engine.engine import HOST_MEMS
        from sparsegate.hw.engine.layouts import chan_layout, desc_layout, param_layout
        g = self.geometry()
        widths = {"desc": desc_layout(g).size, "chan": chan_layout(g).size, "param": param_layout(g).size,
                  "weight": g.lanes * g.slot_bits, "input": 8 * g.banks}
        return {name: (i, widths[name]) for i, name in enumerate(HOST_MEMS)}

    def compile(self, image, inputs=None):
        """A weight image (path, bytes or decoded network) compiled for this device's engine."""
        from sparsegate.hw.platform.board_top import retarget_program
        from sparsegate.hw.engine.program import program_from_image
        g = self.geometry()
        return retarget_program(program_from_image(image, g.lanes, inputs), g)

    def load_program(self, program) -> None:
        """Write a (retargeted) program's weight-image memories: descriptors, channel table, parameters,
        weight words. Only the used entries are sent."""
        mems = self._mems()
        sizes = getattr(program, "used", None) or {
            "desc": len(program.desc_words), "chan": len(program.chan_words),
            "param": len(program.param_words), "weight": len(program.weight_words)}
        lists = {"desc": program.desc_words, "chan": program.chan_words, "param": program.param_words,
                 "weight": program.weight_words}
        for name in ("desc", "chan", "param", "weight"):
            index, bits = mems[name]
            words = lists[name][:sizes[name]]
            self.write_mem(index, 0, words, bits)

    def load_image(self, image):
        """Compile ``image`` for the device and load it; returns the program (for the host-side checks)."""
        program = self.compile(image)
        self.load_program(program)
        self.qnet = program.qnet
        return program

    def load_input(self, sample: int, x) -> None:
        """One int8 input (C, H, W) into input slot ``sample``."""
        from sparsegate.hw.engine.program import _banked_words
        g = self.geometry()
        if not 0 <= sample < g.n_samples:
            raise ValueError(f"input slot {sample} out of range (the device holds {g.n_samples})")
        words = _banked_words(np.asarray(x, dtype=np.int8), g.banks)
        if len(words) > g.input_depth:
            raise ValueError(f"input needs {len(words)} words per sample, the device has {g.input_depth}")
        index, bits = self._mems()["input"]
        self.write_mem(index, sample * g.input_depth, words, bits)

    def run(self, sample: int = 0) -> int:
        """Run the loaded network on input slot ``sample``; returns the engine's total cycles."""
        return struct.unpack("<I", self.command("RUN", struct.pack("<H", sample)))[0]

    def read_regs(self, first: int, count: int) -> list[int]:
        out = []
        for start in range(first, first + count, 255):
            n = min(255, first + count - start)
            out += list(struct.unpack(f"<{n}I", self.command("READ_REGS", bytes([start, n]))))
        return out

    @property
    def core(self) -> str:
        """``"sparse"`` or ``"lif"``: the core the device was built with."""
        return self.ident["core"]

    def read_counters(self) -> dict:
        """Every debug register by name (``hw.engine.dbg_map`` / ``hw.lif_top.lif_dbg_map``): counters,
        signatures, results (the LIF core's results as signed membranes)."""
        if self.core == "lif":
            from sparsegate.hw.lif.design import lif_dbg_map
            names = lif_dbg_map(self.ident["geometry"]["n_outputs"])
            values = dict(zip(names, self.read_regs(0, len(names))))
            return {k: (v - (1 << 32) if k.startswith("result") and v >> 31 else v) for k, v in values.items()}
        from sparsegate.hw.engine.engine import dbg_map
        names = dbg_map(self.geometry())
        values = self.read_regs(0, len(names))
        return dict(zip(names, values))

    def read_outputs(self, n: int | None = None) -> np.ndarray:
        """The last run's outputs: the engine's int8 logits, or the LIF readout's int32 membranes."""
        raw = self.command("READ_OUTPUTS")
        out = np.frombuffer(raw, dtype="<i4" if self.core == "lif" else np.int8)
        return out[:n] if n is not None else out

    # ---- the LIF core
    def _lif(self) -> dict:
        if self.core != "lif":
            raise DeviceError(f"the device holds the {self.core} core, not the LIF core", "WRONG_CORE")
        return self.ident["geometry"]

    def _lif_mems(self) -> dict:
        from sparsegate.hw.lif.core import source_entry
        g = self._lif()
        m, r = g["units"], g["readout_units"]
        return {"mask": (m + r, g["slots"]), "threshold": (m + r + 1, g["v_width"] - 1),
                "input": (m + r + 2, source_entry(g["n_inputs"]).size)}

    def check_snn(self, snn) -> None:
        """Raise ``ValueError`` naming every field where ``snn`` differs from what the device was built for
        (sizes, leak, reset, refractory, widths: only weights, mask and threshold load at run time)."""
        from sparsegate.hw.lif.design import LEAK_CODES, RESET_CODES
        g = self._lif()
        h, r = snn.hidden, snn.readout
        want = {"n_inputs": snn.n_inputs, "n_hidden": snn.n_hidden, "n_outputs": snn.n_outputs,
                "v_width": h.v_width, "count_width": h.count_width, "leak": LEAK_CODES[h.leak],
                "reset": RESET_CODES[h.reset], "refractory": h.refractory, "readout_v_width": r.v_width,
                "readout_count_width": r.count_width}
        if h.leak == "shift":
            want["leak_shift"] = h.leak_shift
        if h.leak == "mult":
            want.update(leak_mult=h.leak_mult, leak_frac=h.leak_frac)
        bad = [f"{k} {v} (device: {g[k]})" for k, v in want.items() if g[k] != v]
        if r.leak != "none" or r.fires:
            bad.append("readout is not an integrator (the device's readout never leaks or fires)")
        if bad:
            raise ValueError("the network does not match the LIF core built into the device: " + "; ".join(bad))

    def load_snn(self, snn) -> None:
        """Load an integer SNN (:class:`~sparsegate.sw.ir.snn_golden.IntSNN`) at run time: hidden and readout
        weight banks, hidden enable mask, hidden threshold."""
        from sparsegate.hw.lif.core import CoreGeometry, pack_weight_banks, unit_mask_words
        self.check_snn(snn)
        g = self._lif()
        hg = CoreGeometry(snn.n_inputs, snn.n_hidden, g["units"], g["per_word"])
        rg = CoreGeometry(snn.n_hidden, snn.n_outputs, g["readout_units"], 1)
        if hg.slots != g["slots"]:
            raise ValueError(f"hidden slots per unit {hg.slots} != the device's {g['slots']}")
        for u, words in enumerate(pack_weight_banks(snn.w1, hg)):
            self.write_mem(u, 0, words, 8 * hg.per_word)
        for u, words in enumerate(pack_weight_banks(snn.w2, rg)):
            self.write_mem(hg.units + u, 0, words, 8)
        mems = self._lif_mems()
        self.write_mem(mems["mask"][0], 0, unit_mask_words(snn.mask, hg), mems["mask"][1])
        self.write_mem(mems["threshold"][0], 0, [snn.hidden.threshold], mems["threshold"][1])
        self.snn = snn

    def load_spikes(self, sample: int, spikes) -> None:
        """One sample's input spike trains ``(steps, n_inputs)`` bool into input slot ``sample``."""
        from sparsegate.hw.lif.core import encode_source
        g = self._lif()
        if not 0 <= sample < g["n_samples"]:
            raise ValueError(f"input slot {sample} out of range (the device holds {g['n_samples']})")
        words = encode_source([np.asarray(spikes, bool)], g["n_inputs"])
        if len(words) > g["source_depth"]:
            raise ValueError(f"input needs {len(words)} spike entries, the device holds {g['source_depth']} per slot")
        index, bits = self._lif_mems()["input"]
        self.write_mem(index, sample * g["source_depth"], words, bits)

    def classify_spikes(self, spikes) -> tuple[np.ndarray, np.ndarray]:
        """Run every sample of ``spikes (steps, B, n_inputs)``: ``(readout membranes (B, n_outputs), predictions)``."""
        spikes = np.asarray(spikes, bool)
        n_out = self._lif()["n_outputs"]
        outs = []
        for b in range(spikes.shape[1]):
            self.load_spikes(0, spikes[:, b])
            self.run(0)
            outs.append(self.read_outputs(n_out).astype(np.int64))
        outs = np.stack(outs) if outs else np.zeros((0, n_out), np.int64)
        return outs, outs.argmax(axis=1)

    def classify(self, x, n_outputs: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Run every input of ``x`` (N, C, H, W): ``(int8 outputs (N, n_outputs), predictions)``."""
        x = np.asarray(x)
        if n_outputs is None:
            n_outputs = int(np.prod(self.qnet.layers[-1].out_shape))
        outs = []
        for sample in x:
            self.load_input(0, sample)
            self.run(0)
            outs.append(self.read_outputs(n_outputs))
        outs = np.stack(outs) if outs else np.zeros((0, n_outputs), dtype=np.int8)
        return outs, outs.argmax(axis=1)

    def close(self) -> None:
        self.transport.close()


# ------------------------------------------------------------------------------ Verilator transport

_HARNESS = r"""
#include "Vlinked_engine.h"
#include "verilated.h"
#include <cstdio>
#include <cstdint>
#include <vector>
#include <poll.h>
#include <unistd.h>
#include <fcntl.h>
// stdin bytes -> host link rx stream; tx stream -> stdout. Blocks on stdin only when the device is idle.
int main(int argc, char** argv) {
    Verilated::commandArgs(argc, argv);
    Vlinked_engine* top = new Vlinked_engine;
    top->clk = 0; top->rst = 1; top->eval();
    for (int i = 0; i < 4; i++) { top->clk = 1; top->eval(); top->clk = 0; top->eval(); }
    top->rst = 0; top->eval();
    fcntl(0, F_SETFL, O_NONBLOCK);
    std::vector<uint8_t> in; size_t head = 0;
    std::vector<uint8_t> out;
    uint8_t buf[65536];
    uint64_t cycle = 0;
    for (;;) {
        bool idle = top->idle && !top->tx___05Fvalid && head == in.size();
        if (head == in.size() && (idle || (cycle & 1023) == 0)) {
            if (!out.empty()) { fwrite(out.data(), 1, out.size(), stdout); fflush(stdout); out.clear(); }
            struct pollfd p = {0, POLLIN, 0};
            if (poll(&p, 1, idle ? -1 : 0) > 0) {
                ssize_t n = read(0, buf, sizeof buf);
                if (n == 0) break;                       // host closed the pipe
                if (n > 0) { in.assign(buf, buf + n); head = 0; }
            }
        }
        bool have = head < in.size();
        top->rx___05Fvalid = have; top->rx___05Fpayload = have ? in[head] : 0; top->tx___05Fready = 1;
        top->eval();
        bool rx_fire = have && top->rx___05Fready, tx_fire = top->tx___05Fvalid;
        uint8_t txb = top->tx___05Fpayload;
        top->clk = 1; top->eval(); top->clk = 0; top->eval();
        cycle++;
        if (rx_fire) head++;
        if (tx_fire) out.push_back(txb);
    }
    delete top;
    return 0;
}
"""


class VerilatorTransport:
    """The board top level's :class:`~sparsegate.hw.platform.board_top.LinkedEngine` compiled by Verilator into a
    small executable that maps stdin to the host link's ``rx`` stream and its ``tx`` stream to stdout
    (~100x the Amaranth simulator's speed). ``build_dir`` caches the executable by a digest of the Verilog."""

    def __init__(self, dut, build_dir, log=None):
        import os
        import subprocess

        from sparsegate.sim.cocotb_runner import SimulationFailed
        from sparsegate.sim.verilator_cpp import build_executable

        try:
            exe = build_executable(dut, _HARNESS, toplevel="linked_engine", build_dir=build_dir, cflags="-O1",
                                   log=log)
        except SimulationFailed as err:
            raise LinkError(str(err)) from None
        self.proc = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self._buf = bytearray()

    def write(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def read(self, n: int, timeout_s: float = 60.0) -> bytes:
        import select
        deadline = time.monotonic() + timeout_s
        while len(self._buf) < n:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                break
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = self.proc.stdout.read(65536)
                if chunk:
                    self._buf += chunk
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except Exception:       # noqa: BLE001
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()
