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

import torch
from torch import nn

GATES = ("i", "f", "g", "o")  # torch's row blocks of weight_ih / weight_hh / biases


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
