"""Analytical cycle model of the sparse engine: per-layer cycles predicted from the program (the weight
image's nonzero counts and the layer shapes), without simulating the datapath.

A layer is a sequence of passes (conv: one per output channel x tile of ``Ty x Tx`` output pixels,
hw/engine/tiling.py; fc: one per round of P neurons). Pass ``t`` issues ``K_t = max(1, nnz)`` element
commands and produces ``n_t`` valid pixels (the tile's valid rectangle ``vx * vy``). The model follows every command ``i`` through the two places where the engine can wait (the
datapath after the command queue has a fixed latency):

* the sequencer issues command ``i`` at ``s_i``: one per cycle, after 2 descriptor cycles per layer and
  :data:`CHAN_CYCLES` before each output channel / fc round, and only while the queue has room:
  ``s_i >= r_{i - QUEUE_DEPTH} + 1``;
* the queue releases it at ``r_i = max(s_i + 1, r_{i-1} + 1)``, and a pass's last command no earlier
  than ``n`` cycles after the previous pass's last one (the output stage drains the previous pass in ``n``
  cycles: its pixels, or half of them when the layer drains two a cycle);

and the layer ends :data:`DRAIN_CYCLES` after the last pass's pixels start draining:
``cycles = r_last + n_last + DRAIN_CYCLES``. The model is exact (the engine tests compare it with the
measured counters). Ideal cycles are nonzero MACs / P; dense cycles are the same model on the unpruned
image.
"""
from __future__ import annotations

from collections import deque

from sparsegate.hw.engine.act_buffer import LATENCY as LAT_ABUF
from sparsegate.hw.engine.engine import QUEUE_DEPTH
from sparsegate.hw.engine.mac_array import LATENCY as LAT_MAC
from sparsegate.hw.engine.output_stage import LATENCY as LAT_OUT
from sparsegate.hw.engine.weight_decoder import LATENCY as LAT_WDEC

__all__ = ["DESC_CYCLES", "CHAN_CYCLES", "DRAIN_CYCLES", "layer_passes", "layer_cycles", "program_cycles",
           "ideal_cycles"]

DESC_CYCLES = 2      # descriptor address, descriptor latched
CHAN_CYCLES = 3      # channel-table address, entry registered, entry latched
#: release of the last command -> its pixels start draining (datapath latency), then the output stage,
#: the write, the registered idle flag and the sequencer's idle check
DRAIN_CYCLES = LAT_WDEC + LAT_ABUF + LAT_MAC + LAT_OUT + 3


def layer_passes(plan) -> list[tuple[int, int, int]]:
    """``(b, K, n)`` per pass of a :class:`~sparsegate.hw.engine.program.LayerPlan`, in issue order: ``b`` =
    the pass starts an output channel / round, ``K`` its commands, ``n`` the output stage's cycles for it
    (its pixels, or ``ceil(vx / 2)`` per tile row when the layer drains two a cycle: ``LayerPlan.drain``)."""
    out = []
    per = plan.passes_per_outer
    for o, count in enumerate(plan.counts):
        k = max(1, int(count))
        for j in range(per):
            n = int(plan.drain[j] if plan.kind == "conv" else plan.drain[o])
            out.append((1 if j == 0 else 0, k, n))
    return out


def layer_cycles(plan) -> int:
    """Predicted cycles of one layer (descriptor read to drained pipeline)."""
    released = deque(maxlen=QUEUE_DEPTH)     # release cycles of the last QUEUE_DEPTH commands
    t = DESC_CYCLES                          # the sequencer's next free cycle
    r = -1                                   # release cycle of the previous command
    last_r, last_n = None, 0
    for b, k, n in layer_passes(plan):
        t += b * CHAN_CYCLES
        for e in range(k):
            s = t if len(released) < QUEUE_DEPTH else max(t, released[0] + 1)
            r = max(s + 1, r + 1)
            if e == k - 1 and last_r is not None:
                r = max(r, last_r + last_n)
            released.append(r)
            t = s + 1
        last_r, last_n = r, n
    return last_r + last_n + DRAIN_CYCLES


def program_cycles(program) -> list[int]:
    return [layer_cycles(plan) for plan in program.layers]


def ideal_cycles(plan, lanes: int) -> float:
    """Nonzero MACs / P: every lane busy with a nonzero weight every cycle."""
    return plan.nonzero_macs / lanes
