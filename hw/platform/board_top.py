"""Board top level: the sparse engine behind the host link, on a UART, clocked by an ECP5 PLL.

Three layers, so simulation can enter at the level it needs:

* :class:`LinkedEngine` — engine (``host_write=True``: every program memory writable at run time) +
  :class:`~sparsegate.hw.link.host_link.HostLink`, with byte streams ``rx``/``tx``. The simulator transport
  drives these streams directly (fast).
* :class:`SerialTop` — ``LinkedEngine`` + :class:`~sparsegate.hw.link.uart.UartRx`/``UartTx`` with serial
  lines ``rx``/``tx`` (no platform): the exact logic of a board, for the UART-level tests.
* :class:`BoardTop` — ``SerialTop`` on a real board: PLL from the board clock to ``clk_hz``, ``reset`` held
  until the PLL locks, the board's UART pins, LEDs showing activity.

The device behind the link is the sparse engine (``program`` = a compiled engine program) or the LIF core
(``program`` = a :class:`~sparsegate.hw.lif.design.LifDesign`: :class:`~sparsegate.hw.lif.design.LinkedLif`);
:func:`linked_core` picks, and the ID reply tells the host which one it talks to.

The engine's memories are sized by a **capacity geometry** (:func:`capacity_geometry`): the program baked
in at build time sets the widths, with optional headroom, and any image that fits that geometry can be
loaded at run time (:func:`retarget_program` repacks a compiled program into it).
"""
from __future__ import annotations

import dataclasses

from amaranth.hdl import ClockDomain, ClockSignal, Const, Elaboratable, Instance, Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.cdc import AsyncFFSynchronizer
from amaranth.lib.wiring import In, Out

from sparsegate.hw.engine.engine import CORE_NAME, HOST_MEMS, SparseEngine, dbg_map, host_memories
from sparsegate.hw.engine.layouts import EngineGeometry, chan_layout, desc_layout, pack, param_layout, unpack
from sparsegate.hw.link.host_link import HostLink, LinkedCoreSignature, join_core
from sparsegate.hw.link.protocol import identity_bytes
from sparsegate.hw.link.uart import UartRx, UartTx, divisor_for
from sparsegate.hw.platform.replicated_registers import reset_from_copy

__all__ = ["LinkedEngine", "linked_core", "SerialTop", "BoardTop", "capacity_geometry", "retarget_program", "ProgramDoesNotFit",
           "pll_params", "DEFAULT_BAUD", "DEFAULT_TIMEOUT_S"]

DEFAULT_BAUD = 115200
#: The link's truncated-frame timeout of a board top, seconds.
DEFAULT_TIMEOUT_S = 0.05


class ProgramDoesNotFit(ValueError):
    """An image needs more of some engine memory than the built device has."""


def capacity_geometry(program, *, headroom: float = 0.0, n_samples: int | None = None) -> EngineGeometry:
    """The geometry a board is built with: the program's, with ``headroom`` (0.25 = 25%) more weight /
    channel / parameter entries and ``n_samples`` input slots."""
    g = program.geometry
    grow = lambda n: max(2, int(n * (1 + headroom) + 0.999))  # noqa: E731
    return dataclasses.replace(g, weight_depth=grow(g.weight_depth), chan_depth=grow(g.chan_depth),
                               param_depth=grow(g.param_depth), n_samples=n_samples or g.n_samples)


def retarget_program(program, geometry: EngineGeometry):
    """``program`` (compiled by :func:`~sparsegate.hw.engine.program.compile_program` for the same lane
    count) repacked into the memories of an engine built with ``geometry``; raises :class:`ProgramDoesNotFit`
    naming each memory that is too small."""
    g0, g = program.geometry, geometry
    if g0.lanes != g.lanes:
        raise ProgramDoesNotFit(f"the image was compiled for {g0.lanes} lanes, the device has {g.lanes}")
    checks = [("weight words", len(program.weight_words), g.weight_depth),
              ("channel-table entries", len(program.chan_words), g.chan_depth),
              ("output parameters", len(program.param_words), g.param_depth),
              ("layers", g0.n_layers, g.n_layers), ("weight slot bits", g0.slot_bits, g.slot_bits),
              ("activation words per bank", g0.act_depth, g.act_depth),
              ("input words per sample", g0.input_depth, g.input_depth),
              ("pool row width", g0.pool_width, g.pool_width),
              ("input samples", len(program.inputs), g.n_samples)]
    over = [f"{what} {need} > {have}" for what, need, have in checks if need > have]
    if g0.drains != g.drains:
        over.append(f"output-stage drains {g0.drains} != {g.drains}")
    if g0.bank_ratio != g.bank_ratio:
        over.append(f"activation banks per lane {g0.bank_ratio} != {g.bank_ratio}")
    if g0.n_results != g.n_results:
        over.append(f"result registers {g0.n_results} != {g.n_results}")
    if over:
        raise ProgramDoesNotFit("image does not fit the device's engine: " + "; ".join(over))

    def repack(words, old, new):
        return [pack(new, unpack(old, w)) for w in words]

    desc = repack(program.desc_words, desc_layout(g0), desc_layout(g))
    chan = repack(program.chan_words, chan_layout(g0), chan_layout(g))
    param = repack(program.param_words, param_layout(g0), param_layout(g))
    m0, m1 = (1 << g0.slot_bits) - 1, g.slot_bits
    weights = [sum(((w >> (g0.slot_bits * j)) & m0) << (m1 * j) for j in range(g.lanes))
               for w in program.weight_words]
    inputs = []
    for s in range(len(program.inputs)):
        words = program.input_words[s * g0.input_depth:(s + 1) * g0.input_depth]
        inputs += words + [0] * (g.input_depth - len(words))
    pad = lambda words, depth: list(words) + [0] * (depth - len(words))  # noqa: E731
    out = dataclasses.replace(
        program, geometry=g, desc_words=pad(desc, max(2, g.n_layers)), chan_words=pad(chan, g.chan_depth),
        param_words=pad(param, g.param_depth), weight_words=pad(weights, g.weight_depth),
        input_words=pad(inputs, g.n_samples * g.input_depth))
    #: entries the image really uses (the rest is padding): what a host has to send
    out.used = {"desc": len(desc), "chan": len(chan), "param": len(param), "weight": len(weights)}
    return out


class LinkedEngine(wiring.Component):
    """The engine behind the host link.

    ``program`` must already be in its capacity geometry (:func:`retarget_program`); its memory contents
    are the power-up contents (the image baked at build time).

    Members (:class:`~sparsegate.hw.link.host_link.LinkedCoreSignature`)
    -------
    rx : ``In(stream.Signature(8))``, tx : ``Out(stream.Signature(8))``
        Request bytes from the host, reply bytes to it.
    busy : ``Out(1)``
        The engine is running.
    idle : ``Out(1)``
        Nothing in progress (link and engine).
    frames_ok, frames_bad : ``Out(16)``
        Replies sent with status OK / with an error.
    """

    def __init__(self, program, *, timeout: int, clk_hz: int = 0, max_payload: int = 2048):
        self.program = program
        g = program.geometry
        self.names = dbg_map(g)
        self.mems = host_memories(program.contents)
        self.ident = identity_bytes(g, len(self.names), core=CORE_NAME, clk_hz=clk_hz)
        self.timeout, self.max_payload = timeout, max_payload
        super().__init__(LinkedCoreSignature())

    def elaborate(self, platform):
        m = Module()
        g = self.program.geometry
        eng = SparseEngine(self.program.contents, host_write=True)
        link = HostLink(
            mems=[self.mems[k] for k in HOST_MEMS], n_samples=g.n_samples, n_regs=len(self.names),
            result_base=self.names["result0"], n_results=g.n_results, ident=self.ident, timeout=self.timeout,
            max_payload=self.max_payload)
        # the engine's `abort` resets every register of it, block by block, each from its own copy
        join_core(m, self, link, eng, name="engine", reset_device=False)
        return m


def linked_core(program, *, timeout: int, clk_hz: int = 0):
    """The device behind the host link: :class:`LinkedEngine` for an engine program, ``LinkedLif`` for a
    :class:`~sparsegate.hw.lif.design.LifDesign`."""
    from sparsegate.hw.lif.design import LifDesign, LinkedLif
    if isinstance(program, LifDesign):
        return LinkedLif(program, timeout=timeout, clk_hz=clk_hz)
    return LinkedEngine(program, timeout=timeout, clk_hz=clk_hz)


class SerialTop(wiring.Component):
    """:func:`linked_core` (engine or LIF) behind an 8N1 UART (``divisor`` cycles per bit).

    Members
    -------
    rx : ``In(1, init=1)``, tx : ``Out(1, init=1)``
        The serial lines from and to the host.
    busy : ``Out(1)``
        The core is running.
    frames_ok, frames_bad : ``Out(16)``
        Replies sent with status OK / with an error.
    reset : ``In(1)``
        The board's reset (:class:`~sparsegate.hw.link.host_link.LinkedCoreSignature`): the UART and the core
        start over, each from its own registered copy.
    """

    def __init__(self, program, *, divisor: int, timeout: int, clk_hz: int = 0):
        self.program, self.divisor, self.timeout, self.clk_hz = program, divisor, timeout, clk_hz
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "busy": Out(1), "frames_ok": Out(16),
                          "frames_bad": Out(16), "reset": In(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = linked_core(self.program, timeout=self.timeout, clk_hz=self.clk_hz)
        urx, utx = UartRx(self.divisor), UartTx(self.divisor)
        m.submodules.urx = reset_from_copy(m, self.reset, urx, name="urx_reset", init=1)
        m.submodules.utx = reset_from_copy(m, self.reset, utx, name="utx_reset", init=1)
        wiring.connect(m, urx.o, core.rx)
        wiring.connect(m, core.tx, utx.i)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx), self.busy.eq(core.busy),
                     self.frames_ok.eq(core.frames_ok), self.frames_bad.eq(core.frames_bad),
                     core.reset.eq(self.reset)]
        return m


def pll_params(fin_hz: float, fout_hz: float) -> dict:
    """ECP5 EHXPLLL dividers for ``fout`` from ``fin`` (feedback from CLKOP): PFD 3.125-400 MHz, VCO
    400-800 MHz; the closest achievable output wins. Returns the dividers and the exact output frequency."""
    best = None
    for clki in range(1, 129):
        pfd = fin_hz / clki
        if not 3.125e6 <= pfd <= 400e6:
            continue
        for fb in range(1, 81):
            out = pfd * fb
            for op in range(1, 129):
                vco = out * op
                if 400e6 <= vco <= 800e6:
                    err = abs(out - fout_hz)
                    if best is None or err < best[0]:
                        best = (err, clki, fb, op, out)
                    break
    if best is None:
        raise ValueError(f"no ECP5 PLL setting makes {fout_hz / 1e6:g} MHz from {fin_hz / 1e6:g} MHz")
    _, clki, fb, op, out = best
    return {"CLKI_DIV": clki, "CLKFB_DIV": fb, "CLKOP_DIV": op, "fout_hz": out}


class BoardTop(Elaboratable):
    """The whole design on an ECP5 board: board clock → PLL (``clk_hz``) → :class:`SerialTop` on the
    board's ``uart`` resource (``uart_resource`` adds one where the board definition lacks it); ``program``
    is an engine program or a :class:`~sparsegate.hw.lif.design.LifDesign`. LED 0 = core busy, LED 1 = a bad frame was seen, LED 2 = heartbeat (where the board has them)."""

    def __init__(self, program, *, clk_hz: float = 100e6, baud: int = DEFAULT_BAUD,
                 timeout_s: float = DEFAULT_TIMEOUT_S):
        self.program = program
        self.clk_hz_req = clk_hz
        self.baud = baud
        self.timeout_s = timeout_s
        self.pll = None

    def elaborate(self, platform):
        m = Module()
        clk_res = platform.resources[platform.default_clk, 0]
        fin = clk_res.clock.frequency
        clk_in = io.Buffer("i", platform.request(platform.default_clk, dir="-"))
        m.submodules.clk_in = clk_in
        # no domain reset: the reset held until the PLL locks reaches the design as SerialTop's `reset`, which
        # each part copies for its own registers (the engine through the link's abort: LinkedEngine)
        m.domains.sync = ClockDomain("sync", reset_less=True)
        if abs(fin - self.clk_hz_req) < 1:
            clk_hz = fin
            m.d.comb += ClockSignal("sync").eq(clk_in.i)
            locked = Const(1)
        else:
            self.pll = pll = pll_params(fin, self.clk_hz_req)
            clk_hz = pll["fout_hz"]
            clk_out, locked = Signal(name="clk_pll"), Signal(name="pll_locked")
            op = pll["CLKOP_DIV"]
            m.submodules.pll = Instance(
                "EHXPLLL",
                i_CLKI=clk_in.i, i_CLKFB=clk_out, o_CLKOP=clk_out, o_LOCK=locked,
                i_RST=0, i_STDBY=0, i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1,
                i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
                p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
                p_CLKI_DIV=pll["CLKI_DIV"], p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=op,
                p_CLKOP_CPHASE=op - 1, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=pll["CLKFB_DIV"],
                a_FREQUENCY_PIN_CLKI=f"{fin / 1e6:g}", a_FREQUENCY_PIN_CLKOP=f"{clk_hz / 1e6:g}",
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2")
            # no constraint of its own: nextpnr derives the PLL output's from the board clock's and the dividers
            # (synthesis renames clk_out, so a FREQUENCY NET on it would name a net that no longer exists)
            m.d.comb += ClockSignal("sync").eq(clk_out)
        reset = Signal(init=1)
        m.submodules.rst_sync = AsyncFFSynchronizer(~locked, reset, o_domain="sync")
        self.clk_hz = clk_hz

        m.submodules.top = top = SerialTop(self.program, divisor=divisor_for(clk_hz, self.baud),
                                           timeout=max(16, int(clk_hz * self.timeout_s)), clk_hz=int(clk_hz))
        m.d.comb += top.reset.eq(reset)
        subsignals = [sub.name for sub in platform.resources["uart", 0].ios]    # some boards add dtr/rts
        uart = platform.request("uart", 0, dir={name: "-" for name in subsignals})
        m.submodules.uart_rx = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx_buf = io.Buffer("o", uart.tx)
        m.d.comb += [top.rx.eq(rx_buf.i), tx_buf.o.eq(top.tx)]

        heartbeat = Signal(27)
        m.d.sync += heartbeat.eq(heartbeat + 1)
        bad_seen = Signal()
        with m.If(reset):
            m.d.sync += bad_seen.eq(0)
        with m.Elif(top.frames_bad != 0):
            m.d.sync += bad_seen.eq(1)
        leds = [top.busy, bad_seen, heartbeat[-1]]
        for i, value in enumerate(leds):
            try:
                pin = platform.request("led", i, dir="-")
            except Exception:       # noqa: BLE001 - the board has fewer LEDs (or they carry the UART)
                break
            m.submodules[f"led{i}"] = led = io.Buffer("o", pin)
            m.d.comb += led.o.eq(value)
        return m
