"""2-D pass tiles and the activation bank layout they read (docs/engine.md, "Tiles").

A conv pass covers ``Ty`` output rows x ``Tx`` output columns, ``P = Tx * Ty`` (powers of two), lane
``j = jy * Tx + jx``. A tensor read by conv layers is stored in the ``2P`` banks for its readers' tiling:
pixel ``(c, y, x)`` in bank ``(x mod 2Tx) | (y mod Ty) << cx`` at word
``c << (hb + wb) | (y >> ry) << wb | x >> cx`` (``cx = lg 2Tx``, ``ry = lg Ty``, ``hb``, ``wb`` = bits of
``ceil(H / Ty)``, ``ceil(W / 2Tx)``). ``Ty = 1, Tx = P`` is the one-row layout (bank ``x mod 2P``). The Ty
rows of a tile hit distinct row banks and the Tx lanes of a row span fewer than ``2Tx`` columns (stride 1
or 2), so every lane reads its own bank. An image without stride-2 convolutions needs only ``P`` banks
(``Tx`` column banks: a row's Tx lanes span Tx columns at stride 1), half the activation block RAM:
``Tiling.ratio`` 1, ``EngineGeometry.bank_ratio`` 1.
"""
from __future__ import annotations

from dataclasses import dataclass

from sparsegate.sw.ir.golden import index_width

__all__ = ["Tiling", "TILINGS", "choose_tiling", "conv_layout", "conv_place", "lane_sources"]

#: ``compile_program(..., tiling=...)``: per-layer 2-D tiles, or every conv layer ``Tx = P, Ty = 1``.
TILINGS = ("2d", "rows")


@dataclass(frozen=True)
class Tiling:
    """``tx`` output columns x ``ty`` output rows per pass (powers of two), in an engine of ``ratio * P``
    banks (``ratio`` 2: ``2Tx`` column banks, any stride; 1: ``Tx`` column banks, stride 1 only)."""

    tx: int
    ty: int = 1
    ratio: int = 2

    @property
    def lanes(self) -> int:
        return self.tx * self.ty

    @property
    def tlx(self) -> int:
        return self.tx.bit_length() - 1

    @property
    def tly(self) -> int:
        return self.ty.bit_length() - 1

    @property
    def cols(self) -> int:
        """Column banks: ``ratio * Tx``."""
        return self.ratio * self.tx

    @property
    def cx(self) -> int:
        """Column-bank bits: ``lg(ratio * Tx)``."""
        return self.cols.bit_length() - 1

    @property
    def ry(self) -> int:
        """Row-bank bits: ``lg Ty``."""
        return self.tly


def choose_tiling(ho: int, wo: int, stride: int, lanes: int, full_rows: bool = False, ratio: int = 2) -> Tiling:
    """The tile of a conv layer walking ``ho x wo`` outputs: the fewest passes per channel,
    ``ceil(wo / Tx) * ceil(ho / Ty)``, over ``Tx`` in ``P, P/2, .., 2`` (ties: the larger ``Tx``).
    Stride 2 keeps ``Ty = 1`` (its rows are two input rows apart). ``full_rows`` (an output written in
    flatten order by a running counter) admits only tiles whose rows span the map (``Tx >= wo``) or
    ``Ty = 1``, so the drain stays in raster order."""
    best = Tiling(lanes, 1, ratio)
    if stride != 1:
        return best
    best_passes = -(-wo // lanes) * ho
    tx = lanes // 2
    while tx >= 2:
        t = Tiling(tx, lanes // tx, ratio)
        passes = -(-wo // t.tx) * -(-ho // t.ty)
        if passes < best_passes and (not full_rows or t.tx >= wo):
            best, best_passes = t, passes
        tx //= 2
    return best


def conv_layout(shape: tuple, tiling: Tiling) -> tuple[int, int, int]:
    """``(hb, wb, words per bank)`` of a (C, H, W) map in the bank layout of ``tiling``."""
    c, h, w = shape
    hb, wb = index_width(-(-h // tiling.ty)), index_width(-(-w // tiling.cols))
    return hb, wb, c << (hb + wb)


def conv_place(tiling: Tiling, hb: int, wb: int, c: int, y: int, x: int) -> tuple[int, int]:
    """``(bank, word)`` of pixel ``(c, y, x)`` (word relative to the tensor's region)."""
    bank = (x % tiling.cols) | (y % tiling.ty) << tiling.cx
    return bank, (c << (hb + wb)) | ((y >> tiling.ry) << wb) | (x >> tiling.cx)


def lane_sources(lanes: int, ratio: int, j: int) -> dict[tuple[int, int, int], int]:
    """Where lane ``j`` finds its pixel in the banks rotated by the element's ``R = (base mod cols) +
    (y mod Ty) * cols`` (``base``, ``y``: the tile's first input column and row; ``A[i] = bank[(i + R) mod nb]``):
    ``{(tlx, stride2, carry): i}`` over every tile ``Tx = 2**tlx`` of ``lanes`` and stride, ``carry`` whether
    ``base mod cols + jx * stride`` reaches ``cols``. The pixel sits in bank ``(jx*s + base) mod cols`` of row
    ``(jy + y) mod Ty``: position ``jx*s + jy*cols``, one row back when the column wrapped (``cols * Ty`` is the
    bank count, so the rows wrap with the rotation). A handful of positions per lane: the activation buffer's
    crossbar is a log-depth rotator shared by all lanes and a small per-lane select, not a full ``nb:1`` mux."""
    nb = ratio * lanes
    out = {}
    for tlx in range(lanes.bit_length()):
        tx, ty = 1 << tlx, lanes >> tlx
        cols = ratio * tx
        jx, jy = j % tx, j // tx
        for stride2 in (0, 1) if ratio == 2 and ty == 1 else (0,):
            for carry in (0, 1):
                out[tlx, stride2, carry] = ((jx << stride2) + jy * cols - carry * cols) % nb
    return out
