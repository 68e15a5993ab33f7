"""Serial output stage: bias, requant, saturation, ReLU and the fused 2x2 max-pool, one accumulator per
cycle, written back into the other half of the activation buffer.

It drains a pass's P sums straight from the MAC array's output register (accepting the pass on its last
pixel, so back-to-back passes cost ``nvalid`` cycles each and the MAC array accumulates the next pass
meanwhile). Arithmetic is the golden model's (docs/arithmetic.md)::

    walk: acc[i], parameter read -> [p1] -> acc + bias -> [p2] -> * mult (DSP in) -> [p3] (DSP out)
      -> + 2**(shift-1), >> shift -> [p4] -> saturate, ReLU, pool -> [o: write]

Pooling: passes walk the raster order, so pixel ``x`` of a row keeps ``max`` with its left neighbour
(``x`` even holds, ``x`` odd combines); on even rows the pair maximum goes into a row register of
``pool_width`` entries, on odd rows it is combined with it and written. Outputs go to bank
``px mod 2P`` of the next layer's conv layout, or (``out_repl``) to every bank at the flat index: a
running counter (conv, raster = flatten order) or the slot's ``dest`` neuron (fc).
"""
from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .engine_layouts import (EngineGeometry, desc_layout, mac_out_layout, mem_write_signature, param_layout,
                             write_layout)

__all__ = ["OutputStage"]


class OutputStage(wiring.Component):
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
            "o": Out(stream.Signature(write_layout(geometry))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        g = self.g
        p, lg, lgb, aw = g.lanes, g.lg_lanes, g.lg_banks, g.act_aw
        cfg = self.cfg
        pl = param_layout(g)
        m.submodules.pmem = pmem = Memory(shape=unsigned(pl.size), depth=g.param_depth, init=self.param_words)
        prd = pmem.read_port()
        if self.host_write:     # run-time loading of the output parameters
            wp = pmem.write_port()
            m.d.comb += [wp.en.eq(self.wr.en), wp.addr.eq(self.wr.addr), wp.data.eq(self.wr.data)]
        m.submodules.rowbuf = rowbuf = Memory(shape=signed(8), depth=max(2, g.pool_width), init=[])
        row_rd = rowbuf.read_port(domain="comb")
        row_wr = rowbuf.write_port()

        advance = Signal()
        m.d.comb += advance.eq(~self.o.valid | self.o.ready)

        # ---- walker: pixel `cnt` of the pass held on the input
        cnt = Signal(range(p + 1))
        ctx = self.i.payload.ctx
        last_px = cnt == ctx.nvalid - 1
        take = Signal()
        m.d.comb += [take.eq(advance & self.i.valid), self.i.ready.eq(take & last_px)]
        with m.If(take):
            m.d.sync += cnt.eq(Mux(last_px, 0, cnt + 1))
        m.d.comb += [prd.en.eq(advance),
                     prd.addr.eq(cfg.prm_base + Mux(cfg.fc, (ctx.tile << lg) | cnt, ctx.tile))]

        p1_valid = Signal()
        p1_acc = Signal(signed(32))
        p1_x, p1_y = Signal(11), Signal(10)
        p1_co = Signal(16)
        acc_sel = self.i.payload.acc[cnt] if p > 1 else self.i.payload.acc[0]
        with m.If(advance):
            m.d.sync += [p1_valid.eq(self.i.valid), p1_acc.eq(acc_sel), p1_x.eq(ctx.x0 + cnt),
                         p1_y.eq(ctx.oy), p1_co.eq(ctx.tile)]

        prm = pl(prd.data)
        p2_valid = Signal()
        p2_sum = Signal(signed(33))
        p2_mult = Signal(unsigned(16))
        p2_shift = Signal(unsigned(6))
        p2_x, p2_y, p2_co, p2_dest = Signal(11), Signal(10), Signal(16), Signal(16)
        with m.If(advance):
            m.d.sync += [p2_valid.eq(p1_valid), p2_sum.eq(p1_acc + prm.bias), p2_mult.eq(prm.mult),
                         p2_shift.eq(prm.shift), p2_x.eq(p1_x), p2_y.eq(p1_y), p2_co.eq(p1_co),
                         p2_dest.eq(prm.dest)]

        p3_valid = Signal()
        p3_prod = Signal(signed(50))
        p3_shift = Signal(unsigned(6))
        p3_x, p3_y, p3_co, p3_dest = Signal(11), Signal(10), Signal(16), Signal(16)
        with m.If(advance):
            m.d.sync += [p3_valid.eq(p2_valid), p3_prod.eq(p2_sum * p2_mult), p3_shift.eq(p2_shift),
                         p3_x.eq(p2_x), p3_y.eq(p2_y), p3_co.eq(p2_co), p3_dest.eq(p2_dest)]

        p4_valid = Signal()
        p4_val = Signal(signed(50))
        p4_x, p4_y, p4_co, p4_dest = Signal(11), Signal(10), Signal(16), Signal(16)
        rounded = Signal(signed(51))
        m.d.comb += rounded.eq(p3_prod + ((Const(1, 49) << p3_shift) >> 1))
        with m.If(advance):
            m.d.sync += [p4_valid.eq(p3_valid), p4_val.eq(rounded >> p3_shift), p4_x.eq(p3_x), p4_y.eq(p3_y),
                         p4_co.eq(p3_co), p4_dest.eq(p3_dest)]

        # saturate, relu
        y8 = Signal(signed(8))
        with m.If(p4_val > 127):
            m.d.comb += y8.eq(127)
        with m.Elif(p4_val < -128):
            m.d.comb += y8.eq(-128)
        with m.Else():
            m.d.comb += y8.eq(p4_val)
        y_act = Signal(signed(8))
        m.d.comb += y_act.eq(Mux(cfg.relu & (y8 < 0), 0, y8))

        # pooling
        hold = Signal(signed(8))
        hmax = Signal(signed(8))
        m.d.comb += hmax.eq(Mux(hold > y_act, hold, y_act))
        m.d.comb += [row_rd.addr.eq(p4_x >> 1), row_wr.addr.eq(p4_x >> 1), row_wr.data.eq(hmax)]
        vmax = Signal(signed(8))
        m.d.comb += vmax.eq(Mux(row_rd.data > hmax, row_rd.data, hmax))
        emit = Signal()
        value = Signal(signed(8))
        px, py = Signal(11), Signal(10)
        with m.If(cfg.pool):
            m.d.comb += [emit.eq(p4_x[0] & p4_y[0]), value.eq(vmax), px.eq(p4_x >> 1), py.eq(p4_y >> 1),
                         row_wr.en.eq(advance & p4_valid & p4_x[0] & ~p4_y[0])]
        with m.Else():
            m.d.comb += [emit.eq(1), value.eq(y_act), px.eq(p4_x), py.eq(p4_y)]
        with m.If(advance & p4_valid & ~p4_x[0]):
            m.d.sync += hold.eq(y_act)

        counter = Signal(aw)
        with m.If(self.clear):
            m.d.sync += counter.eq(0)
        addr = Signal(aw)
        with m.If(cfg.fc):
            m.d.comb += addr.eq(p4_dest)
        with m.Elif(cfg.out_repl):
            m.d.comb += addr.eq(counter)
        with m.Else():
            m.d.comb += addr.eq((p4_co << (cfg.out_hb + cfg.out_wb)) + (py << cfg.out_wb) + (px >> lgb))
        with m.If(advance):
            m.d.sync += self.o.valid.eq(p4_valid & emit)
            with m.If(p4_valid & emit):
                m.d.sync += [self.o.payload.addr.eq((cfg.out_half << aw) | addr), self.o.payload.data.eq(value),
                             self.o.payload.bank.eq(px[:lgb]), self.o.payload.bcast.eq(cfg.out_repl)]
                with m.If(~cfg.fc & cfg.out_repl):
                    m.d.sync += counter.eq(counter + 1)
        m.d.comb += self.busy.eq(self.i.valid | p1_valid | p2_valid | p3_valid | p4_valid | self.o.valid)
        return m
