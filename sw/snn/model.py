"""Spiking networks in float: spike encoders, a leaky-integrate-and-fire (LIF) MLP, surrogate-gradient
training, evaluation and checkpoints.

The network is ``784 -> 800 LIF -> 10`` (no biases, so the integer engine needs no bias memory):

* **input**: each pixel (the raw 0..255 byte) becomes a spike train over ``steps`` time steps, either a
  deterministic *rate* code (pixel ``v`` fires at step ``t`` when ``floor((t+1)v/255) > floor(tv/255)``,
  ``floor(T v / 255)`` spikes in all) or a seeded *Poisson* (Bernoulli) code with probability ``v/255``;
* **hidden layer**: LIF neurons with the dynamics of snnTorch's ``Leaky`` (delayed reset, the default)::

      reset[t] = mem[t-1] > threshold
      mem[t]   = beta * mem[t-1] + I[t] - reset[t] * threshold      (reset "subtract")
      mem[t]   = beta * (1 - reset[t]) * mem[t-1] + I[t]           (reset "zero")
      spk[t]   = mem[t] > threshold

  with ``I[t] = W1 @ in[t]``; the spike's gradient is snnTorch's arctan surrogate;
* **readout**: a non-leaking integrator, ``logits = W2 @ sum_t spk[t] / steps`` -- the classification is
  the argmax of ``W2 @ spike_counts``, which the integer engine computes exactly.

``neuron_mask`` (a buffer) disables hidden neurons: a disabled neuron never spikes, and
:func:`apply_neuron_mask` zeroes its incoming and outgoing weights, as pruning does.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from tqdm import tqdm

from sparsegate.sw.util.atomic_io import atomic_path
from sparsegate.sw.ml.data import MNIST_MEAN, MNIST_STD
from sparsegate.sw.ml.train import _random_shift

__all__ = [
    "ENCODINGS", "RESETS", "SNNConfig", "SNNTrainConfig", "SpikingMLP", "SNNCheckpointError", "atan_spike",
    "lif_step", "to_pixels", "encode_rate", "encode_poisson", "encode", "apply_neuron_mask", "snn_forward_counts",
    "evaluate_snn", "predict_snn", "train_snn", "save_snn", "load_snn", "SNN_CHECKPOINT_FORMAT",
]

ENCODINGS = ("rate", "poisson")
RESETS = ("subtract", "zero")
SNN_CHECKPOINT_FORMAT = "sparsegate-snn"
SNN_CHECKPOINT_VERSION = 1


class SNNCheckpointError(ValueError):
    """An SNN checkpoint file is missing or not a sparsegate SNN checkpoint."""


@dataclass(frozen=True)
class SNNConfig:
    """Shape and neuron dynamics of the spiking MLP."""

    n_inputs: int = 784
    n_hidden: int = 800
    n_outputs: int = 10
    steps: int = 16            # time steps T per inference
    beta: float = 0.9375       # membrane decay per step; 1 - 2**-4, so the integer leak is a shift
    threshold: float = 1.0
    reset: str = "subtract"    # "subtract" or "zero"
    encoding: str = "rate"     # "rate" (deterministic) or "poisson"

    def __post_init__(self):
        for name in ("n_inputs", "n_hidden", "n_outputs", "steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"SNN config field {name!r} must be a positive integer, got {value!r}")
        if not 0.0 < self.beta <= 1.0:
            raise ValueError(f"SNN config field 'beta' must be in (0, 1], got {self.beta!r}")
        if not self.threshold > 0:
            raise ValueError(f"SNN config field 'threshold' must be positive, got {self.threshold!r}")
        if self.reset not in RESETS:
            raise ValueError(f"SNN config field 'reset' must be one of {RESETS}, got {self.reset!r}")
        if self.encoding not in ENCODINGS:
            raise ValueError(f"SNN config field 'encoding' must be one of {ENCODINGS}, got {self.encoding!r}")

    @classmethod
    def from_dict(cls, values: dict) -> "SNNConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown SNN config field(s) {unknown}; expected {sorted(known)}")
        return cls(**values)


@dataclass
class SNNTrainConfig:
    epochs: int = 6
    batch_size: int = 100
    lr: float = 2e-3
    seed: int = 0
    augment_shift: int = 2  # random translation of up to this many pixels; 0 disables
    progress: bool = True


# --------------------------------------------------------------------------------------- neuron model

class _ATanSpike(torch.autograd.Function):
    """Heaviside forward, arctan surrogate backward (snnTorch's default, ``alpha = 2``)."""

    @staticmethod
    def forward(ctx, x, alpha):
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        alpha = ctx.alpha
        return grad * (alpha / 2) / (1 + (math.pi / 2 * alpha * x) ** 2), None


def atan_spike(x: torch.Tensor, alpha: float = 2.0) -> torch.Tensor:
    return _ATanSpike.apply(x, alpha)


def lif_step(mem: torch.Tensor, current: torch.Tensor, beta: float, threshold: float,
             reset: str = "subtract") -> tuple[torch.Tensor, torch.Tensor]:
    """One LIF step from the previous membrane ``mem``; returns ``(spk, mem)`` like snnTorch's ``Leaky``."""
    fired = (mem > threshold).to(mem.dtype).detach()
    if reset == "subtract":
        mem = beta * mem + current - fired * threshold
    elif reset == "zero":
        mem = beta * (1 - fired) * mem + current
    else:
        raise ValueError(f"reset must be one of {RESETS}, got {reset!r}")
    return atan_spike(mem - threshold), mem


# --------------------------------------------------------------------------------------------- encoders

def to_pixels(images: torch.Tensor) -> np.ndarray:
    """Normalised MNIST images ``(N, 1, 28, 28)`` back to their raw bytes, flattened: uint8 ``(N, 784)``."""
    x = images.detach().reshape(len(images), -1).double() * MNIST_STD + MNIST_MEAN
    return np.clip(np.rint(x.numpy() * 255.0), 0, 255).astype(np.uint8)


def encode_rate(pixels: np.ndarray, steps: int) -> np.ndarray:
    """Deterministic rate code: bool ``(steps, N, n_inputs)``; pixel ``v`` spikes ``floor(steps*v/255)`` times."""
    v = np.asarray(pixels, dtype=np.int64)
    t = np.arange(steps + 1, dtype=np.int64).reshape(-1, *([1] * v.ndim))
    phase = (t * v) // 255
    return phase[1:] > phase[:-1]


def encode_poisson(pixels: np.ndarray, steps: int, seed: int = 0) -> np.ndarray:
    """Poisson (Bernoulli) code with spike probability ``v/255`` per step, reproducible from ``seed``."""
    v = np.asarray(pixels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, size=(steps, *v.shape), dtype=np.int64) < v


def encode(pixels: np.ndarray, config: SNNConfig, seed: int = 0) -> np.ndarray:
    """Spike trains for ``pixels`` with the config's encoding and number of steps."""
    if config.encoding == "rate":
        return encode_rate(pixels, config.steps)
    return encode_poisson(pixels, config.steps, seed)


# ---------------------------------------------------------------------------------------------- network

class SpikingMLP(nn.Module):
    """``n_inputs -> n_hidden LIF -> n_outputs`` integrator readout (see the module docstring)."""

    def __init__(self, config: SNNConfig | None = None):
        super().__init__()
        self.config = config or SNNConfig()
        c = self.config
        self.fc1 = nn.Linear(c.n_inputs, c.n_hidden, bias=False)
        self.fc2 = nn.Linear(c.n_hidden, c.n_outputs, bias=False)
        self.register_buffer("neuron_mask", torch.ones(c.n_hidden, dtype=torch.bool))

    def forward(self, spikes: torch.Tensor, return_counts: bool = False):
        """``spikes``: ``(steps, B, n_inputs)``; returns logits ``(B, n_outputs)`` (and hidden spike counts)."""
        c = self.config
        currents = self.fc1(spikes.to(self.fc1.weight.dtype))  # (T, B, H): all steps at once
        mask = self.neuron_mask.to(currents.dtype)
        mem = torch.zeros_like(currents[0])
        counts = torch.zeros_like(currents[0])
        for t in range(currents.shape[0]):
            spk, mem = lif_step(mem, currents[t], c.beta, c.threshold, c.reset)
            counts = counts + spk * mask
        logits = self.fc2(counts) / currents.shape[0]
        return (logits, counts) if return_counts else logits

    @property
    def alive(self) -> int:
        return int(self.neuron_mask.sum())


@torch.no_grad()
def apply_neuron_mask(model: SpikingMLP) -> None:
    """Zero the incoming (fc1 rows) and outgoing (fc2 columns) weights of every disabled neuron."""
    keep = model.neuron_mask.to(model.fc1.weight.dtype)
    model.fc1.weight.mul_(keep.view(-1, 1))
    model.fc2.weight.mul_(keep.view(1, -1))


def _batches(ds: TensorDataset, batch_size: int):
    x, y = ds.tensors
    for i in range(0, len(x), batch_size):
        yield x[i:i + batch_size], y[i:i + batch_size]


@torch.no_grad()
def snn_forward_counts(model: SpikingMLP, ds: TensorDataset, batch_size: int = 250, seed: int = 0):
    """``(logits, hidden spike counts)`` of every sample of ``ds``, as float tensors."""
    model.eval()
    logits, counts = [], []
    for b, (x, _) in enumerate(_batches(ds, batch_size)):
        spikes = torch.from_numpy(encode(to_pixels(x), model.config, seed + b))
        out, cnt = model(spikes, return_counts=True)
        logits.append(out)
        counts.append(cnt)
    return torch.cat(logits), torch.cat(counts)


def predict_snn(model: SpikingMLP, ds: TensorDataset, seed: int = 0) -> torch.Tensor:
    return snn_forward_counts(model, ds, seed=seed)[0].argmax(1)


def evaluate_snn(model: SpikingMLP, ds: TensorDataset, seed: int = 0) -> float:
    """Top-1 accuracy (0..1) of the float SNN on ``ds``."""
    return float((predict_snn(model, ds, seed) == ds.tensors[1]).float().mean())


@dataclass
class SNNTrainResult:
    history: list[dict] = field(default_factory=list)
    wall_time_s: float = 0.0

    @property
    def test_accuracy(self) -> float | None:
        return self.history[-1].get("test_accuracy") if self.history else None


# Called after every optimizer step with (model, hidden spike counts of the batch (B, H), epoch, batch index).
BatchHook = Callable[[SpikingMLP, torch.Tensor, int, int], None]


def train_snn(model: SpikingMLP, train_ds: TensorDataset, config: SNNTrainConfig | None = None,
              test_ds: TensorDataset | None = None, on_batch: BatchHook | None = None,
              desc: str = "train snn") -> SNNTrainResult:
    """Surrogate-gradient BPTT with Adam and a one-cycle learning rate; deterministic for a seed.

    Disabled neurons stay disabled and their weights stay zero; ``on_batch`` may change the mask
    (online pruning), which takes effect from the next batch.
    """
    config = config or SNNTrainConfig()
    if config.epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {config.epochs}")
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    loader = DataLoader(train_ds, batch_size=config.batch_size, shuffle=True, generator=generator)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr,
                                                    total_steps=max(1, config.epochs * len(loader)))
    result = SNNTrainResult()
    start = time.perf_counter()
    apply_neuron_mask(model)
    bar = tqdm(range(config.epochs), desc=desc, unit="epoch", disable=not config.progress, leave=False)
    for epoch in bar:
        model.train()
        total_loss, correct, seen = 0.0, 0, 0
        for b, (x, y) in enumerate(loader):
            seed = config.seed * 1_000_003 + epoch * 10_007 + b
            if config.augment_shift:
                x = _random_shift(x, config.augment_shift, generator)
            spikes = torch.from_numpy(encode(to_pixels(x), model.config, seed))
            optimizer.zero_grad()
            logits, counts = model(spikes, return_counts=True)
            loss = nn.functional.cross_entropy(logits, y)
            loss.backward()
            optimizer.step()
            scheduler.step()
            apply_neuron_mask(model)
            if on_batch is not None:
                on_batch(model, counts.detach(), epoch, b)
                apply_neuron_mask(model)
            total_loss += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
        row = {"epoch": epoch + 1, "loss": total_loss / seen, "train_accuracy": correct / seen,
               "alive": model.alive}
        if test_ds is not None:
            row["test_accuracy"] = evaluate_snn(model, test_ds)
        result.history.append(row)
        bar.set_postfix({k: round(v, 4) for k, v in row.items() if k != "epoch"})
    result.wall_time_s = time.perf_counter() - start
    return result


# ------------------------------------------------------------------------------------------ checkpoints

def save_snn(path: str | Path, model: SpikingMLP, meta: dict | None = None) -> None:
    """Write the SNN (config, weights, neuron mask, metadata) atomically."""
    payload = {
        "format": SNN_CHECKPOINT_FORMAT,
        "version": SNN_CHECKPOINT_VERSION,
        "config": asdict(model.config),
        "state_dict": model.state_dict(),
        "meta": meta or {},
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_snn(path: str | Path) -> tuple[SpikingMLP, dict]:
    """Load a checkpoint written by :func:`save_snn`; returns ``(model, meta)``."""
    path = Path(path)
    if not path.is_file():
        raise SNNCheckpointError(f"{path}: no such SNN checkpoint file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise SNNCheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(payload, dict) or payload.get("format") != SNN_CHECKPOINT_FORMAT:
        raise SNNCheckpointError(f"{path}: not a sparsegate SNN checkpoint "
                                 f"(missing format={SNN_CHECKPOINT_FORMAT!r}; train one with `sparsegate snn train`)")
    if payload.get("version") != SNN_CHECKPOINT_VERSION:
        raise SNNCheckpointError(f"{path}: SNN checkpoint version {payload.get('version')}, "
                                 f"expected {SNN_CHECKPOINT_VERSION}")
    try:
        model = SpikingMLP(SNNConfig.from_dict(dict(payload["config"])))
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError, TypeError, ValueError) as err:
        raise SNNCheckpointError(f"{path}: inconsistent SNN checkpoint ({err})") from None
    return model, dict(payload.get("meta") or {})
