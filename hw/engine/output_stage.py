"""Output stage: bias, requant, saturation, ReLU and the fused 2x2 max-pool, one or two accumulators per
cycle, written into the region of the activation buffer the descriptor names (``out_base``).

It drains a pass's P sums straight from the MAC array's output register, one pixel per cycle, or two
(pixels ``x``, ``x + 1``) when the layer's descriptor sets ``drain2`` and the engine has two pipelines
(``EngineGeometry.drains``): a second copy of the arithmetic below, sharing the parameter read (both pixels
belong to one output channel). It accepts the pass on its last pixel (pair), so back-to-back passes cost
their drain cycles each (``nvalid``, or ``ceil(nvalid / 2)``) and the MAC array accumulates the next pass
meanwhile. Two a cycle write two bytes into two different banks (adjacent columns of the next layer's conv
layout: ``o`` and ``o2``), or, pooled, combine the pair at once and write at most one; the compiler keeps
``drain2`` off where both writes would go to every bank (fc layers, unpooled outputs an fc layer reads).
It never stalls: ``o`` is ``always_ready`` (the activation buffer's
write port is always ready). Arithmetic is the golden model's (docs/arithmetic.md), one step per
register so every stage closes at 100 MHz on ECP5 (the 33 x 16-bit product is split into two
MULT18X18D-sized halves)::

    walk: lane's accumulator among its group of 8, parameter address -> [q0] -> the group's, parameter read
      -> [q1] -> [q2: parameters] -> acc + bias -> [q3: DSP operand regs]
      -> sum[17:] * mult, sum[:17] * mult -> [q4: DSP product regs] -> hi << 17 + lo -> [q5] -> + 2**(shift-1) -> [q6]
      -> >> 8 * (shift >> 3) -> [q6s] -> >> shift % 8 -> [q7] -> saturate, ReLU -> [q8]
      -> horizontal pool's compares -> [p8]
      -> horizontal pool's select, address fields -> [q9]
      -> vertical pool's compare (row register, read into q9), address -> [q10] -> value select -> [o: write]

A pass is a tile of ``vy`` rows x ``vx`` columns (hw/engine/tiling.py): it drains row by row, pixel
``(jy, jx)`` from lane ``jy * Tx + jx`` at ``(oy + jy, x0 + jx)`` (two a cycle: ``jx`` and ``jx + 1``).
Pooling: each tile row walks left to right from an even ``x0``, so pixel ``x`` keeps ``max`` with its left
neighbour (``x`` even holds, ``x`` odd combines; two a cycle, the pair arrives together); on even rows the
pair maximum goes into a row register of ``pool_width`` entries indexed by pooled column, on odd rows it is
combined with it and written. Tiles of ``Ty >= 2`` rows start on even rows, so row ``2k`` of a tile drains
before row ``2k + 1`` and the pairs stay inside the tile; ``Ty = 1`` tiles walk the rows in order. Outputs go
to bank ``(px mod 2Tx') | (py mod Ty') << lg 2Tx'`` of the consumer's conv layout (``out_cx``, ``out_ry``),
or (``out_repl``) to every bank at the flat index: a running counter (conv, raster = flatten order) or the
slot's ``dest`` neuron (fc).
"""
from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sparsegate.hw.engine.dsp_multiplier import DspMultiplier
from sparsegate.hw.engine.layouts import (EngineGeometry, desc_layout, mac_out_layout, mem_write_signature, param_layout,
                             write_layout)
from sparsegate.hw.engine.pipeline_registers import pipeline_register, pipeline_register_like
from sparsegate.hw.platform.memory_hints import read_write_disjoint
from sparsegate.hw.platform.replicated_registers import REPLICA, replicas

__all__ = ["OutputStage", "LATENCY"]

#: Cycles from a pixel taken on ``i`` to its write on ``o`` (``o.valid``).
LATENCY = 14
#: Lanes whose accumulators the first step of the select chooses among (q0); the second picks the group.
GROUP = 8
GROUP_BITS = 3


class OutputStage(wiring.Component):
    """Bias, requantisation, ReLU and pooling, one or two pixels per cycle (module docstring: pipeline,
    pooling, two pipelines).

    Members
    -------
    cfg : ``In(desc_layout)``
        The running layer's descriptor (output layout, pooling, parameter base); set at least two cycles
        before the layer's first pass reaches ``i``.
    clear : ``In(1)``
        A new layer starts: reset the output counter and the pooling row.
    i : ``In(stream.Signature(mac_out_layout))``
        The MAC array's passes; one is accepted on its last pixel.
    o : ``Out(stream.Signature(write_layout), always_ready=True)``
        Activation writes into the layer's output region (never waits).
    o2 : ``Out(stream.Signature(write_layout), always_ready=True)``
        The second pixel's write when the layer drains two a cycle unpooled (always to another bank than
        ``o``'s write of the same cycle); idle otherwise.
    busy : ``Out(1)``
        Pixels in the pipeline.
    wr : ``In(mem_write_signature(...))``
        ``host_write=True`` only: writes into the parameter memory.
    """

    def __init__(self, geometry: EngineGeometry, param_words, host_write: bool = False):
        self.g = geometry
        self.param_words = list(param_words)
        self.host_write = host_write
        extra = {"wr": In(mem_write_signature(param_layout(geometry).size, geometry.param_depth))} \
            if host_write else {}
        super().__init__({**extra,
            "cfg": In(desc_layout(geometry)),
            "clear": In(1),
            "i": In(stream.Signature(mac_out_layout(geometry))),
            "o": Out(stream.Signature(write_layout(geometry), always_ready=True)),
            "o2": Out(stream.Signature(write_layout(geometry), always_ready=True)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        g = self.g
        p, lg, lgb, aw = g.lanes, g.lg_lanes, g.lg_banks, g.act_aw
        ways = g.ways
        cfg = self.cfg
        pl = param_layout(g)
        m.submodules.pmem = pmem = Memory(shape=unsigned(pl.size), depth=g.param_depth, init=self.param_words,
                                          attrs=read_write_disjoint(self.host_write))
        prd = pmem.read_port()
        if self.host_write:     # run-time loading of the output parameters
            wp = pmem.write_port()
            m.d.comb += [wp.en.eq(self.wr.en), wp.addr.eq(self.wr.addr), wp.data.eq(self.wr.data)]
        m.submodules.rowbuf = rowbuf = Memory(shape=signed(8), depth=max(2, g.pool_width), init=[])
        row_rd = rowbuf.read_port(domain="comb")
        row_wr = rowbuf.write_port()

        # ---- walker: the pass's valid rectangle in raster order within the tile: tile row `jy` (lanes from
        # jy * Tx), column `jx` (fc: vx = nvalid, one row: `jx` is the pixels taken before this cycle).
        # Two a cycle (`dual`): pixels jx and jx + 1 of a row (a row of odd vx ends on a lone pixel).
        # Each cycle makes three decisions: take two pixels (`pair`), end the row (`row_end`), end the pass
        # (`last_px`). Each is one of two flip-flops, chosen by `fresh` (a pass's first cycle, a flip-flop): the
        # context's (``start_*``, the sequencer's) on a pass's first cycle, else the walker's own, made a cycle
        # ahead from the pixels left in the row and the pass (down-counters, compared with constants: no adder or
        # comparator chain between the walker's registers), so the nets that reach every walker register leave one
        # LUT after flip-flops (the decisions' logic behind them was the 85F's late path at 125 MHz)
        # static while a layer runs: registered, one copy for the walker and one for the pooling
        # (kept apart: REPLICA; one flip-flop between the two sat far from the walker's loop)
        dual, pool_dual = Signal(name="dual", attrs=REPLICA), Signal(name="pool_dual", attrs=REPLICA)
        m.d.sync += [copy.eq(cfg.drain2 if ways == 2 else 0) for copy in (dual, pool_dual)]
        jx = Signal(range(p + 2), attrs=REPLICA)      # (REPLICA: see `move` below)
        jy = Signal(range(p + 1), attrs=REPLICA)
        # static while a layer runs: registered, and kept (REPLICA): its bits (tlx == k) equal some of the
        # activation buffer's per-lane row offsets, and the one flip-flop they were merged into sat by the
        # activation buffer, far from the walker's adders (85F, 16 lanes: 8.0 ns)
        tx = Signal(range(p + 1), attrs=REPLICA, reset_less=True)
        m.d.sync += tx.eq(1 << cfg.tlx)
        ctx = self.i.payload.ctx
        walk = self.i.payload.walk              # the walker's own copy of ctx's vx, nvalid and first decisions
        fresh = Signal(init=1)
        row_left_r = Signal.like(walk.vx)
        pass_left_r = Signal.like(walk.nvalid)
        pair_r, row_end_r, last_r = (Signal(name=n) for n in ("pair_r", "row_end_r", "last_r"))
        pair = Mux(fresh, walk.start_pair, pair_r)
        row_end = Mux(fresh, walk.start_row_end, row_end_r)
        last_px = Mux(fresh, walk.start_last, last_r)
        step = Mux(pair, 2, 1)
        row_left = Mux(fresh, walk.vx, row_left_r)
        pass_left = Mux(fresh, walk.nvalid, pass_left_r)

        def after_step_le(field, reg, c):
            """(left - step <= c) after this cycle's step, left being ``field`` (fresh) or ``reg``: compares of
            the registers with constants, the step choosing after them (no subtraction in front of a compare)."""
            return Mux(pair, Mux(fresh, field <= c + 2, reg <= c + 2), Mux(fresh, field <= c + 1, reg <= c + 1))
        pass_le1, pass_le2 = (after_step_le(walk.nvalid, pass_left_r, c) for c in (1, 2))
        row_le1, row_le2 = (after_step_le(walk.vx, row_left_r, c) for c in (1, 2))

        def decide(pair_next, row_end_next):
            """The next cycle's decisions (a pass's last pixel after this step: one or two pixels left)."""
            return [pair_r.eq(pair_next), row_end_r.eq(row_end_next),
                    last_r.eq(Mux(pair_next, pass_le2, pass_le1))]
        # way w's lane, jy * Tx + jx + w, kept as a register beside the walk (no adder before the select).
        # The pixel's position (jx, jy, the ways' lanes) is kept twice: the walker's loop reads its own copy, the
        # accumulator select and the pixel coordinates theirs (kept apart: REPLICA), so the loop's flip-flops are
        # not pulled across the die towards the P accumulators (the loop was the 85F's late path at 125 MHz)
        lanes = [Signal(max(1, lg), init=w % p, name=f"lane{w}", attrs=REPLICA) for w in range(ways)]
        lanes_out = [Signal(max(1, lg), init=w % p, name=f"lane_out{w}", attrs=REPLICA) for w in range(ways)]
        jx_out = Signal.like(jx, name="jx_out", attrs=REPLICA)
        jy_out = Signal.like(jy, name="jy_out", attrs=REPLICA)

        def move(jx_next, jy_next, lanes_next):
            pairs = ((jx, jx_out, jx_next), (jy, jy_out, jy_next), *zip(lanes, lanes_out, lanes_next))
            m.d.sync += [reg.eq(value) for loop, copy, value in pairs for reg in (loop, copy)]

        # the next tile row's first lanes ((jy + 1) * Tx + w), kept a row ahead so a row's end loads registers
        # (one adder from `tx` behind them, not two in front of the lanes); a pass starts them at Tx + w, so
        # ``cfg`` must be set two cycles before a layer's first pass (`tx`, then these)
        row_next_lanes = [Signal(range(p + ways + 1), name=f"row_next_lane{w}") for w in range(ways)]
        restart_rows = [lane.eq(tx + w) for w, lane in enumerate(row_next_lanes)]

        m.d.comb += self.i.ready.eq(self.i.valid & last_px)
        with m.If(self.i.valid):
            with m.If(last_px):
                m.d.sync += [fresh.eq(1), *restart_rows]
                move(0, 0, [w % p for w in range(ways)])
            with m.Elif(row_end):       # a new row: its first decisions are the context's
                m.d.sync += [fresh.eq(0), row_left_r.eq(walk.vx), pass_left_r.eq(pass_left - step),
                             *decide(walk.start_pair, walk.start_row_end),
                             *(lane.eq(lane + tx) for lane in row_next_lanes)]
                move(0, jy + 1, row_next_lanes)
            with m.Else():
                m.d.sync += [fresh.eq(0), row_left_r.eq(row_left - step), pass_left_r.eq(pass_left - step),
                             *decide(dual & ~row_le1, Mux(dual, row_le2, row_le1))]
                move(jx + step, jy, [lanes[w] + step for w in range(ways)])
        with m.Elif(fresh):             # between passes: the first row's successor starts at Tx
            m.d.sync += restart_rows
        # the parameter read follows the accumulator select's extra stage (q0): its address registered
        prm_addr = pipeline_register_like(prd.addr)
        m.d.sync += prm_addr.eq(cfg.prm_base + Mux(cfg.fc, (ctx.tile << lg) | jx_out, ctx.tile))
        m.d.comb += [prd.en.eq(1), prd.addr.eq(prm_addr)]

        def stage(name, fields, prev=None):
            """A pipeline register: ``valid`` and ``fields`` ({name: shape}, reset-less: read only under
            ``valid``); ``valid`` and the pixel's position (``x``, ``y``, ``co`` where both have them) follow from
            ``prev``."""
            regs = {"valid": Signal(name=f"{name}_valid")}
            regs.update({k: pipeline_register(v, name=f"{name}_{k}") for k, v in fields.items()})
            if prev is not None:
                m.d.sync += regs["valid"].eq(prev["valid"])
                for k in ("x", "y", "co"):
                    if k in prev and k in regs:
                        m.d.sync += regs[k].eq(prev[k])
            return regs

        def carry(dst, src, names=("shift", "dest")):
            m.d.sync += [dst[k].eq(src[k]) for k in names]

        pos = {"x": 11, "y": 10, "co": 16}
        tail = {"shift": unsigned(6), "dest": unsigned(16)}
        # the parameters (one read per pixel pair: both pixels of a pair belong to one output channel)
        prm = pl(prd.data)
        finals = []
        for w in range(ways):
            n = f"w{w}_" if ways > 1 else ""
            # the lane's accumulator in two steps: within groups of GROUP lanes (q0), then the group (q1)
            groups = -(-p // GROUP)
            q0 = stage(f"{n}q0", {"part": data.ArrayLayout(signed(32), groups), "group": range(groups), **pos})
            acc = self.i.payload.acc
            low, high = lanes_out[w][:min(lg, GROUP_BITS)], lanes_out[w][GROUP_BITS:]
            valid = self.i.valid if w == 0 else self.i.valid & pair
            m.d.sync += [q0["valid"].eq(valid), q0["group"].eq(high), q0["x"].eq(ctx.x0 + jx_out + w),
                         q0["y"].eq(ctx.oy + jy_out), q0["co"].eq(ctx.tile)]
            for grp in range(groups):
                members = [acc[j] for j in range(grp * GROUP, min(p, (grp + 1) * GROUP))]
                m.d.sync += q0["part"][grp].eq(Array(members)[low] if len(members) > 1 else members[0])
            q1 = stage(f"{n}q1", {"acc": signed(32), **pos}, q0)
            m.d.sync += q1["acc"].eq(q0["part"][q0["group"]] if groups > 1 else q0["part"][0])

            q2 = stage(f"{n}q2", {"acc": signed(32), "bias": signed(32), "mult": unsigned(16), **tail, **pos}, q1)
            m.d.sync += [q2["acc"].eq(q1["acc"]), q2["bias"].eq(prm.bias), q2["mult"].eq(prm.mult),
                         q2["shift"].eq(prm.shift), q2["dest"].eq(prm.dest)]

            # the requant product's halves: q3 = the multipliers' operand registers, q4 = their product
            # registers (inside the MULT18X18D on ECP5: DspMultiplier)
            q3 = stage(f"{n}q3", {**tail, **pos}, q2)
            carry(q3, q2)
            total = Signal(signed(33), name=f"{n}total")
            m.d.comb += total.eq(q2["acc"] + q2["bias"])
            m.submodules[f"{n}mul_hi"] = mul_hi = DspMultiplier(signed(16), unsigned(16))
            m.submodules[f"{n}mul_lo"] = mul_lo = DspMultiplier(unsigned(17), unsigned(16))
            m.d.comb += [mul_hi.a.eq(total[17:].as_signed()), mul_hi.b.eq(q2["mult"]),
                         mul_lo.a.eq(total[:17]), mul_lo.b.eq(q2["mult"])]

            q4 = stage(f"{n}q4", {**tail, **pos}, q3)
            carry(q4, q3)

            q5 = stage(f"{n}q5", {"prod": signed(50), **tail, **pos}, q4)
            m.d.sync += q5["prod"].eq((mul_hi.p << 17) + mul_lo.p)
            carry(q5, q4)

            q6 = stage(f"{n}q6", {"rounded": signed(51), **tail, **pos}, q5)
            m.d.sync += q6["rounded"].eq(q5["prod"] + ((Const(1, 49) << q5["shift"]) >> 1))
            carry(q6, q5)

            # the shift in two steps, by whole bytes (q6s) then by the rest (q7): arithmetic shifts compose, and
            # each step is an 8-way choice (one 64-way shifter was the 85F's late path at 16 lanes)
            q6s = stage(f"{n}q6s", {"coarse": signed(51), "fine": unsigned(3), "dest": unsigned(16), **pos}, q6)
            m.d.sync += [q6s["coarse"].eq(q6["rounded"] >> (q6["shift"][3:] << 3)), q6s["fine"].eq(q6["shift"][:3])]
            carry(q6s, q6, ("dest",))

            q7 = stage(f"{n}q7", {"val": signed(51), "dest": unsigned(16), **pos}, q6s)
            m.d.sync += q7["val"].eq(q6s["coarse"] >> q6s["fine"])
            carry(q7, q6s, ("dest",))

            # saturate, ReLU
            y8 = Signal(signed(8), name=f"{n}y8")
            with m.If(q7["val"] > 127):
                m.d.comb += y8.eq(127)
            with m.Elif(q7["val"] < -128):
                m.d.comb += y8.eq(-128)
            with m.Else():
                m.d.comb += y8.eq(q7["val"])
            q8 = stage(f"{n}q8", {"act": signed(8), "dest": unsigned(16), **pos}, q7)
            m.d.sync += q8["act"].eq(Mux(cfg.relu & (y8 < 0), 0, y8))
            carry(q8, q7, ("dest",))
            finals.append((q0, q1, q2, q3, q4, q5, q6, q6s, q7, q8))

        a8 = finals[0][-1]                      # way 0: pixel x (even when two a cycle)
        b8 = finals[-1][-1]                     # way 1: pixel x + 1 (way 0 itself with one way)

        # horizontal pool. One a cycle: pixel x even holds, x odd takes the pair maximum. Two a cycle: the
        # pair arrives together (tiles start at even columns), the maximum is taken at once.
        hold = pipeline_register(signed(8))
        with m.If(a8["valid"] & ~a8["x"][0]):
            m.d.sync += hold.eq(a8["act"])
        # both pairs' compares side by side, registered with their operands (p8); the layer's mode and the
        # compares select after the register (no carry chain in front of the muxes)
        p8 = stage("p8", {"act": signed(8), "b_act": signed(8), "hold": signed(8), "a_gt_b": 1, "hold_gt_a": 1,
                          "b_x": 11, "dest": unsigned(16), **pos}, a8)
        m.d.sync += [p8["act"].eq(a8["act"]), p8["b_act"].eq(b8["act"]), p8["hold"].eq(hold),
                     p8["a_gt_b"].eq(a8["act"] > b8["act"]), p8["hold_gt_a"].eq(hold > a8["act"]),
                     p8["b_x"].eq(b8["x"])]
        carry(p8, a8, ("dest",))
        hmax = Mux(pool_dual, Mux(p8["a_gt_b"], p8["act"], p8["b_act"]), Mux(p8["hold_gt_a"], p8["hold"], p8["act"]))
        pool_x = Mux(pool_dual, p8["b_x"], p8["x"])  # the pair's odd pixel decides when the pair is complete
        plane_shift = pipeline_register(5)      # static while a layer runs: registered (with the consumer's
        out_cmask = pipeline_register(lgb)      # column / row bank masks)
        out_rmask = pipeline_register(lgb)
        m.d.sync += [plane_shift.eq(cfg.out_hb + cfg.out_wb), out_cmask.eq((1 << cfg.out_cx) - 1),
                     out_rmask.eq((1 << cfg.out_ry) - 1)]

        def bank_of(px, py):
            """The consumer's bank holding its pixel (px, py)."""
            return (px[:lgb] & out_cmask) | ((py[:lgb] & out_rmask) << cfg.out_cx)[:lgb]

        def plane_of(co):
            """The first address of output channel ``co``'s plane in the layer's output region."""
            return cfg.out_base + (co << plane_shift)

        def address_fields(q, x, y):
            """The write's bank and (plane, row, column) address parts for output pixel (x, y) of ``q``'s
            channel, in the consumer's layout (pooled: of the pooled pixel)."""
            px = Mux(cfg.pool, x >> 1, x)
            py = Mux(cfg.pool, y >> 1, y)
            return bank_of(px, py), plane_of(q["co"]), (py >> cfg.out_ry) << cfg.out_wb, px >> cfg.out_cx

        rowbuf_addr = pipeline_register(range(max(2, g.pool_width)))
        m.d.sync += rowbuf_addr.eq(pool_x >> 1)
        above = Signal(signed(8))               # the row register's entry for this pair's pooled column
        q9 = stage("q9", {"act": signed(8), "hmax": signed(8), "odd_x": 1, "odd_y": 1, "bank": unsigned(lgb),
                          "above": signed(8), "dest": unsigned(aw), "plane": unsigned(aw),
                          "row": unsigned(aw), "col": unsigned(aw)}, p8)
        bank, plane, row, col = address_fields(p8, Mux(cfg.pool, pool_x, p8["x"]), p8["y"])
        m.d.sync += [
            q9["act"].eq(p8["act"]), q9["hmax"].eq(hmax),
            q9["odd_x"].eq(pool_x[0]), q9["odd_y"].eq(p8["y"][0]), q9["bank"].eq(bank),
            q9["above"].eq(above), q9["dest"].eq(p8["dest"]),
            q9["plane"].eq(plane), q9["row"].eq(row), q9["col"].eq(col),
        ]

        # vertical pool: even rows park the pair maximum in the row register, odd rows combine and emit
        # (the row register is read a stage early, into q9; two a cycle in a 2-wide tile, the pair of the row
        # below follows the row above's pair at once: its write, in q9 now, is forwarded)
        m.d.comb += [row_rd.addr.eq(pool_x >> 1), row_wr.addr.eq(rowbuf_addr), row_wr.data.eq(q9["hmax"])]
        m.d.comb += above.eq(Mux(row_wr.en & (rowbuf_addr == pool_x >> 1), q9["hmax"], row_rd.data))
        emit = Signal()
        with m.If(cfg.pool):
            m.d.comb += [emit.eq(q9["odd_x"] & q9["odd_y"]), row_wr.en.eq(q9["valid"] & q9["odd_x"] & ~q9["odd_y"])]
        with m.Else():
            m.d.comb += emit.eq(1)

        counter = Signal(aw)
        with m.If(self.clear):
            m.d.sync += counter.eq(0)
        addr = Signal(aw)
        with m.If(cfg.fc):
            m.d.comb += addr.eq(cfg.out_base + q9["dest"])
        with m.Elif(cfg.out_repl):
            m.d.comb += addr.eq(cfg.out_base + counter)
        with m.Else():
            m.d.comb += addr.eq(q9["plane"] + q9["row"] + q9["col"])
        # the vertical pool's compare registered with its operands (q10: the written value is one mux of
        # registers, max(above, hmax) pooled, else the pixel); then the write, registered without an enable
        # (``valid`` qualifies it)
        q10 = stage("q10", {"value": signed(8), "hmax": signed(8), "take_hmax": 1, "addr": unsigned(aw),
                            "bank": unsigned(lgb)})
        m.d.sync += [q10["valid"].eq(q9["valid"] & emit), q10["value"].eq(Mux(cfg.pool, q9["above"], q9["act"])),
                     q10["hmax"].eq(q9["hmax"]), q10["take_hmax"].eq(cfg.pool & ~(q9["above"] > q9["hmax"])),
                     q10["addr"].eq(addr), q10["bank"].eq(q9["bank"])]
        def write_register(port, name, valid, addr, value, bank, bcast):
            """The write register behind ``port``: its address and data in a copy per BANKS_PER_WRITE_COPY
            banks (kept apart: REPLICA) and its bank mask decoded and qualified by ``valid``, so each bank's
            write port reads flip-flops of its own (one register reaching all 2P banks' write ports, through
            the bank compare, was the 85F's critical path at 32 lanes)."""
            addrs = replicas(g.write_copies, aw, name=f"{name}_addr", reset_less=True)
            values = replicas(g.write_copies, 8, name=f"{name}_data", reset_less=True)
            hit = Signal(g.banks, name=f"{name}_hit")
            fields = pipeline_register(data.StructLayout({"bank": len(port.payload.bank), "bcast": 1}),
                                       name=f"{name}_bank")
            m.d.sync += [port.valid.eq(valid), hit.eq(Cat(valid & (bcast | (bank == b)) for b in range(g.banks))),
                         fields.bank.eq(bank), fields.bcast.eq(bcast),
                         *(reg.eq(addr) for reg in addrs), *(reg.eq(value) for reg in values)]
            m.d.comb += [port.payload.hit.eq(hit), port.payload.bank.eq(fields.bank),
                         port.payload.bcast.eq(fields.bcast),
                         *(port.payload.addr[k].eq(reg) for k, reg in enumerate(addrs)),
                         *(port.payload.data[k].eq(reg) for k, reg in enumerate(values))]

        write_register(self.o, "write", q10["valid"], q10["addr"], Mux(q10["take_hmax"], q10["hmax"], q10["value"]),
                       q10["bank"], cfg.out_repl)
        with m.If(q9["valid"] & emit & ~cfg.fc & cfg.out_repl):
            m.d.sync += counter.eq(counter + 1)

        # way 1's own write (two a cycle, unpooled, into a conv layout: a different bank from way 0's)
        stages = [st for way in finals for st in way] + [p8, q9, q10]
        if ways == 2:
            # never pooled (o2 writes only unpooled layers): the address's row and column shifts split over
            # r8 (>> the consumer's bank bits) and r9 (the row << its width), the sum in r10
            r8 = stage("r8", {"act": signed(8), "row_hi": unsigned(10), "col": unsigned(aw), **pos}, b8)
            m.d.sync += [r8["act"].eq(b8["act"]), r8["row_hi"].eq(b8["y"] >> cfg.out_ry),
                         r8["col"].eq(b8["x"] >> cfg.out_cx)]
            r9 = stage("r9", {"act": signed(8), "bank": unsigned(lgb), "plane": unsigned(aw), "row": unsigned(aw),
                              "col": unsigned(aw)}, r8)
            m.d.sync += [r9["act"].eq(r8["act"]), r9["row"].eq(r8["row_hi"] << cfg.out_wb), r9["col"].eq(r8["col"]),
                         r9["bank"].eq(bank_of(r8["x"], r8["y"])), r9["plane"].eq(plane_of(r8["co"]))]
            r10 = stage("r10", {"act": signed(8), "bank": unsigned(lgb), "addr": unsigned(aw)})
            m.d.sync += [r10["valid"].eq(r9["valid"] & ~cfg.pool), r10["act"].eq(r9["act"]),
                         r10["bank"].eq(r9["bank"]), r10["addr"].eq(r9["plane"] + r9["row"] + r9["col"])]
            write_register(self.o2, "write2", r10["valid"], r10["addr"], r10["act"], r10["bank"], 0)
            stages += [r8, r9, r10]
        m.d.comb += self.busy.eq(Cat(self.i.valid, self.o.valid, self.o2.valid, *(q["valid"] for q in stages)).any())
        return m
