"""Requant parameters: 16 significant bits where the shift allows, exact edges, typed errors."""
from __future__ import annotations

import math

import pytest

from sparsegate.sw.ir.golden import MULT_MAX, SHIFT_MAX
from sparsegate.sw.ir.requant import RequantError, requant_params


@pytest.mark.parametrize("m", [1e-9, 3.7e-6, 0.000123, 0.0041, 0.25, 0.5, 0.999999, 1.0, 1.5, 77.0, 1000.5])
def test_requant_params_are_16_bit_and_accurate(m):
    mult, shift = requant_params(m)
    assert 0 <= mult <= MULT_MAX and 1 <= shift <= SHIFT_MAX
    if shift < SHIFT_MAX:
        assert mult >= 1 << 15  # normalised: 16 significant bits
        assert abs(mult / 2 ** shift - m) <= m * 2 ** -16
    else:  # tiny multipliers are clipped to the largest shift: absolute error under 2**-48
        assert abs(mult / 2 ** shift - m) <= 2 ** -48


def test_requant_params_edges():
    assert requant_params(0.0) == (0, 1)
    assert requant_params(1 - 2 ** -20) == (1 << 15, 15)  # rounds up to 2**16 and renormalises
    with pytest.raises(RequantError, match="too large"):
        requant_params(2.0 ** 16)
    with pytest.raises(RequantError):
        requant_params(math.nan)
    with pytest.raises(RequantError):
        requant_params(-1.0)
