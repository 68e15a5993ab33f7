"""The DSP multiplier's two forms agree cycle by cycle: the ECP5 form (an explicit ``MULT18X18D`` with its
input and output registers) simulated by Verilator with the cell model ``sim/cells/mult18x18d.v``, against
the behavioural form under Amaranth's simulator, on the same operand stream, for every operand shape the
engine uses (the MAC lanes' int8 x int8, the requant halves' signed/unsigned 16/17 x 16 bits)."""
from __future__ import annotations

import random
import subprocess
import types
from pathlib import Path

import pytest
from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from sparsegate.hw.engine.dsp_multiplier import LATENCY, DspMultiplier, is_ecp5

SHAPES = [(signed(8), signed(8)), (signed(16), unsigned(16)), (unsigned(17), unsigned(16)), (signed(18), signed(18))]
CYCLES = 600
CELL_MODEL = Path(__file__).resolve().parents[2] / "sim" / "cells" / "mult18x18d.v"

MAIN_CPP = r"""
#include "Vdsp_top.h"
#include "verilated.h"
#include <cstdio>
int main(int argc, char **argv) {
  Verilated::commandArgs(argc, argv);
  Vdsp_top *top = new Vdsp_top;
  top->clk = 0; top->rst = 0; top->eval();
  unsigned long long v[%(n)d];
  while (true) {
    for (int k = 0; k < %(n)d; k++) if (scanf("%%llu", &v[k]) != 1) { delete top; return 0; }
%(drive)s
    top->eval();
    printf("%(fmt)s\n", %(outs)s);
    top->clk = 1; top->eval(); top->clk = 0; top->eval();
  }
}
"""


class DspBench(wiring.Component):
    """One :class:`DspMultiplier` per shape in :data:`SHAPES`, ports ``a<k>``, ``b<k>``, ``p<k>``."""

    def __init__(self):
        ports = {}
        self.muls = [DspMultiplier(a, b) for a, b in SHAPES]
        for k, mul in enumerate(self.muls):
            ports |= {f"a{k}": In(mul.a.shape()), f"b{k}": In(mul.b.shape()), f"p{k}": Out(mul.p.shape())}
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        for k, mul in enumerate(self.muls):
            m.submodules[f"mul{k}"] = mul
            m.d.comb += [mul.a.eq(getattr(self, f"a{k}")), mul.b.eq(getattr(self, f"b{k}")),
                         getattr(self, f"p{k}").eq(mul.p)]
        return m


def _stimulus(rng: random.Random) -> list[list[int]]:
    """Per cycle, the operands of every multiplier: uniform, with the extremes a quarter of the time."""
    def value(shape):
        lo, hi = (-(1 << shape.width - 1), (1 << shape.width - 1) - 1) if shape.signed else (0, (1 << shape.width) - 1)
        return rng.choice((lo, hi, 0, -1 if shape.signed else 1)) if rng.random() < 0.25 else rng.randint(lo, hi)
    return [[value(s) for a, b in SHAPES for s in (a, b)] for _ in range(CYCLES)]


def _amaranth_trace(stim):
    dut = DspBench()
    trace = []

    async def bench(ctx):
        for row in stim:
            for k in range(len(SHAPES)):
                ctx.set(getattr(dut, f"a{k}"), row[2 * k])
                ctx.set(getattr(dut, f"b{k}"), row[2 * k + 1])
            await ctx.delay(1e-9)       # settle before sampling, like the C++ loop's eval()
            trace.append([ctx.get(getattr(dut, f"p{k}")) for k in range(len(SHAPES))])
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return trace


def _verilator_trace(stim, build_dir):
    from amaranth.back import verilog

    from sparsegate.sim.verilator_cpp import build_executable

    ecp5 = types.SimpleNamespace(family="ecp5")
    assert is_ecp5(ecp5) and not is_ecp5(None)
    text = verilog.convert(DspBench(), name="dsp_top", platform=ecp5, emit_src=False)
    assert "MULT18X18D" in text and "REG_OUTPUT_CLK" in text        # the explicit instance, not a '*'
    n = 2 * len(SHAPES)
    drive = "\n".join(f"    top->a{k} = v[{2 * k}]; top->b{k} = v[{2 * k + 1}];" for k in range(len(SHAPES)))
    cpp = MAIN_CPP % {"n": n, "drive": drive, "fmt": " ".join(["%llu"] * len(SHAPES)),
                      "outs": ", ".join(f"(unsigned long long) top->p{k}" for k in range(len(SHAPES)))}
    exe = build_executable(text, cpp, toplevel="dsp_top", build_dir=build_dir, sources=[CELL_MODEL])
    masks = [(1 << s.width) - 1 for a, b in SHAPES for s in (a, b)]
    stdin = "\n".join(" ".join(str(v & m) for v, m in zip(row, masks)) for row in stim) + "\n"
    out = subprocess.run([str(exe)], input=stdin, capture_output=True, text=True, check=True).stdout.split("\n")
    p_shapes = [signed(a.width + b.width) if a.signed or b.signed else unsigned(a.width + b.width)
                for a, b in SHAPES]
    trace = []
    for line in out[:len(stim)]:
        row = []
        for word, shape in zip(line.split(), p_shapes):
            v = int(word) & ((1 << shape.width) - 1)
            row.append(v - (1 << shape.width) if shape.signed and v >> (shape.width - 1) else v)
        trace.append(row)
    return trace


@pytest.mark.slow
def test_ecp5_instance_equals_behavioural_form_cycle_by_cycle(tmp_path):
    stim = _stimulus(random.Random(16))
    behavioural = _amaranth_trace(stim)
    instance = _verilator_trace(stim, tmp_path)
    assert len(instance) == len(behavioural) == CYCLES
    assert instance == behavioural
    # and both are the product of the operands LATENCY cycles earlier (the first cycles: the power-up 0s)
    for t in range(CYCLES):
        expect = [stim[t - LATENCY][2 * k] * stim[t - LATENCY][2 * k + 1] if t >= LATENCY else 0
                  for k in range(len(SHAPES))]
        assert behavioural[t] == expect, t


def test_operands_wider_than_the_dsp_are_refused():
    with pytest.raises(ValueError, match="18-bit signed DSP operand"):
        DspMultiplier(unsigned(18), signed(8))
    with pytest.raises(ValueError, match="operand b"):
        DspMultiplier(signed(8), signed(19))
