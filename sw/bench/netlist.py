"""The netlist-simulation benchmark (one run): the smallest board top (ULX3S-25F, one lane, a conv+fc network
on 28x28 digits, the UART at 16 cycles per bit) synthesized by Yosys, its gate-level netlist and the RTL of
the same top simulated through the UART pins on the same digits (:func:`~sparsegate.sw.flow.netlist_sim.netlist_check`):
simulation speed netlist vs RTL, and the time the check adds to a build (the synthesis-only run that a cached
bitstream needs, the Verilator builds, the simulation).
"""
from __future__ import annotations

import os
import platform as host_platform
import time
from pathlib import Path

from sparsegate.sw.bench.results import BenchResult, write_results

__all__ = ["run_netlist_benchmark"]

#: The network of the benchmark's top: small enough that the netlist builds and runs in minutes.
SPEC = [{"kind": "conv", "cout": 2, "k": 5, "stride": 2, "pad": 0, "relu": True, "pool": True, "density": 0.5},
        {"kind": "fc", "cout": 10, "density": 0.5}]
BAUD = 6_250_000          # 16 cycles per bit at 100 MHz


def run_netlist_benchmark(out_dir, quick: bool = False, log=print) -> BenchResult:
    """Run the benchmark in ``out_dir``; the report goes to ``netlist.md``, its figures to ``netlist.json``."""
    import numpy as np

    from sparsegate.hw.link.uart import divisor_for
    from sparsegate.hw.platform.board_top import BoardTop
    from sparsegate.hw.platform.boards import make_platform
    from sparsegate.hw.platform.cores import ENGINE
    from sparsegate.hw.platform.ecp5_build import synthesize
    from sparsegate.sim.engine.amaranth_sim import random_network
    from sparsegate.sw.flow.build import board_program
    from sparsegate.sw.flow.netlist_sim import netlist_check
    from sparsegate.sw.ir.weight_image import encode_image

    out_dir = Path(out_dir)
    digits = 2 if quick else 5
    image = encode_image(random_network(np.random.default_rng(0), (1, 28, 28), SPEC))
    program = board_program(ENGINE, image, lanes=1)
    platform = make_platform("ulx3s-25f")
    top = BoardTop(program, clk_hz=100e6, baud=BAUD)
    t0 = time.perf_counter()
    synthesis = synthesize(top, build_dir=out_dir / "netlist-synth", platform=platform)
    synth_s = time.perf_counter() - t0
    log(f"[bench] synthesized the top in {synth_s:.0f} s")
    check = netlist_check(synthesis.netlist, platform, program, image, digits, divisor=divisor_for(100e6, BAUD),
                          timeout=5_000_000, build_dir=out_dir / "netlist-sim", clk_hz=100_000_000,
                          optimize=not quick, log=log)
    data = {"top": "ulx3s-25f, 1 lane, conv 2@5x5/2 + pool, fc 10; UART 16 cycles/bit at 100 MHz",
            "digits": digits, "optimized_build": not quick, "check": check.to_dict(),
            "synthesis_s": round(synth_s, 1),
            "speed_ratio_rtl_over_netlist": round(check.rtl_cycles_per_s / max(1.0, check.netlist_cycles_per_s), 2),
            "added_to_build_s": round(check.elapsed_s, 1), "added_to_cached_build_s": round(check.elapsed_s + synth_s, 1),
            "machine": f"{host_platform.machine()}, {os.cpu_count()} CPUs"}
    return write_results("netlist", _markdown(data), data, out_dir)


def _markdown(data: dict) -> str:
    c = data["check"]
    rows = [
        ("digits through the UART pins", f"{data['digits']}"),
        ("bit-exact with the golden model / with the RTL", f"{c['exact']} / {c['rtl_exact']}"),
        ("netlist simulation speed", f"{c['netlist_cycles_per_s']:,} cycles/s"),
        ("RTL simulation speed (same top, same main loop)", f"{c['rtl_cycles_per_s']:,} cycles/s"),
        ("RTL / netlist speed", f"{data['speed_ratio_rtl_over_netlist']}x"),
        ("Yosys synthesis (netlist only)", f"{data['synthesis_s']} s"),
        ("Verilator builds (netlist + RTL)", f"{c['compile_s']:.0f} s"),
        ("simulations (netlist + RTL)", f"{c['netlist_wall_s'] + c['rtl_wall_s']:.0f} s"),
        ("added to a build (netlist written by the build)", f"{data['added_to_build_s']} s"),
        ("added to a cached build (synthesis once more)", f"{data['added_to_cached_build_s']} s"),
    ]
    lines = ["# Netlist simulation of the smallest board top", "",
             f"Top: {data['top']}; {'optimised' if data['optimized_build'] else 'fast (unoptimised)'} Verilator "
             f"builds; {data['machine']}. Both runs are the same host-driver session (identify, load the weight "
             "image, per digit: input, run, logits, debug registers) measured one after the other in this run.", "",
             "| | |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in rows]
    lines += ["", f"Result: {c['line']}.", ""]
    return "\n".join(lines)
