"""Structured sparsification of a gated RNN (LSTM): weights, neurons and gate preactivations.

After Lobacheva, Chirkova, Markovich and Vetrov, "Structured Sparsification of Gated Recurrent Neural
Networks" (AAAI 2020; Bayesian version: "Bayesian Sparsification of Gated Recurrent Neural Networks",
2018). Three nested levels of sparsity in one LSTM layer (gates i, f, g, o; ``W_x`` (4H, I), ``W_h`` (4H, H)):

* **weights** — individual entries of ``W_x``, ``W_h`` and the read-out ``W_out``;
* **neurons** — an input neuron ``d`` (embedding dimension) is the column ``W_x[:, d]``; a hidden neuron
  ``j`` is everything that reads ``h_j``: the column ``W_h[:, j]`` and the column ``W_out[:, j]``. A hidden
  neuron nobody reads is removed with its whole cell;
* **gate preactivations** — the row of gate ``g`` of unit ``j`` in ``[W_x | W_h]``. When the row is zero the
  gate no longer depends on the input or the state: it is the constant ``sigmoid(b)`` (``tanh(b)`` for the
  candidate ``g``), its matrix rows disappear from the cell, and e.g. a constant output gate leaves
  ``h = const * tanh(c)``.

**Deterministic, not variational.** The paper learns multiplicative group variables ``z`` with a
log-uniform prior by variational Bayes. Here (:func:`sparsify`) the same groups are pruned by magnitude over a
few prune/fine-tune rounds: one threshold ``tau`` per step removes every weight with ``|w| < tau`` and every
group (gate row, hidden or input neuron) whose RMS is below ``group_bias * tau``, so groups and single weights
compete for one budget (:func:`threshold_masks`, :func:`prune_to`). An optional sparse-group-lasso warm-up
(:func:`proximal_step` after every Adam step: soft-threshold the weights by ``lr * weight_l1``, shrink each
group by ``lr * lam * sqrt(size)`` of its norm, exact zeros) is available but off by default: measured, it
costs accuracy on every weight long before whole groups reach zero (docs/pruning_rnn.md). The unstructured
baselines are ``weights`` (iterative global magnitude, same rounds) and ``magnitude`` (one shot).

:func:`lstm_structure` finds live neurons and constant gates from the weights; :class:`SimplifiedLSTM`
is the smaller cell it implies (only live units, live inputs and non-constant gate rows; constants folded),
with outputs identical to the masked full model; :func:`lstm_table` is the per-layer table
(:class:`sparsegate.sw.prune.counting.LayerTable` rows, MACs per time step) and :func:`gate_report` says which
gates of which neurons became constant. :func:`magnitude_masks` is the unstructured baseline (one global
|w| threshold over the same matrices).
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sparsegate.sw.prune.counting import LayerStats, LayerTable, NetworkStats, StorageFormat, relative_index_entries
from sparsegate.sw.ml.lstm_model import GATES
from sparsegate.sw.prune.masks import Masks, PruneError, apply_masks, check_ratio, copy_masks
from sparsegate.sw.prune.api import PruneOptions, PruneResult
from sparsegate.sw.prune.params import param

W_X, W_H, B_X, B_H = "lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0", "lstm.bias_hh_l0"
W_OUT, B_OUT, EMBED = "out.weight", "out.bias", "embed.weight"
SPARSIFIED = (W_X, W_H, W_OUT)  # the matrices every method sparsifies (the embedding is a look-up table)
LEVELS = ("weights", "neurons", "gates")
METHODS = {"structured": ("weights", "neurons", "gates"), "neurons": ("weights", "neurons"),
           "weights": ("weights",), "magnitude": ()}


# ------------------------------------------------------------------------------------------- structure

def _weights(model: nn.Module, masks: Masks | None) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    out = {}
    for key in (EMBED, W_X, W_H, B_X, B_H, W_OUT, B_OUT):
        w = params[key].detach()
        if masks and key in masks:
            w = w * masks[key].to(w.dtype)
        out[key] = w
    return out


@dataclass
class LSTMStructure:
    """What the sparsity pattern leaves of one LSTM layer."""

    hidden: int
    inputs: int
    live_hidden: torch.Tensor  # (H,) bool: read by the output layer or (transitively) by a live unit
    live_input: torch.Tensor  # (I,) bool: read by a live unit's gate
    constant: torch.Tensor  # (4, H) bool, gate rows i, f, g, o of live units with no weight left
    constant_value: torch.Tensor  # (4, H) the value of each constant gate (nan elsewhere)

    @property
    def live_gates(self) -> torch.Tensor:
        """(4, H) bool: gates of live units that still depend on the data."""
        return self.live_hidden.unsqueeze(0) & ~self.constant

    def counts(self) -> dict:
        live = self.live_hidden
        return {"hidden": self.hidden, "live_hidden": int(live.sum()), "inputs": self.inputs,
                "live_inputs": int(self.live_input.sum()), "gates": 4 * self.hidden,
                "nonconstant_gates": int(self.live_gates.sum()),
                "constant_gates": {g: int((self.constant[k] & live).sum()) for k, g in enumerate(GATES)}}


def lstm_structure(model: nn.Module, masks: Masks | None = None) -> LSTMStructure:
    """Live neurons and constant gates of ``model`` (a :mod:`sparsegate.sw.ml.lstm_model` model) under ``masks``."""
    w = _weights(model, masks)
    hidden, inputs = w[W_H].shape[1], w[W_X].shape[1]
    wx = (w[W_X] != 0).view(4, hidden, inputs)
    wh = (w[W_H] != 0).view(4, hidden, hidden)
    live = (w[W_OUT] != 0).any(0)
    while True:  # a unit is live if something live reads its h
        grown = live | wh[:, live, :].any(0).any(0)
        if torch.equal(grown, live):
            break
        live = grown
    rows_used = wx.any(2) | (wh & live.view(1, 1, -1)).any(2)  # (4, H)
    constant = ~rows_used & live.unsqueeze(0)
    live_input = wx[:, live, :].any(0).any(0) if bool(live.any()) else torch.zeros(inputs, dtype=torch.bool)
    bias = (w[B_X] + w[B_H]).view(4, hidden)
    value = torch.where(torch.arange(4).view(4, 1) == 2, torch.tanh(bias), torch.sigmoid(bias))
    value = torch.where(constant, value, torch.full_like(value, math.nan))
    return LSTMStructure(hidden, inputs, live, live_input, constant, value)


def gate_report(structure: LSTMStructure) -> dict:
    """Which gates of which (live) hidden neurons became constant, and their values."""
    out = structure.counts()
    live = torch.nonzero(structure.live_hidden).flatten().tolist()
    out["live_neurons"] = live
    out["constant_by_gate"] = {
        g: {int(j): round(float(structure.constant_value[k, j]), 4)
            for j in torch.nonzero(structure.constant[k] & structure.live_hidden).flatten().tolist()}
        for k, g in enumerate(GATES)}
    # per live neuron: the set of its constant gates, summarised as a pattern count ("f,o": 3 neurons)
    patterns: dict[str, int] = {}
    for j in live:
        key = ",".join(g for k, g in enumerate(GATES) if structure.constant[k, j]) or "none"
        patterns[key] = patterns.get(key, 0) + 1
    out["constant_patterns"] = dict(sorted(patterns.items(), key=lambda kv: -kv[1]))
    return out


class SimplifiedLSTM(nn.Module):
    """The cell a sparsity pattern implies: live units and inputs only, constant gates folded in.

    Gives the same outputs as the masked full model (up to float rounding); the per-step cost is the rows of
    the non-constant gates only (:meth:`macs_per_step`).
    """

    def __init__(self, model: nn.Module, masks: Masks | None = None):
        super().__init__()
        s = lstm_structure(model, masks)
        w = _weights(model, masks)
        self.kind = model.kind
        live = torch.nonzero(s.live_hidden).flatten()
        inp = torch.nonzero(s.live_input).flatten()
        h = s.hidden
        self.units, self.inputs = len(live), len(inp)
        self.register_buffer("embed", w[EMBED][:, inp].clone())
        bias = (w[B_X] + w[B_H]).view(4, h)[:, live]
        self.register_buffer("bias", bias.clone())
        self.register_buffer("const", torch.nan_to_num(s.constant_value[:, live]))
        for k, gate in enumerate(GATES):
            rows = torch.nonzero(~s.constant[k, live]).flatten()  # positions among the live units
            units = live[rows]
            self.register_buffer(f"rows_{gate}", rows)
            self.register_buffer(f"wx_{gate}", w[W_X].view(4, h, -1)[k][units][:, inp].clone())
            self.register_buffer(f"wh_{gate}", w[W_H].view(4, h, h)[k][units][:, live].clone())
        self.register_buffer("w_out", w[W_OUT][:, live].clone())
        self.register_buffer("b_out", w[B_OUT].clone())

    def macs_per_step(self) -> int:
        """Dense multiply-accumulates of the simplified cell per time step (gate rows + read-out)."""
        rows = sum(len(getattr(self, f"rows_{g}")) for g in GATES)
        return rows * (self.inputs + self.units) + self.w_out.numel()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.embed[x]  # (B, T, I')
        batch, steps = x.shape
        h = e.new_zeros(batch, self.units)
        c = e.new_zeros(batch, self.units)
        outs = []
        for t in range(steps):
            acts = []
            for k, gate in enumerate(GATES):
                rows = getattr(self, f"rows_{gate}")
                pre = self.bias[k].expand(batch, -1).clone()
                if len(rows):
                    pre[:, rows] += e[:, t] @ getattr(self, f"wx_{gate}").T + h @ getattr(self, f"wh_{gate}").T
                act = torch.tanh(pre) if gate == "g" else torch.sigmoid(pre)
                constant = torch.ones(self.units, dtype=torch.bool, device=x.device)
                constant[rows] = False
                acts.append(torch.where(constant, self.const[k].expand(batch, -1), act))
            i, f, g, o = acts
            c = f * c + i * g
            h = o * torch.tanh(c)
            outs.append(h)
        hs = torch.stack(outs, 1)  # (B, T, H')
        if self.kind == "lm":
            return (hs @ self.w_out.T + self.b_out).transpose(1, 2)
        return hs.mean(1) @ self.w_out.T + self.b_out


# ---------------------------------------------------------------------------------------------- table

def lstm_table(model: nn.Module, masks: Masks | None = None, storage: StorageFormat | None = None) -> LayerTable:
    """Per-layer counts in :class:`sparsegate.sw.prune.counting.LayerTable` form; MACs are per time step.

    Rows: ``embed`` (a look-up: no MACs; live units = live input dimensions), ``lstm.x`` and ``lstm.h`` (out
    units = the 4H gate rows, live = non-constant gates of live neurons), ``out``. ``live_weights`` counts
    the nonzero weights that still matter (in non-constant rows of live units, reading live units/inputs);
    ``macs`` counts one per live weight (the zero-skipping engine's view).
    """
    storage = storage or StorageFormat()
    s = lstm_structure(model, masks)
    w = _weights(model, masks)
    h, i = s.hidden, s.inputs
    gates_live = s.live_gates.flatten()  # (4H,)
    rows = []

    def add(name, kind, weight, live_w, biases, in_units, live_in, out_units, live_out, dense_macs, macs):
        stored = weight != 0
        nz_b = sum(int((b != 0).sum()) for b in biases)
        n_b = sum(b.numel() for b in biases)
        entries = relative_index_entries(stored, storage.index_bits)
        rows.append(LayerStats(name=name, kind=kind, weights=weight.numel(), nonzero_weights=int(stored.sum()),
                               live_weights=int(live_w.sum()), biases=n_b, nonzero_biases=nz_b, in_units=in_units,
                               live_in=live_in, out_units=out_units, live_out=live_out, dense_macs=dense_macs,
                               macs=macs, dense_bits=(weight.numel() + n_b) * storage.weight_bits,
                               sparse_bits=entries * (storage.weight_bits + storage.index_bits)
                               + nz_b * storage.weight_bits))

    emb = w[EMBED]
    live_emb = (emb != 0) & s.live_input.view(1, -1)
    add("embed", "emb", emb, live_emb, [], emb.shape[0], emb.shape[0], i, int(s.live_input.sum()), 0, 0)
    lx = (w[W_X] != 0) & gates_live.view(-1, 1) & s.live_input.view(1, -1)
    add("lstm.x", "lstm", w[W_X], lx, [w[B_X]], i, int(s.live_input.sum()), 4 * h, int(gates_live.sum()),
        w[W_X].numel(), int(lx.sum()))
    lh = (w[W_H] != 0) & gates_live.view(-1, 1) & s.live_hidden.view(1, -1)
    add("lstm.h", "lstm", w[W_H], lh, [w[B_H]], h, int(s.live_hidden.sum()), 4 * h, int(gates_live.sum()),
        w[W_H].numel(), int(lh.sum()))
    lo = (w[W_OUT] != 0) & s.live_hidden.view(1, -1)
    add("out", "fc", w[W_OUT], lo, [w[B_OUT]], h, int(s.live_hidden.sum()), w[W_OUT].shape[0],
        int((lo.any(1) | (w[B_OUT] != 0)).sum()), w[W_OUT].numel(), int(lo.sum()))
    return LayerTable(rows, NetworkStats.of(rows), storage)


def sparsified_weights(model: nn.Module, masks: Masks | None = None) -> tuple[int, int]:
    """(kept, total) entries of the sparsified matrices ``W_x``, ``W_h``, ``W_out``."""
    w = _weights(model, masks)
    return sum(int((w[k] != 0).sum()) for k in SPARSIFIED), sum(w[k].numel() for k in SPARSIFIED)


# ----------------------------------------------------------------------------------------- training

@dataclass
class Penalty:
    """Sparse group lasso strengths (scale-free, see the module docstring); 0 disables a level."""

    weight_l1: float = 0.0
    neuron: float = 0.0
    gate: float = 0.0

    def __post_init__(self):
        for name in ("weight_l1", "neuron", "gate"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value >= 0 and math.isfinite(value)):
                raise PruneError(f"penalty {name} must be a number >= 0, got {value!r}")

    @property
    def active(self) -> bool:
        return bool(self.weight_l1 or self.neuron or self.gate)


@dataclass
class LSTMTrainConfig:
    epochs: int = 10
    batch_size: int = 32
    lr: float = 3e-3
    clip: float = 1.0
    seed: int = 0

    def __post_init__(self):
        if self.epochs < 0 or self.batch_size < 1 or not self.lr > 0:
            raise PruneError(f"train config: epochs >= 0, batch_size >= 1 and lr > 0 expected, got {self}")


@torch.no_grad()
def proximal_step(model: nn.Module, penalty: Penalty, step: float) -> None:
    """Soft-threshold weights, then shrink hidden/input-neuron groups, then gate rows (exact zeros)."""
    p = dict(model.named_parameters())
    wx, wh, wo = p[W_X], p[W_H], p[W_OUT]
    if penalty.weight_l1:
        t = step * penalty.weight_l1
        for w in (wx, wh, wo):
            w.copy_(torch.sign(w) * (w.abs() - t).clamp(min=0))
    if penalty.neuron:
        hidden = wh.shape[1]
        t = step * penalty.neuron
        # hidden neuron j: column j of W_h and of W_out
        norm = (wh.pow(2).sum(0) + wo.pow(2).sum(0)).sqrt()
        scale = (1 - t * math.sqrt(wh.shape[0] + wo.shape[0]) / norm.clamp(min=1e-12)).clamp(min=0)
        wh.mul_(scale.view(1, hidden))
        wo.mul_(scale.view(1, hidden))
        # input neuron d: column d of W_x
        norm = wx.pow(2).sum(0).sqrt()
        wx.mul_((1 - t * math.sqrt(wx.shape[0]) / norm.clamp(min=1e-12)).clamp(min=0).view(1, -1))
    if penalty.gate:
        t = step * penalty.gate
        norm = (wx.pow(2).sum(1) + wh.pow(2).sum(1)).sqrt()
        scale = (1 - t * math.sqrt(wx.shape[1] + wh.shape[1]) / norm.clamp(min=1e-12)).clamp(min=0)
        wx.mul_(scale.view(-1, 1))
        wh.mul_(scale.view(-1, 1))


def train_lstm(model: nn.Module, ds: TensorDataset, config: LSTMTrainConfig, masks: Masks | None = None,
               penalty: Penalty | None = None) -> list[dict]:
    """Adam + cosine decay with gradient clipping; masked entries stay zero; with a ``penalty``, a proximal
    step after every optimizer step. Deterministic for ``config.seed``. Returns per-epoch loss rows."""
    masks = masks or {}
    penalty = penalty or Penalty()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    apply_masks(model, masks)
    if config.epochs == 0:
        return []
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    loader = DataLoader(ds, batch_size=config.batch_size, shuffle=True, generator=generator)
    total = max(1, config.epochs * len(loader))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 0.5 * (1 + math.cos(math.pi * min(k, total) / total)))
    params = dict(model.named_parameters())
    history = []
    for epoch in range(config.epochs):
        model.train()
        loss_sum, seen = 0.0, 0
        for x, y in loader:
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            for key, mask in masks.items():
                params[key].grad.mul_(mask.to(params[key].dtype))
            nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            lr = opt.param_groups[0]["lr"]
            opt.step()
            sched.step()
            if penalty.active:
                proximal_step(model, penalty, lr)
            apply_masks(model, masks)
            loss_sum += loss.item() * len(y)
            seen += len(y)
        history.append({"epoch": epoch + 1, "loss": loss_sum / seen})
    return history


@torch.no_grad()
def evaluate(model: nn.Module, ds: TensorDataset, batch_size: int = 256) -> dict:
    """Accuracy and mean cross-entropy (per character for the language model); perplexity and bits per
    character are derived from the cross-entropy."""
    model.eval()
    x, y = ds.tensors
    correct = count = 0
    loss = 0.0
    for k in range(0, len(x), batch_size):
        out = model(x[k:k + batch_size])
        target = y[k:k + batch_size]
        loss += float(nn.functional.cross_entropy(out, target, reduction="sum"))
        correct += int((out.argmax(1) == target).sum())
        count += target.numel()
    ce = loss / count
    return {"accuracy": correct / count, "cross_entropy": ce, "perplexity": math.exp(ce), "bpc": ce / math.log(2)}


# ------------------------------------------------------------------------------------------- methods

def group_scores(model: nn.Module, masks: Masks | None = None) -> dict[str, torch.Tensor]:
    """RMS of each group's (masked) entries: ``gate`` (4H,) rows of ``[W_x | W_h]``, ``hidden`` (H,) columns of
    ``[W_h; W_out]``, ``input`` (I,) columns of ``W_x``. Pruned entries count as zeros, so partly pruned groups
    score lower."""
    w = _weights(model, masks)
    wx, wh, wo = w[W_X], w[W_H], w[W_OUT]
    return {"gate": (wx.pow(2).sum(1) + wh.pow(2).sum(1)).div(wx.shape[1] + wh.shape[1]).sqrt(),
            "hidden": (wh.pow(2).sum(0) + wo.pow(2).sum(0)).div(wh.shape[0] + wo.shape[0]).sqrt(),
            "input": wx.pow(2).sum(0).div(wx.shape[0]).sqrt()}


def cleanup_masks(model: nn.Module, masks: Masks) -> Masks:
    """Also mask what no longer matters: every weight of a hidden neuron nobody reads (its gate rows, its
    ``W_h``/``W_out`` columns), the ``W_x`` columns of unused inputs and the rows of constant gates. The
    model's outputs do not change."""
    s = lstm_structure(model, masks)
    out = copy_masks(masks)
    rows = s.live_gates.flatten()  # non-constant gate rows of live units
    out[W_X] = out[W_X] & rows.view(-1, 1) & s.live_input.view(1, -1)
    out[W_H] = out[W_H] & rows.view(-1, 1) & s.live_hidden.view(1, -1)
    out[W_OUT] = out[W_OUT] & s.live_hidden.view(1, -1)
    return out


def _full(model: nn.Module, masks: Masks | None) -> Masks:
    p = dict(model.named_parameters())
    out = copy_masks(masks)
    for k in SPARSIFIED:
        out.setdefault(k, torch.ones_like(p[k], dtype=torch.bool))
    return out


def threshold_masks(model: nn.Module, masks: Masks | None, tau: float, levels: tuple[str, ...],
                    group_bias: float = 1.0) -> Masks:
    """Masks for one threshold ``tau``: weights with ``|w| < tau`` go (level ``weights``), and whole groups
    whose RMS is below ``group_bias * tau`` (levels ``neurons``: hidden and input neurons; ``gates``: gate
    rows); then :func:`cleanup_masks`."""
    w = _weights(model, masks)
    out = _full(model, masks)
    if "weights" in levels:
        for k in SPARSIFIED:
            out[k] = out[k] & (w[k].abs() >= tau)
    scores = group_scores(model, masks)
    cut = group_bias * tau
    if "neurons" in levels:
        hidden, inputs = scores["hidden"] >= cut, scores["input"] >= cut
        out[W_H] = out[W_H] & hidden.view(1, -1)
        out[W_OUT] = out[W_OUT] & hidden.view(1, -1)
        out[W_X] = out[W_X] & inputs.view(1, -1)
    if "gates" in levels:
        rows = scores["gate"] >= cut
        out[W_X] = out[W_X] & rows.view(-1, 1)
        out[W_H] = out[W_H] & rows.view(-1, 1)
    return cleanup_masks(model, out)


def _kept(masks: Masks) -> int:
    return sum(int(masks[k].sum()) for k in SPARSIFIED)


def prune_to(model: nn.Module, masks: Masks | None, kept_target: int, levels: tuple[str, ...],
             group_bias: float = 1.0) -> Masks:
    """The smallest threshold whose :func:`threshold_masks` keep at most ``kept_target`` of the sparsified
    weights (bisection; groups and weights compete under one threshold)."""
    current = threshold_masks(model, masks, 0.0, levels, group_bias)
    if _kept(current) <= kept_target:
        return current
    w = _weights(model, masks)
    lo, hi = 0.0, max(float(w[k].abs().max()) for k in SPARSIFIED) + 1e-12
    best = threshold_masks(model, masks, hi, levels, group_bias)
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        cand = threshold_masks(model, masks, mid, levels, group_bias)
        if _kept(cand) <= kept_target:
            hi, best = mid, cand
        else:
            lo = mid
    return best


def magnitude_masks(model: nn.Module, sparsity: float, masks: Masks | None = None) -> Masks:
    """One-shot unstructured magnitude: one global |w| threshold over ``W_x``, ``W_h``, ``W_out`` removing the
    fraction ``sparsity`` of their entries (ties broken by position)."""
    sparsity = check_ratio(sparsity, "sparsity")
    w = _weights(model, masks)
    full = _full(model, masks)
    scores = torch.cat([torch.where(full[k], w[k].abs(), torch.zeros_like(w[k])).flatten() for k in SPARSIFIED])
    n_prune = int(round(sparsity * scores.numel()))
    keep = torch.ones(scores.numel(), dtype=torch.bool)
    keep[torch.argsort(scores, stable=True)[:n_prune]] = False
    out = copy_masks(masks)
    offset = 0
    for k in SPARSIFIED:
        n = w[k].numel()
        out[k] = keep[offset:offset + n].view_as(w[k]) & full[k]
        offset += n
    return out


def masks_from_zeros(model: nn.Module) -> Masks:
    p = dict(model.named_parameters())
    return {k: p[k].detach() != 0 for k in SPARSIFIED}


@dataclass
class SparsifyConfig:
    """Iterative sparsification: ``rounds`` prune steps to ``target_sparsity`` of ``W_x``, ``W_h``, ``W_out``
    (kept fraction shrinking geometrically), each followed by ``finetune`` epochs; optionally a group-lasso
    warm-up (``penalty`` strength for ``penalty_epochs``, proximal, see :func:`proximal_step`)."""

    target_sparsity: float = 0.9
    rounds: int = 4
    group_bias: float = 1.0  # a group goes when its RMS is below group_bias x the weight threshold
    finetune: LSTMTrainConfig = field(default_factory=lambda: LSTMTrainConfig(epochs=1, lr=1e-3))
    penalty: float = 0.0
    penalty_epochs: int = 0
    penalty_lr: float = 2e-3

    def __post_init__(self):
        self.target_sparsity = check_ratio(self.target_sparsity, "target_sparsity")
        if self.rounds < 1:
            raise PruneError(f"rounds must be >= 1, got {self.rounds}")
        if not (self.group_bias > 0 and math.isfinite(self.group_bias)):
            raise PruneError(f"group_bias must be > 0, got {self.group_bias!r}")
        if self.penalty_epochs < 0:
            raise PruneError(f"penalty_epochs must be >= 0, got {self.penalty_epochs}")
        Penalty(gate=self.penalty)


@dataclass
class SparsifyResult:
    method: str
    masks: Masks
    config: dict
    metrics: dict  # validation metrics after the last fine-tune
    structure: dict
    kept_weights: int
    total_weights: int
    history: list[dict] = field(default_factory=list)  # per round: kept, validation metrics before/after fine-tune
    wall_time_s: float = 0.0

    def summary(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("masks",)}
        d["weight_density"] = self.kept_weights / self.total_weights
        return d


def sparsify(model: nn.Module, fit_ds: TensorDataset, val_ds: TensorDataset, method: str,
             config: SparsifyConfig, masks: Masks | None = None) -> SparsifyResult:
    """Sparsify ``model`` in place to ``config.target_sparsity`` of its ``W_x``, ``W_h``, ``W_out`` entries.

    ``method``: ``structured`` (weights, neurons and gate rows compete under one threshold), ``neurons``
    (weights and neurons), ``weights`` (iterative global magnitude: the unstructured baseline with the same
    rounds and fine-tuning) or ``magnitude`` (one shot, then all the fine-tune epochs at once).
    """
    if method not in METHODS:
        raise PruneError(f"method: unknown LSTM method {method!r}; expected one of {list(METHODS)}")
    start = time.perf_counter()
    masks = _full(model, masks)
    levels = METHODS[method]
    history: list[dict] = []
    total = sum(dict(model.named_parameters())[k].numel() for k in SPARSIFIED)
    goal = int(round((1 - config.target_sparsity) * total))
    if config.penalty and config.penalty_epochs and method in ("structured", "neurons"):
        penalty = Penalty(weight_l1=config.penalty / 4, neuron=config.penalty,
                          gate=config.penalty if "gates" in levels else 0.0)
        train_lstm(model, fit_ds, LSTMTrainConfig(epochs=config.penalty_epochs, lr=config.penalty_lr,
                                                  seed=config.finetune.seed), masks, penalty)
        masks = {k: v & (dict(model.named_parameters())[k].detach() != 0) for k, v in masks.items()}
        history.append({"round": 0, "penalty": config.penalty, "kept": _kept(masks), "val": evaluate(model, val_ds)})
    if method == "magnitude":
        masks = magnitude_masks(model, config.target_sparsity, masks)
        steps = [(goal, replace_epochs(config.finetune, config.finetune.epochs * config.rounds))]
    else:
        start_kept = _kept(masks)
        steps = [(int(round(start_kept * (goal / max(start_kept, 1)) ** ((r + 1) / config.rounds))), config.finetune)
                 for r in range(config.rounds)]
    for r, (kept_target, ft) in enumerate(steps, start=1):
        if method != "magnitude":
            masks = prune_to(model, masks, kept_target, levels, config.group_bias)
        apply_masks(model, masks)
        pruned = evaluate(model, val_ds)
        train_lstm(model, fit_ds, replace_seed(ft, ft.seed + r), masks)
        history.append({"round": r, "kept": _kept(masks), "val_pruned": pruned, "val": evaluate(model, val_ds)})
    kept, total = sparsified_weights(model, masks)
    structure = gate_report(lstm_structure(model, masks))
    cfg = asdict(config)
    return SparsifyResult(method, masks, cfg, evaluate(model, val_ds), structure, kept, total, history,
                          time.perf_counter() - start)


def replace_epochs(config: LSTMTrainConfig, epochs: int) -> LSTMTrainConfig:
    return LSTMTrainConfig(epochs=epochs, batch_size=config.batch_size, lr=config.lr, clip=config.clip,
                           seed=config.seed)


def replace_seed(config: LSTMTrainConfig, seed: int) -> LSTMTrainConfig:
    return LSTMTrainConfig(epochs=config.epochs, batch_size=config.batch_size, lr=config.lr, clip=config.clip,
                           seed=seed)


@dataclass
class LSTMGateParams:
    """The parameters of ``lstm-gates``: :func:`sparsify` of an LSTM (``levels``: structured, neurons, weights
    or magnitude; see the module docstring)."""

    target_sparsity: float = param(0.9, "fraction of the weights to prune, in [0, 1)", type=float)
    levels: str = param("structured", "lstm-gates: what competes for the budget: weights, neurons and gate rows "
                                      "(structured), weights and neurons, weights only, or one-shot magnitude",
                        choices=tuple(METHODS), flag="--lstm-levels")
    rounds: int = param(4, "maximum prune/fine-tune rounds")
    group_bias: float = param(1.0, "lstm-gates: a group goes when its RMS is below this x the weight threshold")
    penalty: float = param(0.0, "lstm-gates: group-lasso warm-up strength (0: none)", flag="--lstm-penalty")
    penalty_epochs: int = param(0, "lstm-gates: epochs of the group-lasso warm-up", flag="--lstm-penalty-epochs")

    def __post_init__(self):
        if self.levels not in METHODS:
            raise PruneError(f"levels: expected one of {list(METHODS)}, got {self.levels!r}")
        self.config(LSTMTrainConfig())

    def config(self, finetune: LSTMTrainConfig) -> SparsifyConfig:
        return SparsifyConfig(target_sparsity=self.target_sparsity, rounds=self.rounds, group_bias=self.group_bias,
                              finetune=finetune, penalty=self.penalty, penalty_epochs=self.penalty_epochs)

    def check(self, model: nn.Module, options: PruneOptions, masks: Masks) -> None:
        """The model must be one of :mod:`sparsegate.sw.ml.lstm_model`'s LSTMs."""
        names = dict(model.named_parameters())
        missing = [k for k in SPARSIFIED if k not in names]
        if missing:
            raise PruneError(f"method 'lstm-gates' prunes an LSTM model (sparsegate.sw.ml.lstm_model); "
                             f"{type(model).__name__} has no {missing[0]}")
        if options.layers is not None:
            raise PruneError("layers: method 'lstm-gates' always sparsifies W_x, W_h and W_out")


def run_lstm_gates(model: nn.Module, options: PruneOptions, fit_ds: TensorDataset, val_ds: TensorDataset,
                   masks: Masks, monitor_ds: TensorDataset | None = None) -> PruneResult:
    """Registry entry of ``lstm-gates``. ``model`` is an LSTM of :mod:`sparsegate.sw.ml.lstm_model`;
    ``fit_ds``/``val_ds`` are its text datasets (:mod:`sparsegate.sw.ml.text_data`: character sequences ->
    next characters for ``CharLSTM``, snippets -> license family for ``LSTMClassifier``). Fine-tune 1 epoch
    per round by default."""
    p: LSTMGateParams = options.params
    res = sparsify(model, fit_ds, val_ds, p.levels,
                   p.config(LSTMTrainConfig(epochs=options.epochs(1), lr=options.lr, seed=options.seed)), masks)
    return PruneResult("lstm-gates", model, res.masks, res.metrics["accuracy"], res.history, res.summary(), res)
