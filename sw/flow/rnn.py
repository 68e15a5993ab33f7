"""The gated-RNN job: a small LSTM trained on the offline license corpus and sparsified (weights, neurons,
gate preactivations — :mod:`sparsegate.sw.prune.lstm_gates`) or pruned by magnitude (the unstructured
baseline).

Tasks: ``lm`` (character-level language model; perplexity and bits per character) and ``classify`` (license
family of a text snippet; accuracy), both from :mod:`sparsegate.sw.ml.text_data` with its fixed split; every
decision uses the validation split, the test split is reported once at the end. :func:`prepare_task`,
:func:`new_model`, :func:`train_dense` and :func:`run_method` are the steps; :func:`rnn_job` runs them and
writes ``dense.pt`` (when it trained one), ``lstm.pt``, ``layers.json``/``.md`` (MACs per time step),
``gates.json`` (which gates of which neurons became constant) and ``rnn.json`` (summary, with the corpus
SHA-256).
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from sparsegate.sw.ml.lstm_model import CharLSTM, LSTMClassifier, load_lstm, save_lstm
from sparsegate.sw.ml.text_data import (LICENSE_DIR, TextDataError, char_lm_data, license_classification_data,
                                        load_corpus)
from sparsegate.sw.prune.counting import LayerTable
from sparsegate.sw.prune.lstm_gates import LSTMTrainConfig, SparsifyConfig, evaluate, lstm_table, sparsify, train_lstm
from sparsegate.sw.util.atomic_io import write_json, write_text

TASKS = ("lm", "classify")


class RnnJobError(ValueError):
    """An impossible RNN request (sizes, epochs, a checkpoint of the other task)."""


def prepare_task(task: str, root=None, seq_len: int = 64, snippet: int = 96) -> dict:
    """Corpus and datasets of ``task``: ``{"corpus", "data": {train, val, test}, "classes"}``."""
    if task not in TASKS:
        raise TextDataError(f"task: expected one of {list(TASKS)}, got {task!r}")
    corpus = load_corpus(root or LICENSE_DIR)
    if task == "lm":
        return {"corpus": corpus, "data": char_lm_data(corpus, seq_len), "classes": list(corpus.vocab)}
    data, classes = license_classification_data(corpus, snippet)
    return {"corpus": corpus, "data": data, "classes": classes}


def new_model(task: str, prepared: dict, hidden: int = 128, embed: int = 32, seed: int = 0) -> nn.Module:
    """A fresh model for ``task`` sized for the prepared corpus, its weights drawn from ``seed``."""
    torch.manual_seed(seed)
    vocab = len(prepared["corpus"].vocab)
    return CharLSTM(vocab, embed, hidden) if task == "lm" else LSTMClassifier(vocab, len(prepared["classes"]), embed,
                                                                               hidden)


def train_dense(model: nn.Module, prepared: dict, epochs: int, lr: float = 3e-3, seed: int = 0) -> dict:
    """Train the dense model on the training split: ``{"history", "val", "wall_time_s"}``."""
    start = time.perf_counter()
    history = train_lstm(model, prepared["data"]["train"], LSTMTrainConfig(epochs=epochs, lr=lr, seed=seed))
    return {"history": history, "val": evaluate(model, prepared["data"]["val"]), "wall_time_s": time.perf_counter() - start}


def run_method(dense: nn.Module, prepared: dict, method: str, target_sparsity: float, rounds: int = 4,
               finetune_epochs: int = 1, lr: float = 2e-3, group_bias: float = 1.0, seed: int = 0,
               masks: dict | None = None) -> tuple[nn.Module, dict, dict]:
    """Sparsify a copy of ``dense``; returns (model, masks, summary with validation and test metrics, the
    per-layer table and the gate report)."""
    model = copy.deepcopy(dense)
    data = prepared["data"]
    config = SparsifyConfig(target_sparsity=target_sparsity, rounds=rounds, group_bias=group_bias,
                            finetune=LSTMTrainConfig(epochs=finetune_epochs, lr=lr, seed=seed + 1))
    res = sparsify(model, data["train"], data["val"], method, config, masks)
    summary = res.summary()
    summary.update(test=evaluate(model, data["test"]), table=lstm_table(model, res.masks).to_dict())
    return model, res.masks, summary


@dataclass
class RnnResult:
    """An RNN job: the dense model's numbers, the sparsified model's summary (``rnn.json``), the outputs."""

    task: str
    method: str
    target_sparsity: float
    metric: str  # "perplexity" (lm) or "accuracy" (classify)
    dense_test: dict
    summary: dict
    out: Path
    dense_trained: dict | None = None  # train_dense's result when no checkpoint was given
    warnings: list[str] = field(default_factory=list)


def rnn_job(task: str, method: str, target_sparsity: float, out: Path, *, checkpoint: Path | None = None,
            corpus: Path | None = None, rounds: int = 4, group_bias: float = 1.0, hidden: int = 128,
            embed: int = 32, seq_len: int = 64, snippet: int = 96, epochs: int = 8, finetune_epochs: int = 1,
            lr: float = 2e-3, seed: int = 0, options: dict | None = None) -> RnnResult:
    """Train (or load ``checkpoint``) the dense model of ``task``, sparsify it with ``method`` and write the
    outputs under ``out``; ``options`` is recorded in ``rnn.json`` as the run's settings."""
    for name, value in (("hidden", hidden), ("embed", embed), ("seq-len", seq_len), ("snippet", snippet)):
        if value < 2:
            raise RnnJobError(f"--{name} must be >= 2, got {value}")
    for name, value in (("epochs", epochs), ("finetune-epochs", finetune_epochs)):
        if value < 0:
            raise RnnJobError(f"--{name} must be >= 0, got {value}")
    out = Path(out)
    masks, meta, warnings, dense_trained = None, {}, [], None
    if checkpoint is not None:
        dense, masks, meta = load_lstm(checkpoint)
        if dense.kind != task:
            raise RnnJobError(f"{checkpoint}: a {dense.kind!r} model, but --task is {task!r}")
    prepared = prepare_task(task, corpus, seq_len, snippet)
    text = prepared["corpus"]
    if checkpoint is None:
        dense = new_model(task, prepared, hidden, embed, seed)
        dense_trained = train_dense(dense, prepared, epochs, seed=seed)
        save_lstm(out / "dense.pt", dense, meta={"task": task, "corpus_sha256": text.sha256, **dense_trained})
    elif meta.get("corpus_sha256") not in (None, text.sha256):
        warnings.append(f"{checkpoint} was trained on corpus {meta['corpus_sha256'][:12]}, this one is "
                        f"{text.sha256[:12]}")
    dense_val, dense_test = evaluate(dense, prepared["data"]["val"]), evaluate(dense, prepared["data"]["test"])
    model, new_masks, summary = run_method(dense, prepared, method, target_sparsity, rounds, finetune_epochs, lr,
                                           group_bias, seed, masks)
    table = LayerTable.from_dict(summary["table"])
    summary.update(task=task, corpus=text.summary(), dense_val=dense_val, dense_test=dense_test,
                   options=options or {})
    save_lstm(out / "lstm.pt", model, new_masks, meta={"task": task, "method": method, "corpus_sha256": text.sha256})
    metric = "perplexity" if task == "lm" else "accuracy"
    s = summary["structure"]
    header = (f"# LSTM {task}, {method} (target sparsity {target_sparsity:g})\n\n"
              f"Test {metric} {summary['test'][metric]:.4g} (dense {dense_test[metric]:.4g}); weights kept "
              f"{summary['kept_weights']:,}/{summary['total_weights']:,}; hidden neurons {s['live_hidden']}/{s['hidden']}; "
              f"non-constant gates {s['nonconstant_gates']}/{s['gates']} (constant: {s['constant_gates']}); "
              f"corpus sha256 {text.sha256[:16]}. MACs are per time step.\n\n")
    write_text(out / "layers.md", header + table.to_markdown())
    write_json(out / "layers.json", summary["table"])
    write_json(out / "gates.json", s)
    write_json(out / "rnn.json", summary)
    return RnnResult(task=task, method=method, target_sparsity=target_sparsity, metric=metric, dense_test=dense_test,
                     summary=summary, out=out, dense_trained=dense_trained, warnings=warnings)
