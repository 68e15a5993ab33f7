"""Layer sequencer: runs every layer of the program from on-chip memories with no host involvement.

On ``start`` it first checks every layer descriptor, up to the one marked ``last`` (4 cycles a layer):
one that could never finish (``n_outer = 0``; a conv layer with ``ho = 0`` or ``wo = 0``; an fc layer with
``n_out = 0``; no ``last`` layer within the descriptor memory — what an unloaded or partly loaded device
holds) refuses the run: ``fault`` rises with ``fault_layer`` = its index, and the sequencer is idle again
(``checking`` meanwhile, not ``busy``: the counters see only the run). Then it copies sample ``sample`` from the input memory into the activation buffer
(``load_*`` outputs, one wide word per cycle; the input's region starts at 0), then for each layer descriptor: reads it (2 cycles), and
walks the passes. A conv layer walks ``for co: for oy in 0, Ty, ..: for x0 in 0, Tx, ..``: one pass per
tile of ``Ty x Tx`` output pixels (the descriptor's ``tlx``, ``tly``; the last tile of a row / of the map
is cut to its valid rectangle ``vx x vy``), issuing the ``count(co)`` nonzero elements of channel ``co``
(one command per cycle while ``cmd.ready``, the command queue's room); an fc layer walks its rounds (one pass per round of P neurons,
``L_r`` commands). Reading the channel table costs two cycles per output channel / round (address, then
the registered entry: no memory output feeds the command logic directly). A pass with no nonzero weight issues one ``zero``
command so the output stage still writes ``requant(bias)``. After a layer's last command it waits for
the pipeline to drain (``pipe_idle``) and goes on (each descriptor names the regions it reads and writes);
after the last layer ``done`` rises (and stays high until the next ``start``).
"""
from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sparsegate.hw.engine.dsp_multiplier import DspMultiplier
from sparsegate.hw.engine.layouts import (DIM_BITS, EngineGeometry, chan_layout, cmd_layout, desc_layout,
                                          mem_write_signature)
from sparsegate.hw.platform.memory_hints import read_write_disjoint

__all__ = ["Sequencer"]


class Sequencer(wiring.Component):
    """Layer/pass/element walker. Memories: layer descriptors and the channel/round table (initialised).

    Members
    -------
    start, sample : ``In``
        Pulse ``start`` to run input slot ``sample``.
    busy, done : ``Out(1)``
        Running (input load .. last layer drained; a flip-flop set and cleared with the FSM's state, so the
        counters' enables hang off it directly); the last layer is written.
    checking : ``Out(1)``
        The descriptors are being checked (before ``busy``).
    fault, fault_layer : ``Out``
        The last ``start`` was refused: descriptor ``fault_layer`` cannot run (cleared by ``start``).
    cfg : ``Out(desc_layout)``
        The current layer's descriptor, for the datapath blocks.
    cmd : ``Out(stream.Signature(cmd_layout))``
        Element commands into the engine's queue (``cmd.ready``: the queue's room).
    pipe_idle : ``In(1)``
        The datapath had drained in the previous cycle (registered; a layer ends only then).
    clear : ``Out(1)``
        One-cycle pulse when a layer's descriptor is latched.
    layer, in_layer : ``Out``
        The current layer's index; it is running (descriptor read .. drained; a flip-flop, like ``busy``).
    layer_hot : ``Out(n_layers)``
        The current layer one-hot (bit i: layer i), set with ``layer``: the per-layer counters' enables are
        flip-flops, not compares of ``layer`` (one was the 85F's critical path at 125 MHz).
    load_en, load_addr, load_index : ``Out``
        The input load: input memory address and activation index of each word.
    stall : ``Out(1)``
        A command is offered but not accepted.
    desc_wr, chan_wr : ``In(mem_write_signature(...))``
        ``host_write=True`` only: writes into the descriptor and channel-table memories.
    """

    def __init__(self, geometry: EngineGeometry, desc_words, chan_words, host_write: bool = False):
        self.g = g = geometry
        self.desc_words = list(desc_words)
        self.chan_words = list(chan_words)
        self.host_write = host_write
        extra = {}
        if host_write:      # run-time loading of the descriptors and the channel table
            extra = {"desc_wr": In(mem_write_signature(desc_layout(g).size, max(2, len(self.desc_words)))),
                     "chan_wr": In(mem_write_signature(chan_layout(g).size, g.chan_depth))}
        super().__init__({**extra,
            "start": In(1),
            "sample": In(16),
            "done": Out(1),
            "busy": Out(1),
            "checking": Out(1),
            "fault": Out(1),
            "fault_layer": Out(8),
            "cfg": Out(desc_layout(g)),
            "cmd": Out(stream.Signature(cmd_layout(g))),
            "pipe_idle": In(1),
            "clear": Out(1),
            "layer": Out(8),
            "layer_hot": Out(max(1, g.n_layers)),
            "in_layer": Out(1),
            "load_en": Out(1),
            "load_addr": Out(range(max(2, g.input_depth * g.n_samples))),
            "load_index": Out(range(max(2, g.input_depth))),
            "stall": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        g = self.g
        p, lg = g.lanes, g.lg_lanes
        dl, cl = desc_layout(g), chan_layout(g)

        desc_depth = max(2, len(self.desc_words))
        hints = read_write_disjoint(self.host_write)
        m.submodules.desc_mem = desc_mem = Memory(shape=unsigned(dl.size), depth=desc_depth,
                                                  init=self.desc_words, attrs=hints)
        m.submodules.chan_mem = chan_mem = Memory(shape=unsigned(cl.size), depth=g.chan_depth,
                                                  init=self.chan_words, attrs=hints)
        desc_rd = desc_mem.read_port()
        chan_rd = chan_mem.read_port()
        if self.host_write:
            for mem, port in ((desc_mem, self.desc_wr), (chan_mem, self.chan_wr)):
                wp = mem.write_port()
                m.d.comb += [wp.en.eq(port.en), wp.addr.eq(port.addr), wp.data.eq(port.data)]
        chan = cl(chan_rd.data)
        # the entry registered every cycle, reset-less: the build moves it into the DP16KD (bram_outreg.py)
        chan_q = Signal(cl, reset_less=True)
        m.d.sync += chan_q.eq(chan)

        cfg = Signal(dl)
        m.d.comb += self.cfg.eq(cfg)

        # the sample's first input-memory word: a registered product (DSP registers on ECP5), ready long
        # before the descriptor check ends (4 cycles a layer), so no multiplier sits between `start` and LOAD
        m.submodules.sample_base = sample_base = DspMultiplier(
            unsigned(max(1, (g.n_samples - 1).bit_length())), unsigned(max(1, g.input_depth.bit_length())))
        m.d.comb += [sample_base.a.eq(self.sample), sample_base.b.eq(g.input_depth)]

        layer = Signal(8)
        layer_hot = Signal(max(1, g.n_layers), init=1)     # `layer` one-hot
        load_ptr = Signal(range(max(2, g.input_depth * g.n_samples)))   # input-memory word being copied
        load_i = Signal(range(max(2, g.input_depth)))
        outer = Signal(16)          # conv: output channel; fc: round
        oy = Signal(10)
        x0 = Signal(10)
        count = Signal(len(chan.count))     # the current channel-table entry, registered
        start = Signal(len(chan.start))
        ptr = Signal(len(chan.start))       # slot address of the next element, unless `fresh`
        fresh = Signal()                    # the next element is the pass's first: its address is `start`
        cur = Signal(len(chan.start))       # (so the channel table's block-RAM output only loads registers)
        m.d.comb += cur.eq(Mux(fresh, start, ptr))
        left = Signal(len(chan.count))      # the pass's elements after the next one (count - 1 - its index)
        count_m1 = Signal(len(chan.count))  # count - 1: `left` at a pass's start
        scan = Signal(8)            # the descriptor being checked
        chk = Signal(dl)            # its registered copy
        bad = Signal(5)             # why it cannot run, one flag per test (compares of registers with constants),
        bad_r = Signal(5)           # registered apart and ORed only where SCAN4 judges them
        m.d.comb += [self.layer.eq(layer), self.layer_hot.eq(layer_hot), desc_rd.addr.eq(Mux(self.checking, scan, layer)),
                     chan_rd.addr.eq(cfg.chan_base + outer)]
        m.d.comb += bad.eq(Cat(chk.n_outer == 0, chk.fc & (chk.n_out == 0), ~chk.fc & (chk.ho == 0),
                               ~chk.fc & (chk.wo == 0), ~chk.last & (scan == desc_depth - 1)))

        # the ISSUE state's decisions, registered one command ahead (set where their inputs change) so the
        # FSM's next state and the counters' enables hang off flip-flops, not off adders and compares; the
        # channel table's entry is latched into `count` with its `count <= 1` zero test beside it
        last_elem = Signal()                # the next command ends its pass: count <= 1 or left == 0
        count_le1 = Signal()                # count <= 1 (set with count)
        # the pass is in the last tile column / row band (x0 + Tx >= wo; oy + Ty >= ho), kept by down-counters of
        # the tiles left after it (compared with 1, not a sum with wo); the last channel
        last_x = Signal()
        last_y = Signal()
        last_outer = Signal()
        x_left = Signal(DIM_BITS)
        y_left = Signal(DIM_BITS)
        x_left_1 = Signal()                 # x_left == 1, y_left == 1: set with them (no compare in front of
        y_left_1 = Signal()                 # the tile flags)
        # per-layer constants of the tile, registered from the descriptor (static while a layer runs; valid
        # from CHAN2 of the layer's first channel, those derived from them from CHAN3): Tx, Ty, their masks,
        # the tiles per row / column less one, whether there is one only, the channel / round count less one
        tx = Signal(range(p + 1))
        ty = Signal(range(p + 1))
        x_mask = Signal(lg + 1)
        y_mask = Signal(lg + 1)
        wo_m1 = Signal(DIM_BITS)
        ho_m1 = Signal(DIM_BITS)
        x_tiles_m1 = Signal(DIM_BITS)
        y_tiles_m1 = Signal(DIM_BITS)
        one_col = Signal()
        one_row = Signal()
        x_tiles_2 = Signal()                # x_tiles_m1 == 1, y_tiles_m1 == 1 (valid from ISSUE): the flags above
        y_tiles_2 = Signal()                # when a pass's end starts a row / channel
        outer_m1 = Signal(len(outer))
        m.d.sync += [tx.eq(1 << cfg.tlx), ty.eq(1 << cfg.tly), x_mask.eq((1 << cfg.tlx) - 1),
                     y_mask.eq((1 << cfg.tly) - 1), wo_m1.eq(cfg.wo - 1), ho_m1.eq(cfg.ho - 1),
                     x_tiles_m1.eq(wo_m1 >> cfg.tlx), y_tiles_m1.eq(ho_m1 >> cfg.tly),
                     one_col.eq(cfg.wo <= tx), one_row.eq(cfg.ho <= ty), outer_m1.eq(cfg.n_outer - 1),
                     x_tiles_2.eq(x_tiles_m1 == 1), y_tiles_2.eq(y_tiles_m1 == 1)]
        # the valid rectangles of the last column tile / last row band, with the pixel counts of the four kinds
        # of pass (set in CHAN2, CHAN3; the corner's vx * vy comes with the descriptor: no multiplier)
        vx_last = Signal(range(p + 1))
        vy_last = Signal(range(p + 1))
        n_ll = Signal(range(p + 1))
        n_lf = Signal(range(p + 1))
        n_fl = Signal(range(p + 1))
        vx = Signal(range(p + 1))
        vy = Signal(range(p + 1))
        nvalid = Signal(g.nvalid_bits)
        # the output stage's cycles for each kind of pass when it drains two a cycle (`drain2`): ceil(vx / 2)
        # a tile row
        d_ll = Signal(range(p + 1))
        d_lf = Signal(range(p + 1))
        d_fl = Signal(range(p + 1))
        ndrain = Signal(g.nvalid_bits)
        # an fc round's neurons, min(P, n_out - round * P): registered over CHAN (the rest) and CHAN3 (the
        # minimum), not computed in ISSUE, where its two carry chains fed the command queue's write data
        rest = Signal(18)
        fc_nvalid = Signal(g.nvalid_bits)
        with m.If(cfg.fc):
            m.d.comb += [nvalid.eq(fc_nvalid), vx.eq(nvalid), vy.eq(1)]
        with m.Else():
            m.d.comb += [vx.eq(Mux(last_x, vx_last, tx)), vy.eq(Mux(last_y, vy_last, ty)),
                         nvalid.eq(Mux(last_x, Mux(last_y, n_ll, n_lf), Mux(last_y, n_fl, p)))]
        m.d.comb += ndrain.eq(Mux(cfg.drain2, Mux(last_x, Mux(last_y, d_ll, d_lf), Mux(last_y, d_fl, p // 2)),
                                  nvalid))

        # the input memory's read address straight from a register (a LUT-RAM input memory reads it
        # combinationally: no FSM decode in front of it); only `load_en` says when the word is used
        m.d.comb += self.load_addr.eq(load_ptr)
        # the output stage walker's first decisions: a row's first cycle takes two pixels when it drains two a
        # cycle and the row has two
        dual = cfg.drain2 if g.ways == 2 else 0
        start_pair = Signal()
        m.d.comb += start_pair.eq(dual & (vx > 1))
        # the command's fields, driven in every state (only `valid` waits for ISSUE): not gated by the FSM's
        # state decode, which would otherwise fan out to every bit of the queue's write data
        m.d.comb += [
            self.cmd.payload.waddr.eq(Mux(cfg.fc, cur, cur >> lg)),
            self.cmd.payload.zero.eq(count == 0),
            self.cmd.payload.first.eq(fresh),
            self.cmd.payload.last.eq(last_elem),
            self.cmd.payload.ctx.tile.eq(outer),
            self.cmd.payload.ctx.oy.eq(oy),
            self.cmd.payload.ctx.x0.eq(x0),
            self.cmd.payload.ctx.nvalid.eq(nvalid),
            self.cmd.payload.ctx.vx.eq(vx),
            self.cmd.payload.ctx.vy.eq(vy),
            self.cmd.payload.ctx.ndrain.eq(ndrain),
            self.cmd.payload.ctx.start_pair.eq(start_pair),
            self.cmd.payload.ctx.start_row_end.eq(Mux(dual, vx <= 2, vx <= 1)),
            self.cmd.payload.ctx.start_last.eq(Mux(start_pair, nvalid <= 2, nvalid <= 1)),
        ]
        if lg:
            m.d.comb += self.cmd.payload.slot.eq(Mux(cfg.fc, 0, cur[:lg]))
        # in ISSUE, as a flip-flop set and cleared with the state's transitions: the command's `valid` (the
        # queue's write enable, into its LUT RAM) comes from one register, not the state decode
        issuing = Signal()
        m.d.comb += self.cmd.valid.eq(issuing)

        # ISSUE's counters, outside the FSM: each step is `issuing & cmd.ready & last_elem & <a flag>`, one LUT4
        # of flip-flops. The flags say what the pass's end does (next tile column, next row band, next channel)
        # and are set wherever `last_x` / `last_y` change. Written as nested decisions, the enables had grown
        # into a chain of four LUTs from the queue's room across the sequencer (85F, 9.0 ns at 125 MHz).
        x_next = Signal()           # conv, not the last tile column: the pass's end moves right
        row_next = Signal()         # conv, the last column but not the last row band: down a band
        chan_next = Signal()        # fc, or the last tile of the channel: the next channel / round
        row_end = Signal()          # conv, the last column (x goes back to 0)

        def set_tile_flags(lx, ly):
            m.d.sync += [last_x.eq(lx), last_y.eq(ly), x_next.eq(~cfg.fc & ~lx), row_end.eq(~cfg.fc & lx),
                         row_next.eq(~cfg.fc & lx & ~ly), chan_next.eq(cfg.fc | (lx & ly))]

        advance = issuing & self.cmd.ready
        step, pass_end = advance & ~last_elem, advance & last_elem
        chan_end = pass_end & chan_next
        # (a step means count >= 2: `last_elem` holds whenever `count_le1` does; the next command is the last
        # when one element is left after the current one: a compare of a register with a constant, no adder)
        with m.If(step):
            m.d.sync += [left.eq(left - 1), ptr.eq(cur + 1), fresh.eq(0), last_elem.eq(left == 1)]
        with m.If(pass_end):        # the next pass of this channel re-walks it
            m.d.sync += [left.eq(count_m1), fresh.eq(1), last_elem.eq(count_le1)]
        # the tile column after a conv pass's end: right, or (the last column) back to the left; one enable with
        # the tile flags' (below), the choice by `last_x` (two enables had put a priority chain from the queue's
        # room in front of `x_left`: 85F, 32 lanes)
        with m.If(pass_end & ~cfg.fc):
            m.d.sync += [x0.eq(Mux(last_x, 0, x0 + tx)), x_left.eq(Mux(last_x, x_tiles_m1, x_left - 1)),
                         x_left_1.eq(Mux(last_x, x_tiles_2, x_left == 2))]
        # the row band after a row's last pass: down one, or (the last band: the channel's end) back to the top;
        # one enable, the choice by `last_y` (two enables, one through `chan_next`, had put a priority chain in
        # front of `oy`, `y_left`: 85F, 32 lanes)
        with m.If(pass_end & row_end):
            m.d.sync += [oy.eq(Mux(last_y, 0, oy + ty)), y_left.eq(Mux(last_y, y_tiles_m1, y_left - 1)),
                         y_left_1.eq(Mux(last_y, y_tiles_2, y_left == 2))]
        with m.If(chan_end):
            m.d.sync += [outer.eq(outer + 1), issuing.eq(0)]
        # the flags after a conv pass's end (right, down a band, or the channel's first tile), chosen from flip-flops
        # only: their enable is one LUT of `issuing`, the room, `last_elem` and fc (three enables, each with its
        # own flags, had made a priority chain from the room to the flags: 85F, 16 lanes)
        flags_lx, flags_ly = Signal(), Signal()
        m.d.comb += [flags_lx.eq(Mux(x_next, x_left_1, one_col)),
                     flags_ly.eq(Mux(x_next, last_y, Mux(row_next, y_left_1, one_row)))]
        with m.If(pass_end & ~cfg.fc):
            set_tile_flags(flags_lx, flags_ly)

        desc_latch, chan_latch = Signal(), Signal()
        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [load_i.eq(0), layer.eq(0), layer_hot.eq(1), self.done.eq(0), scan.eq(0),
                                 self.fault.eq(0)]
                    m.next = "SCAN"
            with m.State("SCAN"):           # descriptor `scan` presented
                m.d.comb += self.checking.eq(1)
                m.next = "SCAN2"
            with m.State("SCAN2"):          # its data: registered
                m.d.comb += self.checking.eq(1)
                m.d.sync += chk.eq(desc_rd.data)
                m.next = "SCAN3"
            with m.State("SCAN3"):          # its verdict, registered (compares of several fields, then the FSM)
                m.d.comb += self.checking.eq(1)
                m.d.sync += bad_r.eq(bad)
                m.next = "SCAN4"
            with m.State("SCAN4"):          # judge it
                m.d.comb += self.checking.eq(1)
                with m.If(bad_r.any()):
                    m.d.sync += [self.fault.eq(1), self.fault_layer.eq(scan)]
                    m.next = "IDLE"
                with m.Elif(chk.last):
                    m.d.sync += [load_ptr.eq(sample_base.p), self.busy.eq(1)]
                    m.next = "LOAD"
                with m.Else():
                    m.d.sync += scan.eq(scan + 1)
                    m.next = "SCAN"
            with m.State("LOAD"):
                m.d.comb += [self.load_en.eq(1), self.load_index.eq(load_i)]
                m.d.sync += [load_i.eq(load_i + 1), load_ptr.eq(load_ptr + 1)]
                with m.If(load_i == g.input_depth - 1):
                    m.d.sync += self.in_layer.eq(1)
                    m.next = "DESC"
            with m.State("DESC"):           # descriptor address presented
                m.next = "DESC2"
            with m.State("DESC2"):          # descriptor data available (latched: `desc_latch` below)
                m.next = "CHAN"
            with m.State("CHAN"):           # channel-table address presented
                m.next = "CHAN2"
            # CHAN2: the channel-table entry is available, into `chan_q` only (a block RAM's output is too slow
            # to feed logic at speed)
            with m.State("CHAN2"):
                m.d.sync += [last_outer.eq(outer == outer_m1), rest.eq(cfg.n_out - (outer << lg)),
                             vx_last.eq((wo_m1 & x_mask) + 1), vy_last.eq((ho_m1 & y_mask) + 1)]
                m.next = "CHAN3"
            with m.State("CHAN3"):          # the entry, registered (latched: `chan_latch` below)
                m.next = "ISSUE"
            with m.State("ISSUE"):
                m.d.comb += self.stall.eq(~self.cmd.ready)
                with m.If(chan_end):
                    with m.If(last_outer):
                        m.next = "DRAIN0"
                    with m.Else():
                        m.next = "CHAN"
            with m.State("DRAIN0"):         # `pipe_idle` (registered) does not yet see the last command
                m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(self.pipe_idle):
                    m.d.sync += [layer.eq(layer + 1), layer_hot.eq(layer_hot << 1)]
                    with m.If(cfg.last):
                        m.d.sync += [self.done.eq(1), self.busy.eq(0), self.in_layer.eq(0)]
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "DESC"

        # DESC2 and CHAN3 latch the descriptor and the channel-table entry, enabled by flip-flops set in the state
        # before (true in DESC2's / CHAN3's cycle), not by the state's decode: the registers they load are the
        # descriptor's fields and ISSUE's counters and flags, whose paths the decode lengthened (85F, 32 lanes)
        m.d.sync += [desc_latch.eq(fsm.ongoing("DESC")), chan_latch.eq(fsm.ongoing("CHAN2"))]
        with m.If(desc_latch):
            m.d.sync += [cfg.eq(desc_rd.data), outer.eq(0), oy.eq(0), x0.eq(0)]
            m.d.comb += self.clear.eq(1)
        # CHAN3: the entry, registered: latch it and what follows from it (x0 = oy = 0)
        with m.If(chan_latch):
            set_tile_flags(one_col, one_row)
            m.d.sync += [x_left.eq(x_tiles_m1), y_left.eq(y_tiles_m1), x_left_1.eq(x_tiles_m1 == 1),
                         y_left_1.eq(y_tiles_m1 == 1)]  # (x_tiles_2, y_tiles_2 are valid from ISSUE)
            m.d.sync += [count.eq(chan_q.count), count_le1.eq(chan_q.count[1:] == 0), start.eq(chan_q.start),
                         count_m1.eq(chan_q.count - 1), left.eq(chan_q.count - 1),
                         fresh.eq(1), last_elem.eq(chan_q.count[1:] == 0),
                         fc_nvalid.eq(Mux(rest >= p, p, rest)),
                         n_ll.eq(cfg.n_corner), n_lf.eq(vx_last << cfg.tly), n_fl.eq(vy_last << cfg.tlx),
                         d_ll.eq(cfg.d_corner), d_lf.eq(((vx_last + 1) >> 1) << cfg.tly),
                         d_fl.eq((vy_last << cfg.tlx) >> 1)]
            m.d.sync += issuing.eq(1)
        return m
