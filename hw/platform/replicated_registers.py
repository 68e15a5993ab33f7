"""Registers kept as copies through synthesis, so one copy drives each part of a high-fanout net.

Yosys merges flip-flops with the same input (``opt_merge``): the engine's per-block copies of ``abort``
became one flip-flop driving every register's reset across the chip (the 85F's critical path: 2 logic
levels, 8.5 ns of routing). A signal carrying :data:`REPLICA` is a copy on purpose; the build marks the
flip-flop behind it ``keep`` (:data:`YOSYS_COMMANDS`), which ``opt_merge`` leaves alone. Simulation is
unaffected.
"""
from __future__ import annotations

from amaranth.hdl import Module, ResetInserter, Signal

__all__ = ["REPLICA", "YOSYS_COMMANDS", "replicas", "reset_from_copy"]

_ATTRIBUTE = "sparsegate_replica"

#: Attributes of a signal whose register is one of several deliberate copies.
REPLICA = {_ATTRIBUTE: 1}

#: Yosys commands, run after reading the design (after ``proc``, which turns sync statements into ``$dff``
#: cells), that mark the flip-flops driving a :data:`REPLICA` signal ``keep``.
YOSYS_COMMANDS = (f"setattr -set keep 1 a:{_ATTRIBUTE} %ci1:+$dff[Q] t:$dff %i",)


def replicas(count: int, shape=1, *, name: str, reset_less: bool = False) -> list[Signal]:
    """``count`` registers of ``shape`` marked :data:`REPLICA`, named ``name0``, ``name1``, ...: one copy per
    group of a net's loads (reset-less for data: hw/engine/pipeline_registers.py)."""
    return [Signal(shape, name=f"{name}{k}", attrs=REPLICA, reset_less=reset_less) for k in range(count)]


def reset_from_copy(m: Module, reset, block, *, name: str, init: int = 0):
    """``block`` reset from a registered copy of ``reset`` of its own (``name``, :data:`REPLICA`; ``init``: its
    value at power-up), to add as a submodule of ``m``: each block's registers hang off a flip-flop of their own,
    not one net reaching every register of the design."""
    copy = Signal(init=init, name=name, attrs=REPLICA)
    m.d.sync += copy.eq(reset)
    return ResetInserter({"sync": copy})(block)
