"""The plot of accuracy drop against compression with 95% bands, per method, from cross-validated curves
(the pruning benchmarks and the demo report draw the same figure from the benchmark's JSON).

Each fold's curve is its monotone fit (:func:`sparsegate.sw.ml.stats.fitted_drop`); at each compression the
line is the mean over the folds x seeds (drawn up to where the shortest curve ends) and the band its
Student-t 95% interval (with at least two curves); drops from -1.5 to 3 points are shown. The selected results are marked with their mean and 95% intervals
on both axes."""
from __future__ import annotations

import numpy as np

from sparsegate.sw.ml.stats import fitted_drop, mean_ci

__all__ = ["at_drop_curve", "plot_tradeoff"]


def at_drop_curve(row: dict) -> list[list[float]]:
    """The curve a benchmark result row's compression at equal drop is read on (and drawn): its finished curve
    where the run drew one (each point a round finished as the selected result is), else its path curve (the
    path rounds before the final fine-tune, then the result)."""
    return row.get("finished_curve") or row["curve"]


def plot_tradeoff(curves: dict[str, list[list[list[float]]]], selected: dict[str, dict], path, title: str,
                  budgets=(0.003, 0.005, 0.010)) -> None:
    """``curves``: method -> one curve per fold x seed, each [[compression, drop], ...] (drop a fraction);
    ``selected``: method -> its summary (``compression_mean``/``_ci95``, ``drop_mean``/``_ci95``)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from sparsegate.sw.util.atomic_io import atomic_path

    fig = Figure(figsize=(6.8, 4.4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    top = max((c for cs in curves.values() for curve in cs for c, _ in curve), default=2.0)
    grid = np.geomspace(1.0, top, 120)
    for k, (name, cs) in enumerate(curves.items()):
        color = f"C{k}"
        fits = np.array([fitted_drop(curve, grid) for curve in cs]) * 100
        mean, low, high = (np.full(len(grid), np.nan) for _ in range(3))
        for j in range(len(grid)):
            col = fits[:, j][~np.isnan(fits[:, j])]
            if col.size == len(cs):  # only where every curve reaches: the mean of one set of folds
                ci = mean_ci(col)
                mean[j] = ci.mean
                if col.size > 1:
                    low[j], high[j] = ci.low, ci.high
        ax.plot(grid, mean, color=color, label=f"{name} ({len(cs)} curves)")
        ax.fill_between(grid, low, high, color=color, alpha=0.18, lw=0)
        s = selected.get(name)
        if s:
            c, d = s["compression_mean"], 100 * s["drop_mean"]
            ax.errorbar([c], [d], xerr=[[c - s["compression_ci95"][0]], [s["compression_ci95"][1] - c]],
                        yerr=[[d - 100 * s["drop_ci95"][0]], [100 * s["drop_ci95"][1] - d]], fmt="D",
                        color=color, ms=5, capsize=3)
    for b in budgets:
        ax.axhline(100 * b, color="grey", lw=0.7, ls=":")
    ax.set_xscale("log")
    ax.set_ylim(-1.5, 3.0)  # the region the budgets live in; steeper ends of the curves leave the plot
    ax.set_xlim(0.9, 1.5 * top)
    ax.set_xlabel("weight compression (dense weights / kept weights)")
    ax.set_ylabel("accuracy drop vs dense, same test digits (points)")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
