"""Layer sensitivity analysis: prune one layer at a time over a grid of ratios and record the accuracy.

For each selected layer and each ratio ``r`` of the grid, the layer alone loses the fraction ``r`` of its
*remaining* weights (``granularity="weight"``, smallest |w| first) or of its remaining output channels
(``granularity="filter"``, smallest filter L1 norm first, the criterion of ACRA); every other layer keeps
its current masks. Accuracy and cross-entropy on the given data are recorded, the layer is restored, and
the next point is measured. On an unpruned model ``r`` is simply the layer's pruning ratio. A layer always
keeps at least one weight / channel.

The result is written as CSV / JSON and plotted as one curve per layer (PNG); SRA and ACRA read it to
allocate per-layer ratios (:meth:`SensitivityResult.max_ratio`).
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn
from torch.utils.data import TensorDataset
from tqdm import tqdm

from sparsegate.sw.util.atomic_io import atomic_path, write_text
from sparsegate.sw.prune.masks import Masks, PruneError, apply_masks, bias_key, channel_l1_norms, check_ratio, copy_masks, \
    mask_for, remove_channels, resolve_layers, topology, weight_key
from sparsegate.sw.ml.models import prunable_layers
from sparsegate.sw.prune.api import PruneOptions, PruneResult
from sparsegate.sw.prune.params import param
from sparsegate.sw.prune.iterative import evaluate_metrics

DEFAULT_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
GRANULARITIES = ("weight", "filter")
METRICS = ("accuracy", "loss")


@dataclass
class SensitivityCurve:
    layer: str
    ratios: list[float]
    accuracy: list[float]
    loss: list[float]
    removed: list[int]  # weights (weight granularity) or channels (filter granularity) removed at each ratio
    remaining: int  # weights / channels kept before the analysis


@dataclass
class SensitivityResult:
    granularity: str
    base_accuracy: float
    base_loss: float
    curves: dict[str, SensitivityCurve] = field(default_factory=dict)

    def drops(self, layer: str, metric: str = "accuracy", monotone: bool = True) -> list[float]:
        """The metric's degradation at each ratio (accuracy drop, or loss increase), optionally made
        non-decreasing in the ratio (a running maximum, floored at 0)."""
        if metric not in METRICS:
            raise PruneError(f"metric: expected one of {list(METRICS)}, got {metric!r}")
        c = self._curve(layer)
        raw = [self.base_accuracy - a for a in c.accuracy] if metric == "accuracy" else \
            [l - self.base_loss for l in c.loss]
        if not monotone:
            return raw
        out, best = [], 0.0
        for d in raw:
            best = max(best, d)
            out.append(best)
        return out

    def max_ratio(self, layer: str, max_drop: float, metric: str = "accuracy", tie_slope: float = 0.0) -> float:
        """The largest ratio whose (monotone, linearly interpolated) degradation stays within ``max_drop``;
        the curve starts at (0, 0) and is capped at the grid's last ratio. ``tie_slope`` adds
        ``tie_slope * ratio`` to the curve, making it strictly increasing so that the ratio grows
        continuously with ``max_drop`` even across flat (zero-drop) stretches."""
        c = self._curve(layer)
        xs = [0.0] + list(c.ratios)
        ys = [0.0] + [d + tie_slope * r for d, r in zip(self.drops(layer, metric), c.ratios)]
        if max_drop >= ys[-1]:
            return xs[-1]
        for i in range(1, len(xs)):
            if ys[i] > max_drop:
                x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
                return x0 + (x1 - x0) * (max_drop - y0) / (y1 - y0) if y1 > y0 else x0
        return xs[-1]

    def _curve(self, layer: str) -> SensitivityCurve:
        if layer not in self.curves:
            raise PruneError(f"layer: no sensitivity curve for {layer!r}; analysed layers are {list(self.curves)}")
        return self.curves[layer]

    def rows(self) -> list[dict]:
        out = []
        for name, c in self.curves.items():
            for r, a, l, n in zip(c.ratios, c.accuracy, c.loss, c.removed):
                out.append({"layer": name, "granularity": self.granularity, "ratio": r, "removed": n,
                            "remaining": c.remaining, "accuracy": a, "loss": l,
                            "accuracy_drop": self.base_accuracy - a})
        return out

    def to_dict(self) -> dict:
        return {"granularity": self.granularity, "base_accuracy": self.base_accuracy, "base_loss": self.base_loss,
                "curves": {n: vars(c) for n, c in self.curves.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "SensitivityResult":
        return cls(d["granularity"], d["base_accuracy"], d["base_loss"],
                   {n: SensitivityCurve(**c) for n, c in d["curves"].items()})

    def to_csv(self) -> str:
        buf = io.StringIO()
        fields = ["layer", "granularity", "ratio", "removed", "remaining", "accuracy", "loss", "accuracy_drop"]
        writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows())
        return buf.getvalue()

    def write(self, out_dir: str | Path, stem: str = "sensitivity") -> dict[str, Path]:
        """Write ``stem.csv``, ``stem.json`` and ``stem.png`` (atomically); returns the paths."""
        out_dir = Path(out_dir)
        paths = {"csv": out_dir / f"{stem}.csv", "json": out_dir / f"{stem}.json", "png": out_dir / f"{stem}.png"}
        write_text(paths["csv"], self.to_csv())
        write_text(paths["json"], json.dumps(self.to_dict(), indent=2) + "\n")
        self.plot(paths["png"])
        return paths

    def plot(self, path: str | Path, title: str | None = None) -> None:
        """One accuracy-vs-ratio curve per layer, written as PNG (no global matplotlib state touched)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.4, 4.2), dpi=110)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        for name, c in self.curves.items():
            ax.plot([0.0] + c.ratios, [100 * self.base_accuracy] + [100 * a for a in c.accuracy], marker="o",
                    markersize=3, label=name)
        unit = "weights" if self.granularity == "weight" else "filters/neurons"
        ax.set_xlabel(f"fraction of the layer's remaining {unit} pruned")
        ax.set_ylabel("accuracy (%)")
        ax.set_title(title or f"Layer sensitivity ({self.granularity} granularity)")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="lower left")
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")


def prune_fraction(model: nn.Module, masks: Masks | None, layer: str, ratio: float,
                   granularity: str = "weight", topo=None) -> Masks:
    """Masks with ``layer`` losing the fraction ``ratio`` of its remaining weights / output channels."""
    ratio = check_ratio(ratio, f"ratio of layer {layer!r}", high_inclusive=True)
    if granularity not in GRANULARITIES:
        raise PruneError(f"granularity: expected one of {list(GRANULARITIES)}, got {granularity!r}")
    mods = prunable_layers(model)
    out = copy_masks(masks)
    if granularity == "weight":
        w = mods[layer].weight.detach()
        kept = (w != 0) & mask_for(model, out, weight_key(layer))
        n = min(int(round(ratio * int(kept.sum()))), max(0, int(kept.sum()) - 1))  # a layer keeps >= 1 weight
        if n:
            score = torch.where(kept, w.abs(), torch.full_like(w, float("inf"))).flatten()
            flat = kept.flatten().clone()
            flat[torch.argsort(score, stable=True)[:n]] = False
            out[weight_key(layer)] = flat.view_as(kept)
        else:
            out[weight_key(layer)] = kept
        return out
    topo = topo or topology(model)
    if topo[layer].consumer is None:
        raise PruneError(f"layer {layer!r} is the output layer; it has no filters to prune")
    alive = _alive_channels(model, out, layer)
    n = min(int(round(ratio * int(alive.sum()))), max(0, int(alive.sum()) - 1))  # a layer keeps >= 1 channel
    if n:
        score = torch.where(alive, channel_l1_norms(model, out, layer), torch.full(alive.shape, float("inf")))
        remove = torch.zeros_like(alive)
        remove[torch.argsort(score, stable=True)[:n]] = True
        out = remove_channels(model, out, layer, remove, topo)
    return out


def _alive_channels(model: nn.Module, masks: Masks | None, layer: str) -> torch.Tensor:
    m = prunable_layers(model)[layer]
    w = (m.weight.detach() != 0) & mask_for(model, masks, weight_key(layer))
    alive = w.flatten(1).any(1)
    if m.bias is not None:
        alive |= (m.bias.detach() != 0) & mask_for(model, masks, bias_key(layer))
    return alive


def sensitivity_analysis(model: nn.Module, ds: TensorDataset, masks: Masks | None = None,
                         layers: Iterable[str] | None = None, ratios: Sequence[float] = DEFAULT_RATIOS,
                         granularity: str = "weight", progress: bool = False) -> SensitivityResult:
    """Prune each layer alone over ``ratios`` and measure accuracy/loss on ``ds`` (model left unchanged)."""
    if granularity not in GRANULARITIES:
        raise PruneError(f"granularity: expected one of {list(GRANULARITIES)}, got {granularity!r}")
    ratios = [check_ratio(r, "ratios", high_inclusive=False) for r in ratios]
    if not ratios or sorted(set(ratios)) != ratios or ratios[0] <= 0:
        raise PruneError(f"ratios must be strictly increasing values in (0, 1), got {list(ratios)}")
    topo = topology(model)
    names = resolve_layers(model, layers)
    if granularity == "filter":
        output_layers = [n for n in names if topo[n].consumer is None]
        if layers is not None and output_layers:
            raise PruneError(f"layers: {output_layers[0]!r} is the output layer; filter granularity cannot prune it")
        names = [n for n in names if topo[n].consumer is not None]
    masks = copy_masks(masks)
    params = dict(model.named_parameters())
    saved = {k: v.detach().clone() for k, v in params.items()}
    apply_masks(model, masks)
    base_acc, base_loss = evaluate_metrics(model, ds)
    result = SensitivityResult(granularity, base_acc, base_loss)
    bar = tqdm(total=len(names) * len(ratios), desc=f"sensitivity ({granularity})", unit="eval",
               disable=not progress, leave=False)
    try:
        with torch.no_grad():
            for name in names:
                if granularity == "weight":
                    before = int(((params[weight_key(name)] != 0) & mask_for(model, masks, weight_key(name))).sum())
                else:
                    before = int(_alive_channels(model, masks, name).sum())
                curve = SensitivityCurve(name, [], [], [], [], before)
                for r in ratios:
                    trial = prune_fraction(model, masks, name, r, granularity, topo)
                    apply_masks(model, trial)
                    acc, loss = evaluate_metrics(model, ds)
                    if granularity == "weight":
                        after = int(((params[weight_key(name)] != 0) & trial[weight_key(name)]).sum())
                    else:
                        after = int(_alive_channels(model, trial, name).sum())
                    curve.ratios.append(r)
                    curve.accuracy.append(acc)
                    curve.loss.append(loss)
                    curve.removed.append(before - after)
                    for k, v in saved.items():
                        params[k].copy_(v)
                    apply_masks(model, masks)
                    bar.update(1)
                result.curves[name] = curve
    finally:
        bar.close()
        with torch.no_grad():
            for k, v in saved.items():
                params[k].copy_(v)
    return result


def load_sensitivity(path: str | Path) -> SensitivityResult:
    path = Path(path)
    try:
        return SensitivityResult.from_dict(json.loads(path.read_text()))
    except OSError as err:
        raise PruneError(f"{path}: cannot read sensitivity file ({err.strerror})") from None
    except (ValueError, KeyError, TypeError) as err:
        raise PruneError(f"{path}: not a sensitivity JSON ({type(err).__name__}: {err})") from None


@dataclass
class SensitivityParams:
    """The parameters of ``sensitivity`` (analysis only: the model is left unchanged)."""

    granularity: str = param("weight", "prune single weights or whole filters/neurons", choices=GRANULARITIES)

    def __post_init__(self):
        if self.granularity not in GRANULARITIES:
            raise PruneError(f"granularity: expected one of {list(GRANULARITIES)}, got {self.granularity!r}")


def run_sensitivity(model: nn.Module, options: PruneOptions, fit_ds: TensorDataset, val_ds: TensorDataset,
                    masks: Masks, monitor_ds: TensorDataset | None = None) -> PruneResult:
    """Registry entry of ``sensitivity``: per-layer curves on ``val_ds``; the masks come back unchanged."""
    res = sensitivity_analysis(model, val_ds, masks, options.layers, granularity=options.params.granularity,
                               progress=options.progress)
    return PruneResult("sensitivity", model, masks, res.base_accuracy, info={"base_accuracy": res.base_accuracy},
                       extra=res, sensitivity=res)
