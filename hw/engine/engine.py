"""The sparse convolution engine: sequencer, weight decoder, banked activation buffer, MAC lanes and the
fused output stage, with an input memory holding ``n_samples`` images, all built from one
:class:`~sparsegate.hw.engine.contents.EngineContents` — a geometry and memory words, which the compiler
(:func:`~sparsegate.hw.engine.program.compile_program`) produces (docs/engine.md).

Host interface: set ``sample``, pulse ``start``; ``done`` rises when the last layer's outputs are written
(``busy`` meanwhile). Performance counters, per-layer output signatures and the last layer's outputs are
read through ``dbg_sel`` -> ``dbg_data`` (registered: three cycles; register map :func:`dbg_map`).

Stream chain (``lib.stream`` valid/ready everywhere)::

    sequencer.cmd -> command queue -> weight_decoder -> act_buffer (read) -> mac_array -> output_stage
      -> act_buffer (write)

Only the sequencer ever waits. Everything after the command queue runs at a fixed latency and never
stalls (no ready chain, no clock enables fanning out over the datapath: what lets it close timing at
100 MHz): the queue releases a pass's ``last`` command only the previous pass's drain cycles (``nvalid``,
or ``ceil(nvalid / 2)`` when the layer drains two pixels a cycle) after the previous pass's ``last``, so its
sums reach the MAC array's output register exactly when the output stage has taken the previous pass's last
pixel. The queue absorbs the sequencer's channel-table bubbles.
"""
from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory

from sparsegate.hw.engine.act_buffer import ActBuffer
from sparsegate.hw.engine.contents import EngineContents
from sparsegate.hw.engine.layouts import (BANKS_PER_WRITE_COPY, SIG_ROT, EngineGeometry, chan_layout, cmd_layout,
                                          desc_layout, param_layout)
from sparsegate.hw.engine.mac_array import MacArray
from sparsegate.hw.engine.output_stage import OutputStage
from sparsegate.hw.engine.pipeline_registers import pipeline_register, pipeline_register_like
from sparsegate.hw.engine.sequencer import Sequencer
from sparsegate.hw.engine.weight_decoder import WeightDecoder
from sparsegate.hw.link.host_port import HostPortSignature
from sparsegate.hw.platform.memory_hints import read_write_disjoint
from sparsegate.hw.platform.replicated_registers import REPLICA, replicas, reset_from_copy

__all__ = ["SparseEngine", "dbg_map", "host_memories", "LAYER_COUNTERS", "TOTAL_COUNTERS", "HOST_MEMS",
           "QUEUE_DEPTH", "CORE_NAME", "INPUT_LUTRAM_BITS", "input_in_lutram"]

#: The engine's name on the host link (the ID reply's core kind, ``--core``).
CORE_NAME = "sparse"

#: Commands the queue between the sequencer and the datapath holds (LUT RAM).
QUEUE_DEPTH = 16

TOTAL_COUNTERS = ("cycles", "load_cycles", "stalls", "issued", "active")
LAYER_COUNTERS = ("cycles", "stalls", "issued", "active", "signature")
#: Lanes whose activity flags are counted in one step before the sum (a 32-lane count in one cycle was on the
#: 85F's late list)
LANES_PER_COUNT = 8


def rotl(sig):
    """The signature's rotation: ``rotl(sig, SIG_ROT)`` of a 32-bit value."""
    return Cat(sig[32 - SIG_ROT:], sig[:32 - SIG_ROT])


def dbg_map(g: EngineGeometry) -> dict:
    """Debug register index of every readable value: ``total.<name>``, ``layer<i>.<name>``, ``result<k>``."""
    names = [f"total.{n}" for n in TOTAL_COUNTERS]
    for i in range(g.n_layers):
        names += [f"layer{i}.{n}" for n in LAYER_COUNTERS]
    names += [f"result{k}" for k in range(g.n_results)]
    return {n: i for i, n in enumerate(names)}


#: Memories the host can write at run time (``host_write=True``), by ``wr_mem`` index.
HOST_MEMS = ("desc", "chan", "param", "weight", "input")

#: An input memory of at most this many bits goes into LUT RAM (``ram_style = "distributed"``): a sample or
#: two take a few hundred LUT4 there, against 4-8 DP16KD for a memory 8 x banks bits wide but a few dozen
#: words deep (what kept a 16-lane engine off the LFE5U-25F, docs/engine.md "Block RAM").
INPUT_LUTRAM_BITS = 8192


def input_in_lutram(contents: EngineContents) -> bool:
    """The input memory of an engine built from ``contents`` is in LUT RAM (:data:`INPUT_LUTRAM_BITS`)."""
    return 8 * contents.geometry.banks * max(2, len(contents.input_words)) <= INPUT_LUTRAM_BITS


def host_memories(contents: EngineContents) -> dict:
    """``{name: (word bits, depth)}`` of the host-writable memories of an engine built from ``contents``
    (in :data:`HOST_MEMS` order; ``wr_mem`` selects by index)."""
    g = contents.geometry
    return {"desc": (desc_layout(g).size, max(2, len(contents.desc_words))),
            "chan": (chan_layout(g).size, g.chan_depth),
            "param": (param_layout(g).size, g.param_depth),
            "weight": (g.lanes * g.slot_bits, g.weight_depth),
            "input": (8 * g.banks, max(2, len(contents.input_words)))}


class SparseEngine(wiring.Component):
    """The engine, its memories initialised from ``contents``; its signature is the host port.

    ``host_write=True`` adds a write port into every program memory, so a host can load a weight image's
    memory words and input samples at run time; write only while the engine is idle.

    Members (:class:`~sparsegate.hw.link.host_port.HostPortSignature`)
    -------
    start, sample : ``In``
        Pulse ``start`` to run input slot ``sample``.
    busy, done : ``Out(1)``
        Running (or checking the descriptors); the last layer's outputs are written.
    abort : ``In(1)``
        ``host_write=True`` only: stop now, every register to its reset value (counters and results
        cleared), memories kept.
    fault, fault_layer : ``Out``
        The last ``start`` was refused: layer descriptor ``fault_layer`` cannot run (:class:`Sequencer`).
    dbg_sel : ``In(8)``, dbg_data : ``Out(32)``
        Debug register read, three cycles after ``dbg_sel`` (three registered mux stages; :func:`dbg_map`).
    wr_en, wr_mem, wr_addr, wr_data : ``In``
        ``host_write=True`` only: ``wr_mem`` = index in :data:`HOST_MEMS`, ``wr_data`` LSB-aligned.
    """

    def __init__(self, contents: EngineContents, host_write: bool = False):
        if not isinstance(contents, EngineContents):
            raise TypeError(f"SparseEngine is built from EngineContents (EngineProgram.contents), "
                            f"not {type(contents).__name__}")
        self.contents = contents
        self.g = g = contents.geometry
        self.dbg_names = dbg_map(g)
        self.host_write = host_write
        if host_write:
            super().__init__(HostPortSignature.for_memories(host_memories(contents).values()))
        else:
            super().__init__(HostPortSignature())

    def elaborate(self, platform):
        m = Module()
        g, prog = self.g, self.contents
        nb, aw = g.banks, g.act_aw

        hw = self.host_write
        blocks = {
            "seq": (seq := Sequencer(g, prog.desc_words, prog.chan_words, host_write=hw)),
            "wdec": (wdec := WeightDecoder(g, prog.weight_words, host_write=hw)),
            "abuf": (abuf := ActBuffer(g)),
            "mac": (mac := MacArray(g)),
            "ostage": (ostage := OutputStage(g, prog.param_words, host_write=hw)),
        }
        lutram = {"ram_style": "distributed"} if input_in_lutram(prog) else None
        m.submodules.inmem = inmem = Memory(shape=unsigned(8 * nb), depth=max(2, len(prog.input_words)),
                                            init=prog.input_words, attrs=read_write_disjoint(hw, lutram))
        in_rd = inmem.read_port()
        if hw:      # host writes, registered twice: one memory at a time, selected by wr_mem (HOST_MEMS order); then
            # the address and data in a copy per memory (kept apart: REPLICA), so neither the link's logic nor one
            # register has to reach every memory's write port across the die (both were on the 85F's late list
            # at 32 lanes)
            in_wr = inmem.write_port()
            ports = [seq.desc_wr, seq.chan_wr, ostage.wr, wdec.wr, in_wr]
            wr_sel, wr_sel2 = Signal(len(ports)), Signal(len(ports))
            wr_addr, wr_data = pipeline_register_like(self.wr_addr), pipeline_register_like(self.wr_data)
            m.d.sync += [wr_sel.eq(Cat(self.wr_en & (self.wr_mem == k) for k in range(len(ports)))),
                         wr_addr.eq(self.wr_addr), wr_data.eq(self.wr_data), wr_sel2.eq(wr_sel)]
            for k, (name, port) in enumerate(zip(HOST_MEMS, ports)):
                addr_copy = Signal(len(port.addr), name=f"wr_addr_{name}", attrs=REPLICA, reset_less=True)
                data_copy = Signal(len(port.data), name=f"wr_data_{name}", attrs=REPLICA, reset_less=True)
                m.d.sync += [addr_copy.eq(wr_addr), data_copy.eq(wr_data)]
                m.d.comb += [port.en.eq(wr_sel2[k]), port.addr.eq(addr_copy), port.data.eq(data_copy)]

        # command queue: the sequencer waits on its room; a pass's `last` leaves it only when the MAC
        # array's output register will be free (the output stage takes one pixel per cycle, or two: `drain2`)
        cl = cmd_layout(g)
        m.submodules.queue = queue = SyncFIFO(width=cl.size, depth=QUEUE_DEPTH)
        # (hand-wired: the queue's streams carry plain bits, the command stream a layout)
        q_in, q_out = queue.w_stream, queue.r_stream
        head = cl(q_out.payload)
        gap = Signal(range(g.lanes + 1))        # cycles until a `last` may leave, plus one
        gap_zero = Signal(init=1)               # a `last` may leave: gap <= 1, registered with it (no compare and
                                                # no subtraction in gap's loop, through the queue's read)
        release = Signal()
        m.d.comb += [release.eq(q_out.valid & (~head.last | gap_zero)), q_out.ready.eq(release),
                     wdec.i.valid.eq(release), wdec.i.payload.eq(head)]
        # the sequencer sees the queue's room from a register: the room the queue's level will leave next
        # cycle (this cycle's write and release applied), equal to the queue's own `w_rdy` then, so nothing
        # changes but the fanout (its compare drove the clock enable of every sequencer register)
        room = Signal(init=1)
        written = q_in.valid & q_in.ready
        m.d.sync += room.eq(Mux(written & ~release, queue.level != QUEUE_DEPTH - 1,
                                Mux(release & ~written, 1, queue.level != QUEUE_DEPTH)))
        m.d.comb += [q_in.valid.eq(seq.cmd.valid), q_in.payload.eq(seq.cmd.payload), seq.cmd.ready.eq(room)]
        with m.If(release & head.last):
            m.d.sync += [gap.eq(head.ctx.ndrain), gap_zero.eq(head.ctx.ndrain == 1)]
        with m.Elif(~gap_zero):
            m.d.sync += [gap.eq(gap - 1), gap_zero.eq(gap == 2)]

        wiring.connect(m, wdec.o, abuf.i)
        wiring.connect(m, abuf.o, mac.i)
        wiring.connect(m, mac.o, ostage.i)
        # each block gets its own registered copy of the layer descriptor (static while a layer runs; the
        # first command reaches a block several cycles after the descriptor is latched): local fanout
        for name, block in (("wdec", wdec), ("abuf", abuf), ("ostage", ostage)):
            cfg = pipeline_register_like(seq.cfg, name=f"cfg_{name}")
            m.d.sync += cfg.eq(seq.cfg)
            m.d.comb += block.cfg.eq(cfg)
        m.d.comb += [
                     ostage.clear.eq(seq.clear), seq.start.eq(self.start), seq.sample.eq(self.sample),
                     self.done.eq(seq.done), self.busy.eq(seq.busy | seq.checking),
                     self.fault.eq(seq.fault), self.fault_layer.eq(seq.fault_layer)]
        # registered: the OR over every stage's valid flags would otherwise feed the sequencer's state register
        m.d.sync += seq.pipe_idle.eq(~(q_out.valid | wdec.busy | abuf.busy | mac.busy | ostage.busy))

        # input load: sequencer address -> input memory -> [registered twice] -> all banks, the input's region
        # (tensor 0 is always at base 0: hw/engine/regions.py)
        load_v = Signal()
        load_v2 = Signal()
        load_v3 = Signal()
        load_i = pipeline_register(aw)
        load_i2 = pipeline_register(aw)
        load_data = pipeline_register(8 * nb)
        load_data3 = pipeline_register(8 * nb)
        m.d.sync += [load_v.eq(seq.load_en), load_i.eq(seq.load_index),
                     load_v2.eq(load_v), load_i2.eq(load_i), load_data.eq(in_rd.data),
                     load_v3.eq(load_v2), load_data3.eq(load_data)]
        m.d.comb += in_rd.addr.eq(seq.load_addr)
        # the banks' write address, data and masks choose between the load and the output stage by their own copy
        # of the load's flag and address, one per BANKS_PER_WRITE_COPY banks, as the output stage's writes come
        # (kept apart: REPLICA; one copy reached every bank's write data across the die: on the 85F's late list
        # at 32 lanes)
        load_sel = replicas(g.write_copies, name="input_load_copy")
        load_at = replicas(g.write_copies, aw, name="input_load_addr", reset_less=True)
        m.d.sync += [*(copy.eq(load_v2) for copy in load_sel), *(copy.eq(load_i2) for copy in load_at)]
        wr = abuf.wr.payload
        ow = ostage.o.payload
        m.d.comb += abuf.wr.valid.eq(load_v3 | ostage.o.valid)
        m.d.comb += [wr.addr[k].eq(Mux(load_sel[k], load_at[k], ow.addr[k])) for k in range(g.write_copies)]
        for b in range(nb):
            k = b // BANKS_PER_WRITE_COPY
            m.d.comb += [wr.data[b].eq(Mux(load_sel[k], load_data3[8 * b:8 * b + 8], ow.data[k])),
                         wr.mask[b].eq(load_sel[k] | ow.hit[b])]
        wiring.connect(m, ostage.o2, abuf.wr2)

        # ---- counters, signatures, results
        n_layers = g.n_layers
        totals = {n: Signal(32, name=f"total_{n}") for n in TOTAL_COUNTERS}
        per_layer = [{n: Signal(32, name=f"layer{i}_{n}") for n in LAYER_COUNTERS} for i in range(n_layers)]
        results = [Signal(8, name=f"result{k}") for k in range(g.n_results)]

        # lanes doing useful work in a MAC-array cycle (the lanes' nonzero weights and the pass's valid rectangle,
        # the lane flags, their count per group of LANES_PER_COUNT lanes, the sum; each registered): lane
        # j = jy * Tx + jx is inside the pass's valid rectangle vx x vy (its jx, jy per layer: registered)
        active = Signal(range(g.lanes + 1))
        lane_bits = Signal(g.lanes)
        active_v0 = Signal()
        active_v1 = Signal()
        active_v2 = Signal()
        active_v = Signal()
        mi = mac.i.payload
        # (from their own copy of the tile width, kept apart: REPLICA; read from the descriptor, they had merged
        # with the output stage's and the activation buffer's equal per-lane values: 85F, 32 lanes)
        activity_tlx = Signal.like(seq.cfg.tlx, name="activity_tlx", attrs=REPLICA, reset_less=True)
        m.d.sync += activity_tlx.eq(seq.cfg.tlx)
        lane_x = [pipeline_register(range(g.lanes), name=f"lane_x{j}") for j in range(g.lanes)]
        lane_y = [pipeline_register(range(g.lanes), name=f"lane_y{j}") for j in range(g.lanes)]
        for j in range(g.lanes):
            m.d.sync += [lane_x[j].eq(j & ((1 << activity_tlx) - 1)), lane_y[j].eq(j >> activity_tlx)]
        nonzero = pipeline_register(g.lanes)
        rect = pipeline_register(data.StructLayout({"vx": len(mi.ctx.vx), "vy": len(mi.ctx.vy)}))
        m.d.sync += [nonzero.eq(Cat(mi.w[j] != 0 for j in range(g.lanes))), rect.vx.eq(mi.ctx.vx),
                     rect.vy.eq(mi.ctx.vy),
                     lane_bits.eq(nonzero & Cat((rect.vx > lane_x[j]) & (rect.vy > lane_y[j]) for j in range(g.lanes))),
                     active_v0.eq(mac.i.valid), active_v1.eq(active_v0), active_v2.eq(active_v1),
                     active_v.eq(active_v2)]
        groups = range(0, g.lanes, LANES_PER_COUNT)
        counts = [pipeline_register(range(LANES_PER_COUNT + 1), name=f"active_group{i}") for i in range(len(groups))]
        m.d.sync += [c.eq(sum(lane_bits[k:k + LANES_PER_COUNT])) for c, k in zip(counts, groups)]
        m.d.sync += active.eq(sum(counts))
        mac_fire = active_v

        # the output stage's writes as the signatures see them: each write's 32-bit word (data, bank or 0xFF for
        # every bank, address), registered
        out_v = Signal()
        out2_v = Signal()
        word = pipeline_register(32)
        word2 = pipeline_register(32)
        ow2 = ostage.o2.payload
        m.d.sync += [out_v.eq(ostage.o.valid), word.eq(Cat(ow.data[0], Mux(ow.bcast, 0xFF, ow.bank), ow.addr[0])),
                     out2_v.eq(ostage.o2.valid),
                     word2.eq(Cat(ow2.data[0], ow2.bank, Const(0, 8 - len(ow2.bank)), ow2.addr[0]))]

        # the sequencer's command and stall flags, registered: they come from its issue logic, and every counter of
        # the layer enables on them (a layer's issue ends cycles before it drains, so the counts end the same)
        issued = Signal()
        stalled = Signal()
        m.d.sync += [issued.eq(seq.cmd.valid & seq.cmd.ready), stalled.eq(seq.stall)]

        with m.If(self.start & ~seq.busy):
            for sig in totals.values():
                m.d.sync += sig.eq(0)
            for counters in per_layer:
                for sig in counters.values():
                    m.d.sync += sig.eq(0)
        with m.Elif(seq.busy):
            m.d.sync += totals["cycles"].eq(totals["cycles"] + 1)
            with m.If(seq.load_en):
                m.d.sync += totals["load_cycles"].eq(totals["load_cycles"] + 1)
            with m.If(stalled):
                m.d.sync += totals["stalls"].eq(totals["stalls"] + 1)
            with m.If(issued):
                m.d.sync += totals["issued"].eq(totals["issued"] + 1)
            with m.If(mac_fire):
                m.d.sync += totals["active"].eq(totals["active"] + active)
            for i, c in enumerate(per_layer):
                with m.If(seq.layer_hot[i]):
                    with m.If(seq.in_layer):
                        m.d.sync += c["cycles"].eq(c["cycles"] + 1)
                    with m.If(stalled):
                        m.d.sync += c["stalls"].eq(c["stalls"] + 1)
                    with m.If(issued):
                        m.d.sync += c["issued"].eq(c["issued"] + 1)
                    with m.If(mac_fire):
                        m.d.sync += c["active"].eq(c["active"] + active)
                    # the writes in order: `o`'s, then `o2`'s (its pixel is the next one)
                    sig = c["signature"]
                    after = Signal(32, name=f"layer{i}_sig_after")
                    m.d.comb += after.eq(Mux(out_v, rotl(sig) ^ word, sig))
                    with m.If(out2_v):
                        m.d.sync += sig.eq(rotl(after) ^ word2)
                    with m.Elif(out_v):
                        m.d.sync += sig.eq(after)
        # the layer marked `last` in its descriptor, not the geometry's final slot: a device built for more
        # layers than the loaded image holds keeps the previous image's descriptors beyond it
        last = Signal()
        m.d.comb += last.eq(seq.cfg.last)
        # result k is the byte written to address out_base + k of the last layer's output region (all of the
        # address compared: a map smaller than the result registers writes fewer of them). The addresses are
        # per-layer constants (registered), so the output stage's write is compared with registers and the
        # capture enables are registered with the byte: no subtraction, and decode and capture in their own cycles
        targets = [pipeline_register(aw, name=f"result{k}_addr") for k in range(g.n_results)]
        m.d.sync += [targets[k].eq(seq.cfg.out_base + k) for k in range(g.n_results)]
        capture = Signal(g.n_results)
        captured = pipeline_register(8)
        m.d.sync += [captured.eq(ow.data[0]),
                     capture.eq(Cat(ostage.o.valid & last & (ow.addr[0] == targets[k])
                                    for k in range(g.n_results)))]
        for k in range(g.n_results):
            with m.If(capture[k]):
                m.d.sync += results[k].eq(captured)

        regs = [totals[n] for n in TOTAL_COUNTERS]
        for c in per_layer:
            regs += [c[n] for n in LAYER_COUNTERS]
        regs += results
        # the debug read in three registered stages (one stage over every counter, then two, were the 85F's
        # critical path): a word of each group of 8 by the select's bits 0-2, of each 4 groups by bits 3-4, then
        # the rest by the high bits (the host reads it well after: hw/link/executor.py)
        picked = [pipeline_register(32, name=f"dbg_group{i}") for i in range(-(-len(regs) // 8))]
        picked2 = [pipeline_register(32, name=f"dbg_quad{i}") for i in range(-(-len(picked) // 4))]
        sel2 = pipeline_register(8 - 3)
        sel3 = pipeline_register(8 - 5)
        m.d.sync += [*(reg.eq(Array(regs[8 * i:8 * i + 8])[self.dbg_sel[:3]]) for i, reg in enumerate(picked)),
                     *(reg.eq(Array(picked[4 * i:4 * i + 4])[sel2[:2]]) for i, reg in enumerate(picked2)),
                     sel2.eq(self.dbg_sel[3:]), sel3.eq(sel2[2:]), self.dbg_data.eq(Array(picked2)[sel3])]
        if not hw:
            for name, block in blocks.items():
                m.submodules[name] = block
            return m
        # abort (the link's watchdog, RESET; a host-loaded engine is the one behind a link): every register
        # back to its reset value a cycle later, the memories keep what the host loaded. Each block resets
        # from its own registered copy of `abort`, kept a copy through synthesis (one flip-flop driving every
        # register's reset was the 85F's critical path)
        top = Module()
        for name, block in (*blocks.items(), ("core", m)):
            top.submodules[name] = reset_from_copy(top, self.abort, block, name=f"abort_{name}")
        return top

