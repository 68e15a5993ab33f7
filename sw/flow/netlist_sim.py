"""The synthesized netlist of a board top, simulated through its UART pins: the check ``sparsegate build
--netlist-sim N`` adds to a build.

:func:`netlist_check` runs the same session twice, on the gate-level netlist
(:func:`~sparsegate.sim.netlist_sim.netlist_transport`) and on the RTL of the same top
(:func:`~sparsegate.sim.netlist_sim.rtl_transport`), each through the host driver ``sparsegate run`` uses:
identify, load the weight image, and for each of the first ``samples`` held-out digits load it, run, read
the logits and every debug register (per-layer cycles and output signatures). The netlist passes when every
digit's logits equal the golden model's and every register equals the RTL's; otherwise
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
    """The netlist simulation cannot run: a core it does not cover, or a network that does not take digits."""


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
                "line": self.line()}


def _session(transport, qnet, x, n_out: int) -> tuple[list[np.ndarray], list[dict], float]:
    """Identify, load ``qnet``, classify every digit of ``x``: logits and debug registers per digit, wall time."""
    from sparsegate.sw.host.driver import HostDriver

    driver = HostDriver(transport, timeout_s=600)
    t0 = time.perf_counter()
    try:
        driver.identify()
        driver.load_image(qnet)
        outs, regs = [], []
        for digit in x:
            driver.load_input(0, digit)
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


def netlist_check(netlist: Path, platform, program, image: bytes, samples: int, *, divisor: int, timeout: int,
                  build_dir: Path, clk_hz: int = 0, optimize: bool = True,
                  log: Callable[[str], None] = lambda _: None) -> NetlistCheck:
    """Simulate the gate-level ``netlist`` of a board top (built on ``platform`` from the engine ``program``, its
    UART at ``divisor`` cycles per bit, link timeout ``timeout`` cycles) through its pins on ``samples`` digits
    with the weight image ``image`` loaded over the link, and the RTL of the same top alongside. ``optimize``:
    see :func:`~sparsegate.sim.netlist_sim.netlist_executable`. A netlist that stops answering is a failed
    check (``first_difference`` says so), not an error."""
    from sparsegate.hw.platform.cores import ENGINE, core_for
    from sparsegate.sim.netlist_sim import BoardPins, netlist_executable, rtl_executable
    from sparsegate.sim.transports import PinTransport
    from sparsegate.sw.flow.lenet import test_digits
    from sparsegate.sw.ir.golden import run_network
    from sparsegate.sw.host.driver import DeviceError, LinkError
    from sparsegate.sw.ir.weight_image import decode_image

    if core_for(program) is not ENGINE:
        raise NetlistSimError("the netlist simulation covers the sparse engine's board top (not yet the LIF core)")
    qnet = decode_image(image)
    if tuple(qnet.input_shape) != (1, 28, 28):
        raise NetlistSimError(f"the netlist simulation classifies MNIST digits; this image takes {qnet.input_shape}")
    t0 = time.perf_counter()
    log(f"netlist simulation: compiling {netlist.name} and the RTL of the same top with Verilator ...")
    net_exe = netlist_executable(netlist, BoardPins.of(platform), build_dir, optimize=optimize, log=log)
    rtl_exe = rtl_executable(program, divisor=divisor, timeout=timeout, build_dir=build_dir, clk_hz=clk_hz,
                             optimize=optimize, log=log)
    compile_s = time.perf_counter() - t0
    x, _ = test_digits(qnet, samples)
    golden = run_network(x, qnet.layers)[-1]
    n_out = golden.shape[1]
    runs, failure = {}, None
    for name, exe, reset in (("RTL", rtl_exe, 4), ("netlist", net_exe, 0)):
        transport = PinTransport(exe, divisor, reset_cycles=reset)
        log(f"netlist simulation: {samples} digits through the {name}'s UART pins ...")
        try:
            outs, regs, wall = _session(transport, qnet, x, n_out)
        except (LinkError, DeviceError) as err:
            if name == "RTL":
                raise
            failure = f"the netlist does not answer the host driver ({err})"
            outs, regs, wall = [], [], 0.0
        runs[name] = (outs, regs, wall, transport.cycles or 0)
    (outs, regs, wall, cycles), (rtl_outs, rtl_regs, rtl_wall, rtl_cycles) = runs["netlist"], runs["RTL"]
    if failure:
        return NetlistCheck(samples, 0, 0, failure, cycles, wall, rtl_cycles, rtl_wall, compile_s,
                            time.perf_counter() - t0)
    exact = sum(np.array_equal(o, g) for o, g in zip(outs, golden))
    rtl_exact = sum(np.array_equal(o, r) and a == b for o, r, a, b in zip(outs, rtl_outs, regs, rtl_regs))
    first = next((d for k in range(samples)
                  if (d := _first_difference(k, outs[k], golden[k], regs[k], rtl_regs[k], rtl_outs[k]))), None)
    result = NetlistCheck(samples, int(exact), int(rtl_exact), first, cycles, wall, rtl_cycles, rtl_wall, compile_s,
                          time.perf_counter() - t0, [int(np.argmax(o)) for o in outs])
    log(result.line() + f" ({result.netlist_cycles_per_s:,.0f} cycles/s netlist, "
        f"{result.rtl_cycles_per_s:,.0f} RTL; {result.elapsed_s:.0f} s)")
    return result
