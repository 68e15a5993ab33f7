"""The SNN benchmark: spike-count pruning of the 784-800-10 LIF network and its cost on the LIF core.

:func:`run_snn_benchmark` trains the dense SNN, prunes it online to each target, quantizes every network
to the integer model and reports neurons pruned, weight memory, synaptic operations, cycles per time step
and accuracy loss, next to the published anchor (Guo et al., Electronics 2020: 400 of 800 neurons pruned,
2.3x less memory, 1.69% accuracy loss). One pruned network also runs whole inferences on Verilator,
bit-exact with the golden model, for measured cycles. Stages are cached in ``out_dir`` (re-runs resume).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from sparsegate.sw.bench.results import BenchResult, write_results
from sparsegate.sw.ml.data import mnist_embedded
from sparsegate.sw.ml.threads import pinned_threads
from sparsegate.sw.snn.model import SNNConfig, SNNTrainConfig, SpikingMLP, encode, evaluate_snn, load_snn, save_snn, to_pixels, train_snn
from sparsegate.sw.ir.snn_golden import quantize_snn
from sparsegate.sim.lif import DEFAULT_PER_WORD, DEFAULT_UNITS, hidden_cycles_model, simulate_network
from sparsegate.sw.snn.neuron_prune import PruneConfig, prune_snn

__all__ = ["ANCHOR", "run_snn_benchmark", "render_snn_results"]

PRUNE_EPOCHS, PRUNE_SPAN, PRUNE_LR = 16, 5, 2e-3
ANCHOR = {"pruned": 400, "of": 800, "memory_ratio": 2.3, "accuracy_loss": 1.69,
          "source": "Guo et al., Electronics 2020 (reported)"}


def _evaluate(model: SpikingMLP, test_ds, units: int, per_word: int) -> dict:
    labels = test_ds.tensors[1].numpy()
    snn = quantize_snn(model)
    spikes = encode(to_pixels(test_ds.tensors[0]), model.config)
    run = snn.run(spikes)
    cycles = hidden_cycles_model(snn, spikes, units, per_word)
    return {
        "alive": snn.alive,
        "float_accuracy": evaluate_snn(model, test_ds),
        "int_accuracy": float((run.predictions == labels).mean()),
        "weight_bytes": snn.weight_bytes(),
        "synops": float(run.synops.mean()),
        "hidden_spikes": float(run.hidden.counts.sum(axis=1).mean()),
        "cycles_per_step": float(cycles.mean()),
        "threshold": snn.hidden.threshold,
    }


@pinned_threads(1)      # small models: one thread is as fast, and far faster on a shared machine
def run_snn_benchmark(out_dir: str | Path, quick: bool = False, targets: tuple[int, ...] = (400, 480, 560),
                      verilator_samples: int = 20, verilator: bool = True, hw_target: int = 480,
                      progress: bool = False, log=print) -> BenchResult:
    """Run (or resume) the benchmark in ``out_dir``; the report goes to ``snn.md``, its figures to ``snn.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    units, per_word = DEFAULT_UNITS, DEFAULT_PER_WORD
    dense_epochs, prune_epochs, prune_span = (2, 2, 1) if quick else (12, PRUNE_EPOCHS, PRUNE_SPAN)
    if quick:
        targets = targets[:1]
        verilator_samples = min(verilator_samples, 10)
    train_ds, test_ds = mnist_embedded(0)
    start = time.perf_counter()

    dense_path = out / "dense.pt"
    if dense_path.is_file():
        dense, _ = load_snn(dense_path)
        log(f"[snn bench] dense SNN reused from {dense_path}")
    else:
        torch.manual_seed(0)
        dense = SpikingMLP(SNNConfig())
        train_snn(dense, train_ds, SNNTrainConfig(epochs=dense_epochs, progress=progress), test_ds=test_ds)
        save_snn(dense_path, dense)
    rows = {"dense": _evaluate(dense, test_ds, units, per_word)}
    log(f"[snn bench] dense: {rows['dense']}")

    pruned_models = {}
    for target in targets:
        path = out / f"pruned_{target}.pt"
        if path.is_file():
            model, _ = load_snn(path)
        else:
            model, _ = load_snn(dense_path)
            prune_snn(model, train_ds, SNNTrainConfig(epochs=prune_epochs, lr=PRUNE_LR, progress=progress),
                      PruneConfig(target=target, start_epoch=0, end_epoch=prune_span - 1))
            save_snn(path, model)
        pruned_models[target] = model
        rows[f"pruned {target}"] = _evaluate(model, test_ds, units, per_word)
        log(f"[snn bench] pruned {target}: {rows[f'pruned {target}']}")

    hw = None
    if verilator and targets:
        target = hw_target if hw_target in pruned_models else targets[0]
        snn = quantize_snn(pruned_models[target])
        spikes = encode(to_pixels(test_ds.tensors[0][:verilator_samples]), pruned_models[target].config)
        hw = {k: v for k, v in simulate_network(snn, spikes, out / "verilator").items() if not k.startswith("_")}
        hw["target"] = target
        hw["labels"] = test_ds.tensors[1][:verilator_samples].tolist()
        hw["model_cycles"] = hidden_cycles_model(snn, spikes, units, per_word).sum(axis=0).tolist()
        log(f"[snn bench] verilator: {hw['samples']} digits bit-exact, cycles {hw['cycles']}")

    data = {"rows": rows, "verilator": hw, "anchor": ANCHOR, "units": units, "per_word": per_word,
            "wall_time_s": time.perf_counter() - start, "quick": quick}
    return write_results("snn", _markdown(data), data, out)


def render_snn_results(out_dir: str | Path) -> BenchResult:
    """Rewrite ``out_dir/snn.md`` from the figures of a finished run (``out_dir/snn.json``), without re-running."""
    out = Path(out_dir)
    data = json.loads((out / "snn.json").read_text())
    return write_results("snn", _markdown(data), data, out)


def _markdown(data: dict) -> str:
    """The report, from the figures alone (so ``snn.md`` and ``snn.json`` cannot disagree)."""
    rows, hw, quick = data["rows"], data["verilator"], data["quick"]
    units, per_word = data.get("units", DEFAULT_UNITS), data.get("per_word", DEFAULT_PER_WORD)
    dense = rows["dense"]
    lines = [
        "# SNN: spike-count neuron pruning on the LIF core",
        "",
        f"784-800-10 LIF network (T = 16 steps, rate-coded input, beta = 1 - 2^-4), trained on the embedded "
        f"MNIST default (4,000 train / 1,000 test digits){' -- QUICK run, not the real figures' if quick else ''}. "
        f"Accuracy on the 1,000 held-out digits; memory is int8 weight bytes that must hold real weights "
        f"(784 x alive + alive x 10); synaptic operations per inference are counted event-driven (one per "
        f"input spike per enabled neuron, both layers); cycles per step are the hidden core's "
        f"({units} neuron units, {per_word} weights per bank word) from its cycle model, mean over the test set.",
        "",
        "| network | neurons pruned | weight memory | memory saved | synops / inference | cycles / step "
        "| float acc. | int8 acc. | accuracy loss (int8 vs dense float; negative = gain) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in rows.items():
        pruned = 800 - r["alive"]
        lines.append(
            f"| {name} | {pruned} of 800 | {r['weight_bytes'] / 1024:.0f} KiB | "
            f"{dense['weight_bytes'] / r['weight_bytes']:.2f}x | {r['synops'] / 1e3:.0f} k "
            f"({dense['synops'] / r['synops']:.2f}x less) | {r['cycles_per_step']:.0f} | "
            f"{100 * r['float_accuracy']:.2f}% | {100 * r['int_accuracy']:.2f}% | "
            f"{100 * (dense['float_accuracy'] - r['int_accuracy']):+.2f} pt |")
    lines += [
        "",
        f"Anchor ({ANCHOR['source']}): {ANCHOR['pruned']} of {ANCHOR['of']} neurons pruned, "
        f"{ANCHOR['memory_ratio']}x less memory, {ANCHOR['accuracy_loss']}% accuracy loss "
        "(their network, data set and memory accounting, not re-measured here).",
        "",
    ]
    beats = []
    for name, r in rows.items():
        ratio = dense["weight_bytes"] / r["weight_bytes"]
        loss = 100 * (dense["float_accuracy"] - r["int_accuracy"])
        if name != "dense" and ratio > ANCHOR["memory_ratio"] and loss < ANCHOR["accuracy_loss"]:
            beats.append(f"{name} ({ratio:.2f}x less memory at {loss:.2f} pt)")
    lines += [
        ("Beating the anchor (more memory saved at less accuracy loss): " + "; ".join(beats) + ".") if beats
        else "No pruned network here beats the anchor on both memory and accuracy loss.",
        "",
        f"Integer vs float, dense: {100 * dense['int_accuracy']:.2f}% vs {100 * dense['float_accuracy']:.2f}% "
        f"(threshold {dense['threshold']} weight units).",
    ]
    if hw:
        n = hw["samples"]
        mean_cycles = sum(hw["cycles"]) / n
        correct = sum(int(p == y) for p, y in zip(hw["predictions"], hw["labels"]))
        lines += [
            "",
            "## Verilator, whole inferences",
            "",
            f"The pruned-{hw['target']} network on the LifNetwork (source -> hidden core -> readout core), "
            f"{n} test digits, all {hw['steps']} steps each, weights and spike trains preloaded, the hardware "
            f"running free between `start` and `done`: every hidden spike counter and readout membrane "
            f"bit-exact with the golden model; {correct}/{n} classified correctly.",
            "",
            "| figure | value |",
            "| --- | --- |",
            f"| cycles per inference (mean, start to done) | {mean_cycles:,.0f} |",
            f"| cycles per time step | {mean_cycles / hw['steps']:,.0f} |",
            f"| hidden-core rounds per step (max enabled neurons per unit) | {hw['rounds']} |",
            f"| hidden-core cycle model (no clearing, no readout tail) | {sum(hw['model_cycles']) / n:,.0f} "
            f"per inference |",
            f"| Verilator build | {hw['build_s']:.0f} s |",
            f"| Verilator speed | {hw['cycles_per_second'] / 1e3:.0f} k cycles/s "
            f"({hw['run_wall_s']:.2f} s for {sum(hw['cycles']):,} cycles) |",
            "",
            "Build and speed were measured on a shared 2-core machine under load (cocotb's `--public-flat-rw` "
            "build keeps every signal visible, which also slows Verilator down).",
        ]
    return "\n".join(lines) + "\n"
