"""Analytical cycle model of the sparse engine: per-layer cycles predicted from the program (the weight
image's nonzero counts and the layer shapes), without simulating the datapath.

A layer is a sequence of passes ``t`` (conv: one per output channel x row x tile of P pixels; fc: one
per round of P neurons). Pass ``t`` issues ``K_t = max(1, nnz)`` element commands, one per cycle, plus one
channel-table cycle ``b_t`` when it starts a new output channel / round. Its P sums leave the MAC array
at ``O_t`` and the serial output stage drains them in ``n_t`` cycles (valid pixels of the pass), so::

    O_0 = 2 + b_0 + K_0 + LAT_MAC            (2 descriptor cycles, then issue -> MAC array latency)
    O_t = O_{t-1} + max(b_t + K_t, n_{t-1})   (the output stage holds the MAC output register)
    cycles = O_T + n_T + LAT_OUT              (drain: output pipeline, then the idle check)

``b_t`` is absorbed when the pass before it was held up by the output stage (the bubble drains into the
stalled pipeline): then the step is ``max(K_t, n_{t-1})`` when ``n_{t-1} > K_{t-1} + b_{t-1}``... see
:func:`layer_cycles` for the exact rule; docs/engine.md states how close it is to the measurement.
Ideal cycles are nonzero MACs / P; dense cycles use the same model with every weight nonzero.
"""
from __future__ import annotations

import numpy as np

__all__ = ["LAT_MAC", "LAT_OUT", "layer_passes", "layer_cycles", "program_cycles", "dense_counts",
           "LOAD_OVERHEAD"]

LAT_MAC = 5          # issue of a pass's last element -> the cycle it loads the MAC output register, minus 1
LAT_OUT = 7          # last pixel taken -> layer finished (4 output stages, the write, the idle check)
LOAD_OVERHEAD = 1    # load cycles beyond one per input word (the return to the descriptor read)


def layer_passes(plan) -> list[tuple[int, int, int]]:
    """``(b, K, n)`` per pass of a :class:`~sparsegate.hw.engine_program.LayerPlan`, in issue order."""
    out = []
    per = plan.passes_per_outer
    for o, count in enumerate(plan.counts):
        k = max(1, int(count))
        for j in range(per):
            n = plan.nvalid[j] if plan.kind == "conv" else plan.nvalid[o]
            out.append((1 if j == 0 else 0, k, int(n)))
    return out


def layer_cycles(plan, absorb: bool = True) -> int:
    """Predicted cycles of one layer (descriptor read to drained pipeline)."""
    passes = layer_passes(plan)
    b, k, n = passes[0]
    o = 2 + b + k + LAT_MAC
    slack = 0
    prev_n = n
    for b, k, n in passes[1:]:
        need = b + k
        if absorb and slack > 0 and b:
            need -= 1
        step = max(need, prev_n)
        slack = step - need
        o += step
        prev_n = n
    return o + prev_n + LAT_OUT


def program_cycles(program) -> list[int]:
    return [layer_cycles(plan) for plan in program.layers]


def dense_counts(plan):
    """A copy of ``plan`` as if no weight were pruned (every channel/round full length)."""
    import copy
    dense = copy.copy(plan)
    if plan.kind == "conv":
        per_channel = plan.dense_macs // max(1, len(plan.counts)) // max(1, sum(plan.nvalid))
        dense.counts = [per_channel] * len(plan.counts)
    else:
        per_neuron = plan.dense_macs // max(1, sum(plan.nvalid))
        dense.counts = [per_neuron] * len(plan.counts)
    return dense


def ideal_cycles(plan, lanes: int) -> float:
    return plan.nonzero_macs / lanes


def _check(values):  # pragma: no cover - helper for interactive use
    return np.asarray(values)
