"""Unit tests of the engine's blocks under Amaranth's simulator, each against a plain-Python model of the
block. The datapath blocks never stall (their ``o.ready`` is ignored), so their inputs get seeded random
valid gaps and their outputs are always ready; the sequencer's command stream gets random ready stalls
(the command queue filling up)."""
from __future__ import annotations

import random

import numpy as np
import pytest

from sparsegate.hw.engine.act_buffer import ActBuffer
from sparsegate.hw.engine.layouts import (EngineGeometry, desc_layout, mac_in_layout, mac_out_layout, pack,
                                          unpack, write_layout)
from sparsegate.hw.engine.cycle_model import layer_passes
from sparsegate.hw.engine.mac_array import MacArray
from sparsegate.hw.engine.output_stage import OutputStage
from sparsegate.hw.engine.sequencer import Sequencer
from sparsegate.hw.engine.weight_decoder import WeightDecoder
from sparsegate.sim.engine.amaranth_sim import small_program
from sparsegate.sim.engine.streams import run_streams
from sparsegate.sw.ir.golden import requantize


def _field(layout, bits, *path):
    """Read a (possibly nested / array) field of a packed integer."""
    from amaranth.lib import data
    offset, shape = 0, layout
    for key in path:
        if isinstance(shape, data.ArrayLayout):
            elem = data.Layout.cast(shape.elem_shape).size if isinstance(shape.elem_shape, data.Layout) \
                else shape.elem_shape.width
            offset += key * elem
            shape = shape.elem_shape
        else:
            f = shape[key]
            offset += f.offset
            shape = f.shape
    from amaranth.hdl import Shape
    s = Shape.cast(shape) if not isinstance(shape, data.Layout) else None
    width = s.width if s is not None else data.Layout.cast(shape).size
    v = (bits >> offset) & ((1 << width) - 1)
    if s is not None and s.signed and v >> (width - 1):
        v -= 1 << width
    return v


# ------------------------------------------------------------------------------------------ MAC array

@pytest.mark.parametrize("lanes", [1, 4])
def test_mac_array_random_gaps(lanes):
    g = EngineGeometry(lanes=lanes)
    rng = random.Random(lanes)
    items, expected, acc = [], [], [0] * lanes
    ml = mac_in_layout(g)
    for group in range(25):
        size = rng.randint(1, 6)
        for k in range(size):
            w = [rng.randint(-127, 127) for _ in range(lanes)]
            a = [rng.randint(-128, 127) for _ in range(lanes)]
            acc = [(0 if k == 0 else s) + wi * ai for s, wi, ai in zip(acc, w, a)]
            ctx = {"tile": group, "oy": 3, "x0": 0, "nvalid": lanes}
            items.append({"w": w, "a": a, "first": k == 0, "last": k == size - 1, "ctx": ctx})
        expected.append((acc, group))
    dut = MacArray(g)
    got = run_streams(dut, {dut.i: items}, {dut.o: len(expected)}, seed=lanes, ready_prob=1.0)[dut.o]
    ol = mac_out_layout(g)
    for bits, (acc, group) in zip(got, expected):
        assert [_field(ol, bits, "acc", j) for j in range(lanes)] == acc
        assert _field(ol, bits, "ctx", "tile") == group


# ------------------------------------------------------------------------------------ weight decoder

def test_weight_decoder_random_gaps():
    prog = small_program(lanes=4, seed=3)
    g = prog.geometry
    rng = random.Random(5)
    for layer_i in (0, 2):            # a conv layer and an fc layer
        desc = prog.layers[layer_i].desc
        cmds = []
        for _ in range(60):
            cmds.append({"waddr": rng.randrange(len(prog.weight_words)), "slot": rng.randrange(4),
                         "zero": rng.random() < 0.1, "first": 1, "last": rng.random() < 0.5,
                         "ctx": {"tile": rng.randrange(9), "oy": 1, "x0": 4, "nvalid": 3}})
        dut = WeightDecoder(g, prog.weight_words)

        async def setup(ctx, d=desc):
            ctx.set(dut.cfg.as_value(), pack(desc_layout(g), d))

        got = run_streams(dut, {dut.i: cmds}, {dut.o: len(cmds)}, seed=layer_i, setup=setup,
                          ready_prob=1.0)[dut.o]
        from sparsegate.hw.engine.layouts import elem_layout
        el = elem_layout(g)
        ib, kyb, kxb = desc["ib"], desc["kyb"], desc["kxb"]
        for cmd, bits in zip(cmds, got):
            word = prog.weight_words[cmd["waddr"]]
            slots = [(word >> (g.slot_bits * j)) & ((1 << g.slot_bits) - 1) for j in range(4)]

            def value(e):
                v = (e >> ib) & 0xFF
                return v - 256 if v & 0x80 else v
            if desc["fc"]:
                want_w = [0 if cmd["zero"] else value(s) for s in slots]
                assert [_field(el, bits, "idx", j) for j in range(4)] == [s & ((1 << ib) - 1) for s in slots]
            else:
                e = slots[cmd["slot"]]
                want_w = [0 if cmd["zero"] else value(e)] * 4
                index = e & ((1 << ib) - 1)
                assert _field(el, bits, "ci") == index >> (kyb + kxb)
                assert _field(el, bits, "ky") == (index >> kxb) & ((1 << kyb) - 1)
                assert _field(el, bits, "kx") == index & ((1 << kxb) - 1)
            assert [_field(el, bits, "w", j) for j in range(4)] == want_w
            assert _field(el, bits, "last") == cmd["last"]
            assert _field(el, bits, "ctx", "tile") == cmd["ctx"]["tile"]


# ------------------------------------------------------------------------------------ activation buffer

@pytest.mark.parametrize("lanes,stride,pad,fc,tx,ratio", [
    (4, 1, 2, False, 4, 2), (4, 2, 1, False, 4, 2), (1, 2, 3, False, 1, 2), (8, 1, 0, True, 8, 2),
    (4, 1, 2, False, 2, 2), (8, 1, 1, False, 2, 2), (16, 1, 3, False, 4, 2), (16, 2, 2, False, 16, 2),
    (32, 1, 1, False, 8, 2), (32, 2, 1, False, 32, 2), (32, 1, 2, False, 2, 2), (16, 1, 2, False, 4, 1),
    (8, 1, 1, False, 8, 1), (8, 1, 0, True, 8, 1)])
def test_act_buffer_shifted_reads(lanes, stride, pad, fc, tx, ratio):
    """Tiles of ``lanes / tx`` rows x ``tx`` columns read from the 2-D bank layout (``tx = lanes``: one row),
    in ``2P`` banks or (``ratio`` 1, stride 1) ``P``: every lane's rotated position and the zero padding."""
    from sparsegate.hw.engine.layouts import elem_layout, wide_write_layout
    from sparsegate.hw.engine.tiling import Tiling, conv_layout, conv_place
    g = EngineGeometry(lanes=lanes, act_depth=256, bank_ratio=ratio)
    nb = g.banks
    tile = Tiling(tx, lanes // tx, ratio)
    rng = np.random.default_rng(lanes + stride + pad + tx + ratio)
    c, h, w = 3, 7, 13
    fmap = rng.integers(-128, 128, size=(c, h, w))
    vec = rng.integers(-128, 128, size=100)
    hb, wb, words = conv_layout((c, h, w), tile)
    base = 100  # the region read: an unaligned base exercises the address adders
    writes = []
    if fc:
        for i, v in enumerate(vec):
            writes.append({"addr": [base + i] * g.write_copies, "data": [int(v) & 0xFF] * nb, "mask": (1 << nb) - 1})
    else:
        mem = np.zeros((words, nb), dtype=np.int64)
        for ci in range(c):
            for y in range(h):
                for x in range(w):
                    bank, addr = conv_place(tile, hb, wb, ci, y, x)
                    mem[addr, bank] = int(fmap[ci, y, x]) & 0xFF
        for a in range(words):
            writes.append({"addr": [base + a] * g.write_copies, "data": [int(v) for v in mem[a]],
                           "mask": int.from_bytes(rng.bytes(8), "little") % (1 << nb) | 1})
            writes.append({"addr": [base + a] * g.write_copies, "data": [int(v) for v in mem[a]],
                           "mask": (1 << nb) - 1})
    desc = dict(fc=fc, stride2=stride == 2, pad=pad, in_base=base, in_h=h, in_w=w, in_hb=hb, in_wb=wb,
                tlx=tile.tlx, tly=tile.tly)
    elems, expected = [], []
    prng = random.Random(7)
    for _ in range(50):
        wv = [prng.randint(-127, 127) for _ in range(lanes)]
        if fc:
            idx = [prng.randrange(100) for _ in range(lanes)]
            elems.append({"w": wv, "idx": idx, "first": 1, "last": 1, "ctx": {"nvalid": lanes}})
            expected.append([int(vec[i]) for i in idx])
        else:
            ci, ky, kx = prng.randrange(c), prng.randrange(5), prng.randrange(5)
            oy, x0 = prng.randrange(0, h // stride + 1), prng.randrange(0, w // stride + 1)
            oy -= oy % tile.ty      # a tile starts on a multiple of Ty (the sequencer's walk)
            elems.append({"w": wv, "ci": ci, "ky": ky, "kx": kx, "first": 0, "last": 0,
                          "ctx": {"oy": oy, "x0": x0, "nvalid": lanes}})
            row = []
            for j in range(lanes):
                jy, jx = divmod(j, tx)
                y, x = oy * stride + ky - pad + jy, (x0 + jx) * stride + kx - pad
                row.append(int(fmap[ci, y, x]) if 0 <= y < h and 0 <= x < w else 0)
            expected.append(row)
    dut = ActBuffer(g)

    async def setup(ctx):
        ctx.set(dut.cfg.as_value(), pack(desc_layout(g), desc))
        for item in writes:      # load through the write port (one word per cycle; the mask only while valid)
            ctx.set(dut.wr.payload, item)
            ctx.set(dut.wr.valid, 1)
            await ctx.tick()
        ctx.set(dut.wr.payload.mask, 0)
        ctx.set(dut.wr.valid, 0)
        await ctx.tick()

    got = run_streams(dut, {dut.i: elems}, {dut.o: len(elems)}, seed=lanes * 3 + stride, setup=setup,
                      ready_prob=1.0)[dut.o]
    ml = mac_in_layout(g)
    for e, bits, want in zip(elems, got, expected):
        assert [_field(ml, bits, "a", j) for j in range(lanes)] == want, e
        assert [_field(ml, bits, "w", j) for j in range(lanes)] == e["w"]
    del elem_layout, wide_write_layout


# ------------------------------------------------------------------------------------------ output stage

def _mac_pass(acc: list[int], **fields) -> dict:
    """A pass as the MAC array hands it on: its sums, its context as the sequencer issues it (the fields, and
    the walker's first decisions one a cycle) and the walker's copy of those fields."""
    vx, nvalid = fields["vx"], fields["nvalid"]
    ctx = {**fields, "start_pair": 0, "start_row_end": vx <= 1, "start_last": nvalid <= 1}
    walk = {k: ctx[k] for k in ("vx", "nvalid", "start_pair", "start_row_end", "start_last")}
    return {"acc": acc, "ctx": ctx, "walk": walk}


@pytest.mark.parametrize("mode", ["conv", "conv_pool_flat", "tile", "tile_pool", "fc"])
def test_output_stage_random_gaps(mode):
    """One-row passes (``conv``), 2x2 tiles cut at the map's edges (``tile``: 5x5) and pooled 2x2 tiles
    (``tile_pool``: each tile holds both rows of its pool pairs), written to a 2x2-tiled consumer's banks."""
    from sparsegate.hw.engine.tiling import Tiling, conv_layout, conv_place
    lanes = 4
    rng = np.random.default_rng({"conv": 1, "conv_pool_flat": 2, "fc": 3, "tile": 4, "tile_pool": 5}[mode])
    cout = 3
    bias = rng.integers(-5000, 5000, size=cout + 8)
    mult = rng.integers(0, 1 << 16, size=cout + 8)
    shift = rng.integers(10, 24, size=cout + 8)
    dest = rng.permutation(cout + 8)
    g = EngineGeometry(lanes=lanes, act_depth=256, param_depth=32, pool_width=8)
    from sparsegate.hw.engine.layouts import param_layout
    params = [pack(param_layout(g), {"bias": int(b), "mult": int(m), "shift": int(s), "dest": int(d)})
              for b, m, s, d in zip(bias, mult, shift, dest)]
    relu = mode != "conv"
    pool = mode in ("conv_pool_flat", "tile_pool")
    flat = mode == "conv_pool_flat"
    tile = Tiling(2, 2) if mode.startswith("tile") else Tiling(lanes)
    consumer = Tiling(2, 2) if mode.startswith("tile") else Tiling(lanes)
    ho, wo = {"fc": (1, 1), "tile": (5, 5)}.get(mode, (4, 6))
    tiles, expected = [], []
    if mode == "fc":
        n_out = 11
        acc = rng.integers(-(1 << 20), 1 << 20, size=n_out + 1)
        for r in range(3):
            nvalid = min(lanes, n_out - r * lanes)
            a = [int(v) for v in acc[r * lanes:r * lanes + lanes]] + [0] * (lanes - nvalid)
            a = a[:lanes]
            tiles.append(_mac_pass(a, tile=r, nvalid=nvalid, vx=nvalid, vy=1))
            for lane in range(nvalid):
                s = r * lanes + lane
                y = requantize(np.array([[a[lane] + bias[s]]]), mult[s], shift[s])[0, 0]
                expected.append((0xFF, int(dest[s]), int(max(y, 0)) & 0xFF))
        desc = dict(fc=1, relu=1, out_repl=1, out_base=37, prm_base=0, n_out=n_out, tlx=tile.tlx)
    else:
        acc = rng.integers(-(1 << 20), 1 << 20, size=(cout, ho, wo))
        y = requantize((acc + bias[:cout, None, None])[None], mult[:cout], shift[:cout])[0]
        if relu:
            y = np.maximum(y, 0)
        if pool:
            y = y.reshape(cout, ho // 2, 2, wo // 2, 2).max(axis=(2, 4))
        out_hb, out_wb, _ = conv_layout(y.shape, consumer)
        counter = 0
        for co in range(cout):
            for oy in range(0, ho, tile.ty):
                for x0 in range(0, wo, tile.tx):
                    vx, vy = min(tile.tx, wo - x0), min(tile.ty, ho - oy)
                    a = [0] * lanes
                    for jy in range(vy):
                        for jx in range(vx):
                            a[jy * tile.tx + jx] = int(acc[co, oy + jy, x0 + jx])
                            py, px = oy + jy, x0 + jx
                            if pool:
                                if not (py & 1 and px & 1):
                                    continue
                                py, px = py >> 1, px >> 1
                            v = int(y[co, py, px]) & 0xFF
                            if flat:
                                expected.append((0xFF, counter, v))
                                counter += 1
                            else:
                                expected.append(conv_place(consumer, out_hb, out_wb, co, py, px) + (v,))
                    tiles.append(_mac_pass(a, tile=co, oy=oy, x0=x0, nvalid=vx * vy, vx=vx, vy=vy))
        desc = dict(fc=0, relu=relu, pool=pool, out_repl=flat, out_base=37, out_hb=out_hb, out_wb=out_wb,
                    prm_base=0, tlx=tile.tlx, tly=tile.tly, out_cx=0 if flat else consumer.cx,
                    out_ry=0 if flat else consumer.ry)
        assert len(expected) == y.size
    dut = OutputStage(g, params)

    async def setup(ctx):
        # the descriptor two cycles before the first pass (OutputStage.cfg)
        ctx.set(dut.cfg.as_value(), pack(desc_layout(g), desc))
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        await ctx.tick()

    got = run_streams(dut, {dut.i: tiles}, {dut.o: len(expected)}, seed=5, setup=setup, ready_prob=1.0)[dut.o]
    wl = write_layout(g)
    decoded = []
    for bits in got:
        f = unpack(wl, bits)
        # every bank group's copy of the address and data the same; the bank mask decoded (every bank: bcast)
        assert len(set(f["addr"])) == len(set(f["data"])) == 1
        assert f["hit"] == ((1 << g.banks) - 1 if f["bcast"] else 1 << f["bank"])
        addr, value = f["addr"][0], f["data"][0]
        assert addr >= 37  # the output region's base
        decoded.append((0xFF if f["bcast"] else f["bank"], addr - 37, value))
    assert decoded == expected


# ------------------------------------------------------------------------------------------- sequencer

def test_sequencer_commands_with_stalls():
    prog = small_program(lanes=4, seed=11)
    g = prog.geometry
    expected = []
    from sparsegate.hw.engine.layouts import chan_layout, cmd_layout
    cl = chan_layout(g)
    for plan in prog.layers:
        d = plan.desc
        for o in range(d["n_outer"]):
            ch = unpack(cl, prog.chan_words[d["chan_base"] + o])
            passes = plan.passes_per_outer
            for j in range(passes):
                k = max(1, ch["count"])
                for e in range(k):
                    if plan.kind == "fc":
                        waddr, slot = ch["start"] + e, 0
                    else:
                        waddr, slot = (ch["start"] + e) // 4, (ch["start"] + e) % 4
                    if plan.kind == "conv":
                        t = plan.tiling
                        oy, x0 = divmod(j, -(-d["wo"] // t.tx))
                        oy, x0 = oy * t.ty, x0 * t.tx
                        vx, vy = min(t.tx, d["wo"] - x0), min(t.ty, d["ho"] - oy)
                    else:
                        oy, x0, vx, vy = 0, 0, plan.nvalid[o], 1
                    nvalid = plan.nvalid[j] if plan.kind == "conv" else plan.nvalid[o]
                    assert nvalid == vx * vy
                    expected.append((waddr, slot, int(ch["count"] == 0), int(e == 0), int(e == k - 1), o, nvalid,
                                     oy, x0, vx, vy))
    assert len(expected) == sum(p[1] for plan in prog.layers for p in layer_passes(plan))
    dut = Sequencer(g, prog.desc_words, prog.chan_words)

    async def setup(ctx):
        ctx.set(dut.pipe_idle, 1)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)

    got = run_streams(dut, {}, {dut.cmd: len(expected)}, seed=2, ready_prob=0.5, settle=40, setup=setup)[dut.cmd]
    cl2 = cmd_layout(g)
    decoded = [(_field(cl2, b, "waddr"), _field(cl2, b, "slot"), _field(cl2, b, "zero"), _field(cl2, b, "first"),
                _field(cl2, b, "last"), _field(cl2, b, "ctx", "tile"), _field(cl2, b, "ctx", "nvalid"),
                _field(cl2, b, "ctx", "oy"), _field(cl2, b, "ctx", "x0"), _field(cl2, b, "ctx", "vx"),
                _field(cl2, b, "ctx", "vy")) for b in got]
    assert any(p.tiling is not None and p.tiling.ty > 1 for p in prog.layers)  # a 2-D tile is walked
    assert decoded == expected
