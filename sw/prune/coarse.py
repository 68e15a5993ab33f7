"""Coarse pruning at feature-map and kernel level with least-adversarial masks (after Anwar & Sung, "Coarse
pruning of convolutional neural networks with random masks" / "Compact deep convolutional neural networks
with coarse pruning").

Two granularities, on the conv layers:

* **feature map** — whole output channels of a layer go (with their bias and the consumer's weights that read
  them, :func:`sparsegate.sw.prune.masks.remove_channels`). The layer gets narrower: no sparse representation is
  needed, and :mod:`sparsegate.sw.prune.shrink` removes them for real.
* **kernel** — whole (output, input) k x k kernel planes go; the dense connection pattern between two layers
  becomes a sparse one (one bit per plane indexes it).

``both`` prunes feature maps first, then kernels among what is left; the paper found that combining the two
gives the best pruning ratios.

Which channels/planes: the *least adversarial* mask. ``candidates`` random masks at the requested ratio are
each scored on (a subset of) the validation split — accuracy, then cross-entropy to break ties — and the best
one is kept (``candidates=1`` is a plain random mask). ``search="layer"`` (default) chooses layer by layer,
each layer's candidates scored on top of the masks already chosen for the layers before it (N evaluations
per layer); ``search="network"`` draws whole-network candidates (N evaluations in all). ``selection="l1"``
replaces the random candidates by the deterministic smallest-L1-norm choice (filter-norm pruning, the usual
baseline).

Ratios: ``fmap_ratio`` is the fraction of a layer's output channels removed, ``kernel_ratio`` the fraction of
the planes between its live outputs and live inputs removed (both counting what is already gone; a layer
with a single input channel, whose planes are whole filters, gets no kernel pruning). For the
shared prune -> fine-tune loop (:func:`coarse_step`, :func:`coarse_prune`) a target conv-weight sparsity
``s`` is split between the two: feature maps take the sparsity ``1 - (1 - s) ** fmap_share`` (1 for
``feature_map``, 0 for ``kernel``, ``fmap_share`` for ``both``), kernels the rest; each uniform ratio is the
smallest one reaching its share (bisection on exact mask counts).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Iterable, Mapping

import torch
from torch import nn
from torch.func import functional_call
from torch.utils.data import TensorDataset

from sparsegate.sw.prune.kep import conv_layers
from sparsegate.sw.prune.masks import Masks, PruneError, apply_masks, bias_key, channel_l1_norms, check_ratio, copy_masks, mask_for, \
    remove_channels, topology, weight_key, weight_sparsity
from sparsegate.sw.ml.data import first_samples
from sparsegate.sw.ml.models import prunable_layers
from sparsegate.sw.prune.api import PruneOptions, PruneResult
from sparsegate.sw.prune.params import param
from sparsegate.sw.prune.iterative import FineTuneConfig, IterativeResult, PruneStep, Schedule, ScheduleParams, accuracy, \
    finetune, iterative_prune
from sparsegate.sw.prune.shrink import check_supported

GRANULARITIES = ("feature_map", "kernel", "both")
SELECTIONS = ("random", "l1")
SEARCHES = ("layer", "network")

__all__ = ["GRANULARITIES", "SELECTIONS", "SEARCHES", "CoarseConfig", "CandidateScore", "CoarseSelection",
           "CoarseResult", "alive_outputs", "kept_planes", "prune_layer", "score_masks", "least_adversarial",
           "check_ratios", "coarse_masks", "ratios_for_sparsity", "coarse_step", "coarse_prune", "coarse_prune_ratios"]


@dataclass
class CoarseConfig:
    granularity: str = "both"
    candidates: int = 20  # random masks evaluated per choice (1: a plain random mask)
    selection: str = "random"  # "random" (least adversarial of the candidates) or "l1" (smallest norm)
    search: str = "layer"  # "layer" (choose layer by layer) or "network" (whole-network candidates)
    fmap_share: float = 0.5  # both: share (in log kept-fraction) of a sparsity target given to feature maps
    eval_samples: int | None = None  # validation samples that score a candidate (None: all of them)
    seed: int = 0

    def __post_init__(self):
        if self.granularity not in GRANULARITIES:
            raise PruneError(f"granularity: expected one of {list(GRANULARITIES)}, got {self.granularity!r}")
        if self.selection not in SELECTIONS:
            raise PruneError(f"selection: expected one of {list(SELECTIONS)}, got {self.selection!r}")
        if self.search not in SEARCHES:
            raise PruneError(f"search: expected one of {list(SEARCHES)}, got {self.search!r}")
        if not isinstance(self.candidates, int) or self.candidates < 1:
            raise PruneError(f"candidates must be a positive integer, got {self.candidates!r}")
        self.fmap_share = check_ratio(self.fmap_share, "fmap_share", high_inclusive=True)
        if self.eval_samples is not None and self.eval_samples < 1:
            raise PruneError(f"eval_samples must be positive (or None for all), got {self.eval_samples}")

    @property
    def share(self) -> float:
        return {"feature_map": 1.0, "kernel": 0.0}.get(self.granularity, self.fmap_share)


@dataclass(frozen=True)
class CandidateScore:
    accuracy: float
    loss: float

    def key(self) -> tuple:
        return (self.accuracy, -self.loss)


@dataclass
class CoarseSelection:
    masks: Masks
    scores: dict[str, list[CandidateScore]]  # per layer (or "network") the scores of all candidates
    chosen: dict[str, int]  # index of the kept candidate
    fmap_ratios: dict[str, float]
    kernel_ratios: dict[str, float]
    candidates: dict[str, list[Masks]] | None = None  # every candidate, when asked for (keep_candidates)

    def summary(self) -> dict:
        out = {"fmap_ratios": self.fmap_ratios, "kernel_ratios": self.kernel_ratios, "chosen": self.chosen}
        for name, scores in self.scores.items():
            accs = [s.accuracy for s in scores]
            out.setdefault("candidates", {})[name] = {
                "n": len(scores), "best": max(accs), "mean": sum(accs) / len(accs), "worst": min(accs),
                "chosen": scores[self.chosen[name]].accuracy}
        return out


@dataclass
class CoarseResult:
    masks: Masks
    selection: CoarseSelection
    val_accuracy_before: float
    val_accuracy_pruned: float  # right after pruning, before fine-tuning
    val_accuracy: float


# ----------------------------------------------------------------------------------------------- structure

def alive_outputs(model: nn.Module, masks: Masks | None, layer: str) -> torch.Tensor:
    """Output channels of ``layer`` that keep a fan-in weight or a bias."""
    m = prunable_layers(model)[layer]
    alive = ((m.weight.detach() != 0) & mask_for(model, masks, weight_key(layer))).flatten(1).any(1)
    if m.bias is not None:
        alive |= (m.bias.detach() != 0) & mask_for(model, masks, bias_key(layer))
    return alive


def kept_planes(model: nn.Module, masks: Masks | None, layer: str) -> torch.Tensor:
    """(out, in) planes of ``layer`` with a kept nonzero element."""
    w = prunable_layers(model)[layer].weight.detach()
    return ((w != 0) & mask_for(model, masks, weight_key(layer))).flatten(2).any(2)


def _input_alive(model: nn.Module, masks: Masks | None, topo, layer: str) -> torch.Tensor:
    info = topo[layer]
    if info.producer is None:
        return torch.ones(info.in_units, dtype=torch.bool)
    return alive_outputs(model, masks, info.producer).repeat_interleave(topo[info.producer].group)


def _pick(pool: torch.Tensor, n: int, score: torch.Tensor | None, gen: torch.Generator | None) -> torch.Tensor:
    """Bool mask (shape of ``pool``) of ``n`` True entries of ``pool``: the smallest ``score`` or random."""
    idx = torch.nonzero(pool.flatten(), as_tuple=False).flatten()
    n = max(0, min(n, idx.numel()))
    out = torch.zeros(pool.numel(), dtype=torch.bool)
    if n:
        if score is None:
            chosen = idx[torch.randperm(idx.numel(), generator=gen)[:n]]
        else:
            chosen = idx[torch.argsort(score.flatten()[idx], stable=True)[:n]]
        out[chosen] = True
    return out.view(pool.shape)


def prune_layer(model: nn.Module, masks: Masks | None, layer: str, fmap_ratio: float, kernel_ratio: float,
                selection: str = "random", gen: torch.Generator | None = None, topo=None) -> Masks:
    """Masks with ``layer`` pruned to ``fmap_ratio`` of its output channels removed, then ``kernel_ratio`` of
    the planes between its live outputs and live inputs removed (random or smallest-L1 choice)."""
    topo = topo or topology(model)
    info = topo[layer]
    out = copy_masks(masks)
    if fmap_ratio > 0:
        if info.consumer is None:
            raise PruneError(f"layer {layer!r} is the output layer; its feature maps cannot be removed")
        alive = alive_outputs(model, out, layer)
        target = min(int(round(fmap_ratio * info.out_units)), info.out_units - 1)  # a layer keeps >= 1 map
        extra = target - (info.out_units - int(alive.sum()))
        if extra > 0:
            score = channel_l1_norms(model, out, layer) if selection == "l1" else None
            out = remove_channels(model, out, layer, _pick(alive, extra, score, gen), topo)
    if kernel_ratio > 0 and info.in_units > 1:  # with one input channel a plane is the whole filter
        rows = alive_outputs(model, out, layer)
        cols = _input_alive(model, out, topo, layer)
        block = rows[:, None] & cols[None, :]
        kept = kept_planes(model, out, layer) & block
        target = int(round(kernel_ratio * int(block.sum())))
        target = min(target, int(block.sum()) - 1) if int(block.sum()) else 0  # a layer keeps >= 1 plane
        extra = target - (int(block.sum()) - int(kept.sum()))
        if extra > 0:
            w = prunable_layers(model)[layer].weight.detach()
            score = (w.abs() * mask_for(model, out, weight_key(layer))).flatten(2).sum(2) if selection == "l1" else None
            drop = _pick(kept, extra, score, gen)
            wk = weight_key(layer)
            out[wk] = mask_for(model, out, wk) & ~drop[:, :, None, None]
    return out


# ----------------------------------------------------------------------------------------------- scoring

@torch.no_grad()
def score_masks(model: nn.Module, masks: Masks, ds: TensorDataset, batch_size: int = 500) -> CandidateScore:
    """Accuracy and mean cross-entropy of ``model`` with ``masks`` applied (the model is not changed)."""
    params = dict(model.named_parameters())
    masked = {k: (p * masks[k].to(p.dtype) if k in masks else p) for k, p in params.items()}
    was = model.training
    model.eval()
    x, y = ds.tensors
    correct, loss = 0, 0.0
    try:
        for i in range(0, len(x), batch_size):
            out = functional_call(model, masked, (x[i:i + batch_size],))
            correct += int((out.argmax(1) == y[i:i + batch_size]).sum())
            loss += float(nn.functional.cross_entropy(out, y[i:i + batch_size], reduction="sum"))
    finally:
        model.train(was)
    return CandidateScore(correct / len(x), loss / len(x))


def least_adversarial(model: nn.Module, candidates: list[Masks], ds: TensorDataset) -> tuple[int, list[CandidateScore]]:
    """Index of the candidate mask that hurts ``ds`` accuracy least (ties: lower loss, then the first one),
    and every candidate's score."""
    if not candidates:
        raise PruneError("least_adversarial: no candidate masks")
    scores = [score_masks(model, c, ds) for c in candidates]
    best = max(range(len(scores)), key=lambda i: (scores[i].key(), -i))
    return best, scores


def _ratio_dict(value, names: list[str], field_name: str) -> dict[str, float]:
    if isinstance(value, Mapping):
        unknown = [n for n in value if n not in names]
        if unknown:
            raise PruneError(f"{field_name}: layer {unknown[0]!r} is not among the pruned conv layers {names}")
        return {n: check_ratio(value.get(n, 0.0), f"{field_name} of layer {n!r}") for n in names}
    return {n: check_ratio(value, field_name) for n in names}


def check_ratios(model: nn.Module, fmap_ratio, kernel_ratio, config: CoarseConfig, layers: Iterable[str] | None = None):
    """Validate a one-shot request; returns (conv layer names, topology, fmap ratios, kernel ratios)."""
    check_supported(model, structural=True, what="coarse pruning")
    names = conv_layers(model, layers, what="coarse pruning")
    topo = topology(model)
    fr = _ratio_dict(fmap_ratio, names, "fmap_ratio")
    kr = _ratio_dict(kernel_ratio, names, "kernel_ratio")
    if config.granularity == "feature_map" and any(kr.values()):
        raise PruneError("kernel_ratio: granularity 'feature_map' prunes no kernels")
    if config.granularity == "kernel" and any(fr.values()):
        raise PruneError("fmap_ratio: granularity 'kernel' prunes no feature maps")
    last = [n for n in names if topo[n].consumer is None and fr[n] > 0]
    if last:
        raise PruneError(f"fmap_ratio: layer {last[0]!r} is the output layer; its feature maps cannot be removed")
    return names, topo, fr, kr


def coarse_masks(model: nn.Module, val_ds: TensorDataset | None, fmap_ratio: float | Mapping[str, float] = 0.0,
                 kernel_ratio: float | Mapping[str, float] = 0.0, config: CoarseConfig | None = None,
                 masks: Masks | None = None, layers: Iterable[str] | None = None,
                 gen: torch.Generator | None = None, keep_candidates: bool = False) -> CoarseSelection:
    """Least-adversarial coarse masks at the given ratios (see the module docstring); ``model`` is unchanged.
    ``keep_candidates`` also returns every candidate mask (``selection.candidates``)."""
    config = config or CoarseConfig()
    names, topo, fr, kr = check_ratios(model, fmap_ratio, kernel_ratio, config, layers)
    gen = gen or torch.Generator().manual_seed(config.seed)
    n_cand = 1 if config.selection == "l1" else config.candidates
    if n_cand > 1 and val_ds is None:
        raise PruneError("coarse_masks: the least-adversarial search needs val_ds")
    eval_ds = val_ds if val_ds is None else first_samples(val_ds, config.eval_samples)
    current = copy_masks(masks)
    scores: dict[str, list[CandidateScore]] = {}
    chosen: dict[str, int] = {}
    kept: dict[str, list[Masks]] = {}

    def choose(key: str, cands: list[Masks]) -> Masks:
        if keep_candidates:
            kept[key] = cands
        if len(cands) == 1 and eval_ds is None:
            scores[key], chosen[key] = [CandidateScore(float("nan"), float("nan"))], 0
            return cands[0]
        best, sc = least_adversarial(model, cands, eval_ds)
        scores[key], chosen[key] = sc, best
        return cands[best]

    active = [n for n in names if fr[n] > 0 or kr[n] > 0]
    if config.search == "layer":
        for n in active:
            cands = [prune_layer(model, current, n, fr[n], kr[n], config.selection, gen, topo) for _ in range(n_cand)]
            current = choose(n, cands)
    else:
        cands = []
        for _ in range(n_cand):
            c = current
            for n in active:
                c = prune_layer(model, c, n, fr[n], kr[n], config.selection, gen, topo)
            cands.append(c)
        current = choose("network", cands) if active else current
    return CoarseSelection(current, scores, chosen, fr, kr, kept if keep_candidates else None)


# ----------------------------------------------------------------------------------------------- schedules

def _bisect(f, target: float, lo: float = 0.0, hi: float = 0.999, iters: int = 30) -> float:
    """Smallest r in [lo, hi] with f(r) >= target (f non-decreasing); hi when unreachable."""
    if f(lo) >= target - 1e-12:
        return lo
    if f(hi) < target - 1e-12:
        return hi
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if f(mid) >= target - 1e-12:
            hi = mid
        else:
            lo = mid
    return hi


def ratios_for_sparsity(model: nn.Module, masks: Masks | None, sparsity: float, config: CoarseConfig,
                        layers: Iterable[str] | None = None) -> tuple[float, float]:
    """Uniform (fmap_ratio, kernel_ratio) whose masks reach the conv-weight ``sparsity`` over ``layers``,
    split by ``config.share`` (counted on smallest-L1 masks; random masks of the same ratios remove the same
    channel/plane counts)."""
    sparsity = check_ratio(sparsity, "sparsity")
    names = conv_layers(model, layers, what="coarse pruning")
    topo = topology(model)
    fm_layers = [n for n in names if topo[n].consumer is not None]
    share = config.share
    s_fmap = 1.0 - (1.0 - sparsity) ** share if share > 0 else 0.0

    def plan(rf: float, rk: float) -> Masks:
        m = copy_masks(masks)
        for n in names:
            m = prune_layer(model, m, n, rf if n in fm_layers else 0.0, rk, "l1", None, topo)
        return m

    def sparsity_of(m: Masks) -> float:
        return weight_sparsity(model, m, names)

    rf = _bisect(lambda r: sparsity_of(plan(r, 0.0)), s_fmap) if share > 0 and fm_layers else 0.0
    rk = _bisect(lambda r: sparsity_of(plan(rf, r)), sparsity) if share < 1 else 0.0
    return rf, rk


def coarse_step(val_ds: TensorDataset, config: CoarseConfig | None = None,
                layers: Iterable[str] | None = None) -> PruneStep:
    """A step for :func:`sparsegate.sw.prune.iterative.iterative_prune` reaching the target conv sparsity with
    least-adversarial coarse masks; ``step.last_info`` records the ratios and the candidate scores."""
    config = config or CoarseConfig()

    def step(model: nn.Module, masks: Masks, sparsity: float) -> Masks:
        step.rounds += 1
        rf, rk = ratios_for_sparsity(model, masks, sparsity, config, layers)
        names = conv_layers(model, layers, what="coarse pruning")
        topo = topology(model)
        fr = {n: (rf if topo[n].consumer is not None else 0.0) for n in names}
        gen = torch.Generator().manual_seed(config.seed * 1000 + step.rounds)
        sel = coarse_masks(model, val_ds, fr, rk, config, masks, names, gen)
        info = sel.summary()
        info.update(fmap_ratio=rf, kernel_ratio=rk)
        step.last_info = info
        return sel.masks

    step.rounds = 0
    step.last_info = {}
    return step


def coarse_prune(model: nn.Module, fit_ds: TensorDataset, val_ds: TensorDataset, schedule: Schedule,
                 config: CoarseConfig | None = None, finetune_config: FineTuneConfig | None = None,
                 masks: Masks | None = None, layers: Iterable[str] | None = None, progress: bool = True,
                 monitor_ds: TensorDataset | None = None, base_val_accuracy: float | None = None) -> IterativeResult:
    """Coarse pruning under the shared schedule (target conv sparsity and/or validation-accuracy budget);
    ``base_val_accuracy`` overrides the reference of the accuracy budget (default: the start model's)."""
    config = config or CoarseConfig()
    names = conv_layers(model, layers, what="coarse pruning")
    check_supported(model, structural=True, what="coarse pruning")
    desc = f"coarse-{config.granularity}-{config.selection}{config.candidates if config.selection == 'random' else ''}"
    return iterative_prune(model, coarse_step(val_ds, config, names), fit_ds, val_ds, schedule, finetune_config,
                           masks, names, progress=progress, desc=desc, base_val_accuracy=base_val_accuracy,
                           monitor_ds=monitor_ds)


def coarse_prune_ratios(model: nn.Module, fit_ds: TensorDataset, val_ds: TensorDataset,
                        fmap_ratio: float | Mapping[str, float] = 0.0, kernel_ratio: float | Mapping[str, float] = 0.0,
                        config: CoarseConfig | None = None, finetune_config: FineTuneConfig | None = None,
                        masks: Masks | None = None, layers: Iterable[str] | None = None) -> CoarseResult:
    """One shot in place: least-adversarial masks at the given ratios, then fine-tuning."""
    config = config or CoarseConfig()
    masks = copy_masks(masks)
    apply_masks(model, masks)
    before = accuracy(model, val_ds)
    sel = coarse_masks(model, val_ds, fmap_ratio, kernel_ratio, config, masks, layers)
    apply_masks(model, sel.masks)
    pruned = accuracy(model, val_ds)
    finetune(model, fit_ds, sel.masks, finetune_config or FineTuneConfig(), 1)
    return CoarseResult(sel.masks, sel, before, pruned, accuracy(model, val_ds))


@dataclass
class CoarseParams(ScheduleParams):
    """The parameters of ``coarse``: feature-map / kernel ratios (one shot) or a conv-weight sparsity target /
    accuracy budget under the shared schedule."""

    level: str = param("both", "granularity", choices=GRANULARITIES, flag="--coarse-level")
    fmap_ratio: float | None = param(None, "fraction of feature maps removed (one shot)", type=float)
    kernel_ratio: float | None = param(None, "fraction of the live kernel planes removed (one shot)", type=float)
    candidates: int = param(20, "random masks evaluated per choice (1: random)")
    search: str = param("layer", "choose the least-adversarial mask layer by layer or for the whole network",
                        choices=SEARCHES)
    mask_choice: str = param("random", "random candidates (least adversarial) or smallest L1 norm (filter-norm "
                                       "baseline)", choices=SELECTIONS)
    fmap_share: float = param(0.5, "both with a sparsity target: share of it given to feature maps (log kept "
                                   "fraction)")
    eval_samples: int | None = param(None, "validation samples that score a candidate (default: all)", type=int)

    @property
    def oneshot(self) -> bool:
        return self.fmap_ratio is not None or self.kernel_ratio is not None

    def __post_init__(self):
        if self.oneshot == self.iterative:
            raise PruneError("method 'coarse' needs --fmap-ratio/--kernel-ratio (one shot) or "
                             "--target-sparsity/--max-drop (iterative), not both")
        if self.iterative:
            self.schedule()
        self.config(0)

    def config(self, seed: int) -> CoarseConfig:
        return CoarseConfig(granularity=self.level, candidates=self.candidates, search=self.search,
                            selection=self.mask_choice, fmap_share=self.fmap_share, eval_samples=self.eval_samples,
                            seed=seed)

    def check(self, model: nn.Module, options: PruneOptions, masks: Masks) -> None:
        """The checks that need the model (ratios against the layers, conv layers)."""
        check_supported(model, structural=True, what="coarse")
        if self.oneshot:
            check_ratios(model, self.fmap_ratio or 0.0, self.kernel_ratio or 0.0, self.config(options.seed),
                         options.layers)
        else:
            conv_layers(model, options.layers, what="coarse pruning")


def run_coarse(model: nn.Module, options: PruneOptions, fit_ds: TensorDataset, val_ds: TensorDataset, masks: Masks,
               monitor_ds: TensorDataset | None = None) -> PruneResult:
    """Registry entry of ``coarse`` (:class:`CoarseParams`; fine-tune 4 epochs one shot, 2 per round)."""
    p: CoarseParams = options.params
    cfg = p.config(options.seed)
    if p.oneshot:
        res = coarse_prune_ratios(model, fit_ds, val_ds, p.fmap_ratio or 0.0, p.kernel_ratio or 0.0, cfg,
                                  options.finetune_config(4), masks, options.layers)
        out = PruneResult("coarse", model, res.masks, res.val_accuracy, [], {
            "val_accuracy_before": res.val_accuracy_before, "val_accuracy_pruned": res.val_accuracy_pruned,
            "val_accuracy": res.val_accuracy, **res.selection.summary()}, res)
    else:
        res = coarse_prune(model, fit_ds, val_ds, p.schedule(), cfg, options.finetune_config(2), masks,
                           options.layers, progress=options.progress, monitor_ds=monitor_ds)
        out = PruneResult("coarse", model, res.masks, res.val_accuracy, res.history_dicts(),
                          {"val_accuracy": res.val_accuracy, "conv_sparsity": res.sparsity, "rounds": len(res.history)},
                          res, iterative=res)
    out.info["coarse"] = asdict(cfg)
    return out
