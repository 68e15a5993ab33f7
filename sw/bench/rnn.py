"""``sparsegate bench --only rnn``: gated-RNN structured sparsification against unstructured pruning, and low-rank
factorization against magnitude pruning, measured side by side in one run.

1. Character-level language model and license-family classification on the offline license corpus
   (:mod:`sparsegate.sw.ml.text_data`; its SHA-256 is printed with the tables): one dense LSTM per task, then every
   method at every target sparsity from that same dense model with the same prune/fine-tune budget —
   ``structured`` (weights + neurons + gate rows), ``neurons`` (weights + neurons), ``weights`` (iterative global
   magnitude) and ``magnitude`` (one shot, same total fine-tuning). Columns: test perplexity/accuracy, kept
   weights, live hidden neurons, live inputs, non-constant gates, and the MACs per step of the zero-skipping
   engine (live weights) and of the dense simplified cell (:class:`SimplifiedLSTM`).
2. Low-rank factorization of LeNet-5 (embedded MNIST): SVD of fc1 and channel decomposition of conv1/conv2 at
   2x/4x/8x on those layers (energy and uniform rank allocation), against global magnitude pruning of the same
   layers to the same number of weights, and both compositions (factorize then prune the factors; prune then
   factorize).
"""
from __future__ import annotations

import copy
import time
from pathlib import Path

import torch

from sparsegate.sw.bench.results import BenchResult, write_results
from sparsegate.sw.ml.threads import pinned_threads

SPARSITIES = (0.6, 0.8, 0.9, 0.95)
METHOD_ORDER = ("structured", "neurons", "weights", "magnitude")
TASK_SETTINGS = {  # hidden, embed, dense epochs, dense lr
    "lm": dict(hidden=128, embed=32, epochs=10, lr=3e-3),
    "classify": dict(hidden=64, embed=16, epochs=10, lr=1e-2),
}


def _lstm_rows(task: str, out: Path, quick: bool, log) -> tuple[str, dict]:
    from sparsegate.sw.prune.lstm_gates import SimplifiedLSTM, evaluate, lstm_table
    from sparsegate.sw.flow.rnn import new_model, prepare_task, run_method, train_dense
    from sparsegate.sw.ml.lstm_model import save_lstm

    torch.manual_seed(0)
    settings = dict(TASK_SETTINGS[task])
    if quick:
        settings.update(hidden=32, embed=8, epochs=2)
    prepared = prepare_task(task)
    corpus = prepared["corpus"]
    dense = new_model(task, prepared, settings["hidden"], settings["embed"])
    info = train_dense(dense, prepared, settings["epochs"], lr=settings["lr"])
    save_lstm(out / task / "dense.pt", dense, meta={"task": task, "corpus_sha256": corpus.sha256})
    dense_test = evaluate(dense, prepared["data"]["test"])
    dense_cell = SimplifiedLSTM(dense)
    metric = "perplexity" if task == "lm" else "accuracy"
    log(f"[rnn {task}] dense: val {info['val'][metric]:.4g}, test {dense_test[metric]:.4g} "
        f"[{info['wall_time_s']:.0f} s]")
    h = settings["hidden"]
    results = {"settings": settings, "dense": {"val": info["val"], "test": dense_test,
                                               "table": lstm_table(dense).to_dict()}, "runs": []}
    head = (f"| method | target | test {'perplexity (bpc)' if task == 'lm' else 'accuracy'} | weights kept "
            f"| hidden neurons | inputs | non-constant gates | constant i/f/g/o | MACs/step: live weights "
            f"| simplified dense cell | time (s) |")
    rows = [head, "|" + "---|" * 11]

    def fmt(m):
        return f"{m['perplexity']:.3f} ({m['bpc']:.3f})" if task == "lm" else f"{100 * m['accuracy']:.1f}%"

    dense_w = sum(r["weights"] for r in results["dense"]["table"]["layers"] if r["kind"] != "emb")
    rows.append(f"| dense | 0 | {fmt(dense_test)} | {dense_w:,} | {h}/{h} | {settings['embed']}/{settings['embed']} "
                f"| {4 * h}/{4 * h} | 0/0/0/0 | {dense_w:,} | {dense_cell.macs_per_step():,} | "
                f"{info['wall_time_s']:.0f} |")
    best_tables = {}
    sparsities = SPARSITIES[1:3] if quick else SPARSITIES
    rounds = 2 if quick else 4
    for sparsity in sparsities:
        for method in METHOD_ORDER:
            clock = time.perf_counter()
            model, masks, summary = run_method(dense, prepared, method, sparsity, rounds=rounds)
            wall = time.perf_counter() - clock
            s = summary["structure"]
            cell = SimplifiedLSTM(model, masks)
            table = summary["table"]
            c = s["constant_gates"]
            rows.append(f"| {method} | {sparsity:g} | {fmt(summary['test'])} | {summary['kept_weights']:,} "
                        f"| {s['live_hidden']}/{s['hidden']} | {s['live_inputs']}/{s['inputs']} "
                        f"| {s['nonconstant_gates']}/{s['gates']} | {c['i']}/{c['f']}/{c['g']}/{c['o']} "
                        f"| {table['total']['macs']:,} | {cell.macs_per_step():,} | {wall:.0f} |")
            summary.update(simplified_macs_per_step=cell.macs_per_step(), wall_s=wall)
            results["runs"].append(summary)
            log(f"[rnn {task}] {method} {sparsity:g}: test {summary['test'][metric]:.4g}, neurons "
                f"{s['live_hidden']}/{s['hidden']}, gates {s['nonconstant_gates']}/{s['gates']} [{wall:.0f} s]")
            if method == "structured":
                best_tables[sparsity] = (model, masks, s)
    sparsest = max(best_tables)
    model, masks, s = best_tables[sparsest]
    from sparsegate.sw.prune.counting import LayerTable
    title = "character-level language model" if task == "lm" else "license-family classification"
    text = [f"### {title} (`{task}`)\n",
            f"One-layer LSTM, {settings['embed']}-dim embedding, {h} hidden units; dense: {settings['epochs']} epochs. "
            f"Every method starts from the same dense model and gets the same budget: {rounds} prune rounds x 1 "
            f"fine-tune epoch (magnitude: one shot, then {rounds} epochs). \"weights kept\" counts `W_x`, `W_h`, `W_out`; "
            f"MACs per time step.\n", "\n".join(rows), "",
            f"Per-layer table, `structured` at {sparsest:g} (`lstm_table`):\n",
            LayerTable.from_dict(lstm_table(model, masks).to_dict()).to_markdown(),
            f"Constant-gate patterns of the live neurons (which of i/f/g/o are constant: neuron count): "
            f"{s['constant_patterns']}; constant gates by neuron: "
            + "; ".join(f"{g}: {sorted(v)}" for g, v in s["constant_by_gate"].items() if v) + ".\n"]
    return "\n".join(text), results


def _lowrank_rows(out: Path, quick: bool, log) -> tuple[str, dict]:
    from sparsegate.sw.prune.counting import layer_table
    from sparsegate.sw.ml.data import load_dataset
    from sparsegate.sw.prune.lowrank import choose_ranks, lowrank_prune
    from sparsegate.sw.prune.masks import apply_masks, global_magnitude_masks
    from sparsegate.sw.ml.models import build_model, prunable_layers
    from sparsegate.sw.prune.iterative import VAL_SIZE, FineTuneConfig, accuracy, finetune, split_validation
    from sparsegate.sw.ml.train import TrainConfig, train

    train_ds, test_ds = load_dataset("mnist5k", None, 0)
    fit_ds, val_ds = split_validation(train_ds, VAL_SIZE, 0)
    torch.manual_seed(0)
    base = build_model("lenet5")
    clock = time.perf_counter()
    train(base, fit_ds, TrainConfig(epochs=1 if quick else 4, seed=0, progress=False))
    base_acc = accuracy(base, test_ds)
    log(f"[rnn lowrank] LeNet-5 dense: test {base_acc:.4f} [{time.perf_counter() - clock:.0f} s]")
    layers = ["conv1", "conv2", "fc1"]
    mods = prunable_layers(base)
    dense_w = sum(mods[n].weight.numel() for n in layers)
    base_table = layer_table(base)
    ft = FineTuneConfig(epochs=1 if quick else 2, seed=0)
    rows = ["| method | target (on conv1, conv2, fc1) | ranks | weights kept (those layers) | params kept (network) "
            "| MACs | test acc. before fine-tune | test acc. | time (s) |", "|" + "---|" * 9,
            f"| dense | 1x | — | {dense_w:,} | {base_table.total.params:,} | {base_table.total.macs:,} | — "
            f"| {100 * base_acc:.2f}% | — |"]
    results = {"base_test_accuracy": base_acc, "runs": []}

    def record(name, target, ranks, kept, model, masks, before, wall):
        t = layer_table(model, masks).total
        acc = accuracy(model, test_ds)
        rows.append(f"| {name} | {target} | {ranks or '—'} | {kept:,} ({dense_w / max(kept, 1):.1f}x) "
                    f"| {t.nonzero_params:,} ({base_table.total.params / t.nonzero_params:.1f}x) | {t.macs:,} "
                    f"| {100 * before:.2f}% | {100 * acc:.2f}% | {wall:.0f} |")
        results["runs"].append({"method": name, "target": target, "ranks": ranks, "kept": kept,
                                "nonzero_params": t.nonzero_params, "macs": t.macs, "test_before": before,
                                "test_accuracy": acc})
        log(f"[rnn lowrank] {name} {target}: test {acc:.4f} [{wall:.0f} s]")

    targets = (4.0,) if quick else (2.0, 4.0, 8.0)
    kept_at = {}
    table_md = ""
    for target in targets:
        for allocation in ("energy", "uniform"):
            model = copy.deepcopy(base)
            clock = time.perf_counter()
            res = lowrank_prune(model, fit_ds, val_ds, target, allocation, ft, layers=layers)
            record(f"low rank ({allocation})", f"{target:g}x", res.ranks, res.factorized_weights, model, res.masks,
                   _test_before(base, res.ranks, test_ds), time.perf_counter() - clock)
            if allocation == "energy":
                kept_at[target] = res.factorized_weights
                if target == 4.0:
                    table_md = layer_table(model, res.masks).to_markdown()
        model = copy.deepcopy(base)
        clock = time.perf_counter()
        masks = global_magnitude_masks(model, 1 - kept_at[target] / dense_w, layers=layers)
        apply_masks(model, masks)
        before = accuracy(model, test_ds)
        finetune(model, fit_ds, masks, ft, 0)
        record("global magnitude (same layers)", f"{target:g}x", None, sum(int(masks[f'{n}.weight'].sum()) for n in layers),
               model, masks, before, time.perf_counter() - clock)
    # compositions at 4x
    model = copy.deepcopy(base)
    clock = time.perf_counter()
    res = lowrank_prune(model, fit_ds, val_ds, 4.0, "energy", ft, layers=layers, sparsity=0.5)
    kept = sum(int(v.sum()) for k, v in res.masks.items() if k.split(".")[0] in layers)
    record("low rank 4x, then factors pruned 50%", "8x", res.ranks, kept, model, res.masks,
           _test_before(base, res.ranks, test_ds), time.perf_counter() - clock)
    model = copy.deepcopy(base)
    clock = time.perf_counter()
    masks = global_magnitude_masks(model, 0.5, layers=layers)
    apply_masks(model, masks)
    finetune(model, fit_ds, masks, ft, 0)
    ranks = choose_ranks(model, 4.0, layers, "energy")
    before = _test_before(model, ranks, test_ds, masks)
    res = lowrank_prune(model, fit_ds, val_ds, 4.0, "energy", ft, masks=masks, layers=layers, ranks=ranks)
    record("pruned 50%, then low rank 4x", "4x", res.ranks, res.factorized_weights, model, res.masks,
           before, time.perf_counter() - clock)
    text = ["### Low-rank factorization of LeNet-5 (embedded MNIST)\n",
            f"LeNet-5 trained {1 if quick else 4} epochs on 3,500 digits (500 held out for validation), tested on "
            f"the 1,000 test digits; conv1/conv2 by channel decomposition, fc1 by SVD, fc2 left dense; "
            f"{ft.epochs} fine-tune epochs after each factorization or pruning. \"test acc. before fine-tune\" is "
            f"right after the SVD truncation (or the magnitude cut).\n", "\n".join(rows), "",
            "Per-layer table of the 4x energy-allocated factorization (`layer_table`; rows `*.first`/`*.second` "
            "are the two factors):\n", table_md]
    return "\n".join(text), results


def _test_before(base, ranks, test_ds, masks=None) -> float:
    """Test accuracy right after factorizing a copy of ``base`` (no fine-tuning)."""
    from sparsegate.sw.prune.lowrank import factorize
    from sparsegate.sw.prune.iterative import accuracy

    return accuracy(factorize(copy.deepcopy(base), ranks, masks), test_ds)


@pinned_threads(1)      # small models: one thread is as fast, and far faster on a shared machine
def run_rnn_benchmark(out_dir, quick: bool = False, log=print) -> BenchResult:
    """Run both parts; write ``rnn.md`` and ``rnn.json`` with its figures into ``out_dir``."""
    from sparsegate.sw.ml.text_data import load_corpus

    out = Path(out_dir)
    corpus = load_corpus()
    summary = corpus.summary()
    parts = [f"Corpus: {len(summary['files'])} license texts from `{summary['root']}` ({summary['chars']:,} "
             f"characters, vocabulary {summary['vocab_size']}), SHA-256 `{summary['sha256']}`; fixed split by "
             f"{summary['block']}-character blocks: {summary['split_chars']['train']:,} / "
             f"{summary['split_chars']['val']:,} / {summary['split_chars']['test']:,} characters train/val/test.\n"]
    results = {"corpus": summary}
    for task in ("lm", "classify"):
        md, res = _lstm_rows(task, out, quick, log)
        parts.append(md)
        results[task] = res
    md, res = _lowrank_rows(out, quick, log)
    parts.append(md)
    results["lowrank"] = res
    return write_results("rnn", "\n".join(parts), results, out)
