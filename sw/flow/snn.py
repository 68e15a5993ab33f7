"""The spiking-network jobs on the embedded MNIST default, each writing its outputs and returning a typed result:

* :func:`train_job`: a 784-H-10 LIF network (surrogate gradients) -> ``OUT/snn.pt``, ``OUT/train.json``;
* :func:`prune_job`: spike-count pruning of a trained checkpoint, online while fine-tuning -> ``OUT/snn.pt``,
  ``OUT/prune.json``;
* :func:`export_job`: the integer model (``.npz``, a ``.json`` summary beside it) and its accuracy next to
  the float one;
* :func:`simulate_job`: whole inferences of test digits on the LIF core under Verilator, bit-exact with the
  integer model (a mismatch raises ``SimulationFailed``), with cycle counts -> ``OUT/simulate.json``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from sparsegate.sw.ir.snn_golden import load_int_snn, quantize_snn, save_int_snn
from sparsegate.sw.ml.data import mnist_embedded
from sparsegate.sw.snn.model import (SNNConfig, SNNTrainConfig, SpikingMLP, encode, evaluate_snn, load_snn, save_snn,
                                     to_pixels, train_snn)
from sparsegate.sw.snn.neuron_prune import PruneConfig, prune_snn
from sparsegate.sw.util.atomic_io import write_json


class SnnJobError(ValueError):
    """An impossible SNN request (epochs, sample count)."""


@dataclass
class SnnTrainResult:
    config: SNNConfig
    test_accuracy: float
    wall_time_s: float
    checkpoint: Path


@dataclass
class SnnPruneResult:
    pruned: int
    hidden: int
    accuracy_before: float
    accuracy_after: float
    checkpoint: Path


@dataclass
class SnnExportResult:
    float_accuracy: float
    int_accuracy: float
    alive: int
    hidden: int
    threshold: int
    model: Path


@dataclass
class SnnSimulationResult:
    samples: int
    correct: int
    steps: int
    cycles_per_step: float  # mean over the samples
    cycles_per_second: float
    report: Path


def train_job(out: Path, *, epochs: int = 12, lr: float = 2e-3, config: SNNConfig | None = None, seed: int = 0,
              progress: bool = True) -> SnnTrainResult:
    config = config or SNNConfig()
    if epochs < 1:
        raise SnnJobError(f"--epochs must be at least 1, got {epochs}")
    train_ds, test_ds = mnist_embedded(seed)
    torch.manual_seed(seed)
    model = SpikingMLP(config)
    result = train_snn(model, train_ds, SNNTrainConfig(epochs=epochs, lr=lr, seed=seed, progress=progress),
                       test_ds=test_ds)
    out = Path(out)
    save_snn(out / "snn.pt", model, meta={"test_accuracy": result.test_accuracy, "seed": seed})
    write_json(out / "train.json", {"config": asdict(config), "test_accuracy": result.test_accuracy,
                                    "history": result.history, "wall_time_s": result.wall_time_s})
    return SnnTrainResult(config=config, test_accuracy=result.test_accuracy, wall_time_s=result.wall_time_s,
                          checkpoint=out / "snn.pt")


def prune_job(checkpoint: Path, out: Path, *, target: int = 400, epochs: int = 16, prune_epochs: int = 5,
              lr: float = 2e-3, seed: int = 0, progress: bool = True) -> SnnPruneResult:
    """Prune ``target`` hidden neurons of a trained network over its first ``prune_epochs`` fine-tune epochs."""
    model, meta = load_snn(checkpoint)
    if epochs < 1:
        raise SnnJobError(f"--epochs must be at least 1, got {epochs}")
    prune = PruneConfig(target=target, start_epoch=0, end_epoch=max(0, min(prune_epochs, epochs) - 1))
    prune.check(model.config.n_hidden, epochs)
    train_ds, test_ds = mnist_embedded(seed)
    before = evaluate_snn(model, test_ds)
    result, pruner = prune_snn(model, train_ds, SNNTrainConfig(epochs=epochs, lr=lr, seed=seed, progress=progress),
                               prune, test_ds)
    after = result.test_accuracy
    out = Path(out)
    save_snn(out / "snn.pt", model, meta={**meta, "test_accuracy": after, "pruned": target})
    write_json(out / "prune.json", {"accuracy_before": before, "accuracy_after": after, "pruned": target,
                                    "alive": model.alive, "history": result.history,
                                    "pruning_events": pruner.history})
    return SnnPruneResult(pruned=target, hidden=model.config.n_hidden, accuracy_before=before, accuracy_after=after,
                          checkpoint=out / "snn.pt")


def export_job(checkpoint: Path, out: Path, *, refractory: int = 0, v_width: int = 24) -> SnnExportResult:
    """Quantize to the integer model, write it to ``out`` (``.npz``) and compare accuracies on the test digits."""
    model, _ = load_snn(checkpoint)
    snn = quantize_snn(model, v_width=v_width, refractory=refractory)
    _, test_ds = mnist_embedded(0)
    float_acc = evaluate_snn(model, test_ds)
    spikes = encode(to_pixels(test_ds.tensors[0]), model.config)
    int_acc = float((snn.predict(spikes) == test_ds.tensors[1].numpy()).mean())
    out = Path(out)
    save_int_snn(out, snn)
    write_json(out.with_suffix(".json"), {"float_accuracy": float_acc, "int_accuracy": int_acc, "alive": snn.alive,
                                          "hidden": asdict(snn.hidden), "weight_bytes": snn.weight_bytes(),
                                          "weight_bytes_dense": snn.weight_bytes(pruned=False)})
    return SnnExportResult(float_accuracy=float_acc, int_accuracy=int_acc, alive=snn.alive, hidden=snn.n_hidden,
                           threshold=snn.hidden.threshold, model=out)


def simulate_job(model: Path, out: Path, *, samples: int = 10, units: int | None = None,
                 per_word: int | None = None, seed: int = 0) -> SnnSimulationResult:
    """Run the first ``samples`` test digits through the LIF core on Verilator (built under ``out``)."""
    from sparsegate.sim.lif import DEFAULT_PER_WORD, DEFAULT_UNITS, simulate_network

    snn = load_int_snn(model)
    if not 1 <= samples <= 1000:
        raise SnnJobError(f"--samples must be in 1..1000, got {samples}")
    _, test_ds = mnist_embedded(0)
    config = SNNConfig(n_inputs=snn.n_inputs, n_hidden=snn.n_hidden, n_outputs=snn.n_outputs, steps=snn.steps,
                       encoding=snn.encoding)
    spikes = encode(to_pixels(test_ds.tensors[0][:samples]), config)
    out = Path(out)
    result = simulate_network(snn, spikes, out, units=units or DEFAULT_UNITS, per_word=per_word or DEFAULT_PER_WORD,
                              seed=seed)
    labels = test_ds.tensors[1][:samples].tolist()
    write_json(out / "simulate.json", {k: v for k, v in result.items() if not k.startswith("_")})
    return SnnSimulationResult(samples=samples, correct=sum(int(p == y) for p, y in zip(result["predictions"], labels)),
                               steps=snn.steps, cycles_per_step=sum(result["cycles"]) / len(result["cycles"]) / snn.steps,
                               cycles_per_second=result["cycles_per_second"], report=out / "simulate.json")
