"""One-layer LSTM models for the gated-RNN sparsification experiments (:mod:`sparsegate.sw.prune.lstm_gates`).

Both wrap :class:`torch.nn.LSTM` (gate order i, f, g, o; ``weight_ih`` of shape (4H, I), ``weight_hh`` of
shape (4H, H), two biases) between an embedding and a linear read-out, so masks are ordinary per-parameter
bool tensors (``"lstm.weight_ih_l0"``, ...) and training uses :func:`sparsegate.sw.ml.train.train`'s mask
convention:

* :class:`CharLSTM` — character-level language model: a logit over the vocabulary at every step;
* :class:`LSTMClassifier` — text classification from the hidden states averaged over the steps.

``forward`` returns logits of shape (batch, classes) for the classifier and (batch, classes, steps) for
the language model, the layout :func:`torch.nn.functional.cross_entropy` takes, so the same loss,
accuracy and fine-tune code serves both.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from sparsegate.sw.ml.train import CheckpointError, Masks, check_masks, load_envelope
from sparsegate.sw.util.atomic_io import atomic_path

GATES = ("i", "f", "g", "o")  # torch's row blocks of weight_ih / weight_hh / biases
LSTM_FORMAT = "sparsegate-lstm"
LSTM_VERSION = 1


class _LSTMBase(nn.Module):
    def __init__(self, vocab: int, classes: int, embed: int = 32, hidden: int = 128):
        super().__init__()
        self.vocab, self.classes, self.embed_dim, self.hidden = vocab, classes, embed, hidden
        self.embed = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.out = nn.Linear(hidden, classes)

    def config(self) -> dict:
        return {"kind": self.kind, "vocab": self.vocab, "classes": self.classes, "embed": self.embed_dim,
                "hidden": self.hidden}

    def hidden_states(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, steps, hidden) outputs of the LSTM for token ids ``x`` of shape (batch, steps)."""
        return self.lstm(self.embed(x))[0]


class CharLSTM(_LSTMBase):
    kind = "lm"

    def __init__(self, vocab: int, embed: int = 32, hidden: int = 128):
        super().__init__(vocab, vocab, embed, hidden)

    def forward(self, x):
        return self.out(self.hidden_states(x)).transpose(1, 2)


class LSTMClassifier(_LSTMBase):
    kind = "classify"

    def forward(self, x):
        return self.out(self.hidden_states(x).mean(1))


def build_lstm(config: dict) -> _LSTMBase:
    """Rebuild a model from :meth:`config` (checkpoints store it)."""
    if config.get("kind") == "lm":
        return CharLSTM(config["vocab"], config["embed"], config["hidden"])
    if config.get("kind") == "classify":
        return LSTMClassifier(config["vocab"], config["classes"], config["embed"], config["hidden"])
    raise ValueError(f"model config: unknown kind {config.get('kind')!r}; expected 'lm' or 'classify'")


def save_lstm(path: str | Path, model: _LSTMBase, masks: Masks | None = None, meta: dict | None = None) -> None:
    """Write an LSTM checkpoint (config, weights, masks, metadata) atomically."""
    payload = {"format": LSTM_FORMAT, "version": LSTM_VERSION, "config": model.config(),
               "state_dict": model.state_dict(), "masks": {k: v.bool() for k, v in (masks or {}).items()},
               "meta": meta or {}}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_lstm(path: str | Path) -> tuple[_LSTMBase, Masks, dict]:
    """Load a checkpoint written by :func:`save_lstm`; returns (model, masks, meta)."""
    payload = load_envelope(path, LSTM_FORMAT, LSTM_VERSION, "LSTM checkpoint", CheckpointError)
    try:
        model = build_lstm(payload["config"])
        model.load_state_dict(payload["state_dict"])
        check_masks(model, payload["masks"])
    except (KeyError, RuntimeError, ValueError) as err:
        raise CheckpointError(f"{path}: inconsistent LSTM checkpoint ({err})") from None
    return model, payload["masks"], payload["meta"]
