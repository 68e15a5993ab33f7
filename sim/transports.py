"""Byte transports into simulated board top levels, for :class:`~sparsegate.sw.host.driver.HostDriver` (any object
with ``write(data)``, ``read(n, timeout_s)`` and ``close()``; see :class:`~sparsegate.sw.host.driver.Transport`):

* :class:`SimTransport` — the linked core (or the UART-level :class:`~sparsegate.hw.platform.board_top.SerialTop`)
  in Amaranth's simulator, stepped on demand: bytes go into the host link's stream (``serial=False``, fast) or
  bit by bit into the UART's ``rx`` line (``serial=True``);
* :class:`VerilatorTransport` — the linked core compiled by Verilator, a child process on stdin/stdout;
* :class:`PinTransport` — a whole top level (its gate-level netlist, or its RTL) compiled by Verilator with
  a main loop that serialises the host's bytes onto the ``rx`` pin and decodes the ``tx`` pin: the real 8N1
  bit stream (:mod:`sparsegate.sim.netlist_sim` builds the executables).

:func:`sim_transport` builds either for a program through the core registry.
"""
from __future__ import annotations

import time
from collections import deque
from pathlib import Path

from sparsegate.hw.platform.cores import core_for

__all__ = ["SimTransport", "VerilatorTransport", "PinTransport", "PIN_HARNESS", "sim_transport", "SIMULATORS"]

#: The simulators :func:`sim_transport` can run a board top level in.
SIMULATORS = ("verilator", "amaranth")


def sim_transport(program, simulator: str = "verilator", build_dir: Path = Path("build/host-sim"), *,
                  timeout: int = 1_000_000, max_cycles: int = 50_000_000, log=None):
    """A transport into the linked core of ``program`` (an engine program in its capacity geometry, or a LIF
    design) with ``program`` as its power-up contents: Verilator (built once into ``build_dir``) or
    Amaranth's simulator (``max_cycles`` per read). ``timeout``: the link's truncated-frame timeout, cycles."""
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {', '.join(SIMULATORS)}, got {simulator!r}")
    dut = core_for(program).linked(program, timeout=timeout)
    if simulator == "verilator":
        return VerilatorTransport(dut, build_dir, log=log)
    return SimTransport(dut, max_cycles=max_cycles)


class SimTransport:
    """The board top level in Amaranth's simulator, advanced only while the host waits for bytes.

    ``dut``: a linked core (``LinkedEngine``/``LinkedLif``, byte streams) or, with ``serial=True``, a
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
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
// stdin bytes -> host link rx stream; tx stream -> stdout. Blocks on stdin only when the device is idle.
// argv[1]: the host's pid. The model dies with its host (parent-death signal), also when the host died
// before the signal was armed.
int main(int argc, char** argv) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (argc < 2 || getppid() != (pid_t)atol(argv[1])) return 1;
    Verilated::commandArgs(argc, argv);
    Vlinked_engine* top = new Vlinked_engine;
    top->clk = 0; top->rst = 1; top->reset = 1; top->eval();
    for (int i = 0; i < 4; i++) { top->clk = 1; top->eval(); top->clk = 0; top->eval(); }
    top->rst = 0; top->reset = 0; top->eval();
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


class _ProcessTransport:
    """A simulator executable as a child process: bytes to the device on its stdin, from it on its stdout.
    The executable gets the host's pid as its first argument and dies with the host (``PR_SET_PDEATHSIG``)."""

    def __init__(self, exe, *args: str):
        import os
        import subprocess

        self.proc = subprocess.Popen([str(exe), str(os.getpid()), *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
        os.set_blocking(self.proc.stdout.fileno(), False)
        self._buf = bytearray()
        self.stderr = ""

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
        if self.proc.stderr:
            self.stderr = self.proc.stderr.read().decode(errors="replace")
            self.proc.stderr.close()
        if self.proc.stdout:
            self.proc.stdout.close()


class VerilatorTransport(_ProcessTransport):
    """A linked core (:class:`~sparsegate.hw.platform.board_top.LinkedEngine` or
    :class:`~sparsegate.hw.lif.design.LinkedLif`) compiled by Verilator into a small executable that maps stdin
    to the host link's ``rx`` stream and its ``tx`` stream to stdout (~100x the Amaranth simulator's speed).
    The model process dies with the process that started it (``PR_SET_PDEATHSIG``: the host thread that
    created the transport; a killed host leaves no simulator spinning).
    ``build_dir`` caches the executable by a digest of the Verilog; a failed Verilator build raises
    :class:`~sparsegate.sim.cocotb_runner.SimulationFailed`."""

    def __init__(self, dut, build_dir, log=None):
        from sparsegate.sim.verilator_cpp import build_executable

        exe = build_executable(dut, _HARNESS, toplevel="linked_engine", build_dir=build_dir, cflags="-O1", log=log)
        super().__init__(exe)


#: Main loop of a top level with serial pins (Verilog module ``pin_top``: ``clk``, ``rst``, ``rx``, ``tx``).
#: argv: host pid, cycles per bit, reset cycles (``rst`` high at start; 0 for a board netlist, whose reset
#: comes from its PLL lock), quiet cycles (the line stays idle while the device starts: no host can send to a
#: board before it is configured and its PLL locked; a start bit during reset would be lost). stdin bytes -> 8N1 frames on ``rx`` (idle high, start bit, 8 data bits LSB
#: first, stop bit); ``tx`` is decoded the same way (sampled mid-bit) -> stdout. The line is polled every
#: 1024 cycles and the model runs free (a board does not stop its clock). On exit: "cycles N" on stderr.
PIN_HARNESS = r"""
#include "Vpin_top.h"
#include "verilated.h"
#include <cstdio>
#include <cstdint>
#include <deque>
#include <vector>
#include <poll.h>
#include <unistd.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
int main(int argc, char** argv) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (argc < 5 || getppid() != (pid_t)atol(argv[1])) return 1;
    const long div = atol(argv[2]), reset_cycles = atol(argv[3]);
    const uint64_t quiet = atol(argv[4]);
    Verilated::commandArgs(argc, argv);
    Vpin_top* top = new Vpin_top;
    top->clk = 0; top->rx = 1; top->rst = reset_cycles > 0; top->eval();
    fcntl(0, F_SETFL, O_NONBLOCK);
    std::deque<uint8_t> in;
    std::vector<uint8_t> out;
    uint8_t buf[65536];
    uint64_t cycle = 0;
    long bit_left = 0; int bit_index = -1; uint8_t cur = 0;      // rx: bit -1 idle, 0 start, 1..8 data, 9 stop
    int tx_phase = 0; long tx_count = 0; int tx_bits = 0; uint8_t tx_byte = 0;
    bool open = true;
    for (;;) {
        if ((cycle & 1023) == 0) {
            if (!out.empty()) { fwrite(out.data(), 1, out.size(), stdout); fflush(stdout); out.clear(); }
            if (open) {
                ssize_t n = read(0, buf, sizeof buf);
                if (n == 0) open = false;                            // host closed the pipe
                else if (n > 0) in.insert(in.end(), buf, buf + n);
            }
            if (!open && in.empty() && bit_index < 0) break;
        }
        if (bit_left == 0) {                                         // next bit: start, 8 data, stop, or idle
            if (bit_index >= 0 && bit_index < 9) { bit_index++; bit_left = div; }
            else if (!in.empty() && cycle >= quiet) { cur = in.front(); in.pop_front(); bit_index = 0; bit_left = div; }
            else { bit_index = -1; bit_left = 1; }
        }
        top->rx = bit_index < 0 ? 1 : bit_index == 0 ? 0 : bit_index <= 8 ? (cur >> (bit_index - 1)) & 1 : 1;
        bit_left--;
        if (cycle == (uint64_t)reset_cycles) top->rst = 0;
        top->clk = 1; top->eval(); top->clk = 0; top->eval();
        cycle++;
        int tx = top->tx;
        if (tx_phase == 0) {
            if (!tx) { tx_phase = 1; tx_count = div + div / 2; tx_bits = 0; tx_byte = 0; }
        } else if (--tx_count == 0) {
            if (tx_bits < 8) { tx_byte |= tx << tx_bits; tx_bits++; tx_count = div; }
            else { out.push_back(tx_byte); tx_phase = 0; }
        }
    }
    fprintf(stderr, "cycles %llu\n", (unsigned long long)cycle);
    delete top;
    return 0;
}
"""


class PinTransport(_ProcessTransport):
    """A top level's serial pins driven bit by bit: ``exe`` built with :data:`PIN_HARNESS` (see
    :mod:`sparsegate.sim.netlist_sim`), ``divisor`` clock cycles per bit (the design's UART divisor),
    ``reset_cycles`` of ``rst`` at start; the line is idle for the first ``quiet`` cycles (default: 64 and two
    bit times). After :meth:`close`, :attr:`cycles` is the clock cycles simulated."""

    def __init__(self, exe, divisor: int, reset_cycles: int = 0, quiet: int | None = None):
        super().__init__(exe, str(divisor), str(reset_cycles), str(64 + 2 * divisor if quiet is None else quiet))
        self.divisor = divisor
        self.cycles: int | None = None

    def close(self) -> None:
        super().close()
        for line in self.stderr.splitlines():
            if line.startswith("cycles "):
                self.cycles = int(line.split()[1])
