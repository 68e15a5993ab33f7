"""Statistics of cross-validated results: t intervals, reading curves at a drop, the paired test."""
from __future__ import annotations

import math

import numpy as np
import pytest

from sparsegate.sw.ml.stats import (compression_at_drop, fitted_drop, geometric_ci, mean_ci, paired_test,
                                    sparsity_compression)


def test_mean_ci_is_the_student_t_interval():
    ci = mean_ci([1.0, 2.0, 3.0])
    assert ci.mean == 2.0 and ci.n == 3
    assert ci.high - ci.mean == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)  # t(0.975, 2) * s / sqrt(n)
    one = mean_ci([5.0])
    assert (one.low, one.high) == (5.0, 5.0)
    with pytest.raises(ValueError):
        mean_ci([])
    geo = geometric_ci([10.0, 1000.0])  # on the log scale: positive, centred on the geometric mean
    assert geo.mean == pytest.approx(100.0) and 0 < geo.low < 10 and geo.low * geo.high == pytest.approx(1e4)


def test_sparsity_compression_is_dense_over_kept():
    assert sparsity_compression(0.0) == 1.0
    assert sparsity_compression(0.99) == pytest.approx(100.0)
    assert math.isfinite(sparsity_compression(1.0))  # an empty layer reads a huge, finite compression


def test_compression_at_drop_interpolates_in_log_compression():
    assert compression_at_drop([(1, 0.0), (4, 0.002), (16, 0.006)], 0.004) == (pytest.approx(8.0), False)
    # one noisy round (4x at 0.5 points, 8x at 0.1) is pooled with its neighbour, not taken as the end
    # (fit 0, 0.1, 0.3, 0.3, 1.0 points): 0.2 points is read half way from 2x to 4x in log compression
    c, censored = compression_at_drop([(1, 0.0), (2, 0.001), (4, 0.005), (8, 0.001), (16, 0.01)], 0.002)
    assert not censored and c == pytest.approx(2 ** 1.5)
    assert compression_at_drop([(1, 0.0), (10, 0.001)], 0.003) == (pytest.approx(10.0), True)


def test_fitted_drop_is_monotone_and_undefined_beyond_the_curve():
    fit = fitted_drop([(1, 0.0), (2, 0.004), (4, 0.002), (8, 0.01)], [1, 2, 4, 8, 16])
    assert fit[:4].tolist() == pytest.approx([0.0, 0.003, 0.003, 0.01]) and np.isnan(fit[4])


def test_paired_test_finds_a_real_ratio_and_none_in_noise():
    real = paired_test([20, 31, 39, 52, 61], [10, 15, 20, 25, 30])
    assert real.ratio.mean == pytest.approx(2.0, rel=0.05) and real.t_p < 0.001
    noise = paired_test([10, 11, 9, 10.5, 9.5], [10.2, 10.6, 9.4, 10.1, 9.7])
    assert noise.t_p > 0.3 and noise.ratio.low < 1 < noise.ratio.high
    assert paired_test([3.0], [1.0]).t_p is None
