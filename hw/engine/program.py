"""The engine's host-side compiler: a weight image (a :class:`~sparsegate.sw.ir.golden.QuantizedNetwork` as
:func:`~sparsegate.sw.ir.weight_image.decode_image` returns it) to the contents of every on-chip memory.

One :class:`EngineProgram` feeds the Amaranth simulator, Verilator/Icarus (memories initialised at
elaboration) and the analytical cycle model (:mod:`sparsegate.hw.engine.cycle_model`). Weight slots hold the
image's element records unchanged (:attr:`~sparsegate.sw.ir.weight_image.SparseLayer.entry_words`: the int8
value above the packed ``(cin, ky, kx)`` index); the per-layer field widths travel in the descriptor.

Memory map (see docs/engine.md):

* weight memory: ``lanes`` slots per word. A conv layer's elements are stored in image order from a
  word-aligned base, element ``e`` in word ``base + e // P`` slot ``e % P``. An fc layer is stored in
  rounds: its neurons sorted by nonzero count (descending) are cut into rounds of ``P``; round ``r`` takes
  ``L_r`` (its longest list) words, lane ``l``'s t-th element in slot ``l`` of word ``t`` (zero-padded).
* channel table: per conv output channel ``(count, start element)``; per fc round ``(L_r, start word)``.
* parameters: per conv output channel, or per fc slot ``r * P + l``: bias, mult, shift, dest (neuron).
* activation buffer: ``2P`` banks of ``act_depth`` bytes, one region per tensor (the network input and each
  layer's output; :mod:`~sparsegate.hw.engine.regions` plans them, a plain chain gets the ping-pong layout);
  a conv input ``(C, H, W)`` is stored in the 2-D bank layout of its readers' tile ``Tx x Ty``
  (:mod:`~sparsegate.hw.engine.tiling`: pixel ``(c, y, x)`` in bank ``(x % 2Tx) | (y % Ty) << lg 2Tx`` at
  ``base + (c << (hb + wb) | (y >> lg Ty) << wb | x >> lg 2Tx)``; ``Ty = 1``: bank ``x % 2P``); an fc
  input (a flat vector) is replicated in every bank at ``base`` + its index — the network input too when
  the first layer is fc (an MLP). A layer reading two tensors (a residual add) reads their concatenation:
  the planner puts the second right after the first.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sparsegate.sw.ir.golden import IntLayer, QuantizedNetwork, layer_sources, run_network
from sparsegate.sw.ir.weight_image import sparse_layer

from sparsegate.hw.engine.contents import EngineContents
from sparsegate.hw.engine.dead_channels import drop_dead_channels
from sparsegate.hw.engine.layouts import (SIG_ROT, EngineGeometry, chan_layout, desc_layout, pack, param_layout)
from sparsegate.hw.engine.regions import RegionPlan, plan_regions
from sparsegate.hw.engine.tiling import TILINGS, Tiling, choose_tiling, conv_layout, conv_place

__all__ = ["EngineProgram", "LayerPlan", "compile_program", "expected_writes", "signature", "layer_tilings",
           "input_tiling", "program_from_image", "sample_words", "MAX_RESULTS"]

MAX_RESULTS = 16
MAX_ACT_DEPTH = (1 << 16) - 1  # words per activation bank (the host link's identity reply holds it in 16 bits)


@dataclass
class LayerPlan:
    """How one layer runs: its tiles and the numbers the cycle model and the benchmark need."""

    name: str
    kind: str
    desc: dict
    counts: list                 # per outer step (conv channel / fc round): commands per pass (>= 0)
    passes_per_outer: int        # conv: rows x tiles per row; fc: 1
    nvalid: list                 # per pass within an outer step: pixels / neurons written (conv: tile widths)
    nonzero_macs: int            # useful multiply-accumulates (nonzero weight x output pixel)
    dense_macs: int
    out_order: list = field(default_factory=list)   # fc: neuron of each slot r * P + l (-1 = empty)
    tiling: Tiling | None = None  # conv: the pass tile (hw/engine/tiling.py)
    dropped: int = 0             # dead output channels / neurons not computed (hw/engine/dead_channels.py)
    drain2: bool = False         # the output stage takes two pixels a cycle in this layer (descriptor drain2)
    drain: list = field(default_factory=list)   # per pass (as nvalid): the output stage's cycles for it


@dataclass
class EngineProgram:
    """Every memory's contents; ``qnet`` is the network as the engine runs it (dead channels dropped: its
    last layer's outputs are the compiled network's, its intermediate maps lack the dropped channels)."""

    geometry: EngineGeometry
    qnet: QuantizedNetwork
    layers: list                 # LayerPlan per layer
    desc_words: list
    chan_words: list
    param_words: list
    weight_words: list           # ints, lanes * slot_bits wide
    input_words: list            # ints, banks * 8 wide; n_samples * input_depth words
    inputs: np.ndarray           # (N, C, H, W) int8 samples held in the input memory
    regions: RegionPlan = None   # where each tensor lives in the activation buffer

    @property
    def lanes(self) -> int:
        return self.geometry.lanes

    @property
    def contents(self) -> EngineContents:
        """What the RTL is built from (:class:`~sparsegate.hw.engine.engine.SparseEngine`)."""
        return EngineContents(self.geometry, tuple(self.desc_words), tuple(self.chan_words),
                              tuple(self.param_words), tuple(self.weight_words), tuple(self.input_words))


def _readers(qnet: QuantizedNetwork) -> list[list[int]]:
    """Per tensor (0 = input, ``k`` = layer ``k - 1``'s output): the layers that read it."""
    readers = [[] for _ in range(len(qnet.layers) + 1)]
    for i, refs in enumerate(layer_sources(qnet.layers)):
        for t in refs:
            readers[t].append(i)
    return readers


def layer_tilings(qnet: QuantizedNetwork, lanes: int, tiling: str = "2d", bank_ratio: int = 2) -> list:
    """Per layer, the :class:`~sparsegate.hw.engine.tiling.Tiling` of its passes (fc layers: ``None``).
    ``"2d"``: :func:`~sparsegate.hw.engine.tiling.choose_tiling` per conv layer; a layer whose output is
    written flat (read by fc, or the network's output) keeps its drain in raster order. A tensor has one
    layout, so when the conv layers reading one tensor would tile differently (a residual block input read
    by a conv and a shortcut or add) they all get ``Tx = P, Ty = 1``. ``"rows"``: every conv layer
    ``Tx = P, Ty = 1`` (the one-row engine). ``bank_ratio``: the engine's banks per lane (1: stride 1 only)."""
    if tiling not in TILINGS:
        raise ValueError(f"tiling must be one of {', '.join(TILINGS)}, got {tiling!r}")
    layers = qnet.layers
    readers = _readers(qnet)
    rows = Tiling(lanes, 1, bank_ratio)
    out = []
    for i, layer in enumerate(layers):
        if layer.kind != "conv":
            out.append(None)
        elif tiling == "rows":
            out.append(rows)
        else:
            _, ho, wo = layer.conv_shape
            if layer.pool:
                ho, wo = ho & ~1, wo & ~1
            flat_out = not any(layers[r].kind == "conv" for r in readers[i + 1])
            if layer.stride != 1 and bank_ratio == 1:
                raise ValueError(f"layer {layer.name!r} has stride {layer.stride}: it needs an engine with 2P "
                                 f"activation banks (bank_ratio 2)")
            out.append(choose_tiling(ho, wo, layer.stride, lanes, full_rows=flat_out, ratio=bank_ratio))
    changed = True
    while changed:      # shared tensors: readers that disagree fall back to rows (only ever more of them)
        changed = False
        for rs in readers:
            conv = [r for r in rs if out[r] is not None]
            if len({out[r] for r in conv}) > 1:
                for r in conv:
                    changed |= out[r] != rows
                    out[r] = rows
    return out


def input_tiling(qnet: QuantizedNetwork, lanes: int, tiling: str = "2d", bank_ratio: int = 2):
    """The bank layout of the network input (what the host loads): its conv readers' tiling, or ``None``
    when fc layers read it (flat, replicated in every bank)."""
    tilings = layer_tilings(qnet, lanes, tiling, bank_ratio)
    conv = [tilings[r] for r in _readers(qnet)[0] if tilings[r] is not None]
    return conv[0] if conv else None


def _tensor_layouts(qnet: QuantizedNetwork, tilings: list) -> list[tuple]:
    """Per tensor: ``(tiling or None if replicated, hb, wb, words)`` as its readers read it — the banked
    conv layout of their tiling when conv layers read it, replicated (flat) for fc readers and for the
    final outputs."""
    shapes = [tuple(qnet.input_shape)] + [layer.out_shape for layer in qnet.layers]
    out = []
    for t, (shape, rs) in enumerate(zip(shapes, _readers(qnet))):
        kinds = {qnet.layers[r].kind for r in rs}
        if len(kinds) > 1:
            raise ValueError(f"tensor {t} is read by both conv and fc layers; the engine keeps one layout per tensor")
        if kinds == {"conv"}:
            tile = tilings[rs[0]]
            out.append((tile,) + conv_layout(shape, tile))
        else:
            out.append((None, 0, 0, int(np.prod(shape))))
    return out


def compile_program(qnet: QuantizedNetwork, lanes: int, inputs=None, *, drop_dead: bool = True,
                    tiling: str = "2d", drains: int = 2, bank_ratio: int | None = None) -> EngineProgram:
    """Memory contents for running ``qnet`` on a ``lanes``-lane engine; ``inputs`` (N, C, H, W) int8
    samples go into the input memory (one zero sample when ``None``). ``drop_dead``: leave out the dead
    channels (:func:`~sparsegate.hw.engine.dead_channels.drop_dead_channels`; the final outputs are the
    same, the cycles fewer). ``tiling``: ``"2d"`` (per-layer tiles) or ``"rows"`` (one output row per pass),
    :func:`layer_tilings`. ``drains``: output-stage pixels per cycle of the engine (``EngineGeometry``): with
    2, every conv layer whose outputs go into a conv layout, or are pooled, drains two a cycle.
    ``bank_ratio``: activation banks per lane, 2 or 1 (P banks: stride-1 images only, half the block RAM);
    ``None``: 1 when no conv layer has stride 2 (and P >= 2), else 2."""
    qnet.validate()
    dropped = (0,) * len(qnet.layers)
    if drop_dead and qnet.is_chain:  # the drop follows one consumer per layer: plain chains only
        dead = drop_dead_channels(qnet)
        qnet, dropped = dead.network, dead.dropped
    p = lanes
    if bank_ratio is None:
        bank_ratio = 1 if p >= 2 and all(layer.stride == 1 for layer in qnet.layers if layer.kind == "conv") else 2
    banks = bank_ratio * p
    layers: list[IntLayer] = qnet.layers
    sources = layer_sources(layers)
    tilings = layer_tilings(qnet, p, tiling, bank_ratio)
    tensors = _tensor_layouts(qnet, tilings)
    if inputs is None:
        inputs = np.zeros((1,) + tuple(qnet.input_shape), dtype=np.int8)
    inputs = np.asarray(inputs)
    if inputs.ndim != 4 or tuple(inputs.shape[1:]) != tuple(qnet.input_shape):
        raise ValueError(f"inputs must be (N, {', '.join(map(str, qnet.input_shape))}), got {inputs.shape}")
    inputs = inputs.astype(np.int8)
    slot_bits = 8 + max(sum(layer.index_bits) for layer in layers)

    # activation regions
    in_words = tensors[0][3]
    regions = plan_regions([t[3] for t in tensors], sources, MAX_ACT_DEPTH)
    if regions.bases[0] != 0:
        raise ValueError("the network input must start the activation buffer, but a two-input layer reads it "
                         "second; list the input first in that layer's inputs")
    act_depth = regions.depth
    if act_depth > MAX_ACT_DEPTH:
        raise ValueError(f"activation regions need {act_depth} words per bank, more than the engine's "
                         f"{MAX_ACT_DEPTH}")

    weight_words: list[list[int]] = []
    chan_words, param_words, plans, descs = [], [], [], []
    pool_width = 1
    for i, layer in enumerate(layers):
        sp = sparse_layer(layer)
        entries = sp.entry_words.astype(np.int64)
        counts = sp.counts.astype(np.int64)
        cout = layer.out_channels
        wbase = len(weight_words)
        chan_base, prm_base = len(chan_words), len(param_words)
        out_tile, ohb, owb, _ = tensors[i + 1]
        repl = out_tile is None
        if layer.kind == "conv":
            _, h, w = layer.in_shape
            tile = tilings[i]
            ihb, iwb, _ = conv_layout(layer.in_shape, tile)
            _, ho, wo = layer.conv_shape
            if layer.pool:
                ho, wo = ho & ~1, wo & ~1
                pool_width = max(pool_width, wo // 2)
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) + wbase * p
            nwords = -(-len(entries) // p)
            for k in range(nwords):
                chunk = entries[k * p:(k + 1) * p]
                weight_words.append([int(v) for v in chunk] + [0] * (p - len(chunk)))
            for c in range(cout):
                chan_words.append((int(counts[c]), int(starts[c])))
                param_words.append((int(layer.bias[c]), int(layer.mult[c]), int(layer.shift[c]), 0))
            rects = [(min(tile.tx, wo - x0), min(tile.ty, ho - oy0))
                     for oy0 in range(0, ho, tile.ty) for x0 in range(0, wo, tile.tx)]
            tiles = [vx * vy for vx, vy in rects]
            plan = LayerPlan(layer.name, "conv", {}, [int(c) for c in counts], len(tiles),
                             tiles, int(counts.sum()) * ho * wo, cout * layer.weight[0].size * ho * wo,
                             tiling=tile)
            n_outer, n_out = cout, 0
            desc_geo = dict(in_h=h, in_w=w, in_hb=ihb, in_wb=iwb, ho=ho, wo=wo, stride2=layer.stride == 2,
                            pad=layer.padding, tlx=tile.tlx, tly=tile.tly, n_corner=tiles[-1])
        else:
            # row-parallel fc: neurons sorted by nonzeros, rounds of P neurons (one per lane)
            order = sorted(range(cout), key=lambda n: (-int(counts[n]), n))
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            rounds = [order[r:r + p] for r in range(0, cout, p)]
            round_len, out_order = [], []
            for neurons in rounds:
                length = max(int(counts[n]) for n in neurons)
                chan_words.append((length, len(weight_words)))
                for t in range(length):
                    word = [0] * p
                    for lane, n in enumerate(neurons):
                        if t < counts[n]:
                            word[lane] = int(entries[starts[n] + t])
                    weight_words.append(word)
                for lane in range(p):
                    n = neurons[lane] if lane < len(neurons) else -1
                    out_order.append(n)
                    param_words.append((int(layer.bias[n]), int(layer.mult[n]), int(layer.shift[n]), n)
                                       if n >= 0 else (0, 0, 1, 0))
                round_len.append(length)
            plan = LayerPlan(layer.name, "fc", {}, round_len, 1,
                             [min(p, cout - r) for r in range(0, cout, p)], int(counts.sum()),
                             int(layer.weight.size), out_order)
            n_outer, n_out = len(rounds), cout
            desc_geo = dict(in_h=1, in_w=1, in_hb=0, in_wb=0, ho=1, wo=1, stride2=0, pad=0,
                            tlx=Tiling(p).tlx, tly=0)  # lane j = neuron j of the round
        # two a cycle: two writes into two banks (o, o2) or, pooled, at most one; never two into every bank.
        # A tile row of vx pixels drains in ceil(vx / 2) cycles.
        plan.drain2 = min(drains, p) == 2 and layer.kind == "conv" and (layer.pool or not repl)
        plan.drain = [vy * -(-vx // 2) for vx, vy in rects] if plan.drain2 else list(plan.nvalid)
        desc_geo["d_corner"] = plan.drain[-1] if plan.kind == "conv" else 0
        desc = dict(fc=layer.kind == "fc", relu=layer.relu, pool=layer.pool, out_repl=repl, drain2=plan.drain2,
                    last=i == len(layers) - 1, in_base=regions.bases[sources[i][0]], out_base=regions.bases[i + 1],
                    ib=sp.index_bits, kyb=sp.ky_bits, kxb=sp.kx_bits, n_outer=n_outer,
                    out_hb=ohb, out_wb=owb, out_cx=0 if repl else out_tile.cx, out_ry=0 if repl else out_tile.ry,
                    chan_base=chan_base, prm_base=prm_base, n_out=n_out, **desc_geo)
        plan.desc = {k: int(v) for k, v in desc.items()}
        plan.dropped = dropped[i]
        descs.append(plan.desc)
        plans.append(plan)

    n_samples = len(inputs)
    geometry = EngineGeometry(
        lanes=p, slot_bits=slot_bits, weight_depth=max(1, len(weight_words)), act_depth=act_depth,
        chan_depth=max(2, len(chan_words)), param_depth=max(2, len(param_words)), n_layers=len(layers),
        input_depth=in_words, n_samples=n_samples, pool_width=pool_width, n_results=MAX_RESULTS, drains=drains,
        bank_ratio=bank_ratio)
    for plan in plans:
        if max(plan.counts, default=0) >= 1 << 16:
            raise ValueError(f"layer {plan.name!r}: a channel has more than 65535 nonzeros")
    dl, pl = desc_layout(geometry), param_layout(geometry)
    desc_words = [pack(dl, d) for d in descs]
    param_words = [pack(pl, {"bias": b, "mult": m, "shift": s, "dest": d}) for b, m, s, d in param_words]
    cl = chan_layout(geometry)
    chan_words = [pack(cl, {"count": c, "start": s}) for c, s in chan_words]
    wide = [sum((v & ((1 << slot_bits) - 1)) << (slot_bits * j) for j, v in enumerate(word))
            for word in weight_words] or [0]
    input_words = []
    for x in inputs:
        input_words += sample_words(x, banks, tensors[0][0])
    return EngineProgram(geometry, qnet, plans, desc_words, chan_words, param_words, wide, input_words, inputs,
                         regions)


def sample_words(x: np.ndarray, banks: int, tiling) -> list[int]:
    """One sample (C, H, W) as wide input words (word ``a`` holds byte ``b`` = bank b's address a): the conv
    layout of ``tiling`` (:func:`input_tiling`), or — ``tiling=None``, for a network whose first layer is
    fc — the flattened sample replicated in every bank, word ``a`` holding element ``a`` (the layout every
    fc layer reads)."""
    if tiling is None:
        every = sum(1 << (8 * b) for b in range(banks))
        return [(int(v) & 0xFF) * every for v in np.asarray(x).reshape(-1)]
    return _banked_words(x, banks, tiling)


def _banked_words(x: np.ndarray, banks: int, tiling: Tiling) -> list[int]:
    """One sample (C, H, W) in the conv layout of ``tiling`` (:func:`~sparsegate.hw.engine.tiling.conv_place`)."""
    if tiling.lanes * tiling.ratio != banks:
        raise ValueError(f"a {tiling.tx}x{tiling.ty} tile needs {tiling.ratio * tiling.lanes} banks, not {banks}")
    hb, wb, words = conv_layout(x.shape, tiling)
    mem = np.zeros((words, banks), dtype=np.int64)
    c, h, w = x.shape
    for ci in range(c):
        for y in range(h):
            for xx in range(w):
                bank, addr = conv_place(tiling, hb, wb, ci, y, xx)
                mem[addr, bank] = int(x[ci, y, xx]) & 0xFF
    return [int(sum(int(v) << (8 * b) for b, v in enumerate(row))) for row in mem]


def program_from_image(image, lanes: int, inputs=None, *, tiling: str = "2d", drains: int = 2,
                       bank_ratio: int | None = None) -> EngineProgram:
    """Compile from a weight image: a path, the image bytes, or an already decoded network."""
    from pathlib import Path

    from sparsegate.sw.ir.weight_image import decode_image, read_image
    if isinstance(image, QuantizedNetwork):
        qnet = image
    elif isinstance(image, (bytes, bytearray)):
        qnet = decode_image(bytes(image))
    else:
        qnet = read_image(Path(image))
    return compile_program(qnet, lanes, inputs, tiling=tiling, drains=drains, bank_ratio=bank_ratio)


# ------------------------------------------------------------------------------ expected outputs

def _drain_order(plan):
    """The output stage's pixel order of a conv layer: per channel, the passes (tile rows, then tiles),
    in each the tile's rows top to bottom, each row left to right: ``(co, y, x)`` of the walked map."""
    d, t = plan.desc, plan.tiling
    ho, wo = d["ho"], d["wo"]
    for co in range(len(plan.counts)):
        for oy0 in range(0, ho, t.ty):
            for x0 in range(0, wo, t.tx):
                for y in range(oy0, min(oy0 + t.ty, ho)):
                    for x in range(x0, min(x0 + t.tx, wo)):
                        yield co, y, x


def expected_writes(program: EngineProgram, outputs: list) -> list[list[tuple[int, int, int]]]:
    """Per layer, the output stage's writes in order as ``(bank or 0xFF for all banks, address, byte)``,
    given one sample's golden per-layer outputs (each (C, H, W) or (C,), batch axis removed). Conv outputs
    come in drain order (:func:`_drain_order`; pooled layers write on the odd row and column of each 2x2
    window) at their consumer's layout; a flat (replicated) output is written at its flatten index."""
    result = []
    for plan, out in zip(program.layers, outputs):
        d = plan.desc
        out = np.asarray(out)
        writes = []
        if plan.kind == "conv":
            c, h, w = out.shape
            ratio = program.geometry.bank_ratio
            consumer = Tiling((1 << d["out_cx"]) // ratio, 1 << d["out_ry"], ratio) if not d["out_repl"] else None
            for ci, y, x in _drain_order(plan):
                if d["pool"]:
                    if not (y & 1 and x & 1):
                        continue
                    y, x = y >> 1, x >> 1
                v = int(out[ci, y, x]) & 0xFF
                if consumer is None:
                    writes.append((0xFF, d["out_base"] + (ci * h + y) * w + x, v))
                else:
                    bank, addr = conv_place(consumer, d["out_hb"], d["out_wb"], ci, y, x)
                    writes.append((bank, d["out_base"] + addr, v))
            assert len(writes) == out.size
        else:
            for n in plan.out_order:
                if n >= 0:
                    writes.append((0xFF, d["out_base"] + n, int(out[n]) & 0xFF))
        result.append(writes)
    return result


def signature(writes) -> int:
    """The engine's per-layer output signature over a write sequence (see docs/engine.md)."""
    sig = 0
    for bank, addr, value in writes:
        word = (value | (bank << 8) | (addr << 16)) & 0xFFFFFFFF
        sig = (((sig << SIG_ROT) | (sig >> (32 - SIG_ROT))) & 0xFFFFFFFF) ^ word
    return sig


def golden_outputs(program: EngineProgram) -> list[list[np.ndarray]]:
    """Golden per-layer outputs of every sample in the program: [sample][layer] arrays, batch axis removed."""
    outs = run_network(program.inputs, program.qnet.layers)
    return [[o[s] for o in outs] for s in range(len(program.inputs))]


def expected_signatures(program: EngineProgram) -> list[list[int]]:
    return [[signature(w) for w in expected_writes(program, outs)] for outs in golden_outputs(program)]
