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
one pixel of the tile's window it holds. The crossbar from banks to lanes is a rotation: with
``R = (base mod 2Tx) + (y mod Ty) * 2Tx`` and the banks rotated ``A[i] = bank[(i + R) mod 2P]`` (log depth,
one 2:1 step per bit of ``R``, shared by all lanes), lane ``(jx, jy)`` finds its pixel at ``jx*s + jy*2Tx``,
one row of banks back where its column wrapped: a handful of positions over all tiles and strides
(hw/engine/tiling.py ``lane_sources``), so each lane has a small mux instead of a ``2P:1`` one (a full
crossbar did not route at P = 32).
Lanes outside the map read 0 (padding). In fc mode lane ``j`` reads bank ``j``
at ``in_base`` + its own index (fc inputs are replicated in every bank).

Read pipeline: fixed latency, never stalls (``i``, ``o`` and ``wr`` are ``always_ready`` streams); every
arithmetic step and every block-RAM output ends in a register::

    i (elements) -> stride-scaled output row / column, kernel offsets less padding, row-word parts, plane
      offset -> [r0] -> y, y >> ry, base, channel plane (and the next row word's) -> [r1] -> row addresses,
      column word, per-bank next row / next column flags, padding mask, rotation parts, per-lane column wrap
      -> [r2] -> per-bank address, rotation R, per-lane position code -> [r3] -> bank reads -> [r4: bank data]
      -> rotation by R's low bits -> [r5] -> by its high bits -> [r6] -> per-lane position (or 0) -> [o]

Write ports: ``wr`` one address, a byte per bank and a bank mask; ``wr2`` one byte into one other bank
(the output stage's second pixel of a cycle). Both always ready; a bank writes where its mask bit (``wr``) or
hit bit (``wr2``) is set, which their writers set only while valid, and reads the address (and ``wr2``'s
data) from its group's copy (``BANKS_PER_WRITE_COPY``, hw/engine/layouts.py).
"""
from __future__ import annotations

from amaranth.hdl import Array, C, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from sparsegate.hw.engine.layouts import (BANKS_PER_WRITE_COPY, EngineGeometry, desc_layout, elem_layout,
                                          mac_in_layout, wide_write_layout, write_layout)
from sparsegate.hw.engine.pipeline_registers import pipeline_register, pipeline_register_like
from sparsegate.hw.engine.tiling import lane_sources
from sparsegate.hw.platform.memory_hints import READ_WRITE_DISJOINT
from sparsegate.hw.platform.replicated_registers import replicas

__all__ = ["ActBuffer", "LATENCY"]

#: Cycles from an element on ``i`` to its activations on ``o``.
LATENCY = 9
#: Lanes whose padding compares share one copy of the window's row and column (r1)
LANES_PER_COPY = 4
#: Output banks of a rotation step whose 2:1 muxes share one copy of the rotation amount (r5, r6)
BANKS_PER_ROT_COPY = 8


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
        Writes: an address, a byte per bank and a bank mask set only while valid (input load and the output
        stage's results).
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
        cmask = pipeline_register(lgb)
        rmask = pipeline_register(lgb)
        cx = pipeline_register(3)
        wide = g.bank_ratio - 1                 # 2P banks: 2Tx column banks; P banks (stride 1 only): Tx
        m.d.sync += [cx.eq(cfg.tlx + wide), cmask.eq((g.bank_ratio << cfg.tlx) - 1), rmask.eq((1 << cfg.tly) - 1)]
        lane_dx = [pipeline_register(lgb, name=f"lane_dx{j}") for j in range(p)]     # jx * stride
        lane_dy = [pipeline_register(lgb, name=f"lane_dy{j}") for j in range(p)]     # jy
        for j in range(p):
            jx = j & ((1 << cfg.tlx) - 1)
            m.d.sync += [lane_dx[j].eq(Mux(cfg.stride2, jx << 1, jx)), lane_dy[j].eq(j >> cfg.tlx)]
        bank_x = [pipeline_register(lgb, name=f"bank_x{b}") for b in range(nb)]
        bank_y = [pipeline_register(lgb, name=f"bank_y{b}") for b in range(nb)]
        for b in range(nb):
            m.d.sync += [bank_x[b].eq(b & cmask), bank_y[b].eq(b >> cx)]

        # ---- r0: the element's offsets apart: the output row / column scaled by the stride, the kernel
        # offsets less the padding, the output row in row words, the channel plane's offset
        r0_valid = Signal()
        r0 = pipeline_register_like(el)
        oy_s = pipeline_register(signed(14))
        x0_s = pipeline_register(signed(14))
        ky_p = pipeline_register(signed(14))
        kx_p = pipeline_register(signed(14))
        oy_q = pipeline_register(signed(14))
        ky_q = pipeline_register(signed(14))
        plane_off = pipeline_register(unsigned(aw))
        plane_shift = pipeline_register(5)                # static while a layer runs: registered
        row_step = pipeline_register(unsigned(aw))
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
        r1 = pipeline_register_like(el)
        y = pipeline_register(signed(14))
        yq = pipeline_register(signed(14))
        base = pipeline_register(signed(14))
        plane = pipeline_register(unsigned(aw))
        plane1 = pipeline_register(unsigned(aw))
        m.d.sync += [
            r1_valid.eq(r0_valid), r1.eq(r0), plane.eq(cfg.in_base + plane_off),
            plane1.eq(cfg.in_base + plane_off + row_step),
            y.eq(oy_s + ky_p), yq.eq(Mux(cfg.stride2, oy_s + ky_p, oy_q + ky_q)), base.eq(x0_s + kx_p),
        ]
        # the padding compares' own copies of y and base, one per LANES_PER_COPY lanes (kept apart: REPLICA), also
        # read by the banks' compares of their share
        y_copies = replicas(-(-p // LANES_PER_COPY), y.shape(), name="y_pad", reset_less=True)
        base_copies = replicas(len(y_copies), base.shape(), name="base_pad", reset_less=True)
        m.d.sync += [c.eq(oy_s + ky_p) for c in y_copies] + [c.eq(x0_s + kx_p) for c in base_copies]

        # ---- r2: the two row addresses a bank may read (row word y >> ry, and the next), the column word,
        # per bank whether it reads the next row / column word (the 2-D rotation), padding mask
        r2_valid = Signal()
        r2 = pipeline_register_like(el)
        row0 = pipeline_register(unsigned(aw))
        row1 = pipeline_register(unsigned(aw))
        q = pipeline_register(signed(14))
        next_col = pipeline_register(nb)
        next_row = pipeline_register(nb)
        bad = [pipeline_register(4, name=f"bad{j}") for j in range(p)]
        m.d.sync += [r2_valid.eq(r1_valid), r2.eq(r1), q.eq(base >> cx),
                     row0.eq(plane + (yq[:aw] << cfg.in_wb)), row1.eq(plane1 + (yq[:aw] << cfg.in_wb))]
        # (each bank's compares read the copies of y and base of its share of the lanes: one register reached all 2P
        # banks' compares and the lanes' across the die, on the 85F's late list at 32 lanes)
        for b in range(nb):
            y_b, base_b = y_copies[b * len(y_copies) // nb], base_copies[b * len(y_copies) // nb]
            m.d.sync += [next_col[b].eq((base_b[:lgb] & cmask) > bank_x[b]),
                         next_row[b].eq((y_b[:lgb] & rmask) > bank_y[b])]
        # the element's rotation R = (base mod cols) | (y mod Ty) << cx (fc: none), in two steps (r2, r3); per
        # lane whether its column wrapped past the tile's column banks (its rotated position one row back)
        rot_x = pipeline_register(lgb)
        rot_y = pipeline_register(lgb)
        carry = pipeline_register(p)
        m.d.sync += [rot_x.eq(Mux(cfg.fc, 0, base[:lgb] & cmask)), rot_y.eq(Mux(cfg.fc, 0, y[:lgb] & rmask))]
        # lane j's column wraps where base mod cols >= cols - jx*s: a compare with a per-layer register
        wrap_at = [pipeline_register(lgb + 1, name=f"wrap_at{j}") for j in range(p)]
        # lane j reads padding where y + dy_j or base + dx_j leaves the image: four compares of y and base with
        # per-layer bounds less the lane's offsets (registers; fc: bounds nothing crosses), not a sum then a
        # compare; each group of four lanes compares its own copy of y and base (one copy drove 16 lanes' compares
        # across the die: the 85F's critical path at 125 MHz), and r3 ORs the four results
        never = 1 << 14
        for j in range(p):
            y_lo, y_hi, x_lo, x_hi = (pipeline_register(signed(16), name=f"{n}{j}") for n in ("y_lo", "y_hi", "x_lo", "x_hi"))
            m.d.sync += [y_lo.eq(Mux(cfg.fc, -never, -lane_dy[j])), y_hi.eq(Mux(cfg.fc, never, cfg.in_h - lane_dy[j])),
                         x_lo.eq(Mux(cfg.fc, -never, -lane_dx[j])), x_hi.eq(Mux(cfg.fc, never, cfg.in_w - lane_dx[j]))]
            y_j, base_j = y_copies[j // LANES_PER_COPY], base_copies[j // LANES_PER_COPY]
            m.d.sync += [wrap_at[j].eq(cmask + 1 - lane_dx[j]),
                         bad[j].eq(Cat(y_j < y_lo, y_j >= y_hi, base_j < x_lo, base_j >= x_hi)),
                         carry[j].eq((base_j[:lgb] & cmask) >= wrap_at[j])]

        # ---- r3: one address per bank; then the bank reads. Per lane the code of its rotated position
        # (hw/engine/tiling.py lane_sources), or of 0 (padding): one of the layer's two (column wrapped or not)
        r3_valid = Signal()
        r3 = pipeline_register_like(el)
        r3_rot = pipeline_register(lgb)
        sources = [lane_sources(p, g.bank_ratio, j) for j in range(p)]
        cands = [sorted(set(src.values())) for src in sources]
        zero = max(len(c) for c in cands)                 # the code that reads 0
        code_bits = zero.bit_length()
        codes = [pipeline_register(code_bits, name=f"code{j}") for j in range(p)]
        # the layer's (tile width, stride) key, registered: each lane's two codes are then one LUT of its bits
        # (decoded straight from `cfg`, the key's Mux and the Switch were one path of the 85F's at 16 lanes)
        tile_key = Cat(cfg.stride2 & ~cfg.fc, Mux(cfg.fc, g.lg_lanes, cfg.tlx))
        layer_key = pipeline_register(len(tile_key))
        m.d.sync += layer_key.eq(tile_key)
        for j in range(p):
            layer_code = [pipeline_register(code_bits, name=f"code{j}_wrap{c}") for c in (0, 1)]    # static while a layer runs
            with m.Switch(layer_key):
                for tlx, stride2 in sorted({key[:2] for key in sources[j]}):
                    with m.Case(stride2 | tlx << 1):
                        m.d.sync += [layer_code[c].eq(cands[j].index(sources[j][tlx, stride2, c])) for c in (0, 1)]
            m.d.sync += codes[j].eq(Mux(bad[j].any(), zero, Mux(carry[j], layer_code[1], layer_code[0])))
        m.d.sync += [r3_valid.eq(r2_valid), r3.eq(r2), r3_rot.eq(rot_x | (rot_y << cx)[:lgb])]
        datas = []
        for b in range(nb):
            mem = Memory(shape=unsigned(8), depth=g.act_depth, init=[], attrs=READ_WRITE_DISJOINT)
            m.submodules[f"bank{b}"] = mem
            rp = mem.read_port()
            wp = mem.write_port()
            addr = pipeline_register(aw, name=f"addr{b}")
            conv_addr = (Mux(next_row[b], row1, row0) + q + next_col[b])[:aw]
            fc_addr = (cfg.in_base + r2.idx[b][:aw])[:aw] if b < p else 0
            m.d.sync += addr.eq(Mux(cfg.fc, fc_addr, conv_addr))
            # the write ports read their group's copy of the address (and wr2's data) and their own mask bits,
            # which the writers set only while valid
            second, k = self.wr2.payload.hit[b], b // BANKS_PER_WRITE_COPY
            m.d.comb += [
                rp.addr.eq(addr),
                rp.en.eq(1),
                wp.addr.eq(Mux(second, self.wr2.payload.addr[k], self.wr.payload.addr[k])),
                wp.data.eq(Mux(second, self.wr2.payload.data[k], self.wr.payload.data[b])),
                wp.en.eq(self.wr.payload.mask[b] | second),
            ]
            datas.append(rp.data)

        # ---- r4: bank data registered (r3's context follows the read)
        r4_valid, r5_valid, r6_valid = Signal(), Signal(), Signal()
        r4, r5, r6 = pipeline_register_like(el), pipeline_register_like(el), pipeline_register_like(el)
        r4_rot = pipeline_register(lgb)                     # (r5, r6: copies per bank group below)
        r4_codes = [pipeline_register(code_bits, name=f"r4_code{j}") for j in range(p)]
        r5_codes = [pipeline_register(code_bits, name=f"r5_code{j}") for j in range(p)]
        r6_codes = [pipeline_register(code_bits, name=f"r6_code{j}") for j in range(p)]
        # reset-less: nothing but the data, so the build moves them into the DP16KDs (hw/platform/bram_outreg.py)
        bank_data = [Signal(8, name=f"bank_data{b}", reset_less=True) for b in range(nb)]
        m.d.sync += [r4_valid.eq(r3_valid), r4.eq(r3), r4_rot.eq(r3_rot),
                     r5_valid.eq(r4_valid), r5.eq(r4),
                     r6_valid.eq(r5_valid), r6.eq(r5)]
        m.d.sync += [r4_codes[j].eq(codes[j]) for j in range(p)] + [r5_codes[j].eq(r4_codes[j]) for j in range(p)]
        m.d.sync += [r6_codes[j].eq(r5_codes[j]) for j in range(p)]
        m.d.sync += [bank_data[b].eq(datas[b]) for b in range(nb)]

        # ---- r6: the banks rotated by R's low bits (log depth: one 2:1 step per bit); r7: by its high bits; o: each
        # lane takes its position (or 0) from its handful of candidates. Every step's 2:1 muxes of a group of
        # BANKS_PER_ROT_COPY output banks read their own copy of R (kept apart: REPLICA): one copy of a bit drove
        # all 8 x 2P muxes of its step, across the die (the 85F's critical path at 125 MHz)
        def rotate(words, amounts, bits):
            for k in bits:
                words = [Mux(amounts[i // BANKS_PER_ROT_COPY][k], words[(i + (1 << k)) % nb], words[i])
                         for i in range(nb)]
            return words

        def copies(sources, name):
            """R a stage later, one register per bank group, group k's from ``sources[k]``."""
            regs = replicas(len(sources), lgb, name=f"{name}_copy", reset_less=True)
            m.d.sync += [reg.eq(source) for reg, source in zip(regs, sources)]
            return regs

        low = range((lgb + 1) // 2)
        half = [pipeline_register(8, name=f"rot_half{b}") for b in range(nb)]
        r5_rot = copies([r4_rot] * -(-nb // BANKS_PER_ROT_COPY), "r5_rot")
        m.d.sync += [half[b].eq(v) for b, v in enumerate(rotate(bank_data, r5_rot, low))]
        rotated = [pipeline_register(8, name=f"rot_full{b}") for b in range(nb)]
        m.d.sync += [rotated[b].eq(v) for b, v in
                     enumerate(rotate(half, copies(r5_rot, "r6_rot"), range(len(low), lgb)))]
        # (the lanes' choice in a stage of its own: after the rotation's last steps it was on the 85F's late list at
        # 32 lanes)
        r7_valid = Signal()
        r7 = pipeline_register_like(el)
        r7_codes = [pipeline_register(code_bits, name=f"r7_code{j}") for j in range(p)]
        m.d.sync += [r7_valid.eq(r6_valid), r7.eq(r6), *(r7_codes[j].eq(r6_codes[j]) for j in range(p))]
        out = Signal(mac_in_layout(g))
        for j in range(p):
            choices = Array([rotated[i] for i in cands[j]] + [C(0, 8)] * ((1 << code_bits) - len(cands[j])))
            m.d.comb += out.a[j].eq(choices[r7_codes[j]])
        m.d.comb += [out.w.eq(r7.w), out.first.eq(r7.first), out.last.eq(r7.last), out.ctx.eq(r7.ctx)]
        out_q = pipeline_register(mac_in_layout(g))
        m.d.sync += [self.o.valid.eq(r7_valid), out_q.eq(out)]
        m.d.comb += self.o.payload.eq(out_q)
        m.d.comb += self.busy.eq(r0_valid | r1_valid | r2_valid | r3_valid | r4_valid | r5_valid | r6_valid |
                                 r7_valid | self.o.valid)
        return m
