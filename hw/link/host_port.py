"""The host port: how the host link drives a core (the sparse engine or the LIF device) — one signature for
both sides, so the link and a core are joined by ``wiring.connect``."""
from __future__ import annotations

from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from sparsegate.hw.link.protocol import word_bytes

__all__ = ["HostPortSignature"]


class HostPortSignature(wiring.Signature):
    """The host port, seen from the core (the link uses ``In(HostPortSignature(...))``).

    Members
    -------
    start : ``In(1)``
        One-cycle pulse: run ``sample``.
    sample : ``In(16)``
        Input slot to run (held while busy).
    busy : ``Out(1)``
        A run is in progress.
    done : ``Out(1)``
        The last run has finished.
    abort : ``In(1)``
        One-cycle pulse: stop any run now and return to idle (the link's watchdog and ``RESET``).
    fault : ``Out(1)``
        The last run was refused (a core that checks its program before it starts: the sparse engine's
        layer descriptors); ``fault_layer`` names the layer. Cleared by the next ``start``.
    dbg_sel : ``In(8)``
        Debug register index (the core's register map).
    dbg_data : ``Out(32)``
        The selected debug register, at most three cycles after ``dbg_sel`` (combinational or registered).
    wr_en, wr_mem, wr_addr, wr_data : ``In``
        With ``addr_width``/``data_width`` only: write ``wr_data`` (LSB-aligned) at ``wr_addr`` of host memory
        ``wr_mem`` (the core's host-memory order) while the core is idle.
    """

    def __init__(self, *, addr_width: int | None = None, data_width: int | None = None):
        members = {"start": In(1), "sample": In(16), "busy": Out(1), "done": Out(1),
                   "abort": In(1), "fault": Out(1), "fault_layer": Out(8),
                   "dbg_sel": In(8), "dbg_data": Out(32)}
        if addr_width is not None:
            members.update({"wr_en": In(1), "wr_mem": In(8), "wr_addr": In(addr_width), "wr_data": In(data_width)})
        super().__init__(members)

    @classmethod
    def for_memories(cls, mems) -> "HostPortSignature":
        """The host port of a core whose writable memories are ``mems`` = ``[(word bits, depth)]``: the
        address of the deepest, the whole bytes of the widest."""
        return cls(addr_width=max(1, max(ceil_log2(d) for _, d in mems)),
                   data_width=8 * max(word_bytes(w) for w, _ in mems))
