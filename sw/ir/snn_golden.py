"""Integer golden model of the spiking MLP: the arithmetic the LIF core (hw/lif/core.py) performs, bit for bit.

Everything here is numpy ``int64`` (docs/snn.md has the full definition):

* weights are int8 in [-127, 127], one scale per layer (``max|W| / 127``), pruned neurons' weights are 0;
* a layer's input current at a step is the sum of the weights of the inputs that spiked (event-driven:
  only spikes that occurred are added, one *synaptic operation* each);
* the membrane ``v`` is a signed ``v_width``-bit integer in weight units, saturating;
* leak: ``v - (v >> k)`` (shift, ``beta = 1 - 2**-k``), ``(v * mult) >> frac`` (multiplier) or none,
  with arithmetic (floor) shifts;
* delayed reset as in snnTorch: a neuron that spiked at ``t-1`` loses ``threshold`` (``"subtract"``)
  or its whole membrane (``"zero"``) at ``t``;
* optional refractory period: for ``refractory`` steps after a spike the input is ignored and the
  neuron cannot fire;
* spike when ``v > threshold``; a per-neuron spike counter (``count_width`` bits, saturating);
* readout: a second layer of non-leaking, never-firing neurons (an integrator); the class is the
  argmax of its final membranes, i.e. of ``W2 @ hidden_spike_counts``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from sparsegate.sw.util.atomic_io import atomic_path

__all__ = ["WEIGHT_MAX", "LEAKS", "LifParams", "LayerRun", "SNNRun", "IntSNN", "SNNExportError", "quantize_snn",
           "leak", "lif_update", "event_matmul", "save_int_snn", "load_int_snn"]

WEIGHT_MAX = 127
LEAKS = ("shift", "mult", "none")
MULT_FRAC = 8  # fractional bits of the leak multiplier when beta is not 1 - 2**-k


class SNNExportError(ValueError):
    """An exported integer SNN file is missing, malformed, or inconsistent."""


@dataclass(frozen=True)
class LifParams:
    """Integer parameters of one layer of LIF neurons (shared by all neurons of the layer)."""

    threshold: int
    leak: str = "shift"          # "shift", "mult" or "none"
    leak_shift: int = 4          # leak "shift": v -= v >> leak_shift
    leak_mult: int = 0           # leak "mult": v = (v * leak_mult) >> leak_frac
    leak_frac: int = MULT_FRAC
    reset: str = "subtract"      # "subtract" or "zero"
    refractory: int = 0          # steps without input or spikes after a spike
    v_width: int = 24            # signed membrane width (saturating)
    count_width: int = 16        # unsigned spike-counter width (saturating)

    def __post_init__(self):
        if self.leak not in LEAKS:
            raise ValueError(f"LIF field 'leak' must be one of {LEAKS}, got {self.leak!r}")
        if self.reset not in ("subtract", "zero"):
            raise ValueError(f"LIF field 'reset' must be 'subtract' or 'zero', got {self.reset!r}")
        if not 8 <= self.v_width <= 48:
            raise ValueError(f"LIF field 'v_width' must be in 8..48, got {self.v_width}")
        if not 0 <= self.threshold <= self.v_max:
            raise ValueError(f"LIF field 'threshold' must be in 0..{self.v_max}, got {self.threshold}")
        if self.leak == "shift" and not 1 <= self.leak_shift < self.v_width:
            raise ValueError(f"LIF field 'leak_shift' must be in 1..{self.v_width - 1}, got {self.leak_shift}")
        if self.leak == "mult" and not (0 <= self.leak_mult <= (1 << self.leak_frac) and 1 <= self.leak_frac <= 16):
            raise ValueError(f"LIF fields 'leak_mult'/'leak_frac' must satisfy 0 <= mult <= 2**frac, frac in 1..16, "
                             f"got {self.leak_mult}/{self.leak_frac}")
        if not 0 <= self.refractory <= 255:
            raise ValueError(f"LIF field 'refractory' must be in 0..255, got {self.refractory}")
        if not 1 <= self.count_width <= 32:
            raise ValueError(f"LIF field 'count_width' must be in 1..32, got {self.count_width}")

    @property
    def v_max(self) -> int:
        return (1 << (self.v_width - 1)) - 1

    @property
    def v_min(self) -> int:
        return -(1 << (self.v_width - 1))

    @property
    def count_max(self) -> int:
        return (1 << self.count_width) - 1

    @property
    def refrac_width(self) -> int:
        return max(1, self.refractory.bit_length())

    @property
    def fires(self) -> bool:
        """False for an integrator (threshold at the top of the membrane range: ``v > threshold`` never holds)."""
        return self.threshold < self.v_max

    @classmethod
    def integrator(cls, v_width: int = 24, count_width: int = 16) -> "LifParams":
        """A non-leaking neuron that never fires: its membrane is the running sum of its inputs."""
        return cls(threshold=(1 << (v_width - 1)) - 1, leak="none", v_width=v_width, count_width=count_width)


def leak(v: np.ndarray, p: LifParams) -> np.ndarray:
    """The membrane after one step of decay (int64, floor shifts)."""
    v = np.asarray(v, dtype=np.int64)
    if p.leak == "shift":
        return v - (v >> p.leak_shift)
    if p.leak == "mult":
        return (v * p.leak_mult) >> p.leak_frac
    return v.copy()


def lif_update(v: np.ndarray, fired: np.ndarray, refrac: np.ndarray, current: np.ndarray, p: LifParams,
               enabled: np.ndarray | None = None):
    """One step of a layer: returns ``(v, spike, refrac)``; disabled neurons keep their state and never spike."""
    v = np.asarray(v, dtype=np.int64)
    fired = np.asarray(fired, dtype=bool)
    refrac = np.asarray(refrac, dtype=np.int64)
    current = np.asarray(current, dtype=np.int64)
    in_refrac = refrac > 0
    current = np.where(in_refrac, 0, current)
    if p.reset == "subtract":
        base = leak(v, p) - np.where(fired, p.threshold, 0)
    else:
        base = leak(np.where(fired, 0, v), p)
    new_v = np.clip(base + current, p.v_min, p.v_max)
    spike = (new_v > p.threshold) & ~in_refrac
    new_refrac = np.where(spike, p.refractory, np.maximum(refrac - 1, 0))
    if enabled is not None:
        enabled = np.asarray(enabled, dtype=bool)
        new_v = np.where(enabled, new_v, v)
        spike = spike & enabled
        new_refrac = np.where(enabled, new_refrac, refrac)
    return new_v, spike, new_refrac


def event_matmul(spikes: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``spikes (..., n_in) bool @ weights.T`` for int weights ``(n_out, n_in)``, exactly, as int64.

    The sum of the weights of the inputs that spiked. It runs on float64 BLAS, which is exact here: every
    partial sum is an integer of magnitude at most ``n_in * max|w|``, far below 2**53 (checked).
    """
    weights = np.asarray(weights)
    if spikes.shape[-1] and weights.size and spikes.shape[-1] * int(np.abs(weights).max()) >= 1 << 53:
        raise OverflowError("event_matmul: partial sums could exceed 2**53")
    out = np.asarray(spikes, dtype=np.float64) @ weights.astype(np.float64).T
    return np.rint(out).astype(np.int64)


@dataclass
class LayerRun:
    """What one layer did over a whole inference, per sample."""

    counts: np.ndarray          # (B, n) spike counts (saturating at count_width)
    v: np.ndarray               # (B, n) final membranes
    spikes: np.ndarray | None   # (T, B, n) bool, when traced
    v_trace: np.ndarray | None  # (T, B, n) int64, when traced
    synops: np.ndarray          # (B,) synaptic operations (input spikes x enabled neurons)


@dataclass
class SNNRun:
    hidden: LayerRun
    readout: LayerRun

    @property
    def predictions(self) -> np.ndarray:
        return np.argmax(self.readout.v, axis=1)

    @property
    def synops(self) -> np.ndarray:
        return self.hidden.synops + self.readout.synops


@dataclass
class IntSNN:
    """The integer spiking MLP (weights ``(n_out, n_in)`` int8 in int64 arrays, like ``nn.Linear``)."""

    w1: np.ndarray
    w2: np.ndarray
    hidden: LifParams
    readout: LifParams
    mask: np.ndarray            # (n_hidden,) bool: enabled (not pruned) hidden neurons
    steps: int
    encoding: str = "rate"
    scales: dict = field(default_factory=dict)  # float scales, informative only

    def __post_init__(self):
        self.w1 = np.asarray(self.w1, dtype=np.int64)
        self.w2 = np.asarray(self.w2, dtype=np.int64)
        self.mask = np.asarray(self.mask, dtype=bool)
        h, n_in = self.w1.shape
        if self.w2.shape[1] != h or self.mask.shape != (h,):
            raise ValueError(f"inconsistent integer SNN: w1 {self.w1.shape}, w2 {self.w2.shape}, mask {self.mask.shape}")
        for name, w in (("w1", self.w1), ("w2", self.w2)):
            if w.size and np.abs(w).max() > WEIGHT_MAX:
                raise ValueError(f"integer SNN {name} holds {np.abs(w).max()}, outside int8 [-127, 127]")

    @property
    def n_inputs(self) -> int:
        return self.w1.shape[1]

    @property
    def n_hidden(self) -> int:
        return self.w1.shape[0]

    @property
    def n_outputs(self) -> int:
        return self.w2.shape[0]

    @property
    def alive(self) -> int:
        return int(self.mask.sum())

    def _layer(self, spikes_in: np.ndarray, w: np.ndarray, p: LifParams, enabled: np.ndarray,
               trace: bool) -> LayerRun:
        steps, batch = spikes_in.shape[:2]
        n = w.shape[0]
        v = np.zeros((batch, n), np.int64)
        fired = np.zeros((batch, n), bool)
        refrac = np.zeros((batch, n), np.int64)
        counts = np.zeros((batch, n), np.int64)
        out = np.zeros((steps, batch, n), bool)
        v_trace = np.zeros((steps, batch, n), np.int64) if trace else None
        currents = event_matmul(spikes_in, w)  # (T, B, n)
        for t in range(steps):
            v, fired, refrac = lif_update(v, fired, refrac, currents[t], p, enabled)
            counts = np.minimum(counts + fired, p.count_max)
            out[t] = fired
            if trace:
                v_trace[t] = v
        synops = spikes_in.sum(axis=(0, 2)).astype(np.int64) * int(enabled.sum())
        return LayerRun(counts, v, out if trace else None, v_trace, synops)

    def run(self, spikes: np.ndarray, trace: bool = False, batch_size: int = 500) -> SNNRun:
        """Run whole inferences on input spike trains ``(steps, B, n_inputs)`` (bool)."""
        spikes = np.asarray(spikes, dtype=bool)
        if spikes.ndim != 3 or spikes.shape[2] != self.n_inputs:
            raise ValueError(f"input spikes must be (steps, batch, {self.n_inputs}), got {spikes.shape}")
        parts = []
        for i in range(0, spikes.shape[1], batch_size):
            chunk = spikes[:, i:i + batch_size]
            hidden = self._layer(chunk, self.w1, self.hidden, self.mask, True)
            readout = self._layer(hidden.spikes, self.w2, self.readout,
                                  np.ones(self.n_outputs, bool), trace)
            if not trace:
                hidden.spikes = hidden.v_trace = None
            parts.append(SNNRun(hidden, readout))
        if len(parts) == 1:
            return parts[0]

        def cat(layer: str) -> LayerRun:
            runs = [getattr(p, layer) for p in parts]
            join = lambda name, axis: (None if getattr(runs[0], name) is None
                                       else np.concatenate([getattr(r, name) for r in runs], axis=axis))
            return LayerRun(join("counts", 0), join("v", 0), join("spikes", 1), join("v_trace", 1),
                            join("synops", 0))
        return SNNRun(cat("hidden"), cat("readout"))

    def predict(self, spikes: np.ndarray) -> np.ndarray:
        return self.run(spikes).predictions

    # ------------------------------------------------------------------------------------ sizes
    def weight_bytes(self, pruned: bool = True) -> int:
        """int8 weight memory that must hold real weights: all neurons, or only the enabled ones."""
        h = self.alive if pruned else self.n_hidden
        return h * self.n_inputs + self.n_outputs * h

    def with_mask(self, mask: np.ndarray) -> "IntSNN":
        mask = np.asarray(mask, bool)
        return replace(self, w1=self.w1 * mask[:, None], w2=self.w2 * mask[None, :], mask=mask)


def _leak_params(beta: float) -> dict:
    if beta >= 1.0:
        return {"leak": "none"}
    k = -math.log2(1.0 - beta)
    if abs(k - round(k)) < 1e-9 and 1 <= round(k) <= 20:
        return {"leak": "shift", "leak_shift": int(round(k))}
    return {"leak": "mult", "leak_mult": int(round(beta * (1 << MULT_FRAC))), "leak_frac": MULT_FRAC}


def _quantize_weights(w: np.ndarray) -> tuple[np.ndarray, float]:
    peak = float(np.abs(w).max())
    scale = peak / WEIGHT_MAX if peak > 0 else 1.0
    return np.clip(np.rint(w / scale), -WEIGHT_MAX, WEIGHT_MAX).astype(np.int64), scale


def quantize_snn(model, v_width: int = 24, count_width: int = 16, refractory: int = 0) -> IntSNN:
    """The integer version of a float :class:`~.snn.SpikingMLP`.

    Weights: int8, per-layer scale ``max|W| / 127``. Hidden threshold: ``round(threshold / s1)`` in the
    same units as the membrane. Leak: a shift when ``beta = 1 - 2**-k``, else an 8-fraction-bit multiplier.
    """
    c = model.config
    mask = model.neuron_mask.detach().cpu().numpy().astype(bool)
    w1 = model.fc1.weight.detach().cpu().double().numpy() * mask[:, None]
    w2 = model.fc2.weight.detach().cpu().double().numpy() * mask[None, :]
    w1q, s1 = _quantize_weights(w1)
    w2q, s2 = _quantize_weights(w2)
    threshold = int(round(c.threshold / s1))
    hidden = LifParams(threshold=threshold, reset=c.reset, refractory=refractory, v_width=v_width,
                       count_width=count_width, **_leak_params(c.beta))
    readout = LifParams.integrator(v_width=v_width, count_width=count_width)
    return IntSNN(w1q, w2q, hidden, readout, mask, c.steps, c.encoding, {"w1": s1, "w2": s2})


# -------------------------------------------------------------------------------------------- export

EXPORT_FORMAT = "sparsegate-int-snn"


def save_int_snn(path: str | Path, snn: IntSNN) -> None:
    """Write the integer SNN as one ``.npz`` (weights, mask, parameters as JSON), atomically."""
    import json
    meta = {"format": EXPORT_FORMAT, "version": 1, "hidden": asdict(snn.hidden), "readout": asdict(snn.readout),
            "steps": snn.steps, "encoding": snn.encoding, "scales": snn.scales}
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, w1=snn.w1.astype(np.int8), w2=snn.w2.astype(np.int8), mask=snn.mask,
                                meta=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8))


def load_int_snn(path: str | Path) -> IntSNN:
    import json
    path = Path(path)
    if not path.is_file():
        raise SNNExportError(f"{path}: no such exported SNN file (write one with `sparsegate snn export`)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("w1", "w2", "mask", "meta")}
        meta = json.loads(arrays["meta"].tobytes().decode())
    except KeyError as err:
        raise SNNExportError(f"{path}: exported SNN lacks field {err}") from None
    except Exception as err:
        raise SNNExportError(f"{path}: not a readable exported SNN ({type(err).__name__}: {err})") from None
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        raise SNNExportError(f"{path}: not a sparsegate integer SNN (missing format={EXPORT_FORMAT!r})")
    try:
        return IntSNN(arrays["w1"], arrays["w2"], LifParams(**meta["hidden"]), LifParams(**meta["readout"]),
                      arrays["mask"], int(meta["steps"]), meta.get("encoding", "rate"), meta.get("scales", {}))
    except (KeyError, TypeError, ValueError) as err:
        raise SNNExportError(f"{path}: inconsistent exported SNN ({err})") from None
