"""Text data built offline from files every Debian image ships: the license texts in
``/usr/share/common-licenses`` (package ``base-files``), for the gated-RNN sparsification experiments.

* :func:`load_corpus` reads the license files (sorted by name, symlinks such as ``GPL -> GPL-3`` skipped so
  each text counts once), normalises line endings, and records a SHA-256 of the exact bytes used
  (:attr:`Corpus.sha256`): results written from this corpus carry the hash, so a machine with different
  license files gives visibly different numbers. A missing folder or file raises :class:`TextDataError`
  naming the path.
* Fixed split, no randomness: every file is cut into consecutive blocks of ``block`` characters; block
  ``k`` of a file goes to validation when ``k % 10 == 8``, to test when ``k % 10 == 9``, else to training.
  Both tasks use the same blocks, so no test text is ever trained on.
* :func:`char_lm_data` — character-level language modelling: non-overlapping windows of ``seq_len + 1``
  characters within each split's blocks (input = first ``seq_len``, target = the next character at every
  step); characters outside the training vocabulary map to index 0 (``"\\x00"``, unknown).
* :func:`license_classification_data` — which license family a ``snippet``-character window comes from
  (:data:`FAMILIES`); training windows overlap by half, validation/test windows do not.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

LICENSE_DIR = Path("/usr/share/common-licenses")

# class -> license files (prefix match on the file name); everything else is "other"
FAMILIES = {"apache": ("Apache",), "gfdl": ("GFDL",), "gpl": ("GPL",), "lgpl": ("LGPL",), "mpl": ("MPL",),
            "other": ("Artistic", "BSD", "CC0")}
SPLITS = ("train", "val", "test")


class TextDataError(ValueError):
    """The text corpus cannot be built; the message names the path and what was expected."""


@dataclass
class Corpus:
    """The license texts by file name, the character vocabulary of the training split and the corpus hash."""

    root: Path
    texts: dict[str, str]
    block: int = 512
    sha256: str = ""
    vocab: str = ""
    blocks: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # split -> [(file, text block)]

    @property
    def chars(self) -> int:
        return sum(len(t) for t in self.texts.values())

    def encode(self, text: str) -> torch.Tensor:
        index = {c: i for i, c in enumerate(self.vocab)}
        return torch.tensor([index.get(c, 0) for c in text], dtype=torch.long)

    def summary(self) -> dict:
        return {"root": str(self.root), "files": list(self.texts), "chars": self.chars, "sha256": self.sha256,
                "vocab_size": len(self.vocab), "block": self.block,
                "split_chars": {s: sum(len(b) for _, b in self.blocks[s]) for s in SPLITS}}


def split_of(block_index: int) -> str:
    """The fixed split of a file's ``block_index``-th block."""
    r = block_index % 10
    return "val" if r == 8 else "test" if r == 9 else "train"


def family_of(name: str) -> str:
    for family, prefixes in FAMILIES.items():
        if any(name.startswith(p) for p in prefixes):
            return family
    return "other"


def load_corpus(root: str | Path = LICENSE_DIR, block: int = 512) -> Corpus:
    """Read the license texts under ``root`` and split them (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise TextDataError(f"{root}: no such folder; the text corpus is built from the license texts Debian's "
                            f"base-files package installs there")
    if block < 16:
        raise TextDataError(f"block must be >= 16 characters, got {block}")
    files = sorted(p for p in root.iterdir() if p.is_file() and not p.is_symlink())
    if not files:
        raise TextDataError(f"{root}: no license files found (expected e.g. {root / 'GPL-3'})")
    texts: dict[str, str] = {}
    digest = hashlib.sha256()
    for path in files:
        try:
            raw = path.read_bytes()
        except OSError as err:
            raise TextDataError(f"{path}: cannot read ({err.strerror})") from None
        text = raw.decode("utf-8", errors="replace").replace("\r\n", "\n")
        texts[path.name] = text
        digest.update(path.name.encode() + b"\0" + text.encode() + b"\0")
    corpus = Corpus(root, texts, block, digest.hexdigest())
    corpus.blocks = {s: [] for s in SPLITS}
    for name, text in texts.items():
        for k in range(0, (len(text) + block - 1) // block):
            corpus.blocks[split_of(k)].append((name, text[k * block:(k + 1) * block]))
    train_chars = sorted(set("".join(b for _, b in corpus.blocks["train"])) - {"\x00"})
    corpus.vocab = "\x00" + "".join(train_chars)
    return corpus


def char_lm_data(corpus: Corpus, seq_len: int = 64) -> dict[str, TensorDataset]:
    """Per split: ``TensorDataset(x, y)`` with x, y of shape (n, seq_len); y is x shifted by one character."""
    if seq_len < 2:
        raise TextDataError(f"seq_len must be >= 2, got {seq_len}")
    out = {}
    for split in SPLITS:
        xs, ys = [], []
        for _, text in corpus.blocks[split]:
            ids = corpus.encode(text)
            for start in range(0, len(ids) - seq_len, seq_len):
                window = ids[start:start + seq_len + 1]
                xs.append(window[:-1])
                ys.append(window[1:])
        if not xs:
            raise TextDataError(f"{corpus.root}: the {split} split has no window of {seq_len + 1} characters")
        out[split] = TensorDataset(torch.stack(xs), torch.stack(ys))
    return out


def license_classification_data(corpus: Corpus, snippet: int = 96) -> tuple[dict[str, TensorDataset], list[str]]:
    """Per split: ``TensorDataset(x, label)`` of ``snippet``-character windows; returns (datasets, class names)."""
    if snippet < 8:
        raise TextDataError(f"snippet must be >= 8 characters, got {snippet}")
    classes = list(FAMILIES)
    out = {}
    for split in SPLITS:
        stride = snippet // 2 if split == "train" else snippet
        xs, ys = [], []
        for name, text in corpus.blocks[split]:
            ids = corpus.encode(text)
            for start in range(0, len(ids) - snippet + 1, stride):
                xs.append(ids[start:start + snippet])
                ys.append(classes.index(family_of(name)))
        if not xs:
            raise TextDataError(f"{corpus.root}: the {split} split has no {snippet}-character snippet")
        out[split] = TensorDataset(torch.stack(xs), torch.tensor(ys))
    return out, classes
