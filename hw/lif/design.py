"""The LIF core as the board top level's device: :class:`~sparsegate.hw.lif.core.LifNetwork` with every
memory writable at run time, behind the same host link as the sparse engine (:mod:`sparsegate.hw.link.host_link`).

:class:`LifDevice` has the sparse engine's host ports (``start``/``sample``/``busy``/``done``,
``dbg_sel`` → ``dbg_data``, ``wr_en``/``wr_mem``/``wr_addr``/``wr_data``), so the link drives either core.
Its host memories (``wr_mem`` index, :func:`lif_host_memories`):

=================  =======================  ===========================================================
index              memory                   word
=================  =======================  ===========================================================
0 .. M-1           hidden weight bank u     ``per_word`` int8 weights (:func:`~.lif_core.pack_weight_banks`)
M .. M+R-1         readout weight bank u    one int8 weight
M+R                hidden enable masks      one unit's mask word (bit k = slot k), address = unit
M+R+1              hidden threshold         unsigned ``v_width - 1`` bits, address 0
M+R+2              input spike trains       :func:`~.lif_core.source_entry` words; sample s at ``s * source_depth``
=================  =======================  ===========================================================

``RUN s`` clears both cores, plays sample ``s``'s spike trains through the network and, once the readout is
done, latches the readout membranes into result registers (READ_OUTPUTS: ``n_outputs`` × int32). Debug
registers (:func:`lif_dbg_map`): ``total.cycles`` (start to done), hidden / readout synaptic operations,
hidden busy cycles, hidden spikes, hidden time steps, ``result<k>``. The leak, reset, refractory period
and widths are fixed at build time (the ID reply reports them; the host refuses a network that differs).
"""
from __future__ import annotations

import dataclasses

import numpy as np
from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring

from sparsegate.sw.ir.snn_golden import IntSNN

from sparsegate.hw.link.host_link import HostLink, LinkedCoreSignature, join_core
from sparsegate.hw.link.host_port import HostPortSignature
from sparsegate.hw.link.protocol import identity_bytes
from sparsegate.hw.lif.core import CoreGeometry, LifNetwork, encode_source, source_entry

__all__ = ["LifDesign", "lif_host_memories", "lif_dbg_map", "LifDevice", "LinkedLif", "LEAK_CODES", "RESET_CODES",
           "LIF_COUNTERS", "CORE_NAME"]

#: The LIF core's name on the host link (the ID reply's core kind, ``--core``).
CORE_NAME = "lif"

LEAK_CODES = {"shift": 0, "mult": 1, "none": 2}
RESET_CODES = {"subtract": 0, "zero": 1}
LIF_COUNTERS = ("cycles", "hidden_synops", "readout_synops", "hidden_busy_cycles", "hidden_spikes", "steps")


@dataclasses.dataclass
class LifDesign:
    """What a LIF board top is built from: the integer SNN baked in at power-up and the hardware sizing.

    ``source_depth``: spike-train entries per input slot (default ``steps * (n_inputs + 1)``: every input
    fits, even one where all inputs spike at every step); ``n_samples``: input slots."""

    snn: IntSNN
    units: int = 20
    per_word: int = 8
    source_depth: int | None = None
    n_samples: int = 1
    samples: list | None = None     # power-up input spike trains (steps, n_inputs) bool, one per slot

    def __post_init__(self):
        snn = self.snn
        if self.n_samples < 1:
            raise ValueError(f"a LIF design needs at least one input slot, got n_samples={self.n_samples}")
        if self.samples is None:
            self.samples = [np.zeros((snn.steps, snn.n_inputs), bool)] * self.n_samples
        if len(self.samples) != self.n_samples:
            raise ValueError(f"{len(self.samples)} power-up samples for {self.n_samples} input slots")
        longest = max(len(encode_source([s], snn.n_inputs)) for s in self.samples)
        if self.source_depth is None:
            self.source_depth = max(longest, snn.steps * (snn.n_inputs + 1))
        if longest > self.source_depth:
            raise ValueError(f"a power-up sample needs {longest} spike entries, source_depth is {self.source_depth}")
        self.hidden_geom = CoreGeometry(snn.n_inputs, snn.n_hidden, self.units, self.per_word)
        self.readout_geom = CoreGeometry(snn.n_hidden, snn.n_outputs, snn.n_outputs, 1)

    def source_words(self) -> list[int]:
        """The spike-train memory's power-up contents: each slot's sample at ``slot * source_depth``."""
        words = []
        for s in self.samples:
            w = encode_source([s], self.snn.n_inputs)
            words += w + [0] * (self.source_depth - len(w))
        return words

    def ident_values(self) -> dict:
        """The identity reply's fields (:data:`~sparsegate.hw.link.protocol.LIF_IDENT_FIELDS`)."""
        snn, h, r = self.snn, self.snn.hidden, self.snn.readout
        return {"n_inputs": snn.n_inputs, "n_hidden": snn.n_hidden, "n_outputs": snn.n_outputs,
                "units": self.units, "per_word": self.per_word, "slots": self.hidden_geom.slots,
                "readout_units": self.readout_geom.units, "source_depth": self.source_depth,
                "n_samples": self.n_samples, "v_width": h.v_width, "count_width": h.count_width,
                "leak": LEAK_CODES[h.leak], "leak_shift": h.leak_shift, "leak_mult": h.leak_mult,
                "leak_frac": h.leak_frac, "reset": RESET_CODES[h.reset], "refractory": h.refractory,
                "readout_v_width": r.v_width, "readout_count_width": r.count_width}


def lif_host_memories(design: LifDesign) -> list[tuple[str, int, int]]:
    """``[(name, word bits, depth)]`` of the writable memories, in ``wr_mem`` index order."""
    hg, rg, snn = design.hidden_geom, design.readout_geom, design.snn
    mems = [(f"hidden{u}", 8 * hg.per_word, hg.bank_depth) for u in range(hg.units)]
    mems += [(f"readout{u}", 8 * rg.per_word, rg.bank_depth) for u in range(rg.units)]
    mems += [("mask", hg.slots, hg.units), ("threshold", snn.hidden.v_width - 1, 1),
             ("input", source_entry(snn.n_inputs).size, design.n_samples * design.source_depth)]
    return mems


def lif_dbg_map(n_outputs: int) -> dict:
    """Debug register index of every readable value: ``total.<counter>``, ``result<k>``."""
    names = [f"total.{n}" for n in LIF_COUNTERS] + [f"result{k}" for k in range(n_outputs)]
    return {n: i for i, n in enumerate(names)}


class LifDevice(wiring.Component):
    """:class:`LifNetwork` (``host_write=True``) behind a host port, like the sparse engine.

    Members (:class:`~sparsegate.hw.link.host_port.HostPortSignature`)
    -------
    start, sample : ``In``
        Pulse ``start`` to run input slot ``sample``.
    busy, done : ``Out(1)``
        Running; the readout membranes are latched in the result registers.
    abort : ``In(1)``
        Stop waiting for the network (the link's watchdog, RESET). ``fault`` stays 0: every LIF memory
        content can run.
    dbg_sel : ``In(8)``, dbg_data : ``Out(32)``
        Debug register read (combinational; :func:`lif_dbg_map`).
    wr_en, wr_mem, wr_addr, wr_data : ``In``
        Host memory write, ``wr_mem`` = index in :func:`lif_host_memories`.
    """

    def __init__(self, design: LifDesign):
        self.design = design
        self.mems = lif_host_memories(design)
        self.names = lif_dbg_map(design.snn.n_outputs)
        super().__init__(HostPortSignature.for_memories([(bits, depth) for _, bits, depth in self.mems]))

    def elaborate(self, platform):
        m = Module()
        d, snn = self.design, self.design.snn
        hg, rg = d.hidden_geom, d.readout_geom
        M, R = hg.units, rg.units
        m.submodules.net = net = LifNetwork(snn, d.samples, units=d.units, per_word=d.per_word, readout_units=R,
                                            host_write=True, source_words=d.source_words())
        hid = net.hidden

        # host writes
        mem_is = lambda i: self.wr_en & (self.wr_mem == i)  # noqa: E731
        hidden_bank = self.wr_en & (self.wr_mem < M)
        readout_bank = self.wr_en & (self.wr_mem >= M) & (self.wr_mem < M + R)
        m.d.comb += [
            net.hidden_wload.en.eq(hidden_bank), net.hidden_wload.unit.eq(self.wr_mem),
            net.hidden_wload.addr.eq(self.wr_addr), net.hidden_wload.data.eq(self.wr_data),
            net.readout_wload.en.eq(readout_bank), net.readout_wload.unit.eq(self.wr_mem - M),
            net.readout_wload.addr.eq(self.wr_addr), net.readout_wload.data.eq(self.wr_data),
            net.hidden_mask_load.en.eq(mem_is(M + R)), net.hidden_mask_load.unit.eq(self.wr_addr),
            net.hidden_mask_load.data.eq(self.wr_data),
            net.source_wr.en.eq(mem_is(M + R + 2)), net.source_wr.addr.eq(self.wr_addr),
            net.source_wr.data.eq(self.wr_data),
        ]
        threshold = Signal(snn.hidden.v_width - 1, init=snn.hidden.threshold)
        with m.If(mem_is(M + R + 1) & (self.wr_addr == 0)):
            m.d.sync += threshold.eq(self.wr_data)
        m.d.comb += net.hidden_threshold.eq(threshold)

        # counters not in LifNetwork: hidden spikes and steps of this run
        spikes = Signal(32)
        with m.If(hid.o.valid & hid.o.ready & ~hid.o.payload.end):
            m.d.sync += spikes.eq(spikes + 1)

        # run: start the network at the sample's first entry, wait for done, latch the readout membranes
        results = [Signal(signed(32), name=f"result{k}") for k in range(snn.n_outputs)]
        k = Signal(range(snn.n_outputs + 1))
        first = Signal(range(d.n_samples * d.source_depth))
        m.d.comb += net.first.eq(first)
        with m.FSM(name="device"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.comb += net.start.eq(1)
                    m.d.sync += [self.busy.eq(1), self.done.eq(0), spikes.eq(0),
                                 first.eq(self.sample * d.source_depth)]
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(self.abort):      # the link's watchdog or RESET: stop waiting
                    m.d.sync += self.busy.eq(0)
                    m.next = "IDLE"
                with m.Elif(net.done):
                    m.d.sync += k.eq(0)
                    m.next = "ADDR"
            with m.State("ADDR"):           # readout neuron k's state: address now, data next cycle
                unit, slot = k, 0           # readout core: one neuron per unit
                m.d.comb += [net.readout_rd.unit.eq(unit), net.readout_rd.slot.eq(slot)]
                m.next = "LATCH"
            with m.State("LATCH"):
                with m.Switch(k):
                    for i, r in enumerate(results):
                        with m.Case(i):
                            m.d.sync += r.eq(net.readout_rd.v)
                m.d.sync += k.eq(k + 1)
                with m.If(k == snn.n_outputs - 1):
                    m.d.sync += [self.busy.eq(0), self.done.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.next = "ADDR"

        regs = [net.cycles, net.hidden_synops, net.readout_synops, net.hidden_busy_cycles, spikes, hid.steps,
                *results]
        with m.Switch(self.dbg_sel):
            for i, r in enumerate(regs):
                with m.Case(i):
                    m.d.comb += self.dbg_data.eq(r)
        return m


class LinkedLif(wiring.Component):
    """The LIF device behind the host link; the same members as
    :class:`~sparsegate.hw.platform.board_top.LinkedEngine` (:class:`~sparsegate.hw.link.host_link.LinkedCoreSignature`:
    byte streams ``rx``/``tx``, ``busy``, ``idle``, frame counters)."""

    def __init__(self, design: LifDesign, *, timeout: int, clk_hz: int = 0, max_payload: int = 2048):
        self.design = design
        self.mems = {name: (bits, depth) for name, bits, depth in lif_host_memories(design)}
        self.names = lif_dbg_map(design.snn.n_outputs)
        self.ident = identity_bytes(design.ident_values(), len(self.names), core=CORE_NAME, clk_hz=clk_hz)
        self.timeout, self.max_payload = timeout, max_payload
        super().__init__(LinkedCoreSignature())

    def elaborate(self, platform):
        m = Module()
        dev = LifDevice(self.design)
        link = HostLink(
            mems=list(self.mems.values()), n_samples=self.design.n_samples, n_regs=len(self.names),
            result_base=self.names["result0"], n_results=self.design.snn.n_outputs, ident=self.ident,
            timeout=self.timeout, max_payload=self.max_payload, result_bytes=4)
        join_core(m, self, link, dev, name="device")
        return m
