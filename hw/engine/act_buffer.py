"""Banked activation buffer: delivers P shifted input pixels per cycle, for any (ky, kx), stride 1 or 2,
with zero padding; or, for fc layers, one independently addressed byte per lane.

``2P`` banks (one ``lib.memory`` each, ``act_depth`` bytes; every tensor has a region in it, and the layer
descriptor names the base ``in_base`` of the one read: hw/engine/regions.py). A conv map ``(C, H, W)`` is
banked for the layer's tile ``Tx x Ty`` (hw/engine/tiling.py): pixel ``(c, y, x)`` in bank
``(x mod 2Tx) | (y mod Ty) << cx`` at ``in_base + (c << (hb + wb) | (y >> ry) << wb | x >> cx)``,
``cx = lg 2Tx``, ``ry = lg Ty``. For a conv element ``(ci, ky, kx)`` of the pass ``(oy, x0)``, lane
``j = jy*Tx + jx`` reads column ``base + jx*s`` (``base = x0*s + kx - pad``) on row ``y + jy``
(``y = oy*s + ky - pad``; stride 2 only with ``Ty = 1``; ``oy`` a multiple of ``Ty``): the Ty rows hit distinct row banks, the Tx
columns of a row span fewer than ``2Tx`` columns, so every lane has its own bank. Bank ``(bx, by)`` reads
row word ``(y >> ry) + (by < y mod Ty)`` and column word ``(base >> cx) + (bx < base mod 2Tx)`` — the
one pixel of the tile's window it holds; a crossbar gives each lane its bank. Lanes outside the map read 0
(padding). In fc mode lane ``j`` reads bank ``j``
at ``in_base`` + its own index (fc inputs are replicated in every bank).

Read pipeline: fixed latency, never stalls (``i``, ``o`` and ``wr`` are ``always_ready`` streams); every
arithmetic step and every block-RAM output ends in a register::

    i (elements) -> stride-scaled output row / column, kernel offsets less padding, row-word parts, plane
      offset -> [r0] -> y, y >> ry, base, channel plane (and the next row word's) -> [r1] -> row addresses,
      column word, per-bank next row / next column flags, padding mask, lane column / row banks -> [r2]
      -> per-bank address, crossbar selects -> [r3] -> bank reads -> [r4: bank data] -> crossbar, mask -> [o]

Write ports: ``wr`` one address, a byte per bank and a bank mask; ``wr2`` one byte into one other bank
(the output stage's second pixel of a cycle). Both always ready.
"""
from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sparsegate.hw.engine.layouts import (EngineGeometry, desc_layout, elem_layout, mac_in_layout, wide_write_layout,
                                          write_layout)
from sparsegate.hw.platform.memory_hints import READ_WRITE_DISJOINT

__all__ = ["ActBuffer", "LATENCY"]

#: Cycles from an element on ``i`` to its activations on ``o``.
LATENCY = 7


class ActBuffer(wiring.Component):
    """The banked activation buffer (module docstring: banking, read pipeline).

    Members
    -------
    cfg : ``In(desc_layout)``
        The running layer's descriptor (map sizes, stride, padding, the region read).
    i : ``In(stream.Signature(elem_layout), always_ready=True)``
        Decoded elements: the per-lane activation coordinates of one MAC-array cycle.
    o : ``Out(stream.Signature(mac_in_layout), always_ready=True)``
        The element's weights with the P activations read for it (fixed latency; never waits).
    wr : ``In(stream.Signature(wide_write_layout), always_ready=True)``
        Writes: an address, a byte per bank and a bank mask (input load and the output stage's results).
    wr2 : ``In(stream.Signature(write_layout), always_ready=True)``
        A second write in the same cycle, one byte into one bank (the output stage's second pixel): never
        into a bank ``wr`` writes in that cycle.
    busy : ``Out(1)``
        An element is in the read pipeline.
    """

    def __init__(self, geometry: EngineGeometry):
        self.g = geometry
        super().__init__({
            "cfg": In(desc_layout(geometry)),
            "i": In(stream.Signature(elem_layout(geometry), always_ready=True)),
            "o": Out(stream.Signature(mac_in_layout(geometry), always_ready=True)),
            "wr": In(stream.Signature(wide_write_layout(geometry), always_ready=True)),
            "wr2": In(stream.Signature(write_layout(geometry), always_ready=True)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        g = self.g
        p, nb, lgb, aw = g.lanes, g.banks, g.lg_banks, g.act_aw
        cfg, el = self.cfg, self.i.payload


        # per-layer constants of the tile (static while a layer runs: registered): column-bank mask and row-bank
        # mask, lane j's tile column / row offsets, bank b's column / row within the 2-D bank grid
        cmask = Signal(lgb)
        rmask = Signal(lgb)
        cx = Signal(3)
        wide = g.bank_ratio - 1                 # 2P banks: 2Tx column banks; P banks (stride 1 only): Tx
        m.d.sync += [cx.eq(cfg.tlx + wide), cmask.eq((g.bank_ratio << cfg.tlx) - 1), rmask.eq((1 << cfg.tly) - 1)]
        lane_dx = [Signal(lgb, name=f"lane_dx{j}") for j in range(p)]     # jx * stride
        lane_dy = [Signal(lgb, name=f"lane_dy{j}") for j in range(p)]     # jy
        for j in range(p):
            jx = j & ((1 << cfg.tlx) - 1)
            m.d.sync += [lane_dx[j].eq(Mux(cfg.stride2, jx << 1, jx)), lane_dy[j].eq(j >> cfg.tlx)]
        bank_x = [Signal(lgb, name=f"bank_x{b}") for b in range(nb)]
        bank_y = [Signal(lgb, name=f"bank_y{b}") for b in range(nb)]
        for b in range(nb):
            m.d.sync += [bank_x[b].eq(b & cmask), bank_y[b].eq(b >> cx)]

        # ---- r0: the element's offsets apart: the output row / column scaled by the stride, the kernel
        # offsets less the padding, the output row in row words, the channel plane's offset
        r0_valid = Signal()
        r0 = Signal.like(el)
        oy_s = Signal(signed(14))
        x0_s = Signal(signed(14))
        ky_p = Signal(signed(14))
        kx_p = Signal(signed(14))
        oy_q = Signal(signed(14))
        ky_q = Signal(signed(14))
        plane_off = Signal(unsigned(aw))
        plane_shift = Signal(5)                # static while a layer runs: registered
        row_step = Signal(unsigned(aw))
        m.d.sync += [plane_shift.eq(cfg.in_hb + cfg.in_wb), row_step.eq(1 << cfg.in_wb)]
        m.d.sync += [
            r0_valid.eq(self.i.valid), r0.eq(el),
            oy_s.eq(Mux(cfg.stride2, el.ctx.oy << 1, el.ctx.oy)), x0_s.eq(Mux(cfg.stride2, el.ctx.x0 << 1, el.ctx.x0)),
            ky_p.eq(el.ky - cfg.pad), kx_p.eq(el.kx - cfg.pad), oy_q.eq(el.ctx.oy >> cfg.tly),
            ky_q.eq((el.ky - cfg.pad) >> cfg.tly), plane_off.eq(el.ci << plane_shift),
        ]

        # ---- r1: the tile's first input row and column (lane (0, 0)'s window), its row word y >> ry (the tile
        # starts on a multiple of Ty: (oy >> ry) + ((ky - pad) >> ry); stride 2 has ry = 0), the channel plane and
        # the plane one row word on (so r2 only shifts and adds)
        r1_valid = Signal()
        r1 = Signal.like(el)
        y = Signal(signed(14))
        yq = Signal(signed(14))
        base = Signal(signed(14))
        plane = Signal(unsigned(aw))
        plane1 = Signal(unsigned(aw))
        m.d.sync += [
            r1_valid.eq(r0_valid), r1.eq(r0), plane.eq(cfg.in_base + plane_off),
            plane1.eq(cfg.in_base + plane_off + row_step),
            y.eq(oy_s + ky_p), yq.eq(Mux(cfg.stride2, oy_s + ky_p, oy_q + ky_q)), base.eq(x0_s + kx_p),
        ]

        # ---- r2: the two row addresses a bank may read (row word y >> ry, and the next), the column word,
        # per bank whether it reads the next row / column word (the 2-D rotation), padding mask
        r2_valid = Signal()
        r2 = Signal.like(el)
        row0 = Signal(unsigned(aw))
        row1 = Signal(unsigned(aw))
        q = Signal(signed(14))
        next_col = Signal(nb)
        next_row = Signal(nb)
        bad = Signal(p)
        sels = [Signal(lgb, name=f"sel{j}") for j in range(p)]
        m.d.sync += [r2_valid.eq(r1_valid), r2.eq(r1), q.eq(base >> cx),
                     row0.eq(plane + (yq[:aw] << cfg.in_wb)), row1.eq(plane1 + (yq[:aw] << cfg.in_wb))]
        for b in range(nb):
            m.d.sync += [next_col[b].eq((base[:lgb] & cmask) > bank_x[b]),
                         next_row[b].eq((y[:lgb] & rmask) > bank_y[b])]
        # lane j's bank: its column bank and its input row (r2); the row shifted into bank-index position beside it (r3)
        row_banks = [Signal(lgb, name=f"row_bank{j}") for j in range(p)]
        for j in range(p):
            xj = base + lane_dx[j]
            yj = y + lane_dy[j]
            m.d.sync += [bad[j].eq(~cfg.fc & ((yj < 0) | (yj >= cfg.in_h) | (xj < 0) | (xj >= cfg.in_w))),
                         sels[j].eq((base[:lgb] + lane_dx[j]) & cmask),
                         row_banks[j].eq(y[:lgb] + lane_dy[j])]

        # ---- r3: one address per bank; then the bank reads
        r3_valid = Signal()
        r3 = Signal.like(el)
        r3_bad = Signal(p)
        r3_sels = [Signal(lgb, name=f"r3_sel{j}") for j in range(p)]
        m.d.sync += [r3_valid.eq(r2_valid), r3.eq(r2), r3_bad.eq(bad)] + \
            [r3_sels[j].eq(Mux(cfg.fc, j, sels[j] | (row_banks[j] << cx)[:lgb])) for j in range(p)]
        datas = []
        for b in range(nb):
            mem = Memory(shape=unsigned(8), depth=g.act_depth, init=[], attrs=READ_WRITE_DISJOINT)
            m.submodules[f"bank{b}"] = mem
            rp = mem.read_port()
            wp = mem.write_port()
            addr = Signal(aw, name=f"addr{b}")
            conv_addr = (Mux(next_row[b], row1, row0) + q + next_col[b])[:aw]
            fc_addr = (cfg.in_base + r2.idx[b][:aw])[:aw] if b < p else 0
            m.d.sync += addr.eq(Mux(cfg.fc, fc_addr, conv_addr))
            second = self.wr2.valid & (self.wr2.payload.bank == b)
            m.d.comb += [
                rp.addr.eq(addr),
                rp.en.eq(1),
                wp.addr.eq(Mux(second, self.wr2.payload.addr, self.wr.payload.addr)),
                wp.data.eq(Mux(second, self.wr2.payload.data, self.wr.payload.data[b])),
                wp.en.eq((self.wr.valid & self.wr.payload.mask[b]) | second),
            ]
            datas.append(rp.data)

        # ---- r4: bank data registered (r3's context follows the read)
        r4_valid = Signal()
        r5_valid = Signal()
        r4, r5 = Signal.like(el), Signal.like(el)
        r4_bad = Signal(p)
        r5_bad = Signal(p)
        r4_sels = [Signal(lgb, name=f"r4_sel{j}") for j in range(p)]
        r5_sels = [Signal(lgb, name=f"r5_sel{j}") for j in range(p)]
        # reset-less: nothing but the data, so the build moves them into the DP16KDs (hw/platform/bram_outreg.py)
        bank_data = [Signal(8, name=f"bank_data{b}", reset_less=True) for b in range(nb)]
        m.d.sync += [r4_valid.eq(r3_valid), r4.eq(r3), r4_bad.eq(r3_bad),
                     r5_valid.eq(r4_valid), r5.eq(r4), r5_bad.eq(r4_bad)]
        m.d.sync += [r4_sels[j].eq(r3_sels[j]) for j in range(p)] + [r5_sels[j].eq(r4_sels[j]) for j in range(p)]
        m.d.sync += [bank_data[b].eq(datas[b]) for b in range(nb)]

        # ---- o: rotation crossbar and zero padding
        out = Signal(mac_in_layout(g))
        banks = Array(bank_data)
        for j in range(p):
            m.d.comb += out.a[j].eq(Mux(r5_bad[j], 0, banks[r5_sels[j]]))
        m.d.comb += [out.w.eq(r5.w), out.first.eq(r5.first), out.last.eq(r5.last), out.ctx.eq(r5.ctx)]
        m.d.sync += [self.o.valid.eq(r5_valid), self.o.payload.eq(out)]
        m.d.comb += self.busy.eq(r0_valid | r1_valid | r2_valid | r3_valid | r4_valid | r5_valid | self.o.valid)
        return m
