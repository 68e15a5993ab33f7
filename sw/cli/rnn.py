"""``sparsegate rnn``: train a small LSTM on the offline license corpus and sparsify it (weights, neurons,
gate preactivations — :mod:`sparsegate.sw.prune.lstm_gates`), or prune it by magnitude (the unstructured
baseline)::

    sparsegate rnn --task lm --method structured --target-sparsity 0.8 --out runs/rnn-lm
    sparsegate rnn --task lm --method weights --target-sparsity 0.8 --checkpoint runs/rnn-lm/dense.pt --out runs/w

Tasks: ``lm`` (character-level language model; perplexity and bits per character) and ``classify`` (license
family of a text snippet; accuracy), both from :mod:`sparsegate.sw.ml.text_data` with its fixed split; every
decision and the printed validation numbers use the validation split, the test split is reported once at the
end. Without ``--checkpoint`` the dense model is trained first and written as ``dense.pt`` (reuse it for
further methods). Outputs: ``lstm.pt`` (weights + masks), the per-layer table (``layers.json``/``.md``, MACs
per time step), ``gates.json`` (which gates of which neurons became constant) and ``rnn.json`` (summary, with
the corpus SHA-256). :func:`prepare_task`, :func:`train_dense` and :func:`run_method` are the Python API.
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
from torch import nn

from sparsegate.sw.util.atomic_io import atomic_path, write_json, write_text

TASKS = ("lm", "classify")
LSTM_FORMAT = "sparsegate-lstm"
LSTM_VERSION = 1


def prepare_task(task: str, root=None, seq_len: int = 64, snippet: int = 96) -> dict:
    """Corpus and datasets of ``task``: ``{"corpus", "data": {train, val, test}, "classes"}``."""
    from sparsegate.sw.ml.text_data import LICENSE_DIR, TextDataError, char_lm_data, license_classification_data, load_corpus

    if task not in TASKS:
        raise TextDataError(f"task: expected one of {list(TASKS)}, got {task!r}")
    corpus = load_corpus(root or LICENSE_DIR)
    if task == "lm":
        return {"corpus": corpus, "data": char_lm_data(corpus, seq_len), "classes": list(corpus.vocab)}
    data, classes = license_classification_data(corpus, snippet)
    return {"corpus": corpus, "data": data, "classes": classes}


def new_model(task: str, prepared: dict, hidden: int = 128, embed: int = 32, seed: int = 0) -> nn.Module:
    from sparsegate.sw.ml.lstm_model import CharLSTM, LSTMClassifier

    torch.manual_seed(seed)
    vocab = len(prepared["corpus"].vocab)
    return CharLSTM(vocab, embed, hidden) if task == "lm" else LSTMClassifier(vocab, len(prepared["classes"]), embed,
                                                                               hidden)


def train_dense(model: nn.Module, prepared: dict, epochs: int, lr: float = 3e-3, seed: int = 0) -> dict:
    from sparsegate.sw.prune.lstm_gates import LSTMTrainConfig, evaluate, train_lstm

    start = time.perf_counter()
    history = train_lstm(model, prepared["data"]["train"], LSTMTrainConfig(epochs=epochs, lr=lr, seed=seed))
    return {"history": history, "val": evaluate(model, prepared["data"]["val"]), "wall_time_s": time.perf_counter() - start}


def save_lstm(path, model: nn.Module, masks: dict | None = None, meta: dict | None = None) -> None:
    payload = {"format": LSTM_FORMAT, "version": LSTM_VERSION, "config": model.config(),
               "state_dict": model.state_dict(), "masks": {k: v.bool() for k, v in (masks or {}).items()},
               "meta": meta or {}}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_lstm(path) -> tuple[nn.Module, dict, dict]:
    from sparsegate.sw.ml.lstm_model import build_lstm
    from sparsegate.sw.ml.train import CheckpointError, check_masks, load_envelope

    payload = load_envelope(path, LSTM_FORMAT, LSTM_VERSION, "LSTM checkpoint", CheckpointError)
    try:
        model = build_lstm(payload["config"])
        model.load_state_dict(payload["state_dict"])
        check_masks(model, payload["masks"])
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{path}: inconsistent LSTM checkpoint ({err})") from None
    return model, payload["masks"], payload["meta"]


def run_method(dense: nn.Module, prepared: dict, method: str, target_sparsity: float, rounds: int = 4,
               finetune_epochs: int = 1, lr: float = 2e-3, group_bias: float = 1.0, seed: int = 0,
               masks: dict | None = None) -> tuple[nn.Module, dict, dict]:
    """Sparsify a copy of ``dense``; returns (model, masks, summary with validation and test metrics, the
    per-layer table and the gate report)."""
    from sparsegate.sw.prune.lstm_gates import LSTMTrainConfig, SparsifyConfig, evaluate, lstm_table, sparsify

    model = copy.deepcopy(dense)
    data = prepared["data"]
    config = SparsifyConfig(target_sparsity=target_sparsity, rounds=rounds, group_bias=group_bias,
                            finetune=LSTMTrainConfig(epochs=finetune_epochs, lr=lr, seed=seed + 1))
    res = sparsify(model, data["train"], data["val"], method, config, masks)
    summary = res.summary()
    summary.update(test=evaluate(model, data["test"]), table=lstm_table(model, res.masks).to_dict())
    return model, res.masks, summary


def configure(parser: argparse.ArgumentParser) -> None:
    from sparsegate.sw.prune.lstm_gates import METHODS

    parser.add_argument("--task", choices=TASKS, default="lm", help="lm: character LM; classify: license family")
    parser.add_argument("--method", choices=tuple(METHODS), default="structured",
                        help="structured (weights+neurons+gates), neurons (weights+neurons), weights (L1), "
                             "magnitude (unstructured baseline)")
    parser.add_argument("--target-sparsity", type=float, required=True,
                        help="fraction of the LSTM and read-out weights to remove, in [0, 1)")
    parser.add_argument("--rounds", type=int, default=4, help="prune/fine-tune rounds")
    parser.add_argument("--group-bias", type=float, default=1.0,
                        help="a neuron/gate group goes when its RMS is below this times the weight threshold")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--checkpoint", type=Path, default=None, help="a dense.pt/lstm.pt to start from")
    parser.add_argument("--corpus", type=Path, default=None, help="license-text folder (default /usr/share/common-licenses)")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--embed", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=64, help="lm: characters per training window")
    parser.add_argument("--snippet", type=int, default=96, help="classify: characters per snippet")
    parser.add_argument("--epochs", type=int, default=8, help="dense training epochs (without --checkpoint)")
    parser.add_argument("--finetune-epochs", type=int, default=1, help="fine-tune epochs per round")
    parser.add_argument("--lr", type=float, default=2e-3, help="fine-tune learning rate")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from sparsegate.sw.cli.main import CliError
    from sparsegate.sw.prune.lstm_gates import evaluate

    for name in ("hidden", "embed", "seq_len", "snippet"):
        if getattr(args, name) < 2:
            raise CliError(f"--{name.replace('_', '-')} must be >= 2, got {getattr(args, name)}")
    for name in ("epochs", "finetune_epochs"):
        if getattr(args, name) < 0:
            raise CliError(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    out = Path(args.out)
    masks = None
    if args.checkpoint is not None:
        dense, masks, meta = load_lstm(args.checkpoint)
        if dense.kind != args.task:
            raise CliError(f"{args.checkpoint}: a {dense.kind!r} model, but --task is {args.task!r}")
    prepared = prepare_task(args.task, args.corpus, args.seq_len, args.snippet)
    corpus = prepared["corpus"]
    if args.checkpoint is None:
        dense = new_model(args.task, prepared, args.hidden, args.embed, args.seed)
        info = train_dense(dense, prepared, args.epochs, seed=args.seed)
        save_lstm(out / "dense.pt", dense, meta={"task": args.task, "corpus_sha256": corpus.sha256, **info})
        print(f"dense {args.task}: {info['val']} [{info['wall_time_s']:.0f} s]")
    elif meta.get("corpus_sha256") not in (None, corpus.sha256):
        print(f"warning: {args.checkpoint} was trained on corpus {meta['corpus_sha256'][:12]}, this one is "
              f"{corpus.sha256[:12]}")
    dense_val, dense_test = evaluate(dense, prepared["data"]["val"]), evaluate(dense, prepared["data"]["test"])
    model, new_masks, summary = run_method(dense, prepared, args.method, args.target_sparsity, args.rounds,
                                           args.finetune_epochs, args.lr, args.group_bias, args.seed, masks)
    from sparsegate.sw.prune.counting import LayerTable
    table = LayerTable.from_dict(summary["table"])
    summary.update(task=args.task, corpus=corpus.summary(), dense_val=dense_val, dense_test=dense_test,
                   options={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"})
    save_lstm(out / "lstm.pt", model, new_masks,
              meta={"task": args.task, "method": args.method, "corpus_sha256": corpus.sha256})
    metric = "perplexity" if args.task == "lm" else "accuracy"
    s = summary["structure"]
    header = (f"# LSTM {args.task}, {args.method} (target sparsity {args.target_sparsity:g})\n\n"
              f"Test {metric} {summary['test'][metric]:.4g} (dense {dense_test[metric]:.4g}); weights kept "
              f"{summary['kept_weights']:,}/{summary['total_weights']:,}; hidden neurons {s['live_hidden']}/{s['hidden']}; "
              f"non-constant gates {s['nonconstant_gates']}/{s['gates']} (constant: {s['constant_gates']}); "
              f"corpus sha256 {corpus.sha256[:16]}. MACs are per time step.\n\n")
    write_text(out / "layers.md", header + table.to_markdown())
    write_json(out / "layers.json", summary["table"])
    write_json(out / "gates.json", s)
    write_json(out / "rnn.json", summary)
    print(f"{args.task} {args.method} {args.target_sparsity:g}: test {metric} {summary['test'][metric]:.4g} "
          f"(dense {dense_test[metric]:.4g}), weights {summary['kept_weights']:,}/{summary['total_weights']:,}, "
          f"neurons {s['live_hidden']}/{s['hidden']}, non-constant gates {s['nonconstant_gates']}/{s['gates']} "
          f"{s['constant_gates']}")
    print(f"outputs: {out}")
    return 0

