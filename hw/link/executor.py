"""Executor: runs checked request records against a core's host port and produces the replies.

Per command (:mod:`sparsegate.hw.link.host_link` has the table): ``ID`` sends the identity bytes;
``WRITE_MEM`` copies the frame buffer's words into a host memory, one word at a time; ``RUN`` pulses
``start``, hands the record back (the decoder may take the next frame) and waits for ``busy`` to fall —
at most ``run_budget`` cycles: the watchdog then aborts the core and answers ``RUN_TIMEOUT``; a ``RESET``
frame meanwhile aborts it too (the RUN is answered ``ABORTED``, then the RESET ``OK``); a core that refused
the run (``fault``: a bad layer descriptor) is answered ``BAD_DESC`` with the layer index; ``RESET`` pulses
``abort``; ``READ_REGS`` / ``READ_OUTPUTS`` read debug registers through
``dbg_sel`` → ``dbg_data`` (which a core may register in up to three stages: it is read four cycles after ``dbg_sel`` is set). Before that, every argument is checked (``BAD_LEN``, ``BAD_ARG``,
``UNKNOWN_CMD``); a framing error from the decoder becomes its error reply. The checks are pipelined over
four registers (the record is stable while it is offered), then decided into a registered verdict (the
action and the reply header) that the FSM only selects: the multiply, the compares and their decision tree
stay off the FSM's next-state and clock-enable logic, for timing at 125 MHz.
"""
from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import ReadPort
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from sparsegate.hw.engine.dsp_multiplier import DspMultiplier
from sparsegate.hw.link.host_port import HostPortSignature
from sparsegate.hw.link.protocol import ARG_BYTES, CMD, STATUS, reply_layout, request_layout, word_bytes

__all__ = ["Executor"]

#: Cycles from a record being offered until the pipelined checks and the verdict on them have settled.
CHECK_CYCLES = 5
_REPLY, _WRITE, _RUN = 0, 1, 2      # the verdict's actions


class Executor(wiring.Component):
    """Request records → host-port actions → reply headers and payload bytes.

    ``mems``: ``[(word bits, depth)]`` of the core's writable memories (``wr_mem`` order); ``n_samples``,
    ``n_regs``: the input slots and debug registers; ``result_base``/``n_results``: where the outputs start in
    the debug map; ``ident``: the ID reply payload; ``result_bytes``: READ_OUTPUTS sends each result
    register's low byte (1, the engine's int8 outputs) or the whole register (4, the LIF membranes);
    ``run_budget``: the watchdog's cycles for one RUN.

    Members
    -------
    i : ``In(stream.Signature(request_layout))``
        Request records; one is accepted when its command is finished (reply payload handed on).
    buf : ``In(ReadPort.Signature(...))``
        Read port of the frame buffer (WRITE_MEM's words).
    host : ``In(HostPortSignature(...))``
        The core's host port.
    reply : ``Out(stream.Signature(reply_layout))``
        One reply header per request.
    payload : ``Out(stream.Signature(8))``
        The reply's ``length`` payload bytes, after its header.
    idle : ``Out(1)``
        No command in progress.
    """

    def __init__(self, *, mems, n_samples: int, n_regs: int, result_base: int, n_results: int, ident: bytes,
                 max_payload: int, run_budget: int, result_bytes: int = 1):
        if result_bytes not in (1, 4):
            raise ValueError(f"result_bytes must be 1 or 4, got {result_bytes}")
        if not 1 <= len(mems) <= 256:
            raise ValueError(f"the link addresses 1..256 memories, got {len(mems)}")
        self.mems = list(mems)
        self.n_samples, self.n_regs = n_samples, n_regs
        self.result_base, self.n_results, self.result_bytes = result_base, n_results, result_bytes
        self.ident = bytes(ident)
        if run_budget < 2:
            raise ValueError(f"run_budget must be at least 2 cycles, got {run_budget}")
        self.run_budget = int(run_budget)
        self.max_wb = max(word_bytes(w) for w, _ in self.mems)
        super().__init__({
            "i": In(stream.Signature(request_layout)),
            "buf": In(ReadPort.Signature(addr_width=max(1, ceil_log2(max_payload)), shape=8)),
            "host": In(HostPortSignature.for_memories(self.mems)),
            "reply": Out(stream.Signature(reply_layout)),
            "payload": Out(stream.Signature(8)),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        req, host = self.i.payload, self.host
        args = req.args
        addr0, count, sample = Cat(args[1], args[2]), Cat(args[3], args[4]), Cat(args[0], args[1])

        # ---- the checks, pipelined (see the module docstring)
        mem_ok = Signal()
        range_ok = Signal()
        sample_ok = Signal()
        regs_ok = Signal()
        wb = Signal(range(self.max_wb + 1))     # the addressed memory's word bytes (0: no such memory)
        sel_depth = Signal(range(max(d for _, d in self.mems) + 1))
        sel_end = Signal(17)
        need_len = Signal(32)
        m.d.sync += [mem_ok.eq(0), sel_depth.eq(0)]
        with m.Switch(args[0]):
            for i, (bits, depth) in enumerate(self.mems):
                with m.Case(i):
                    m.d.comb += wb.eq(word_bytes(bits))
                    m.d.sync += [mem_ok.eq(1), sel_depth.eq(depth)]
        # payload bytes = count * word bytes, two cycles later: operands and product in the DSP's own
        # registers on ECP5 (a fabric register -> MULT18X18D -> fabric register path was the critical one)
        m.submodules.payload_len = payload_len = DspMultiplier(unsigned(16), wb.shape())
        m.d.comb += [payload_len.a.eq(count), payload_len.b.eq(wb)]
        m.d.sync += [sel_end.eq(addr0 + count), range_ok.eq(sel_end <= sel_depth),
                     need_len.eq(payload_len.p + ARG_BYTES)]
        len_is0 = Signal()
        len_is2 = Signal()
        len_short = Signal()
        len_match = Signal()
        m.d.sync += [len_is0.eq(req.length == 0), len_is2.eq(req.length == 2), len_short.eq(req.length < ARG_BYTES),
                     len_match.eq(req.length == need_len),
                     sample_ok.eq(sample < self.n_samples),
                     regs_ok.eq((args[1] != 0) & (args[0] + args[1] <= self.n_regs))]

        # ---- reply state: header fields, payload source
        status = Signal(8)
        kind = Signal(3)        # payload: 0 none, 1 identity, 2 registers as u32, 3 registers' low bytes,
                                # 4 the faulty layer's index
        rcmd = Signal(8)        # the command being answered (RUN hands its record back early)
        first = Signal(8)
        rlen = Signal(16)
        idx = Signal(16)
        m.d.comb += [self.reply.payload.cmd.eq(rcmd), self.reply.payload.status.eq(status),
                     self.reply.payload.length.eq(rlen)]

        # ---- WRITE_MEM: frame buffer bytes → a word → the host memory
        mem = Signal(8)
        waddr = Signal(16)
        left = Signal(16)
        cnt = Signal(16)
        k = Signal(range(self.max_wb + 1))
        word = Signal(8 * self.max_wb)
        # the frame buffer's byte, registered every cycle without reset: a plain register the build moves
        # into the block RAM's output register (hw/platform/bram_outreg.py; read straight out of the RAM it
        # was late at 125 MHz on the 85F)
        rd_byte = Signal(8, reset_less=True)
        m.d.sync += rd_byte.eq(self.buf.data)
        wbytes = Signal(range(self.max_wb + 1))
        with m.Switch(mem):
            for i, (bits, _) in enumerate(self.mems):
                with m.Case(i):
                    m.d.comb += wbytes.eq(word_bytes(bits))
        # the FSM's loop ends as registers: the word's last byte index (``mem`` is set two cycles before
        # W_PUT), the last word (set with ``left``), the payload's end (``idx`` and ``rlen`` settle in SELECT)
        wbytes_m1 = Signal.like(wbytes)
        left_last = Signal()
        idx_end = Signal()
        m.d.sync += [wbytes_m1.eq(wbytes - 1), idx_end.eq(idx == rlen)]
        m.d.comb += [host.wr_data.eq(word), host.wr_mem.eq(mem), host.wr_addr.eq(waddr), self.buf.addr.eq(cnt)]
        # which byte of the word W_PUT fills: one flip-flop per byte, set in W_GET, so each byte's enable is a
        # register, not the FSM's state decode (fsm_state -> the word's bytes was the critical path on the 85F)
        put = Signal(self.max_wb)
        m.d.sync += put.eq(0)
        for i in range(self.max_wb):
            with m.If(put[i]):
                m.d.sync += word.word_select(i, 8).eq(rd_byte)

        # ---- READ_REGS / READ_OUTPUTS / ID: payload bytes
        sel = Signal(8)
        dbg_word = Signal(32)
        pay_byte = Signal(8)
        m.d.comb += [host.dbg_sel.eq(sel), self.payload.payload.eq(pay_byte)]

        def reply(st, kind_=0, first_=0, rlen_=0):
            m.d.sync += [status.eq(st), kind.eq(kind_), first.eq(first_), rlen.eq(rlen_), idx.eq(0)]
            m.next = "REPLY"

        def error(name):
            reply(STATUS[name])

        # ---- RUN: the sample, the watchdog, aborts
        run_sample = Signal(16)
        released = Signal()     # RUN's record was handed back at the start
        wd = Signal(range(self.run_budget + 1))
        wd_out = Signal()       # registered: the budget is spent
        counting = Signal()     # RUN_SETTLE and RUN_WAIT: the watchdog's enable is one flip-flop, not the
        with m.If(counting):    # FSM's state decode (on the 85F its 29 enables were 8.5 ns away at 125 MHz)
            m.d.sync += [wd.eq(wd - 1), wd_out.eq(wd == 1)]
        # registered pulse to the core; high at power-up and while the link is reset, so a core reset only
        # through `abort` (the engine: hw/platform/board_top.py) is held in reset with the link
        abort = Signal(init=1)
        m.d.sync += abort.eq(0)
        m.d.comb += [host.abort.eq(abort), host.sample.eq(run_sample)]   # the sample: a register, no state mux
        core_busy = Signal()    # the core's busy and fault, registered: its state decode stays out of the
        core_fault = Signal()   # reply registers' enables
        m.d.sync += [core_busy.eq(host.busy), core_fault.eq(host.fault)]
        reset_req = Signal()    # registered: a RESET frame waits while a RUN runs (taken a cycle later)
        m.d.sync += reset_req.eq(self.i.valid & (req.status == STATUS["OK"]) & (req.cmd == CMD["RESET"]))

        # ---- the verdict: the command's checks decided one register ahead of EXEC, so the FSM's next
        # state and the reply registers' enables hang off a few registered bits, not the compare tree
        # (written every cycle, read only in EXEC: no reset, off the power-up reset's net)
        v_action = Signal(2, reset_less=True)
        v_abort = Signal(reset_less=True)
        v_status = Signal(8, reset_less=True)
        v_kind = Signal(3, reset_less=True)
        v_first = Signal(8, reset_less=True)
        v_rlen = Signal(16, reset_less=True)

        def verdict(st, kind_=0, first_=0, rlen_=0):
            m.d.sync += [v_status.eq(st), v_kind.eq(kind_), v_first.eq(first_), v_rlen.eq(rlen_)]

        m.d.sync += [v_action.eq(_REPLY), v_abort.eq(0)]
        verdict(STATUS["UNKNOWN_CMD"])
        with m.If(req.status != STATUS["OK"]):     # a framing error: its own reply
            verdict(req.status)
        with m.Else():
            with m.Switch(req.cmd):
                with m.Case(CMD["ID"]):
                    with m.If(~len_is0):
                        verdict(STATUS["BAD_LEN"])
                    with m.Else():
                        verdict(STATUS["OK"], 1, 0, len(self.ident))
                with m.Case(CMD["WRITE_MEM"]):
                    with m.If(len_short):
                        verdict(STATUS["BAD_LEN"])
                    with m.Elif(~mem_ok):
                        verdict(STATUS["BAD_ARG"])
                    with m.Elif(~len_match):
                        verdict(STATUS["BAD_LEN"])
                    with m.Elif(~range_ok):
                        verdict(STATUS["BAD_ARG"])
                    with m.Elif(count == 0):
                        verdict(STATUS["OK"])
                    with m.Else():
                        m.d.sync += v_action.eq(_WRITE)
                with m.Case(CMD["RUN"]):
                    with m.If(~len_is2):
                        verdict(STATUS["BAD_LEN"])
                    with m.Elif(~sample_ok):
                        verdict(STATUS["BAD_ARG"])
                    with m.Else():
                        m.d.sync += v_action.eq(_RUN)
                with m.Case(CMD["RESET"]):
                    with m.If(~len_is0):
                        verdict(STATUS["BAD_LEN"])
                    with m.Else():
                        m.d.sync += v_abort.eq(1)
                        verdict(STATUS["OK"])
                with m.Case(CMD["READ_REGS"]):
                    with m.If(~len_is2):
                        verdict(STATUS["BAD_LEN"])
                    with m.Elif(~regs_ok):
                        verdict(STATUS["BAD_ARG"])
                    with m.Else():
                        verdict(STATUS["OK"], 2, args[0], args[1] << 2)
                with m.Case(CMD["READ_OUTPUTS"]):
                    with m.If(~len_is0):
                        verdict(STATUS["BAD_LEN"])
                    with m.Else():
                        if self.result_bytes == 4:
                            verdict(STATUS["OK"], 2, self.result_base, 4 * self.n_results)
                        else:
                            verdict(STATUS["OK"], 3, self.result_base, self.n_results)

        wait = Signal(range(CHECK_CYCLES))
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.idle.eq(1)
                m.d.sync += [rcmd.eq(req.cmd), released.eq(0)]
                with m.If(self.i.valid):
                    m.d.sync += wait.eq(CHECK_CYCLES - 1)
                    m.next = "CHECK"
            with m.State("CHECK"):          # the pipelined checks settle
                m.d.sync += wait.eq(wait - 1)
                with m.If(wait == 1):
                    m.next = "EXEC"
            with m.State("EXEC"):           # the registered verdict (below) only selects the action
                with m.If(v_abort):
                    m.d.sync += abort.eq(1)
                with m.Switch(v_action):
                    with m.Case(_WRITE):
                        m.d.sync += [mem.eq(args[0]), waddr.eq(addr0), left.eq(count), left_last.eq(count == 1),
                                     cnt.eq(ARG_BYTES), k.eq(0)]
                        m.next = "W_READ"
                    with m.Case(_RUN):
                        m.d.sync += run_sample.eq(sample)
                        m.next = "RUN_START"
                    with m.Default():
                        reply(v_status, v_kind, v_first, v_rlen)

            with m.State("W_READ"):         # buffer address presented
                m.next = "W_GET"
            with m.State("W_GET"):          # buffer byte available: registered next to the block RAM
                m.d.sync += [cnt.eq(cnt + 1), put.eq(1 << k)]
                m.next = "W_PUT"
            with m.State("W_PUT"):          # into the word (``put``)
                with m.If(k == wbytes_m1):
                    m.next = "W_WRITE"
                with m.Else():
                    m.d.sync += k.eq(k + 1)
                    m.next = "W_READ"
            with m.State("W_WRITE"):
                m.d.comb += host.wr_en.eq(1)
                m.d.sync += [waddr.eq(waddr + 1), left.eq(left - 1), left_last.eq(left == 2), k.eq(0)]
                with m.If(left_last):
                    reply(STATUS["OK"])
                with m.Else():
                    m.next = "W_READ"

            with m.State("RUN_START"):
                m.d.comb += [host.start.eq(1), self.i.ready.eq(1)]
                m.d.sync += [released.eq(1), wd.eq(self.run_budget), wd_out.eq(0), counting.eq(1)]
                m.next = "RUN_SETTLE"
            with m.State("RUN_SETTLE"):     # the core's busy, a cycle after start, reaches its register
                m.next = "RUN_WAIT"
            with m.State("RUN_WAIT"):       # every exit is bounded by the watchdog
                with m.If(~core_busy | wd_out | reset_req):
                    m.d.sync += counting.eq(0)
                with m.If(~core_busy):
                    with m.If(core_fault):
                        reply(STATUS["BAD_DESC"], 4, 0, 1)
                    with m.Else():
                        reply(STATUS["OK"], 2, 0, 4)     # total.cycles
                with m.Elif(wd_out):
                    m.d.sync += abort.eq(1)
                    error("RUN_TIMEOUT")
                with m.Elif(reset_req):
                    m.d.sync += abort.eq(1)
                    error("ABORTED")

            with m.State("REPLY"):
                m.d.comb += self.reply.valid.eq(1)
                with m.If(self.reply.ready):
                    m.next = "SELECT"
            with m.State("SELECT"):         # register select and byte look-up: short paths at 100+ MHz
                m.d.sync += sel.eq(Mux(kind == 2, first + (idx >> 2), first + idx))
                m.next = "SETTLE"
            with m.State("SETTLE"):         # the core may register its debug read in three stages (`dbg_data`
                m.next = "SETTLE2"          # three cycles late)
            with m.State("SETTLE2"):
                m.next = "SETTLE3"
            with m.State("SETTLE3"):
                m.next = "FETCH"
            with m.State("FETCH"):          # debug register read (registered), then the byte look-up
                with m.If(idx_end):
                    m.next = "DONE"
                with m.Else():
                    m.d.sync += dbg_word.eq(host.dbg_data)
                    m.next = "BYTE"
            with m.State("BYTE"):
                ident = Array(Const(b, 8) for b in self.ident)
                with m.Switch(kind):
                    with m.Case(1):
                        m.d.sync += pay_byte.eq(ident[idx[:max(1, ceil_log2(len(self.ident)))]])
                    with m.Case(2):
                        m.d.sync += pay_byte.eq(dbg_word.word_select(idx[:2], 8))
                    with m.Case(4):
                        m.d.sync += pay_byte.eq(host.fault_layer)
                    with m.Default():
                        m.d.sync += pay_byte.eq(dbg_word[:8])
                m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += self.payload.valid.eq(1)
                with m.If(self.payload.ready):
                    m.d.sync += idx.eq(idx + 1)
                    m.next = "SELECT"
            with m.State("DONE"):           # the record is consumed only now: the decoder may take a frame
                m.d.comb += self.i.ready.eq(~released)
                m.next = "IDLE"
        return m
