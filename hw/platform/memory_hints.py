"""What synthesis may assume about a memory's use, as attributes on Amaranth memories.

Amaranth gives a read port that reads the word a write port writes in the same cycle the old value (a
non-transparent port). An ECP5 block RAM read from one port while the other writes the same address returns
undefined data, so Yosys emulates the old value: every write is delayed a cycle and the read data passes a
bypass multiplexer (an address compare and a LUT per data bit) before its first register. On the engine that
logic sat between every DP16KD output and the register behind it (the 85F's critical path: 5.8 ns of block
RAM clock-to-output, then the bypass LUT and its routing) and cost hundreds of LUTs.

Memories whose reads never meet a write to the same word in the same cycle — the activation banks read one
region while the output stage writes another; the weight, parameter, channel and descriptor memories and the
input memory are written only by the host, while the engine is stopped — carry :data:`READ_WRITE_DISJOINT`,
and the build marks the collision undefined for them (:data:`YOSYS_COMMANDS`): no emulation. Simulation
keeps Amaranth's semantics; the hint changes only what Yosys may build.
"""
from __future__ import annotations

__all__ = ["READ_WRITE_DISJOINT", "YOSYS_COMMANDS", "read_write_disjoint"]

_ATTRIBUTE = "sparsegate_rw_disjoint"

#: Attributes of a memory with one read port and one write port that never read a word written that cycle.
READ_WRITE_DISJOINT = {_ATTRIBUTE: 1}

#: Yosys commands, run after reading the design, that declare a read-during-write collision undefined on the
#: memories carrying the attribute (the memories must be collected into ``$mem_v2`` cells, after ``proc``).
YOSYS_COMMANDS = ("proc", "memory_collect", f"setparam -set RD_COLLISION_X_MASK 1'1 a:{_ATTRIBUTE}")


def read_write_disjoint(writable: bool, attrs: dict | None = None) -> dict:
    """``attrs`` with :data:`READ_WRITE_DISJOINT` added when the memory gets a write port (``writable``)."""
    return {**(attrs or {}), **(READ_WRITE_DISJOINT if writable else {})}
