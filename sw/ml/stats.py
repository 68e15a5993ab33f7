"""The statistics of cross-validated results (the pruning benchmarks, the demo report): means with t-intervals, reading a method's
accuracy-vs-compression curve at a given drop, and the paired test of two methods.

* :func:`mean_ci` — mean and 95% confidence interval from Student's t with n - 1 degrees of freedom over
  the n = folds x seeds results (:func:`geometric_ci`: the same on the log scale, for compression ratios). The folds share digits (their training sets overlap), so the results are
  not independent and the interval is, if anything, too narrow; it is the usual cross-validation reading.
* :func:`compression_at_drop` — a method's curve in one fold is its points (compression, paired drop). The
  drop is fitted as a non-decreasing function of log compression by isotonic least squares (pool adjacent
  violators: one noisy round neither ends the curve early nor carries it on), and the compression where the
  fitted curve, linear in log compression between points, first rises above the drop is returned. A curve
  that never rises above it gives its largest compression, flagged as a lower bound.
* :func:`paired_test` — a paired t-test of the per-fold log ratio of two methods' compressions (mean log
  ratio = 0), with the Wilcoxon signed-rank p-value beside it; the ratio is the geometric mean with its t
  interval.
* :func:`sparsity_compression` — the weight compression (dense / kept weights) of a weight sparsity, the x
  axis of every curve.
* :func:`concave_nonincreasing` — the least-squares concave, non-increasing fit the pruning loop selects its
  round with (:func:`sparsegate.sw.prune.iterative.select_fitted`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Interval", "PairedTest", "compression_at_drop", "concave_nonincreasing", "fitted_drop", "geometric_ci",
           "isotonic", "mean_ci", "paired_test", "sparsity_compression"]


@dataclass(frozen=True)
class Interval:
    """A mean and its 95% interval over ``n`` values (``low == high == mean`` for n = 1)."""

    mean: float
    low: float
    high: float
    n: int

    def as_pair(self) -> list[float]:
        return [self.low, self.high]


def mean_ci(values, level: float = 0.95) -> Interval:
    """Mean and the Student-t ``level`` interval of ``values``."""
    from scipy import stats

    v = np.asarray(list(values), dtype=float)
    if v.size == 0:
        raise ValueError("mean_ci: no values")
    m = float(v.mean())
    if v.size == 1:
        return Interval(m, m, m, 1)
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return Interval(m, m - half, m + half, int(v.size))


def geometric_ci(values, level: float = 0.95) -> Interval:
    """Geometric mean and the Student-t ``level`` interval on the log scale, mapped back: for ratios such as
    compression, whose spread grows with their size (the interval stays positive)."""
    ci = mean_ci(np.log(np.asarray(list(values), dtype=float)), level)
    return Interval(math.exp(ci.mean), math.exp(ci.low), math.exp(ci.high), ci.n)


def isotonic(y: np.ndarray) -> np.ndarray:
    """Least-squares non-decreasing fit of ``y`` (pool adjacent violators)."""
    blocks: list[list[float]] = []  # [mean, count]
    for v in y:
        blocks.append([float(v), 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, n2 = blocks.pop()
            m1, n1 = blocks[-1]
            blocks[-1] = [(m1 * n1 + m2 * n2) / (n1 + n2), n1 + n2]
    return np.concatenate([np.full(n, m) for m, n in blocks])


def concave_nonincreasing(x, y) -> np.ndarray:
    """Least-squares fit of ``y`` at increasing ``x`` by a non-increasing concave piecewise-linear function
    (slopes <= 0, each at most the one before): ``f = a - A u`` with ``u >= 0`` the slope decrements, solved
    exactly by bounded-variable least squares. Unlike :func:`isotonic`, whose first value is the largest mean
    of the leading readings (it rises with one high first reading), the first value here is held to the trend
    of all the points after it."""
    from scipy.optimize import lsq_linear

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.size != y.size or x.size == 0 or np.any(np.diff(x) <= 0):
        raise ValueError("concave_nonincreasing: needs as many x as y, x strictly increasing")
    if x.size == 1:
        return y.copy()
    dx = np.diff(x)
    # f(x_k) = a - sum_{i<k} dx_i * sum_{j<=i} u_j: column 1 + j carries u_j into every segment i >= j
    design = np.zeros((x.size, x.size))
    design[:, 0] = 1.0
    for j in range(x.size - 1):
        design[j + 1:, j + 1] = -np.cumsum(dx[j:])
    lower = np.r_[-np.inf, np.zeros(x.size - 1)]
    return design @ lsq_linear(design, y, bounds=(lower, np.inf), method="bvls").x


def sparsity_compression(sparsity: float) -> float:
    """Weight compression of a weight sparsity: dense weights / kept weights."""
    return 1.0 / max(1e-12, 1.0 - sparsity)


def compression_at_drop(points, drop: float) -> tuple[float, bool]:
    """(compression, censored) where the monotone fit of ``points`` = [(compression, drop), ...] reaches
    ``drop`` (module docstring); ``censored`` when the curve ends below ``drop`` (a lower bound)."""
    pts = sorted((float(c), float(d)) for c, d in points)
    if not pts:
        raise ValueError("compression_at_drop: no points")
    x = np.log([c for c, _ in pts])
    fit = isotonic(np.array([d for _, d in pts]))
    above = np.nonzero(fit > drop + 1e-12)[0]
    if above.size == 0:
        return float(np.exp(x[-1])), True
    i = int(above[0])
    if i == 0:
        return float(np.exp(x[0])), False
    t = (drop - fit[i - 1]) / (fit[i] - fit[i - 1])
    return float(np.exp(x[i - 1] + t * (x[i] - x[i - 1]))), False


@dataclass(frozen=True)
class PairedTest:
    """Method A over method B: geometric-mean ratio with its 95% interval, paired t-test and Wilcoxon p."""

    ratio: Interval
    t_p: float | None
    wilcoxon_p: float | None

    def to_dict(self) -> dict:
        return {"ratio_geomean": self.ratio.mean, "ratio_ci95": self.ratio.as_pair(), "n": self.ratio.n,
                "paired_t_p": self.t_p, "wilcoxon_p": self.wilcoxon_p}


def paired_test(a, b) -> PairedTest:
    """Compare paired positive values ``a`` and ``b`` (one pair per fold x seed) on the log scale."""
    from scipy import stats

    logs = np.log(np.asarray(list(a), dtype=float)) - np.log(np.asarray(list(b), dtype=float))
    ratio = geometric_ci(np.exp(logs))
    if logs.size < 2:
        return PairedTest(ratio, None, None)
    t_p = float(stats.ttest_1samp(logs, 0.0).pvalue) if logs.std() > 0 else (0.0 if logs.mean() != 0 else 1.0)
    w_p = float(stats.wilcoxon(logs).pvalue) if np.any(logs != 0) else 1.0
    return PairedTest(ratio, t_p, w_p)


def fitted_drop(points, compressions) -> np.ndarray:
    """The monotone fit of :func:`compression_at_drop` evaluated at ``compressions`` (linear in log
    compression between points); NaN beyond the curve's measured range."""
    pts = sorted((float(c), float(d)) for c, d in points)
    x = np.log([c for c, _ in pts])
    fit = isotonic(np.array([d for _, d in pts]))
    q = np.log(np.asarray(compressions, dtype=float))
    out = np.interp(q, x, fit)
    out[(q < x[0] - 1e-12) | (q > x[-1] + 1e-12)] = np.nan
    return out
