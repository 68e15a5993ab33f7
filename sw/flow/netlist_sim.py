"""The synthesized netlist of a board top (the sparse engine's or the LIF core's), simulated through its UART
pins: the check ``sparsegate build --netlist-sim N`` adds to a build.

:func:`netlist_check` runs the same session twice, on the gate-level netlist
(:func:`~sparsegate.sim.netlist_sim.netlist_transport`) and on the RTL of the same top
(:func:`~sparsegate.sim.netlist_sim.rtl_transport`), each through the host driver ``sparsegate run`` uses:
identify, load the network (a weight image; an integer SNN), and for each of the first ``samples`` held-out
digits load it (int8 pixels; spike trains), run, read the outputs (logits; readout membranes) and every debug
register (the engine's per-layer cycles and output signatures). The netlist passes when every digit's
outputs equal the golden model's and every register equals the RTL's; otherwise
:attr:`NetlistCheck.first_difference` names the first digit and layer (signature) or output that differs.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["NetlistCheck", "NetlistSimError", "netlist_check"]


class NetlistSimError(ValueError):
    """The netlist simulation cannot run: a network that does not take MNIST digits."""


@dataclass
class NetlistCheck:
    """A netlist simulation against the golden model and the RTL of the same top."""

    samples: int
    exact: int                 # digits whose netlist logits equal the golden model's
    rtl_exact: int             # digits whose netlist logits and debug registers all equal the RTL's
    first_difference: str | None
    netlist_cycles: int
    netlist_wall_s: float
    rtl_cycles: int
    rtl_wall_s: float
    compile_s: float           # Verilator builds of both (0 when cached)
    elapsed_s: float
    predictions: list[int] = field(default_factory=list)
    loaded: bool = True        # the network went over the link (False: the one the netlist was built with)

    @property
    def ok(self) -> bool:
        return self.exact == self.samples and self.rtl_exact == self.samples

    @property
    def netlist_cycles_per_s(self) -> float:
        return self.netlist_cycles / self.netlist_wall_s if self.netlist_wall_s else 0.0

    @property
    def rtl_cycles_per_s(self) -> float:
        return self.rtl_cycles / self.rtl_wall_s if self.rtl_wall_s else 0.0

    def line(self) -> str:
        """The report line: ``netlist simulated: N digits bit-exact`` (or what differed)."""
        if self.ok:
            return f"netlist simulated: {self.samples} digits bit-exact"
        return (f"netlist simulated: {self.exact}/{self.samples} digits bit-exact with the golden model, "
                f"{self.rtl_exact}/{self.samples} with the RTL; first difference: {self.first_difference}")

    def to_dict(self) -> dict:
        return {"samples": self.samples, "exact": self.exact, "rtl_exact": self.rtl_exact, "ok": self.ok,
                "first_difference": self.first_difference, "netlist_cycles": self.netlist_cycles,
                "netlist_wall_s": round(self.netlist_wall_s, 3), "rtl_cycles": self.rtl_cycles,
                "rtl_wall_s": round(self.rtl_wall_s, 3), "compile_s": round(self.compile_s, 3),
                "elapsed_s": round(self.elapsed_s, 3), "netlist_cycles_per_s": round(self.netlist_cycles_per_s),
                "rtl_cycles_per_s": round(self.rtl_cycles_per_s), "predictions": self.predictions,
                "loaded": self.loaded, "line": self.line()}


@dataclass
class _Workload:
    """What one core's session does: load the network (or, not loading, check that the device holds it), put
    one digit into input slot 0; the digits and the golden model's outputs for them."""

    load: Callable
    check: Callable
    put: Callable
    inputs: list
    golden: np.ndarray


def _workload(program, network, samples: int) -> _Workload:
    """The engine's (``network``: a weight image's bytes; int8 logits) or the LIF core's (``network``: the
    :class:`~sparsegate.sw.ir.snn_golden.IntSNN`; readout membranes) session on the first held-out digits."""
    from sparsegate.hw.platform.cores import ENGINE, core_for

    if core_for(program) is ENGINE:
        from sparsegate.sw.flow.lenet import test_digits
        from sparsegate.sw.ir.golden import run_network
        from sparsegate.sw.ir.weight_image import decode_image

        qnet = decode_image(network)
        if tuple(qnet.input_shape) != (1, 28, 28):
            raise NetlistSimError(f"the netlist simulation classifies MNIST digits; this image takes {qnet.input_shape}")
        x, _ = test_digits(qnet, samples)
        return _Workload(lambda d: d.load_image(qnet), lambda d: setattr(d, "qnet", qnet),
                         lambda d, s: d.load_input(0, s), list(x), run_network(x, qnet.layers)[-1])
    from sparsegate.sw.ml.data import mnist_embedded
    from sparsegate.sw.snn.model import SNNConfig, encode, to_pixels

    snn = network
    if snn.n_inputs != 784:
        raise NetlistSimError(f"the netlist simulation classifies MNIST digits; this network takes {snn.n_inputs} inputs")
    _, test_ds = mnist_embedded(0)
    config = SNNConfig(n_inputs=snn.n_inputs, n_hidden=snn.n_hidden, n_outputs=snn.n_outputs, steps=snn.steps,
                       encoding=snn.encoding)
    spikes = np.asarray(encode(to_pixels(test_ds.tensors[0][:samples]), config), bool)
    return _Workload(lambda d: d.load_snn(snn), lambda d: d.check_snn(snn), lambda d, s: d.load_spikes(0, s),
                     [spikes[:, b] for b in range(samples)], snn.run(spikes).readout.v)


def _session(transport, work: _Workload, load: bool) -> tuple[list[np.ndarray], list[dict], float]:
    """Identify, load the network (``load``; else use the one built in), classify every digit: outputs and debug
    registers per digit, wall time."""
    from sparsegate.sw.host.driver import HostDriver

    driver = HostDriver(transport, timeout_s=600)
    n_out = work.golden.shape[1]
    t0 = time.perf_counter()
    try:
        driver.identify()
        (work.load if load else work.check)(driver)
        outs, regs = [], []
        for digit in work.inputs:
            work.put(driver, digit)
            driver.run(0)
            outs.append(driver.read_outputs(n_out))
            regs.append(driver.read_counters())
    finally:
        driver.close()
    return outs, regs, time.perf_counter() - t0


def _first_difference(k: int, out, golden, regs: dict, rtl_regs: dict, rtl_out) -> str | None:
    """What differs first for digit ``k``: a layer's output signature, then any other register, then a logit."""
    names = sorted((n for n in regs if n.endswith(".signature")), key=lambda n: int(n[5:n.index(".")]))
    for name in names:
        if regs[name] != rtl_regs.get(name):
            return (f"digit {k}: {name.split('.')[0]} output signature {regs[name]:#010x} "
                    f"(RTL {rtl_regs.get(name, 0):#010x})")
    for name, value in regs.items():
        if value != rtl_regs.get(name):
            return f"digit {k}: register {name} = {value} (RTL {rtl_regs.get(name)})"
    for ref, what in ((rtl_out, "RTL"), (golden, "golden model")):
        bad = np.flatnonzero(np.asarray(out) != np.asarray(ref))
        if bad.size:
            j = int(bad[0])
            return f"digit {k}: output {j} = {int(out[j])} ({what} {int(ref[j])})"
    return None


def netlist_check(netlist: Path, platform, program, network, samples: int, *, divisor: int, timeout: int,
                  build_dir: Path, clk_hz: int = 0, optimize: bool = True, load: bool = True,
                  log: Callable[[str], None] = lambda _: None) -> NetlistCheck:
    """Simulate the gate-level ``netlist`` of a board top (built on ``platform`` from ``program``: an engine
    program or a LIF design; its UART at ``divisor`` cycles per bit, link timeout ``timeout`` cycles) through its
    pins on ``samples`` digits with ``network`` loaded over the link (the engine: a weight image's bytes; the
    LIF core: its ``IntSNN``), and the RTL of the same top alongside. ``load=False`` leaves the link's memory
    writes out: the network must be the one built in (block-RAM init values and all; the engine's program memories
    are then checked as configured, the LIF core's identity against ``network``). ``optimize``:
    see :func:`~sparsegate.sim.netlist_sim.netlist_executable`. A netlist that stops answering is a failed
    check (``first_difference`` says so), not an error."""
    from sparsegate.sim.netlist_sim import BoardPins, netlist_executable, rtl_executable
    from sparsegate.sim.transports import PinTransport
    from sparsegate.sw.host.driver import DeviceError, LinkError

    work = _workload(program, network, samples)
    t0 = time.perf_counter()
    log(f"netlist simulation: compiling {netlist.name} and the RTL of the same top with Verilator ...")
    net_exe = netlist_executable(netlist, BoardPins.of(platform), build_dir, optimize=optimize, log=log)
    rtl_exe = rtl_executable(program, divisor=divisor, timeout=timeout, build_dir=build_dir, clk_hz=clk_hz,
                             optimize=optimize, log=log)
    compile_s = time.perf_counter() - t0
    golden = work.golden
    runs, failure = {}, None
    for name, exe, reset in (("RTL", rtl_exe, 4), ("netlist", net_exe, 0)):
        transport = PinTransport(exe, divisor, reset_cycles=reset)
        log(f"netlist simulation: {samples} digits through the {name}'s UART pins ...")
        try:
            outs, regs, wall = _session(transport, work, load)
        except (LinkError, DeviceError) as err:
            if name == "RTL":
                raise
            failure = f"the netlist does not answer the host driver ({err})"
            outs, regs, wall = [], [], 0.0
        runs[name] = (outs, regs, wall, transport.cycles or 0)
    (outs, regs, wall, cycles), (rtl_outs, rtl_regs, rtl_wall, rtl_cycles) = runs["netlist"], runs["RTL"]
    if failure:
        return NetlistCheck(samples, 0, 0, failure, cycles, wall, rtl_cycles, rtl_wall, compile_s,
                            time.perf_counter() - t0, loaded=load)
    exact = sum(np.array_equal(o, g) for o, g in zip(outs, golden))
    rtl_exact = sum(np.array_equal(o, r) and a == b for o, r, a, b in zip(outs, rtl_outs, regs, rtl_regs))
    first = next((d for k in range(samples)
                  if (d := _first_difference(k, outs[k], golden[k], regs[k], rtl_regs[k], rtl_outs[k]))), None)
    result = NetlistCheck(samples, int(exact), int(rtl_exact), first, cycles, wall, rtl_cycles, rtl_wall, compile_s,
                          time.perf_counter() - t0, [int(np.argmax(o)) for o in outs], load)
    log(result.line() + f" ({result.netlist_cycles_per_s:,.0f} cycles/s netlist, "
        f"{result.rtl_cycles_per_s:,.0f} RTL; {result.elapsed_s:.0f} s)")
    return result
