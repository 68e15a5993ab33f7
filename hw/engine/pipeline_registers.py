"""Registers of a pipeline's data, kept off the reset nets.

A stage's data register is written every cycle and read only under that stage's ``valid``: after an abort or the
power-up reset clears the valids, whatever it holds is never used, so it needs no reset. Every flip-flop of a block
behind one sync reset put thousands of loads on each block's LSR net on the 85F (the activation buffer's ~2,900;
96% of the engine's flip-flops had one), a recurring critical path (``abort_abuf`` -> ``abuf.plane_off``) and a
packing constraint (a slice's flip-flops share one LSR). Reset-less, such registers are off those nets.

Only data qualifies: a register whose value starts something (a valid, a load enable, a counter, a state) keeps its
reset.
"""
from __future__ import annotations

from amaranth.hdl import Signal

__all__ = ["pipeline_register", "pipeline_register_like"]


def pipeline_register(*args, **kwargs) -> Signal:
    """A reset-less ``Signal(*args, **kwargs)``, named after the variable it is assigned to, like ``Signal``."""
    return Signal(*args, **kwargs, reset_less=True, src_loc_at=1)


def pipeline_register_like(other, **kwargs) -> Signal:
    """A reset-less ``Signal.like(other, **kwargs)``, named after the variable it is assigned to."""
    return Signal.like(other, **kwargs, reset_less=True, src_loc_at=1)
