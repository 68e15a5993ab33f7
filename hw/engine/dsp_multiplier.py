"""A multiplier with registered operands and a registered product, two cycles from ``a``/``b`` to ``p``.

Elaborated for an ECP5 platform it is one ``MULT18X18D`` whose own input registers (``REG_INPUTA_CLK``,
``REG_INPUTB_CLK``) and output register (``REG_OUTPUT_CLK``) hold the operands and the product. Yosys does
not absorb fabric registers into the DSP, so a behavioural ``a * b`` between fabric registers leaves the
routing from those registers into the DSP and out of it on the critical path; with the DSP's registers
the fabric sees only a register-to-pin and a pin-to-register hop. Elaborated for anything else (the
Amaranth simulator, the Verilog for Verilator/Icarus) it is the behavioural equivalent: two
register stages, the same latency and the same values cycle by cycle (tests/hw/test_dsp_multiplier.py
runs the ECP5 instance against ``sim/cells/mult18x18d.v``).

Registers are reset-less in both forms (the DSP's reset pins are tied low; every register powers up 0):
the product is consumed only under its pipeline's valid flags, which are reset.
"""
from __future__ import annotations

from amaranth.hdl import ClockSignal, Const, Instance, Module, Shape, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["DspMultiplier", "LATENCY", "is_ecp5"]

#: Cycles from an operand on ``a``/``b`` to its product on ``p``.
LATENCY = 2

_DSP_BITS = 18      # MULT18X18D operands: 18-bit two's complement (SIGNEDA = SIGNEDB = 1 here)


def is_ecp5(platform) -> bool:
    """True when ``platform`` is an Amaranth Lattice platform for an ECP5 device."""
    return getattr(platform, "family", None) == "ecp5"


class DspMultiplier(wiring.Component):
    """``p = a * b`` two cycles later (module docstring: the ECP5 instance and its behavioural twin).

    Parameters
    ----------
    a_shape, b_shape : Shape
        Operand shapes; each must fit an 18-bit signed operand (signed up to 18 bits, unsigned up to 17).

    Members
    -------
    a : ``In(a_shape)``, b : ``In(b_shape)``
        Operands, sampled every cycle.
    p : ``Out(signed or unsigned(a.width + b.width))``
        The product of the operands sampled two cycles earlier (signed if either operand is).
    """

    def __init__(self, a_shape, b_shape):
        a_shape, b_shape = Shape.cast(a_shape), Shape.cast(b_shape)
        for name, shape in (("a", a_shape), ("b", b_shape)):
            if shape.width + (0 if shape.signed else 1) > _DSP_BITS:
                self._MustUse__silence = True
                raise ValueError(f"operand {name} ({shape!r}) does not fit an 18-bit signed DSP operand")
        width = a_shape.width + b_shape.width
        p_shape = signed(width) if (a_shape.signed or b_shape.signed) else unsigned(width)
        super().__init__({"a": In(a_shape), "b": In(b_shape), "p": Out(p_shape)})

    def elaborate(self, platform):
        m = Module()
        if not is_ecp5(platform):
            a_q = Signal.like(self.a, reset_less=True, name="a_q")
            b_q = Signal.like(self.b, reset_less=True, name="b_q")
            p_q = Signal.like(self.p, reset_less=True, name="p_q")
            m.d.sync += [a_q.eq(self.a), b_q.eq(self.b), p_q.eq(a_q * b_q)]
            m.d.comb += self.p.eq(p_q)
            return m

        a18 = Signal(signed(_DSP_BITS))
        b18 = Signal(signed(_DSP_BITS))
        p36 = Signal(signed(2 * _DSP_BITS))
        m.d.comb += [a18.eq(self.a), b18.eq(self.b), self.p.eq(p36[:len(self.p)])]
        pins = {f"i_A{k}": a18[k] for k in range(_DSP_BITS)}
        pins |= {f"i_B{k}": b18[k] for k in range(_DSP_BITS)}
        pins |= {f"i_C{k}": Const(0) for k in range(_DSP_BITS)}
        pins |= {f"o_P{k}": p36[k] for k in range(2 * _DSP_BITS)}
        m.submodules.dsp = Instance(
            "MULT18X18D",
            p_REG_INPUTA_CLK="CLK0", p_REG_INPUTB_CLK="CLK0", p_REG_OUTPUT_CLK="CLK0",
            p_REG_INPUTC_CLK="NONE", p_REG_PIPELINE_CLK="NONE",
            p_REG_INPUTA_CE="CE0", p_REG_INPUTB_CE="CE0", p_REG_OUTPUT_CE="CE0",
            p_REG_INPUTA_RST="RST0", p_REG_INPUTB_RST="RST0", p_REG_OUTPUT_RST="RST0",
            p_CLK0_DIV="ENABLED", p_HIGHSPEED_CLK="NONE", p_GSR="ENABLED", p_CAS_MATCH_REG="FALSE",
            p_SOURCEB_MODE="B_SHIFT", p_MULT_BYPASS="DISABLED", p_RESETMODE="SYNC",
            i_SIGNEDA=Const(1), i_SIGNEDB=Const(1), i_SOURCEA=Const(0), i_SOURCEB=Const(0),
            i_CLK0=ClockSignal("sync"), i_CE0=Const(1), i_RST0=Const(0),
            **pins)
        return m
