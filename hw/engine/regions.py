"""Activation regions: where each tensor of a network lives in the engine's activation memory.

The banked activation buffer is one address space per bank (``act_depth`` words). Every tensor — the network
input (tensor 0) and each layer's output (tensor ``k`` = layer ``k - 1``) — gets a region, and every layer
descriptor carries the base of the region it reads and the one it writes. Reading one region while writing
a disjoint one of the same memory is safe (the banks have a read and a write port).

The planner is a liveness-based first-fit: a tensor lives from the layer that writes it to the last layer that
reads it (the last layer's output until the end), and takes the lowest addresses not held by a tensor whose
lifetime overlaps. A plain chain is placed in slots of ``pow2(largest tensor)`` words, so it gets the ping-pong
layout (the input and every even layer's output in slot 0, the others in slot 1) and, with the words used
rounded up to a power of two, the old bank depth of ``2 * pow2(max)``; a network with references is placed
word by word (a ResNet's many small maps need not each take a slot of its largest).
A layer reading two tensors reads their channel concatenation, so the planner places the second right after
the first (one unit, allocated when either is written, living until both are dead): a residual add reads
the shortcut and the block's last conv output as one ``(2C, H, W)`` map.
"""
from __future__ import annotations

from dataclasses import dataclass

from sparsegate.sw.ir.golden import index_width

__all__ = ["RegionPlan", "plan_regions"]


@dataclass(frozen=True)
class RegionPlan:
    """Per tensor (0 = input, ``k`` = layer ``k - 1``) its base word; the placement granule (a chain: the slot,
    ``pow2`` of the largest tensor; else 1 word); the words used (``end``)
    and the bank depth (``end``; a chain's up to a power of two, as the ping-pong halves were; at most
    ``max_depth``)."""

    bases: tuple
    slot: int
    end: int
    depth: int


def plan_regions(sizes: list[int], sources: list[tuple], max_depth: int = (1 << 16) - 1) -> RegionPlan:
    """Regions for tensors of ``sizes`` words (tensor 0 the input) read by layers as ``sources`` (per layer its
    tensor references). Raises ValueError when a tensor would have to follow two different tensors."""
    n_layers = len(sources)
    n_tensors = n_layers + 1
    if len(sizes) != n_tensors:
        raise ValueError(f"{len(sizes)} tensor sizes for {n_layers} layers (expected {n_tensors})")
    chain = all(tuple(refs) == (i,) for i, refs in enumerate(sources))
    slot = 1 << index_width(max(1, max(sizes))) if chain else 1
    # units: a tensor, or a pair read together as a concatenation (the second right after the first)
    follows: dict[int, int] = {}
    for refs in sources:
        if len(refs) == 2:
            a, b = refs
            if a == b or follows.get(b, a) != a or b in follows.values() or a in follows:
                raise ValueError(f"tensor {b} must follow tensor {a} in memory, but it (or tensor {a}) is already "
                                 "placed after another one: the region planner keeps each tensor in one pair")
            follows[b] = a
    units = [[t] for t in range(n_tensors) if t not in follows]
    for b, a in follows.items():
        next(u for u in units if u[-1] == a).append(b)
    last_read = list(range(-1, n_layers))        # a tensor nobody reads still occupies its region while written
    for i, refs in enumerate(sources):
        for t in refs:
            last_read[t] = max(last_read[t], i)
    last_read[n_tensors - 1] = n_layers          # the host reads the final outputs
    placed = []                                  # (first slot, slots, birth, death)
    bases = [0] * n_tensors
    for unit in sorted(units, key=lambda u: min(u)):
        birth, death = min(unit) - 1, max(last_read[t] for t in unit)
        words = sum(sizes[t] for t in unit)
        need = -(-words // slot)
        busy = [(s, k) for s, k, b, d in placed if b <= death and birth <= d]
        start = next(c for c in sorted({0} | {s + k for s, k in busy})       # the lowest gap that fits
                     if not any(s < c + need and c < s + k for s, k in busy))
        placed.append((start, need, birth, death))
        offset = start * slot
        for t in unit:
            bases[t] = offset
            offset += sizes[t]
    end = max(b + n for b, n in zip(bases, sizes))
    depth = max(2, 1 << index_width(end)) if chain else max(2, end)   # a chain: the ping-pong depth
    return RegionPlan(tuple(bases), slot, end, depth if depth <= max_depth else end)
