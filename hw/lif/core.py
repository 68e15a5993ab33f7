"""A parallel digital leaky-integrate-and-fire core, and a two-layer spiking network built from two of them.

:class:`LifCore` holds one layer of ``N`` LIF neurons, time-multiplexed over ``M`` physical neuron units:
neuron ``n`` lives in unit ``u = n % M`` at slot ``k = n // M``. Each unit owns

* a **weight bank** (``amaranth.lib.memory.Memory`` with the weights as ``init``) in the dense layout:
  word ``j * WPI + k // P`` holds the ``P`` int8 weights from input ``j`` to the unit's slots
  ``P*(k//P) .. P*(k//P)+P-1`` (``WPI = S/P`` words per input, ``S`` slots per unit padded to a multiple
  of ``P``). Pruning never moves a weight: the same image serves every mask;
* a **state memory** of :data:`neuron_state` words (membrane, last spike, refractory counter, spike
  counter) per slot;
* an **enable mask** register, one bit per slot: disabled (pruned) neurons are skipped, not re-laid out.

One time step, as a stream transaction: the core collects the step's input spike events (``i``, one per
cycle, until an event flagged ``end``) into an event buffer, then runs *rounds*. In a round every unit
takes its next enabled slot (a priority encoder over its mask, so disabled neurons cost no cycle), and
all units walk the event buffer together, adding the weight of every input that spiked to their
accumulators (event-driven: ``E`` cycles for ``E`` input spikes, plus 2 of pipeline). The units then
update their neurons at once (leak, delayed reset, refractory, threshold, counter) and the spikes leave
on ``o`` as neuron indices, one per cycle. After the last round an ``end`` event closes the step.
A step therefore costs ``E + 1`` cycles of collection plus ``R * (E + 6) + spikes + 3`` cycles,
where ``R = max_u (enabled slots of unit u)`` (:func:`sparsegate.sim.lif.hidden_cycles_model`).

The arithmetic is :mod:`sparsegate.sw.ir.snn_golden`'s, bit for bit (docs/snn.md).

:class:`LifNetwork` chains a :class:`SpikeSource` (input spike trains preloaded in a memory) into a hidden
core and an integrator readout core; one ``start`` pulse runs a whole inference (all time steps) of the
next sample with no outside help, raising ``done`` at the end. Spike counters and membranes are read
back per neuron through :func:`readback_signature` ports; cycle and synaptic-operation counters are
outputs.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2

from sparsegate.sw.ir.snn_golden import IntSNN, LifParams

__all__ = ["spike_event", "neuron_state", "source_entry", "readback_signature", "CoreGeometry", "LifCore",
           "SpikeSource", "LifNetwork", "weight_load_signature", "mask_load_signature", "source_write_signature",
           "pack_weight_banks", "unit_mask_words", "encode_source", "check_source", "decode_event"]


def spike_event(n: int) -> data.StructLayout:
    """A spike from neuron/input ``index`` (< ``n``), or the end-of-step marker (``end``)."""
    return data.StructLayout({"index": unsigned(max(1, ceil_log2(n))), "end": 1})


def neuron_state(params: LifParams) -> data.StructLayout:
    """One neuron's state word in a unit's state memory."""
    return data.StructLayout({
        "v": signed(params.v_width),
        "fired": 1,
        "refrac": unsigned(params.refrac_width),
        "count": unsigned(params.count_width),
    })


def source_entry(n_inputs: int) -> data.StructLayout:
    """An entry of the spike-train memory: an input spike, an end-of-step marker, or (``last``) the end of a sample."""
    return data.StructLayout({"index": unsigned(max(1, ceil_log2(n_inputs))), "end": 1, "last": 1})


def readback_signature(units: int, slots: int, params: LifParams) -> wiring.Signature:
    """Per-neuron readback (driven by the reader): address ``unit``/``slot``, data one cycle later."""
    return wiring.Signature({
        "unit": Out(range(units)),
        "slot": Out(range(slots)),
        "v": In(signed(params.v_width)),
        "fired": In(1),
        "count": In(params.count_width),
    })


def weight_load_signature(geom: "CoreGeometry") -> wiring.Signature:
    """Rewrite one weight-bank word (driven by the loader): ``unit``, ``addr``, packed ``data``, ``en``."""
    return wiring.Signature({
        "en": Out(1),
        "unit": Out(range(geom.units)),
        "addr": Out(range(geom.bank_depth)),
        "data": Out(8 * geom.per_word),
    })


def mask_load_signature(geom: "CoreGeometry") -> wiring.Signature:
    """Rewrite one unit's whole enable mask (driven by the loader): ``unit``, ``data`` (bit k = slot k), ``en``."""
    return wiring.Signature({
        "en": Out(1),
        "unit": Out(range(geom.units)),
        "data": Out(geom.slots),
    })


def source_write_signature(depth: int, n_inputs: int) -> wiring.Signature:
    """Write one spike-train memory entry (:func:`source_entry` word): ``addr``, ``data``, ``en``."""
    return wiring.Signature({
        "en": Out(1),
        "addr": Out(range(depth)),
        "data": Out(source_entry(n_inputs).size),
    })


class CoreGeometry:
    """How ``n_neurons`` map onto ``units`` units with ``per_word`` weights per memory word."""

    def __init__(self, n_inputs: int, n_neurons: int, units: int, per_word: int):
        if n_inputs < 1 or n_neurons < 1:
            raise ValueError(f"a LIF core needs at least one input and one neuron, got {n_inputs}/{n_neurons}")
        if not 1 <= units <= n_neurons:
            raise ValueError(f"units must be in 1..{n_neurons} (the neuron count), got {units}")
        if per_word < 1 or per_word & (per_word - 1):
            raise ValueError(f"per_word must be a power of two, got {per_word}")
        self.n_inputs = n_inputs
        self.n_neurons = n_neurons
        self.units = units
        self.per_word = per_word
        slots = -(-n_neurons // units)
        self.slots = -(-slots // per_word) * per_word
        self.words_per_input = self.slots // per_word
        self.bank_depth = n_inputs * self.words_per_input

    def place(self, neuron: int) -> tuple[int, int]:
        """(unit, slot) of a neuron."""
        return neuron % self.units, neuron // self.units

    def neuron(self, unit: int, slot: int) -> int:
        return slot * self.units + unit

    def exists(self, unit: int, slot: int) -> bool:
        return self.neuron(unit, slot) < self.n_neurons

    def rounds(self, mask: np.ndarray) -> int:
        """Rounds per time step for an enable mask: the most enabled neurons any unit holds."""
        mask = np.asarray(mask, bool)
        return max(int(mask[u::self.units].sum()) for u in range(self.units))


def pack_weight_banks(weights: np.ndarray, geom: CoreGeometry) -> list[list[int]]:
    """Per unit, the weight-bank words (``per_word`` int8 lanes packed little-endian) of ``weights (N, n_in)``."""
    w = np.asarray(weights, dtype=np.int64)
    if w.shape != (geom.n_neurons, geom.n_inputs):
        raise ValueError(f"weights have shape {w.shape}, core expects {(geom.n_neurons, geom.n_inputs)}")
    if w.size and np.abs(w).max() > 127:
        raise ValueError("weights must be int8 in [-127, 127]")
    padded = np.zeros((geom.units * geom.slots, geom.n_inputs), np.int64)
    padded[:geom.n_neurons] = w
    banks = []
    lane_weights = (1 << (8 * np.arange(geom.per_word, dtype=object)))
    for u in range(geom.units):
        rows = padded[[geom.neuron(u, k) for k in range(geom.slots)]]          # (S, n_in)
        lanes = (rows.T & 0xFF).reshape(geom.n_inputs, geom.words_per_input, geom.per_word).astype(object)
        words = (lanes * lane_weights).sum(axis=2).reshape(-1)               # j * WPI + k // P
        banks.append([int(x) for x in words])
    return banks


def unit_mask_words(mask: np.ndarray, geom: CoreGeometry) -> list[int]:
    """Per unit, its enable-mask word (bit ``k`` = slot ``k``) for a neuron mask ``(n_neurons,)`` bool."""
    mask = np.asarray(mask, bool)
    if mask.shape != (geom.n_neurons,):
        raise ValueError(f"mask has shape {mask.shape}, expected ({geom.n_neurons},)")
    return [sum(1 << k for k in range(geom.slots) if geom.exists(u, k) and mask[geom.neuron(u, k)])
            for u in range(geom.units)]


def encode_source(samples: Sequence[np.ndarray], n_inputs: int) -> list[int]:
    """Spike-train memory words for samples of input spikes ``(steps, n_inputs)`` bool, back to back."""
    layout = source_entry(n_inputs)
    idx = layout["index"]
    end_bit = 1 << layout["end"].offset
    last_bit = 1 << layout["last"].offset
    words: list[int] = []
    for spikes in samples:
        spikes = np.asarray(spikes, bool)
        if spikes.ndim != 2 or spikes.shape[1] != n_inputs:
            raise ValueError(f"a sample's spikes must be (steps, {n_inputs}), got {spikes.shape}")
        for t, row in enumerate(spikes):
            words += [int(j) << idx.offset for j in np.flatnonzero(row)]
            words.append(end_bit | (last_bit if t == len(spikes) - 1 else 0))
    return words


def check_source(words: Sequence[int], n_inputs: int) -> None:
    """Reject a spike-train memory image that is empty or does not end a sample with its last word."""
    if not words:
        raise ValueError("the spike-train memory needs at least one sample")
    if not (words[-1] >> source_entry(n_inputs)["last"].offset) & 1:
        raise ValueError("the spike-train memory must end with an entry flagged 'last'")


def decode_event(word: int, n: int) -> tuple[int, bool]:
    """(index, end) of a :func:`spike_event` payload."""
    layout = spike_event(n)
    index = (word >> layout["index"].offset) & ((1 << layout["index"].width) - 1)
    return index, bool((word >> layout["end"].offset) & 1)


def _lowest_set(m: Module, bits: Value, width: int, name: str):
    """(index, any) of the lowest set bit of ``bits`` (combinational priority encoder)."""
    held = Signal(width, name=f"{name}_bits")  # a signal, so the chain below does not copy the expression
    m.d.comb += held.eq(bits)
    index = Signal(range(max(2, width)), name=f"{name}_idx")
    for i in reversed(range(width)):
        with m.If(held[i]):
            m.d.comb += index.eq(i)
    return index, held.any()



class LifCore(wiring.Component):
    """One layer of LIF neurons over ``units`` neuron units (see the module docstring).

    Parameters
    ----------
    weights : array ``(n_neurons, n_inputs)`` of int8
        The layer's dense weights (``nn.Linear`` layout), the banks' ``init``.
    params : LifParams
        Neuron parameters (threshold, leak, reset, refractory, widths).
    units, per_word : int
        Physical neuron units ``M`` and weights per bank word ``P`` (a power of two).
    mask : array ``(n_neurons,)`` of bool, optional
        Initial enable mask (default: all enabled); ``mask_we`` rewrites single bits.

    Members
    -------
    i : ``In(stream.Signature(spike_event(n_inputs)))`` input spikes, each step closed by ``end``.
    o : ``Out(stream.Signature(spike_event(n_neurons)))`` output spikes, each step closed by ``end``.
    clear : ``In(1)`` zero every neuron's state and the counters (honoured while idle).
    idle : ``Out(1)`` waiting for input with nothing collected and no clear in progress.
    steps, busy_cycles, synops : ``Out`` counters since the last clear (completed time steps, cycles not
        idle, synaptic accumulations performed).
    mask_we, mask_unit, mask_slot, mask_enable : ``In`` write one enable bit (while idle).
    rd : ``In(readback_signature(...))`` per-neuron state readback (while idle).
    wload : ``In(weight_load_signature(...))`` rewrite a weight-bank word (while idle), e.g. a new network.
    threshold, mask_load : with ``host_write=True`` only: the firing threshold as an input (instead of
        ``params.threshold``) and ``In(mask_load_signature(...))``, a whole unit's mask word (while idle).
    """

    def __init__(self, weights: np.ndarray, params: LifParams, *, units: int, per_word: int = 1,
                 mask: np.ndarray | None = None, counter_width: int = 32, host_write: bool = False):
        weights = np.asarray(weights, dtype=np.int64)
        if weights.ndim != 2:
            raise ValueError(f"weights must be 2-D (n_neurons, n_inputs), got shape {weights.shape}")
        self.geom = g = CoreGeometry(weights.shape[1], weights.shape[0], units, per_word)
        self.params = params
        self.weights = weights
        mask = np.ones(g.n_neurons, bool) if mask is None else np.asarray(mask, bool)
        if mask.shape != (g.n_neurons,):
            raise ValueError(f"mask has shape {mask.shape}, expected ({g.n_neurons},)")
        self.mask = mask
        self.banks = pack_weight_banks(weights, g)
        self.acc_width = (g.n_inputs * 127).bit_length() + 1
        self.host_write = host_write
        extra = {"threshold": In(unsigned(params.v_width - 1), init=params.threshold),
                 "mask_load": In(mask_load_signature(g))} if host_write else {}
        super().__init__({**extra,
            "i": In(stream.Signature(spike_event(g.n_inputs))),
            "o": Out(stream.Signature(spike_event(g.n_neurons))),
            "clear": In(1),
            "idle": Out(1),
            "steps": Out(counter_width),
            "busy_cycles": Out(counter_width),
            "synops": Out(counter_width),
            "overflow": Out(1),
            "mask_we": In(1),
            "mask_unit": In(range(units)),
            "mask_slot": In(range(g.slots)),
            "mask_enable": In(1),
            "rd": In(readback_signature(units, g.slots, params)),
            "wload": In(weight_load_signature(g)),
        })

    def unit_mask_init(self, unit: int) -> int:
        return unit_mask_words(self.mask, self.geom)[unit]

    def _update(self, m: Module, state, acc, name: str):
        """Combinational neuron update: returns (new state as a flat value, spike)."""
        p = self.params
        threshold = self.threshold if self.host_write else p.threshold
        v = state.v
        if p.leak == "shift":
            leaked = v - (v >> p.leak_shift)
        elif p.leak == "mult":
            leaked = (v * Const(p.leak_mult, signed(p.leak_frac + 2))) >> p.leak_frac
        else:
            leaked = v
        if p.reset == "subtract":
            base = leaked - Mux(state.fired, threshold, 0)
        else:
            base = Mux(state.fired, 0, leaked)
        in_refrac = state.refrac != 0
        wide = Signal(signed(max(p.v_width + p.leak_frac + 4, self.acc_width + 2)), name=f"{name}_wide")
        m.d.comb += wide.eq(base + Mux(in_refrac, 0, acc))
        new_v = Signal(signed(p.v_width), name=f"{name}_v")
        with m.If(wide > p.v_max):
            m.d.comb += new_v.eq(p.v_max)
        with m.Elif(wide < p.v_min):
            m.d.comb += new_v.eq(p.v_min)
        with m.Else():
            m.d.comb += new_v.eq(wide)
        spike = Signal(name=f"{name}_spike")
        m.d.comb += spike.eq((new_v > threshold) & ~in_refrac)
        new = Signal(neuron_state(p), name=f"{name}_new")
        m.d.comb += [
            new.v.eq(new_v),
            new.fired.eq(spike),
            new.refrac.eq(Mux(spike, p.refractory, Mux(in_refrac, state.refrac - 1, 0))),
            new.count.eq(Mux(spike & (state.count != p.count_max), state.count + 1, state.count)),
        ]
        return new, spike

    def elaborate(self, platform):
        m = Module()
        g, p = self.geom, self.params
        M, S = g.units, g.slots
        lane_shift = (g.per_word - 1).bit_length()
        layout = neuron_state(p)

        # Event buffer: this step's input spikes (each input spikes at most once per step).
        m.submodules.events = events = Memory(shape=unsigned(max(1, ceil_log2(g.n_inputs))), depth=g.n_inputs, init=[])
        ev_w = events.write_port()
        ev_r = events.read_port()
        n_events = Signal(range(g.n_inputs + 1))

        # FSM-wide counters and registers.
        clear_addr = Signal(range(S))
        e = Signal(range(g.n_inputs + 3))          # issue counter of the accumulate pipeline
        va, vb = Signal(), Signal()  # pipeline valid bits: event index ready (B), weight word ready (C)
        pending = Signal(M)                        # units whose neuron spiked this round, not yet sent
        n_active = Signal(range(M + 1))

        in_acc = Signal()
        in_update = Signal()
        in_collect = Signal()
        in_clear = Signal()
        start_round = Signal()     # ROUND state: pick each unit's next slot
        in_emit = Signal()
        in_end = Signal()

        slot = [Signal(range(S), name=f"slot{u}") for u in range(M)]
        valid = [Signal(name=f"valid{u}") for u in range(M)]
        frm = [Signal(range(S + 1), name=f"from{u}") for u in range(M)]
        masks = [Signal(S, init=self.unit_mask_init(u), name=f"mask{u}") for u in range(M)]
        rd_unit = Signal(range(M))
        m.d.sync += rd_unit.eq(self.rd.unit)
        rd_views = []
        spikes = []

        j = ev_r.data
        for u in range(M):
            # Weight bank and state memory of unit u.
            bank = Memory(shape=unsigned(8 * g.per_word), depth=g.bank_depth, init=self.banks[u])
            mem = Memory(shape=layout, depth=S, init=[])
            m.submodules[f"bank{u}"] = bank
            m.submodules[f"state{u}"] = mem
            w_r = bank.read_port()
            w_w = bank.write_port()
            m.d.comb += [w_w.addr.eq(self.wload.addr), w_w.data.eq(self.wload.data),
                         w_w.en.eq(self.wload.en & (self.wload.unit == u))]
            s_r = mem.read_port()
            s_w = mem.write_port()

            # Next enabled slot at or after frm[u].
            at_or_after = Cat(*(Const(k, range(S + 1)) >= frm[u] for k in range(S)))
            nxt, any_left = _lowest_set(m, masks[u] & at_or_after, S, f"u{u}_next")
            with m.If(start_round):
                m.d.sync += [slot[u].eq(nxt), valid[u].eq(any_left)]

            # Accumulate: weight of input j for this unit's current slot.
            m.d.comb += w_r.addr.eq(j * g.words_per_input + (slot[u] >> lane_shift))
            lanes = data.ArrayLayout(signed(8), g.per_word)(w_r.data)
            acc = Signal(signed(self.acc_width), name=f"acc{u}")
            lane = slot[u][:lane_shift] if lane_shift else 0
            with m.If(start_round):
                m.d.sync += acc.eq(0)
            with m.Elif(in_acc & vb & valid[u]):
                m.d.sync += acc.eq(acc + lanes[lane])

            # State read: the current slot while processing, the readback slot while idle.
            m.d.comb += s_r.addr.eq(Mux(in_collect, self.rd.slot, slot[u]))
            rd_views.append(s_r.data)
            new, spike = self._update(m, s_r.data, acc, f"u{u}")
            spikes.append(spike)
            with m.If(in_clear):
                m.d.comb += [s_w.addr.eq(clear_addr), s_w.data.eq(0), s_w.en.eq(1)]
            with m.Elif(in_update & valid[u]):
                m.d.comb += [s_w.addr.eq(slot[u]), s_w.data.eq(new), s_w.en.eq(1)]
            with m.If(in_emit & ~pending.any() & valid[u]):
                m.d.sync += frm[u].eq(slot[u] + 1)

            # Enable-mask writes.
            with m.If(self.mask_we & (self.mask_unit == u) & in_collect):
                m.d.sync += masks[u].bit_select(self.mask_slot, 1).eq(self.mask_enable)
            if self.host_write:
                with m.If(self.mask_load.en & (self.mask_load.unit == u) & in_collect):
                    m.d.sync += masks[u].eq(self.mask_load.data)

        # Readback mux (one cycle after the address, like the memories).
        with m.Switch(rd_unit):
            for u in range(M):
                with m.Case(u):
                    m.d.comb += [self.rd.v.eq(rd_views[u].v), self.rd.fired.eq(rd_views[u].fired),
                                 self.rd.count.eq(rd_views[u].count)]

        # Output event for the lowest pending unit.
        emit_unit, _ = _lowest_set(m, pending, M, "emit")
        emit_slot = Signal(range(S))
        with m.Switch(emit_unit):
            for u in range(M):
                with m.Case(u):
                    m.d.comb += emit_slot.eq(slot[u])

        m.d.comb += [ev_r.addr.eq(e), ev_w.addr.eq(n_events), ev_w.data.eq(self.i.payload.index)]

        with m.If(~in_collect):
            m.d.sync += self.busy_cycles.eq(self.busy_cycles + 1)

        with m.FSM(name="lif"):
            with m.State("COLLECT"):
                m.d.comb += in_collect.eq(1)
                m.d.comb += self.idle.eq(n_events == 0)
                with m.If(self.clear):
                    m.d.sync += [clear_addr.eq(0), n_events.eq(0), self.steps.eq(0), self.busy_cycles.eq(0),
                                 self.synops.eq(0), self.overflow.eq(0)]
                    m.next = "CLEAR"
                with m.Else():
                    m.d.comb += self.i.ready.eq(1)
                    with m.If(self.i.valid):
                        with m.If(self.i.payload.end):
                            m.d.sync += [frm[u].eq(0) for u in range(M)]
                            m.next = "ROUND"
                        with m.Elif(n_events == g.n_inputs):
                            m.d.sync += self.overflow.eq(1)
                        with m.Else():
                            m.d.comb += ev_w.en.eq(1)
                            m.d.sync += n_events.eq(n_events + 1)
            with m.State("CLEAR"):
                m.d.comb += in_clear.eq(1)
                m.d.sync += clear_addr.eq(clear_addr + 1)
                with m.If(clear_addr == S - 1):
                    m.next = "COLLECT"
            with m.State("ROUND"):
                m.d.comb += start_round.eq(1)
                m.d.sync += [e.eq(0), va.eq(0), vb.eq(0)]
                m.next = "CHECK"
            with m.State("CHECK"):
                m.d.sync += n_active.eq(sum(valid))
                with m.If(Cat(*valid).any()):
                    m.next = "ACC"
                with m.Else():
                    m.next = "END"
            with m.State("ACC"):
                m.d.comb += in_acc.eq(1)
                m.d.sync += [e.eq(e + 1), va.eq(e < n_events), vb.eq(va)]
                with m.If(e == n_events + 1):
                    m.next = "UPDATE"
            with m.State("UPDATE"):
                m.d.comb += in_update.eq(1)
                m.d.sync += [pending.eq(Cat(*(s & v for s, v in zip(spikes, valid)))),
                             self.synops.eq(self.synops + n_events * n_active)]
                m.next = "EMIT"
            with m.State("EMIT"):
                m.d.comb += in_emit.eq(1)
                with m.If(pending.any()):
                    m.d.comb += [self.o.valid.eq(1), self.o.payload.index.eq(emit_slot * M + emit_unit)]
                    with m.If(self.o.ready):
                        m.d.sync += pending.bit_select(emit_unit, 1).eq(0)
                with m.Else():
                    m.next = "ROUND"
            with m.State("END"):
                m.d.comb += [in_end.eq(1), self.o.valid.eq(1), self.o.payload.end.eq(1)]
                with m.If(self.o.ready):
                    m.d.sync += [n_events.eq(0), self.steps.eq(self.steps + 1)]
                    m.next = "COLLECT"
        return m


class SpikeSource(wiring.Component):
    """Streams preloaded spike trains (:func:`encode_source` words) one sample per ``start`` pulse.

    Each ``start`` sends the entries from where the previous sample ended up to and including the
    next entry flagged ``last``; ``steps_sent`` counts the end-of-step markers sent since ``start``.

    ``host_write=True`` (``depth`` entries, ``words`` the power-up contents): a write port ``wr``
    (:func:`source_write_signature`) loads spike trains at run time, and each ``start`` begins at entry
    ``first`` instead of where the previous sample ended.

    Members
    -------
    o : ``Out(stream.Signature(spike_event(n_inputs)))``
        Input spikes, each step closed by ``end``.
    start : ``In(1)``
        Pulse: send the next sample.
    running : ``Out(1)``
        A sample is being sent.
    steps_sent : ``Out(16)``
        End-of-step markers sent since ``start``.
    wr, first : ``In``
        ``host_write=True`` only: spike-train memory writes; the entry the next sample starts at.
    """

    def __init__(self, words: Sequence[int], n_inputs: int, *, host_write: bool = False, depth: int | None = None):
        if host_write and not words:
            raise ValueError("the spike-train memory needs at least one entry")
        if not host_write:
            check_source(words, n_inputs)
        self.n_inputs = n_inputs
        self.words = list(words)
        self.host_write = host_write
        self.depth = depth or len(self.words)
        if self.depth < len(self.words):
            raise ValueError(f"spike-train memory depth {self.depth} < its {len(self.words)} initial entries")
        extra = {"wr": In(source_write_signature(self.depth, n_inputs)), "first": In(range(self.depth))} \
            if host_write else {}
        super().__init__({
            **extra,
            "o": Out(stream.Signature(spike_event(n_inputs))),
            "start": In(1),
            "running": Out(1),
            "steps_sent": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        layout = source_entry(self.n_inputs)
        depth = self.depth
        m.submodules.trains = trains = Memory(shape=unsigned(layout.size), depth=depth, init=self.words)
        rp = trains.read_port()
        ptr = Signal(range(depth))
        primed = Signal()
        fire = self.o.valid & self.o.ready
        entry = layout(rp.data)
        launch = self.start & ~self.running
        if self.host_write:
            wp = trains.write_port()
            m.d.comb += [wp.en.eq(self.wr.en), wp.addr.eq(self.wr.addr), wp.data.eq(self.wr.data),
                         rp.addr.eq(Mux(launch, self.first, Mux(fire, ptr + 1, ptr)))]
            with m.If(launch):
                m.d.sync += ptr.eq(self.first)
        else:
            m.d.comb += rp.addr.eq(Mux(fire, ptr + 1, ptr))
        m.d.comb += [
            self.o.valid.eq(self.running & primed),
            self.o.payload.index.eq(entry.index),
            self.o.payload.end.eq(entry.end),
        ]
        with m.If(launch):
            m.d.sync += [self.running.eq(1), primed.eq(1), self.steps_sent.eq(0)]
        with m.If(fire):
            m.d.sync += ptr.eq(Mux(ptr == depth - 1, 0, ptr + 1))
            with m.If(entry.end):
                m.d.sync += self.steps_sent.eq(self.steps_sent + 1)
            with m.If(entry.last):
                m.d.sync += [self.running.eq(0), primed.eq(0)]
        return m


class LifNetwork(wiring.Component):
    """Source -> hidden :class:`LifCore` -> integrator readout :class:`LifCore`, run free per ``start``.

    ``start`` (a pulse while ``done`` or after reset) clears both cores, streams the next sample's spike
    trains through them and raises ``done`` once the readout core has finished every step; ``cycles``
    counts the cycles from ``start`` to ``done``. Read results through ``hidden_rd``/``readout_rd``.

    ``host_write=True`` makes everything loadable at run time (the board top level's LIF core): the spike
    source gets ``source_depth`` entries (power-up contents ``source_words``, default the samples back to
    back), a write port ``source_wr`` and a start entry ``first``; the hidden core its ``hidden_threshold``
    and ``hidden_mask_load`` inputs (:class:`LifCore` ``host_write``).

    Members
    -------
    start : ``In(1)``, done : ``Out(1)``, busy : ``Out(1)``
        Run one sample; finished; running.
    cycles, hidden_synops, readout_synops, hidden_busy_cycles : ``Out(32)``
        Counters of the last run.
    hidden_rd, readout_rd : ``In(readback_signature(...))``
        Per-neuron state readback of each core (while idle).
    hidden_wload, readout_wload : ``In(weight_load_signature(...))``
        Weight-bank writes into each core (while idle).
    source_wr, first, hidden_threshold, hidden_mask_load : ``In``
        ``host_write=True`` only (see above).
    """

    def __init__(self, snn: IntSNN, samples: Sequence[np.ndarray], *, units: int = 20, per_word: int = 8,
                 readout_units: int | None = None, host_write: bool = False, source_depth: int | None = None,
                 source_words: Sequence[int] | None = None):
        self.snn = snn
        self.host_write = host_write
        self.hidden = LifCore(snn.w1, snn.hidden, units=units, per_word=per_word, mask=snn.mask,
                              host_write=host_write)
        readout_units = readout_units or snn.n_outputs
        self.readout = LifCore(snn.w2, snn.readout, units=readout_units, per_word=1)
        if source_words is None:
            source_words = encode_source(samples, snn.n_inputs)
        self.source = SpikeSource(source_words, snn.n_inputs, host_write=host_write, depth=source_depth)
        self.n_samples = len(samples)
        hg, rg = self.hidden.geom, self.readout.geom
        extra = {"source_wr": In(source_write_signature(self.source.depth, snn.n_inputs)),
                 "first": In(range(self.source.depth)),
                 "hidden_threshold": In(unsigned(snn.hidden.v_width - 1), init=snn.hidden.threshold),
                 "hidden_mask_load": In(mask_load_signature(hg))} if host_write else {}
        super().__init__({
            **extra,
            "start": In(1),
            "done": Out(1),
            "busy": Out(1),
            "cycles": Out(32),
            "hidden_synops": Out(32),
            "readout_synops": Out(32),
            "hidden_busy_cycles": Out(32),
            "hidden_rd": In(readback_signature(hg.units, hg.slots, snn.hidden)),
            "readout_rd": In(readback_signature(rg.units, rg.slots, snn.readout)),
            "hidden_wload": In(weight_load_signature(hg)),
            "readout_wload": In(weight_load_signature(rg)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.source = src = self.source
        m.submodules.hidden = hid = self.hidden
        m.submodules.readout = out = self.readout
        wiring.connect(m, src.o, hid.i)
        wiring.connect(m, hid.o, out.i)
        m.d.comb += out.o.ready.eq(1)  # the integrator readout never fires
        wiring.connect(m, wiring.flipped(self.hidden_rd), hid.rd)
        wiring.connect(m, wiring.flipped(self.readout_rd), out.rd)
        wiring.connect(m, wiring.flipped(self.hidden_wload), hid.wload)
        wiring.connect(m, wiring.flipped(self.readout_wload), out.wload)
        m.d.comb += [self.hidden_synops.eq(hid.synops), self.readout_synops.eq(out.synops),
                     self.hidden_busy_cycles.eq(hid.busy_cycles)]
        if self.host_write:
            wiring.connect(m, wiring.flipped(self.source_wr), src.wr)
            wiring.connect(m, wiring.flipped(self.hidden_mask_load), hid.mask_load)
            m.d.comb += [src.first.eq(self.first), hid.threshold.eq(self.hidden_threshold)]

        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        with m.FSM(name="net"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.comb += [hid.clear.eq(1), out.clear.eq(1)]
                    m.d.sync += [self.done.eq(0), self.busy.eq(1), self.cycles.eq(1)]
                    m.next = "CLEARING"
            with m.State("CLEARING"):
                with m.If(hid.idle & out.idle):
                    m.d.comb += src.start.eq(1)
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(~src.running & (out.steps == src.steps_sent) & out.idle & hid.idle):
                    m.d.sync += [self.done.eq(1), self.busy.eq(0)]
                    m.next = "IDLE"
        return m
