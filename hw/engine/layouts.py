"""Shared geometry and stream/memory layouts of the sparse convolution engine (docs/engine.md).

:class:`EngineGeometry` fixes every width of one engine instance (lane count, memory depths); the
layout functions give the ``lib.data`` layouts of the streams between the blocks and of the words in the
descriptor, channel-table and parameter memories, and :func:`pack` turns a dict into the integer a
memory init or a simulator port takes.
"""
from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import Out
from amaranth.utils import ceil_log2

__all__ = ["EngineGeometry", "desc_layout", "chan_layout", "param_layout", "tile_layout", "cmd_layout",
           "elem_layout", "mac_in_layout", "walk_layout", "mac_out_layout", "write_layout", "wide_write_layout", "pack",
           "unpack", "mem_write_signature", "ACC_BITS", "SIG_ROT", "BANKS_PER_WRITE_COPY"]

ACC_BITS = 32          # accumulator width (golden.ACC_BITS)
SIG_ROT = 3            # per-layer output signature: sig = rotl(sig, SIG_ROT) ^ word
DIM_BITS = 10          # feature-map heights / widths up to 1023
COUNT_BITS = 16        # nonzeros per output channel / FC round length
TILE_BITS = 16         # output channels / FC rounds per layer
#: Activation banks whose write port reads one copy of a write's address and data (one register driving all 2P
#: banks' write ports across the die was the 85F's critical path at 32 lanes)
BANKS_PER_WRITE_COPY = 8


@dataclass(frozen=True)
class EngineGeometry:
    """Sizes of one engine instance. ``lanes`` is a power of two; everything else comes from the program."""

    lanes: int = 16
    slot_bits: int = 19          # one weight element: int8 value above the packed (cin, ky, kx) index
    weight_depth: int = 1024     # wide weight words (lanes slots each)
    act_depth: int = 2048        # words per activation bank: every tensor's region (hw/engine/regions.py)
    chan_depth: int = 256        # channel/round table entries
    param_depth: int = 256       # output parameter entries (bias, mult, shift, dest)
    n_layers: int = 4
    input_depth: int = 32        # wide input words per sample (layer 0's input in the banked layout)
    n_samples: int = 1
    pool_width: int = 16         # row register of the fused 2x2 max-pool (pooled outputs per row)
    n_results: int = 16          # last-layer outputs captured for the host
    drains: int = 2              # output-stage pixels per cycle (2: a second requant pipeline; see `ways`)
    bank_ratio: int = 2          # activation banks per lane: 2 (any stride), 1 (stride-1 images: half the RAM)

    def __post_init__(self):
        p = self.lanes
        if not isinstance(p, int) or p < 1 or p & (p - 1) or p > 64:
            raise ValueError(f"lanes must be a power of two in 1..64, got {p!r}")
        if not isinstance(self.act_depth, int) or self.act_depth < 2:
            raise ValueError(f"act_depth must be an integer >= 2, got {self.act_depth!r}")
        if self.drains not in (1, 2):
            raise ValueError(f"drains must be 1 or 2, got {self.drains!r}")
        if self.bank_ratio not in (1, 2) or (self.bank_ratio == 1 and p < 2):
            raise ValueError(f"bank_ratio must be 2, or 1 with at least 2 lanes; got {self.bank_ratio!r} at {p} lanes")

    @property
    def banks(self) -> int:
        return self.bank_ratio * self.lanes

    @property
    def ways(self) -> int:
        """Output-stage pipelines: ``drains``, but one at one lane (a pass is one pixel)."""
        return min(self.drains, self.lanes)

    @property
    def write_copies(self) -> int:
        """Copies of a bank write's address and data: one per BANKS_PER_WRITE_COPY banks."""
        return -(-self.banks // BANKS_PER_WRITE_COPY)

    @property
    def lg_lanes(self) -> int:
        return ceil_log2(self.lanes)

    @property
    def lg_banks(self) -> int:
        return self.lg_lanes + self.bank_ratio - 1

    @property
    def act_aw(self) -> int:
        """Address bits of an activation bank."""
        return max(1, ceil_log2(self.act_depth))

    @property
    def waddr_bits(self) -> int:
        return max(1, ceil_log2(self.weight_depth))

    @property
    def nvalid_bits(self) -> int:
        return self.lanes.bit_length()

    @property
    def index_bits_max(self) -> int:
        return self.slot_bits - 8


def desc_layout(g: EngineGeometry) -> data.StructLayout:
    """One layer descriptor (the sequencer's descriptor memory)."""
    return data.StructLayout({
        "fc": 1, "stride2": 1, "pad": 3, "relu": 1, "pool": 1, "out_repl": 1, "last": 1,
        "drain2": 1,                    # the output stage takes two pixels a cycle (hw/engine/output_stage.py)
        "in_base": g.act_aw, "out_base": g.act_aw,    # the regions read and written (words)
        "in_h": DIM_BITS, "in_w": DIM_BITS, "in_hb": 4, "in_wb": 4,
        "tlx": 3, "tly": 3,             # the pass tile lg Tx, lg Ty (hw/engine/tiling.py); it also banks the input
        "out_cx": 3, "out_ry": 3,       # the output's bank layout (its conv reader's lg 2Tx, lg Ty)
        "n_corner": 7,                  # pixels of the map's last tile (its bottom-right corner): vx * vy
        "d_corner": 7,                  # its output-stage cycles two a cycle (drain2): vy * ceil(vx / 2)
        "ib": 5, "kyb": 3, "kxb": 3,
        "n_outer": TILE_BITS,           # conv: output channels; fc: rounds of `lanes` neurons
        "ho": DIM_BITS, "wo": DIM_BITS,  # conv output rows/columns walked (even when pooling)
        "out_hb": 4, "out_wb": 4,
        "chan_base": max(1, ceil_log2(g.chan_depth)), "prm_base": max(1, ceil_log2(g.param_depth)),
        "n_out": TILE_BITS,             # fc: output neurons (masks the last round)
    })


def chan_layout(g: EngineGeometry) -> data.StructLayout:
    """Per conv output channel / FC round: nonzero count (round length) and where its elements start."""
    return data.StructLayout({"count": COUNT_BITS, "start": g.waddr_bits + g.lg_lanes})


def param_layout(g: EngineGeometry) -> data.StructLayout:
    """Per output channel (conv) or output slot (fc): bias, requant, and the neuron index it writes."""
    return data.StructLayout({"bias": signed(32), "mult": unsigned(16), "shift": unsigned(6),
                              "dest": unsigned(TILE_BITS)})


#: The output stage walker's first decisions, made by the sequencer (:func:`tile_layout`, :func:`walk_layout`)
_START_DECISIONS = {"start_pair": 1, "start_row_end": 1, "start_last": 1}


def tile_layout(g: EngineGeometry) -> data.StructLayout:
    """Context of one pass (a tile of Ty x Tx output pixels at ``(oy, x0)``, or P neurons): travels with its
    elements. ``vx`` x ``vy`` is the tile's valid rectangle, ``nvalid = vx * vy`` (fc: ``vx = nvalid``);
    ``ndrain`` the output stage's cycles for it (``nvalid``, or ``vy * ceil(vx / 2)`` two a cycle);
    ``start_*``: the output stage walker's decisions on a row's first cycle (``start_pair``: two pixels,
    ``start_row_end``: the row ends) and on the pass's first (``start_last``: the pass ends)."""
    return data.StructLayout({"tile": TILE_BITS, "oy": DIM_BITS, "x0": DIM_BITS,
                              "nvalid": g.nvalid_bits, "vx": g.nvalid_bits, "vy": g.nvalid_bits,
                              "ndrain": g.nvalid_bits, **_START_DECISIONS})


def cmd_layout(g: EngineGeometry) -> data.StructLayout:
    """Sequencer -> weight decoder: fetch one wide weight word (conv: one slot of it)."""
    return data.StructLayout({"waddr": g.waddr_bits, "slot": max(1, g.lg_lanes), "zero": 1, "first": 1,
                              "last": 1, "ctx": tile_layout(g)})


def elem_layout(g: EngineGeometry) -> data.StructLayout:
    """Weight decoder -> activation buffer: decoded element(s)."""
    return data.StructLayout({
        "w": data.ArrayLayout(signed(8), g.lanes),            # conv: the same weight in every lane
        "idx": data.ArrayLayout(unsigned(16), g.lanes),       # fc: each lane's input index
        "ci": 16, "ky": 3, "kx": 3,                           # conv: the element's position
        "first": 1, "last": 1, "ctx": tile_layout(g)})


def mac_in_layout(g: EngineGeometry) -> data.StructLayout:
    return data.StructLayout({"w": data.ArrayLayout(signed(8), g.lanes),
                              "a": data.ArrayLayout(signed(8), g.lanes),
                              "first": 1, "last": 1, "ctx": tile_layout(g)})


def walk_layout(g: EngineGeometry) -> data.StructLayout:
    """The pass context's fields the output stage's walker decides on (``vx``, ``nvalid``, its first
    decisions)."""
    return data.StructLayout({"nvalid": g.nvalid_bits, "vx": g.nvalid_bits, **_START_DECISIONS})


def mac_out_layout(g: EngineGeometry) -> data.StructLayout:
    """MAC array -> output stage: a pass's sums and context; ``walk`` repeats the walker's fields of ``ctx``
    in registers of their own (loaded by their own enable: placed by the walker, not by the sums)."""
    return data.StructLayout({"acc": data.ArrayLayout(signed(ACC_BITS), g.lanes), "ctx": tile_layout(g),
                              "walk": walk_layout(g)})


def write_layout(g: EngineGeometry) -> data.StructLayout:
    """Output stage -> activation buffer: one int8 result to one bank, or to all banks (``bcast``).

    ``addr`` and ``data`` come in :attr:`EngineGeometry.write_copies` equal copies, copy ``k`` for banks
    ``k * BANKS_PER_WRITE_COPY ...``; ``hit`` is the bank mask decoded from ``bank`` / ``bcast`` and set only
    while the stream is valid, so a bank's write enable is one flip-flop. ``bank`` / ``bcast`` name the
    write for the signatures."""
    n = g.write_copies
    return data.StructLayout({"addr": data.ArrayLayout(g.act_aw, n), "data": data.ArrayLayout(unsigned(8), n),
                              "hit": g.banks, "bank": max(1, g.lg_banks), "bcast": 1})


def wide_write_layout(g: EngineGeometry) -> data.StructLayout:
    """Activation buffer write port: one byte per bank at one address, with a bank mask set only while the
    stream is valid (the address in a copy per BANKS_PER_WRITE_COPY banks, as in :func:`write_layout`)."""
    return data.StructLayout({"addr": data.ArrayLayout(g.act_aw, g.write_copies),
                              "data": data.ArrayLayout(unsigned(8), g.banks), "mask": g.banks})


def pack(layout, values: dict) -> int:
    """The bit pattern of ``values`` (nested dicts / lists for struct / array fields) in ``layout``."""
    bits = 0
    if isinstance(layout, data.ArrayLayout):
        items = enumerate(values)
        fields = {i: (layout.elem_shape, i * data.Layout.cast(layout.elem_shape).size) for i, _ in items}
        for i, v in enumerate(values):
            shape, offset = fields[i]
            bits |= _pack_one(shape, v) << offset
        return bits
    for name, field in layout:
        if name in values:
            bits |= _pack_one(field.shape, values[name]) << field.offset
    return bits


def _pack_one(shape, value) -> int:
    if isinstance(shape, (data.StructLayout, data.ArrayLayout)):
        return pack(shape, value)
    width = data.Layout.cast(shape).size if isinstance(shape, data.Layout) else Shape.cast(shape).width
    return int(value) & ((1 << width) - 1)


def unpack(layout: data.StructLayout, bits: int) -> dict:
    """Inverse of :func:`pack` for struct layouts of plain and array fields (an array comes back a list; signed
    fields come back signed)."""
    out = {}
    for name, field in layout:
        shape = field.shape
        v = (bits >> field.offset) & ((1 << field.width) - 1)
        if isinstance(shape, data.ArrayLayout):
            width = Shape.cast(shape.elem_shape).width
            v = [_signed(shape.elem_shape, (v >> (i * width)) & ((1 << width) - 1)) for i in range(shape.length)]
        else:
            v = _signed(shape, v)
        out[name] = v
    return out


def _signed(shape, v: int) -> int:
    """The field value ``v`` read as ``shape``: two's complement where the shape is signed."""
    width = Shape.cast(shape).width
    return v - (1 << width) if Shape.cast(shape).signed and v >> (width - 1) else v


def mem_write_signature(width: int, depth: int) -> wiring.Signature:
    """A host write port into one engine memory (``en``, ``addr``, ``data``): used by the board top's
    host link to load a weight image or inputs at run time (``SparseEngine(..., host_write=True)``)."""
    return wiring.Signature({"en": Out(1), "addr": Out(range(max(2, depth))), "data": Out(width)})
