"""Requantization parameters: the integer ``(mult, shift)`` pair that stands for a real multiplier ``M``.

The engine's output stage computes ``(acc * mult + 2**(shift-1)) >> shift`` (:func:`~.golden.requantize`),
so every real rescaling ``M = s_in * s_w / s_out`` has to become a 16-bit ``mult`` and a ``shift`` in
[1, 47]; the quantizer and the simulators' random test networks both choose them here, without torch.
"""
from __future__ import annotations

import math

from sparsegate.sw.ir.golden import MULT_BITS, MULT_MAX, SHIFT_MAX, SHIFT_MIN


class RequantError(ValueError):
    """A multiplier that no ``(mult, shift)`` pair can represent (negative, not finite, or too large)."""


def requant_params(m: float) -> tuple[int, int]:
    """Integer ``(mult, shift)`` with ``mult * 2**-shift ~= m``: ``mult`` in [2**15, 2**16) (16 significant
    bits) when possible, ``shift`` in [1, 47]; tiny multipliers lose precision rather than overflow."""
    if not (math.isfinite(m) and m >= 0):
        raise RequantError(f"requant multiplier {m} is not a finite non-negative number")
    if m == 0:
        return 0, SHIFT_MIN
    frac, exp = math.frexp(m)  # m = frac * 2**exp, frac in [0.5, 1)
    shift = min(MULT_BITS - exp, SHIFT_MAX)
    if shift < SHIFT_MIN:
        raise RequantError(f"requant multiplier {m} too large for a {MULT_BITS}-bit multiplier")
    mult = round(m * 2.0 ** shift)
    if mult > MULT_MAX:  # frac rounded up to 1.0
        mult, shift = mult // 2, shift - 1  # exact: mult was 2**16
        if shift < SHIFT_MIN:
            raise RequantError(f"requant multiplier {m} too large for a {MULT_BITS}-bit multiplier")
    return int(mult), int(shift)
