"""Banked activation buffer: delivers P shifted input pixels per cycle, for any (ky, kx), stride 1 or 2,
with zero padding; or, for fc layers, one independently addressed byte per lane.

``2P`` banks (one ``lib.memory`` each, ``2 * act_depth`` bytes: the ping and pong halves are the address
MSB). A conv map ``(C, H, W)`` keeps pixel ``(c, y, x)`` in bank ``x mod 2P`` at
``c << (hb + wb) | y << wb | x div 2P``. For a conv element ``(ci, ky, kx)`` of the pass ``(oy, x0)``,
lane ``j`` needs ``x_j = base + j*s`` with ``base = x0*s + kx - pad`` on row ``y = oy*s + ky - pad``:
the P lanes span fewer than ``2P`` consecutive columns, so they hit distinct banks. Bank ``b`` reads the
one column ``x = base + ((b - base) mod 2P)`` of that window; a rotation crossbar gives lane ``j`` bank
``(base + j*s) mod 2P``. Lanes outside the map read 0 (padding). In fc mode lane ``j`` reads bank ``j``
at its own index (fc inputs are replicated in every bank).

Read pipeline (global stall; ``i.ready = ~o.valid | o.ready``)::

    i (elements) -> addresses -> [bank reads | regs] -> crossbar, padding mask -> [o]

Write port ``wr``: one address, a byte per bank and a bank mask (always ready).
"""
from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .engine_layouts import EngineGeometry, desc_layout, elem_layout, mac_in_layout, wide_write_layout

__all__ = ["ActBuffer"]


class ActBuffer(wiring.Component):
    def __init__(self, geometry: EngineGeometry):
        self.g = geometry
        super().__init__({
            "cfg": In(desc_layout(geometry)),
            "i": In(stream.Signature(elem_layout(geometry))),
            "o": Out(stream.Signature(mac_in_layout(geometry))),
            "wr": In(stream.Signature(wide_write_layout(geometry))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        g = self.g
        p, nb, lgb, aw = g.lanes, g.banks, g.lg_banks, g.act_aw
        cfg, el = self.cfg, self.i.payload

        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.i.ready.eq(advance),
                     self.wr.ready.eq(1)]

        # ---- stage 0: addresses
        y = Signal(signed(14))
        base = Signal(signed(14))
        m.d.comb += [
            y.eq(Mux(cfg.stride2, el.ctx.oy << 1, el.ctx.oy) + el.ky - cfg.pad),
            base.eq(Mux(cfg.stride2, el.ctx.x0 << 1, el.ctx.x0) + el.kx - cfg.pad),
        ]
        rot = Signal(lgb)
        q = Signal(signed(14))
        m.d.comb += [rot.eq(base[:lgb]), q.eq(base >> lgb)]
        row = Signal(unsigned(aw))
        m.d.comb += row.eq((el.ci << (cfg.in_hb + cfg.in_wb)) + (y[:aw] << cfg.in_wb))
        ybad = Signal()
        m.d.comb += ybad.eq((y < 0) | (y >= cfg.in_h))

        datas = []
        for b in range(nb):
            mem = Memory(shape=unsigned(8), depth=2 << aw, init=[])
            m.submodules[f"bank{b}"] = mem
            rp = mem.read_port()
            wp = mem.write_port()
            xw = Signal(signed(14), name=f"xw{b}")
            m.d.comb += xw.eq(q + (rot > b))
            conv_addr = (row + xw[:aw])[:aw]
            fc_addr = el.idx[b][:aw] if b < p else 0
            m.d.comb += [
                rp.addr.eq((cfg.in_half << aw) | Mux(cfg.fc, fc_addr, conv_addr)),
                rp.en.eq(advance),
                wp.addr.eq(self.wr.payload.addr),
                wp.data.eq(self.wr.payload.data[b]),
                wp.en.eq(self.wr.valid & self.wr.payload.mask[b]),
            ]
            datas.append(rp.data)

        bad = Signal(p)
        for j in range(p):
            xj = base + Mux(cfg.stride2, 2 * j, j)
            m.d.comb += bad[j].eq(~cfg.fc & (ybad | (xj < 0) | (xj >= cfg.in_w)))

        # ---- stage 1: bank data ready
        s1_valid = Signal()
        s1_rot = Signal(lgb)
        s1_bad = Signal(p)
        s1_w = Signal.like(el.w)
        s1_first, s1_last = Signal(), Signal()
        s1_ctx = Signal.like(el.ctx)
        with m.If(advance):
            m.d.sync += [s1_valid.eq(self.i.valid), s1_rot.eq(rot), s1_bad.eq(bad), s1_w.eq(el.w),
                         s1_first.eq(el.first), s1_last.eq(el.last), s1_ctx.eq(el.ctx)]

        bank_data = Array(datas)
        out = Signal(mac_in_layout(g))
        for j in range(p):
            sel = Signal(lgb, name=f"sel{j}")
            m.d.comb += sel.eq(Mux(cfg.fc, j, s1_rot + Mux(cfg.stride2, 2 * j, j)))
            m.d.comb += out.a[j].eq(Mux(s1_bad[j], 0, bank_data[sel]))
        m.d.comb += [out.w.eq(s1_w), out.first.eq(s1_first), out.last.eq(s1_last), out.ctx.eq(s1_ctx)]
        with m.If(advance):
            m.d.sync += [self.o.valid.eq(s1_valid), self.o.payload.eq(out)]
        m.d.comb += self.busy.eq(s1_valid | self.o.valid)
        return m
