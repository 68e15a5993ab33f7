"""Analytical cycle model of the sparse engine: per-layer cycles predicted from the program (the weight
image's nonzero counts and the layer shapes), without simulating the datapath.

A layer is a sequence of passes ``t`` (conv: one per output channel x row x tile of P pixels; fc: one
per round of P neurons). Pass ``t`` issues ``K_t = max(1, nnz)`` element commands, one per cycle, plus one
channel-table cycle ``b_t`` when it starts a new output channel / round. Its P sums leave the MAC array
at ``O_t`` and the serial output stage drains them in ``n_t`` cycles (valid pixels of the pass), so::

    O_0 = 2 + b_0 + K_0 + LAT_MAC            (2 descriptor cycles, then issue -> MAC array latency)
    O_t = O_{t-1} + max(b_t + K_t, n_{t-1})   (the output stage holds the MAC output register)
    cycles = O_T + n_T + LAT_OUT              (drain: output pipeline, then the idle check)

``b_t`` counts one cycle less when the pass before it was held up by the output stage (the bubble drains
into the stalled pipeline). The model is exact on every test network; on long runs of held-up passes
across channel changes (LeNet-5 conv1 at 16 lanes) it is ~0.07% low (docs/engine.md). Ideal cycles are
nonzero MACs / P; dense cycles are the same model on the unpruned image.
"""
from __future__ import annotations

__all__ = ["LAT_MAC", "LAT_OUT", "layer_passes", "layer_cycles", "program_cycles", "ideal_cycles"]

LAT_MAC = 5          # issue of a pass's last element -> the cycle it loads the MAC output register, minus 1
LAT_OUT = 7          # last pixel taken -> layer finished (4 output stages, the write, the idle check)


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


def ideal_cycles(plan, lanes: int) -> float:
    """Nonzero MACs / P: every lane busy with a nonzero weight every cycle."""
    return plan.nonzero_macs / lanes
