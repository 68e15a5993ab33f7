"""The offline text corpus (Debian's license texts): fixed split, hash, both tasks, clear errors."""
from __future__ import annotations

import pytest
import torch

from sparsegate.sw.ml.text_data import LICENSE_DIR, TextDataError, char_lm_data, family_of, \
    license_classification_data, load_corpus, split_of


def _tiny(tmp_path):
    root = tmp_path / "licenses"
    root.mkdir()
    (root / "GPL-3").write_text("gnu general public license " * 40)
    (root / "MPL-2.0").write_text("mozilla public license\r\n" * 60)
    (root / "GPL").symlink_to(root / "GPL-3")
    return root


def test_fixed_split_and_hash(tmp_path):
    root = _tiny(tmp_path)
    a, b = load_corpus(root, block=64), load_corpus(root, block=64)
    assert a.sha256 == b.sha256 and len(a.sha256) == 64
    assert list(a.texts) == ["GPL-3", "MPL-2.0"]  # sorted, symlink skipped
    assert "\r" not in a.texts["MPL-2.0"]
    assert [split_of(k) for k in range(10)] == ["train"] * 8 + ["val", "test"]
    # block k of a file lands in split_of(k); the splits together are the corpus
    text = a.texts["GPL-3"]
    vals = [blk for name, blk in a.blocks["val"] if name == "GPL-3"]
    assert vals[0] == text[8 * 64:9 * 64]
    assert sum(len(blk) for s in a.blocks.values() for _, blk in s) == a.chars
    (root / "MPL-2.0").write_text("changed")
    assert load_corpus(root, block=64).sha256 != a.sha256


def test_char_lm_windows(tmp_path):
    corpus = load_corpus(_tiny(tmp_path), block=64)
    data = char_lm_data(corpus, seq_len=16)
    x, y = data["train"].tensors
    assert x.shape[1] == 16 and torch.equal(x[:, 1:], y[:, :-1])
    assert corpus.vocab[0] == "\x00" and int(x.max()) < len(corpus.vocab)
    assert corpus.encode("§")[0] == 0  # unknown character


def test_classification_labels(tmp_path):
    corpus = load_corpus(_tiny(tmp_path), block=64)
    data, classes = license_classification_data(corpus, snippet=32)
    assert family_of("LGPL-2.1") == "lgpl" and family_of("GPL-2") == "gpl" and family_of("BSD") == "other"
    y = data["test"].tensors[1]
    assert set(y.tolist()) <= {classes.index("gpl"), classes.index("mpl")}
    assert data["train"].tensors[0].shape[1] == 32


def test_missing_folder_names_the_path(tmp_path):
    with pytest.raises(TextDataError, match=str(tmp_path / "nope")):
        load_corpus(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TextDataError, match="no license files"):
        load_corpus(tmp_path / "empty")


@pytest.mark.skipif(not LICENSE_DIR.is_dir(), reason=f"{LICENSE_DIR} not present")
def test_system_corpus():
    corpus = load_corpus()
    summary = corpus.summary()
    assert summary["chars"] > 100_000 and summary["split_chars"]["test"] > 10_000
    data, classes = license_classification_data(corpus)
    assert len(set(data["test"].tensors[1].tolist())) == len(classes)
