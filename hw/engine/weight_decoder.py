"""Weight-stream decoder: fetches wide weight words and decodes the image's element records.

Each slot of a weight word holds one element record exactly as the weight image stores it
(:attr:`sparsegate.sw.ir.weight_image.SparseLayer.entry_words`): the int8 value above the packed index
``cin << (ky_bits + kx_bits) | ky << kx_bits | kx``, with the per-layer field widths (``ib``, ``kyb``,
``kxb``) taken from the layer descriptor. A conv command selects one slot: its value is broadcast to
all lanes with its ``(cin, ky, kx)``. An fc command uses every slot: lane ``l`` gets slot ``l``'s value
and its input index (the ``cin`` field). A ``zero`` command yields weight 0 everywhere (an empty pass).

Fixed-latency pipeline, never stalls (``i`` and ``o`` are ``always_ready`` streams: the engine's
command queue is the only place that waits). Every block-RAM output goes straight into a register::

    i (cmd) -> [address copies | cmd] -> [weight memory banks read | cmd] -> [bank words] -> bank select
      -> [word] -> slot select -> [entry] -> value, index (shifts by the descriptor's widths) -> [s5]
      -> cin/ky/kx, zero, fc/conv -> [o]

The memory is split into column slices of :data:`LANES_PER_SLICE` lanes, each with its own registered copy
of the address (the command queue's LUT-RAM output reaching every block RAM of a 32-lane word was the 85F's
late path).
"""
from __future__ import annotations

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from sparsegate.hw.engine.layouts import EngineGeometry, cmd_layout, desc_layout, elem_layout, mem_write_signature
from sparsegate.hw.engine.pipeline_registers import pipeline_register
from sparsegate.hw.platform.memory_hints import read_write_disjoint
from sparsegate.hw.platform.replicated_registers import REPLICA

__all__ = ["WeightDecoder", "LATENCY", "LANES_PER_SLICE", "weight_banks", "weight_memories"]

#: Cycles from a command on ``i`` to its element on ``o``.
LATENCY = 7

#: Lanes of a weight word in one memory (a column slice with its own address register): 8 slots of the
#: 19-bit records of the pruned LeNet-5 fill 17 DP16KDs in their 9-bit mode, as the whole word would.
LANES_PER_SLICE = 8

#: Weight words per memory bank: the deepest DP16KD configuration that keeps 9-bit slices (2048 x 9).
BANK_DEPTH = 2048


def weight_banks(geometry: EngineGeometry) -> tuple[int, int]:
    """``(words per bank, banks)``: banks of :data:`BANK_DEPTH` words, one DP16KD deep each (fewer words where the
    whole memory is shallower); the last bank holds the rest."""
    depth = min(geometry.weight_depth, BANK_DEPTH)
    return depth, -(-geometry.weight_depth // depth)


def weight_memories(geometry: EngineGeometry) -> list[tuple[int, int, int, int]]:
    """The weight memory's pieces, ``(first word, depth, first lane, lanes)`` each: the banks of
    :func:`weight_banks`, each in column slices of :data:`LANES_PER_SLICE` lanes (what the resource estimate
    counts too)."""
    g = geometry
    depth, n_banks = weight_banks(g)
    return [(b * depth, max(2, min(depth, g.weight_depth - b * depth)), lo, min(g.lanes, lo + LANES_PER_SLICE) - lo)
            for b in range(n_banks) for lo in range(0, g.lanes, LANES_PER_SLICE)]


class WeightDecoder(wiring.Component):
    """Weight fetch and element decode (module docstring: slot format, pipeline).

    Members
    -------
    cfg : ``In(desc_layout)``
        The running layer's descriptor (field widths, conv or fc).
    i : ``In(stream.Signature(cmd_layout), always_ready=True)``
        Commands from the engine's queue (released by the engine's pass spacing; never stalls).
    o : ``Out(stream.Signature(elem_layout), always_ready=True)``
        Per-lane weights and activation coordinates (fixed latency; never waits).
    busy : ``Out(1)``
        Commands in the pipeline.
    wr : ``In(mem_write_signature(...))``
        ``host_write=True`` only: writes into the weight memory.
    """

    def __init__(self, geometry: EngineGeometry, weight_words, host_write: bool = False):
        self.g = geometry
        self.weight_words = list(weight_words)
        self.host_write = host_write
        extra = {"wr": In(mem_write_signature(geometry.lanes * geometry.slot_bits, geometry.weight_depth))} \
            if host_write else {}
        super().__init__({**extra,
            "cfg": In(desc_layout(geometry)),
            "i": In(stream.Signature(cmd_layout(geometry), always_ready=True)),
            "o": Out(stream.Signature(elem_layout(geometry), always_ready=True)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        g = self.g
        p, sb = g.lanes, g.slot_bits
        word_layout = data.ArrayLayout(unsigned(sb), p)
        # the weight memory in banks (weight_banks), each in column slices (weight_memories): every block RAM
        # output goes straight into a register, and the bank select is a mux between registers
        depth, n_banks = weight_banks(g)
        low = max(1, ceil_log2(depth))
        waddr = self.i.payload.waddr
        pieces = weight_memories(g)
        n_slices = len(pieces) // n_banks
        bank_words = []
        for b in range(n_banks):
            hit = (self.wr.addr >> low) == b if self.host_write and n_banks > 1 else 1
            parts = []
            for k, (first, bank_depth, lo, lanes) in enumerate(pieces[b * n_slices:(b + 1) * n_slices]):
                width, hi = lanes * sb, lo + lanes
                mem = Memory(shape=unsigned(width), depth=bank_depth,
                             init=[(w >> (lo * sb)) & ((1 << width) - 1)
                                   for w in self.weight_words[first:first + bank_depth]],
                             attrs=read_write_disjoint(self.host_write))
                m.submodules[f"wmem{b}_{k}"] = mem
                rd = mem.read_port()
                # s0: the slice's own copy of the address (kept apart: REPLICA)
                addr = Signal(low, name=f"waddr{b}_{k}", attrs=REPLICA, reset_less=True)
                m.d.sync += addr.eq(waddr[:low])
                m.d.comb += [rd.addr.eq(addr), rd.en.eq(1)]
                if self.host_write:     # run-time loading of the weight words
                    wp = mem.write_port()
                    m.d.comb += [wp.en.eq(self.wr.en & hit), wp.addr.eq(self.wr.addr[:low]),
                                 wp.data.eq(self.wr.data[lo * sb:hi * sb])]
                # s2: registered, reset-less (the build moves it into the DP16KDs: hw/platform/bram_outreg.py)
                part = Signal(width, name=f"word_bank{b}_{k}", reset_less=True)
                m.d.sync += part.eq(rd.data)
                parts.append(part)
            bank_words.append(word_layout(Cat(*parts)))

        cl = cmd_layout(g)
        s0_valid = Signal()
        s1_valid = Signal()
        s2_valid = Signal()
        s3_valid = Signal()
        s4_valid = Signal()
        s5_valid = Signal()
        s0 = pipeline_register(cl)
        s1 = pipeline_register(cl)
        s2 = pipeline_register(cl)
        s3 = pipeline_register(cl)
        s4 = pipeline_register(cl)
        s5 = pipeline_register(cl)
        word3 = pipeline_register(word_layout)      # s3: the addressed bank's word
        word4 = pipeline_register(word_layout)
        entry = pipeline_register(sb)               # s4: the conv command's slot
        bank = (s2.waddr >> low) if n_banks > 1 else 0
        m.d.sync += [s0_valid.eq(self.i.valid), s0.eq(self.i.payload), s1_valid.eq(s0_valid), s1.eq(s0),
                     s2_valid.eq(s1_valid), s2.eq(s1),
                     s3_valid.eq(s2_valid), s3.eq(s2),
                     word3.eq(Array(bank_words)[bank] if n_banks > 1 else bank_words[0]),
                     s4_valid.eq(s3_valid), s4.eq(s3), word4.eq(word3),
                     entry.eq(word3[s3.slot] if p > 1 else word3[0]),
                     s5_valid.eq(s4_valid), s5.eq(s4)]

        # s5: records split into value and index (variable field widths from the descriptor, whose derived
        # masks and shift are registered: the descriptor is static while a layer runs)
        cfg = self.cfg
        ib_mask = pipeline_register(sb)
        ky_mask = pipeline_register(3)
        kx_mask = pipeline_register(3)
        ci_shift = pipeline_register(4)
        m.d.sync += [ib_mask.eq((Const(1, sb + 1) << cfg.ib) - 1), ci_shift.eq(cfg.kyb + cfg.kxb),
                     ky_mask.eq((Const(1, 4) << cfg.kyb) - 1), kx_mask.eq((Const(1, 4) << cfg.kxb) - 1)]
        value = pipeline_register(signed(8))
        index = pipeline_register(sb)
        lane_values = [pipeline_register(signed(8), name=f"value{lane}") for lane in range(p)]
        lane_index = [pipeline_register(sb, name=f"index{lane}") for lane in range(p)]
        m.d.sync += [value.eq((entry >> cfg.ib)[:8]), index.eq(entry & ib_mask)]
        for lane in range(p):
            m.d.sync += [lane_values[lane].eq((word4[lane] >> cfg.ib)[:8]), lane_index[lane].eq(word4[lane] & ib_mask)]

        out = Signal(elem_layout(g))
        m.d.comb += [
            out.ci.eq(index >> ci_shift),
            out.ky.eq((index >> cfg.kxb) & ky_mask),
            out.kx.eq(index & kx_mask),
            out.first.eq(s5.first),
            out.last.eq(s5.last),
            out.ctx.eq(s5.ctx),
        ]
        for lane in range(p):
            m.d.comb += [out.w[lane].eq(Mux(s5.zero, 0, Mux(cfg.fc, lane_values[lane], value))),
                         out.idx[lane].eq(lane_index[lane])]
        out_q = pipeline_register(elem_layout(g))
        m.d.sync += [self.o.valid.eq(s5_valid), out_q.eq(out)]
        m.d.comb += self.o.payload.eq(out_q)
        m.d.comb += self.busy.eq(s0_valid | s1_valid | s2_valid | s3_valid | s4_valid | s5_valid | self.o.valid)
        return m
