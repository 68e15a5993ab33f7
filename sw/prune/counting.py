"""Exact per-layer counts of a (pruned) network: the one table every pruning report uses.

For each prunable layer :func:`layer_table` counts, from the actual parameter values with the masks
applied:

* ``weights`` / ``nonzero_weights`` — dense and stored (nonzero) weights; ``live_weights`` — the nonzero
  weights that still matter: they read a live input and feed a live output;
* ``biases`` / ``nonzero_biases``;
* ``in_units`` / ``live_in`` and ``out_units`` / ``live_out`` — input and output channels (conv) or
  features/neurons (fc). An output is *live* when it is not identically zero (it keeps a fan-in weight
  from a live input, or has a positive bias under the ReLU) **and** something downstream reads it (the
  network's outputs are always read);
* ``dense_macs`` (as :func:`sparsegate.sw.ml.models.count_layers`) and ``macs`` — the multiply-accumulates
  actually needed for one input: one per live weight and output position (zero weights and dead neurons
  skipped, as the zero-skipping engine does; padding taps are counted like the dense count does);
* ``dense_bits`` / ``sparse_bits`` — storage of the dense layer versus a relative-index sparse encoding
  (Deep Compression style): each stored nonzero carries ``weight_bits`` plus an ``index_bits`` gap to the
  previous nonzero in row-major order, with a filler entry whenever a gap does not fit; nonzero biases are
  stored densely at ``weight_bits``.

Network totals: ``params`` (dense weights + biases), ``nonzero_params``, the compression ratio
``params / nonzero_params`` and the MAC reduction ``1 - macs / dense_macs``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from sparsegate.sw.prune.masks import LayerInfo, bias_key, mask_for, topology, weight_key
from sparsegate.sw.ml.models import count_layers, prunable_layers


@dataclass(frozen=True)
class StorageFormat:
    """Bit widths of the sparse storage model."""

    weight_bits: int = 32
    index_bits: int = 8

    def __post_init__(self):
        if self.weight_bits < 1 or self.index_bits < 1:
            raise ValueError(f"StorageFormat: bit widths must be positive, got weight_bits={self.weight_bits}, "
                             f"index_bits={self.index_bits}")


@dataclass(frozen=True)
class LayerStats:
    name: str
    kind: str
    weights: int
    nonzero_weights: int
    live_weights: int
    biases: int
    nonzero_biases: int
    in_units: int
    live_in: int
    out_units: int
    live_out: int
    dense_macs: int
    macs: int
    dense_bits: int
    sparse_bits: int

    @property
    def params(self) -> int:
        return self.weights + self.biases

    @property
    def nonzero_params(self) -> int:
        return self.nonzero_weights + self.nonzero_biases

    @property
    def density(self) -> float:
        """Kept fraction of the weights."""
        return self.nonzero_weights / self.weights if self.weights else 0.0

    @property
    def mac_reduction(self) -> float:
        return 1.0 - self.macs / self.dense_macs if self.dense_macs else 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(density=self.density, mac_reduction=self.mac_reduction)
        return d


@dataclass(frozen=True)
class NetworkStats:
    params: int
    nonzero_params: int
    weights: int
    nonzero_weights: int
    live_weights: int
    dense_macs: int
    macs: int
    dense_bits: int
    sparse_bits: int

    @classmethod
    def of(cls, rows) -> "NetworkStats":
        """The network totals of per-layer rows (:class:`LayerStats`)."""
        return cls(**{name: sum(getattr(r, name) for r in rows) for name in cls.__dataclass_fields__})

    @property
    def compression(self) -> float:
        """Dense params / nonzero params (inf for an all-zero network)."""
        return self.params / self.nonzero_params if self.nonzero_params else math.inf

    @property
    def weight_compression(self) -> float:
        """Dense weights / nonzero weights (biases left out: the figure the pruning papers report)."""
        return self.weights / self.nonzero_weights if self.nonzero_weights else math.inf

    @property
    def weight_sparsity(self) -> float:
        return 1.0 - self.nonzero_weights / self.weights

    @property
    def mac_reduction(self) -> float:
        return 1.0 - self.macs / self.dense_macs

    @property
    def storage_ratio(self) -> float:
        """Dense storage / sparse storage."""
        return self.dense_bits / self.sparse_bits if self.sparse_bits else math.inf

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(compression=self.compression, weight_compression=self.weight_compression,
                 weight_sparsity=self.weight_sparsity, mac_reduction=self.mac_reduction,
                 storage_ratio=self.storage_ratio)
        return d


@dataclass(frozen=True)
class LayerTable:
    layers: list[LayerStats]
    total: NetworkStats
    storage: StorageFormat = field(default_factory=StorageFormat)

    def __getitem__(self, name: str) -> LayerStats:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)

    def to_dict(self) -> dict:
        return {"layers": [layer.to_dict() for layer in self.layers], "total": self.total.to_dict(),
                "storage": asdict(self.storage)}

    @classmethod
    def from_dict(cls, d: dict) -> "LayerTable":
        """Inverse of :meth:`to_dict` (derived fields are recomputed)."""
        names = {f for f in LayerStats.__dataclass_fields__}
        layers = [LayerStats(**{k: v for k, v in row.items() if k in names}) for row in d["layers"]]
        tnames = {f for f in NetworkStats.__dataclass_fields__}
        total = NetworkStats(**{k: v for k, v in d["total"].items() if k in tnames})
        return cls(layers, total, StorageFormat(**d.get("storage", {})))

    def to_markdown(self) -> str:
        """The per-layer table as Markdown (one row per layer plus a total row)."""
        head = ("| layer | kind | weights | kept | density | live units in/out | biases kept | dense MACs "
                "| MACs | MAC red. | storage (KiB) |")
        rows = [head, "|" + "---|" * 11]
        for s in self.layers:
            rows.append(f"| {s.name} | {s.kind} | {s.weights:,} | {s.nonzero_weights:,} | {100 * s.density:.2f}% "
                        f"| {s.live_in}/{s.in_units} → {s.live_out}/{s.out_units} | {s.nonzero_biases}/{s.biases} "
                        f"| {s.dense_macs:,} | {s.macs:,} | {100 * s.mac_reduction:.1f}% "
                        f"| {s.sparse_bits / 8192:.2f} |")
        t = self.total
        rows.append(f"| **total** | | {t.weights:,} | {t.nonzero_weights:,} | {100 * (1 - t.weight_sparsity):.2f}% "
                    f"| | | {t.dense_macs:,} | {t.macs:,} | {100 * t.mac_reduction:.1f}% | {t.sparse_bits / 8192:.2f} |")
        rows.append("")
        rows.append(f"Params: {t.params:,} dense, {t.nonzero_params:,} nonzero (weights + biases) — "
                    f"compression {t.compression:.1f}x; storage {t.dense_bits / 8192:.1f} KiB dense vs "
                    f"{t.sparse_bits / 8192:.2f} KiB sparse ({self.storage.weight_bits}-bit values, "
                    f"{self.storage.index_bits}-bit relative indices) = {t.storage_ratio:.1f}x.")
        return "\n".join(rows) + "\n"


def relative_index_entries(mask: torch.Tensor, index_bits: int) -> int:
    """Entries (values + fillers) needed to store the ``True`` positions of ``mask`` (row-major) with
    ``index_bits``-bit gaps; a gap larger than ``2**index_bits`` needs filler entries."""
    pos = torch.nonzero(mask.flatten(), as_tuple=False).flatten()
    if pos.numel() == 0:
        return 0
    gaps = torch.diff(pos, prepend=torch.tensor([-1]))
    span = 2 ** index_bits
    fillers = int(((gaps + span - 1) // span - 1).clamp(min=0).sum())
    return int(pos.numel()) + fillers


def liveness(model: nn.Module, masks=None, topo: dict[str, LayerInfo] | None = None) \
        -> dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per layer: (effective weight-kept mask, live-input vector, live-output vector).

    Forward pass: an output *produces* a signal if it keeps a fan-in weight from a producing input, or
    its bias is positive (ReLU); backward pass: it is *read* if it is a network output or a kept weight of
    the consumer connects it to a live consumer output. Live = produces and read.
    """
    topo = topo or topology(model)
    mods = prunable_layers(model)
    names = list(topo)
    kept: dict[str, torch.Tensor] = {}
    produces: dict[str, torch.Tensor] = {}
    live_in: dict[str, torch.Tensor] = {}
    for name in names:
        info, m = topo[name], mods[name]
        w = m.weight.detach()
        k = (w != 0) & mask_for(model, masks, weight_key(name))
        if info.producer is None:
            inp = torch.ones(info.in_units, dtype=torch.bool)
        else:
            p = topo[info.producer]
            inp = produces[info.producer].repeat_interleave(p.group)
        live_in[name] = inp
        shape = (1, -1, 1, 1) if k.dim() == 4 else (1, -1)
        k = k & inp.view(shape)
        kept[name] = k
        has_fanin = k.flatten(1).any(1)
        if m.bias is not None:
            b = m.bias.detach() * mask_for(model, masks, bias_key(name))
            positive = b > 0 if info.consumer is not None else b != 0
        else:
            positive = torch.zeros_like(has_fanin)
        produces[name] = has_fanin | positive
    result = {}
    read_next = None
    for name in reversed(names):
        info = topo[name]
        if info.consumer is None:
            read = torch.ones(info.out_units, dtype=torch.bool)
        else:
            ck = kept[info.consumer] & read_next.view((-1,) + (1,) * (kept[info.consumer].dim() - 1))
            col_read = ck.any(0).flatten(1).any(1) if ck.dim() == 4 else ck.any(0)
            read = col_read.view(info.out_units, info.group).any(1)
        live = produces[name] & read
        k = kept[name] & live.view((-1,) + (1,) * (kept[name].dim() - 1))
        result[name] = (k, live_in[name], live)
        read_next = live
    # live inputs: producer live (from the backward pass) and read by a live weight of this layer
    out = {}
    for name in names:
        k, _, live = result[name]
        info = topo[name]
        if info.producer is None:
            inp = torch.ones(info.in_units, dtype=torch.bool)
        else:
            inp = result[info.producer][2].repeat_interleave(topo[info.producer].group)
        k = k & inp.view((1, -1, 1, 1) if k.dim() == 4 else (1, -1))
        out[name] = (k, inp, live)
    return out


def layer_table(model: nn.Module, masks=None, input_shape: tuple | None = None,
                storage: StorageFormat | None = None) -> LayerTable:
    """Exact per-layer counts of ``model`` with ``masks`` applied (see the module docstring)."""
    storage = storage or StorageFormat()
    topo = topology(model, input_shape)
    dense = {c.name: c for c in count_layers(model, input_shape)}
    mods = prunable_layers(model)
    live = liveness(model, masks, topo)
    rows = []
    for name, info in topo.items():
        m = mods[name]
        w = m.weight.detach()
        stored = (w != 0) & mask_for(model, masks, weight_key(name))
        k, inp, out = live[name]
        if m.bias is not None:
            nz_b = int(((m.bias.detach() != 0) & mask_for(model, masks, bias_key(name))).sum())
            n_b = m.bias.numel()
        else:
            nz_b = n_b = 0
        live_weights = int(k.sum())
        read_inputs = (k.any(0).flatten(1).any(1) if k.dim() == 4 else k.any(0))
        entries = relative_index_entries(stored, storage.index_bits)
        rows.append(LayerStats(
            name=name, kind=info.kind, weights=w.numel(), nonzero_weights=int(stored.sum()),
            live_weights=live_weights, biases=n_b, nonzero_biases=nz_b, in_units=info.in_units,
            live_in=int((inp & read_inputs).sum()), out_units=info.out_units, live_out=int(out.sum()),
            dense_macs=dense[name].macs, macs=live_weights * info.positions,
            dense_bits=(w.numel() + n_b) * storage.weight_bits,
            sparse_bits=entries * (storage.weight_bits + storage.index_bits) + nz_b * storage.weight_bits))
    return LayerTable(rows, NetworkStats.of(rows), storage)


def mac_reduction(model: nn.Module, masks=None, input_shape: tuple | None = None) -> float:
    """1 - needed MACs / dense MACs of the whole network."""
    return layer_table(model, masks, input_shape).total.mac_reduction


def plot_layer_table(table: LayerTable, path, title: str | None = None) -> None:
    """Bar chart of each layer's kept weights and live outputs (percent of dense), written as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from sparsegate.sw.util.atomic_io import atomic_path

    names = [s.name for s in table.layers]
    x = list(range(len(names)))
    fig = Figure(figsize=(6.4, 3.8), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.27
    series = [("weights kept", [100 * s.density for s in table.layers]),
              ("outputs live", [100 * s.live_out / s.out_units for s in table.layers]),
              ("MACs needed", [100 * (1 - s.mac_reduction) for s in table.layers])]
    for i, (label, values) in enumerate(series):
        bars = ax.bar([v + (i - 1) * width for v in x], values, width, label=label)
        for bar, value in zip(bars, values):
            ax.annotate(f"{value:.1f}" if value < 10 else f"{value:.0f}", (bar.get_x() + bar.get_width() / 2,
                        bar.get_height()), ha="center", va="bottom", fontsize=6)
    ax.set_xticks(x)
    ax.set_xticklabels(names)
    ax.set_ylabel("% of dense")
    ax.set_ylim(0, 110)
    t = table.total
    ax.set_title(title or f"{t.nonzero_params:,} of {t.params:,} params kept ({t.compression:.1f}x), "
                          f"MACs -{100 * t.mac_reduction:.1f}%", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
