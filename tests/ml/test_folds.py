"""K-fold splits of the digit pool: disjoint roles, every digit tested once, reproducible per seed."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from sparsegate.sw.ml.data import DataError
from sparsegate.sw.ml.folds import digit_pool, fold_datasets, kfold, with_fit_fraction


def test_roles_are_disjoint_and_every_digit_is_tested_once():
    folds = kfold(5000, 5, seed=3)
    tested = np.concatenate([f.test for f in folds])
    assert sorted(tested.tolist()) == list(range(5000))
    for f in folds:
        assert (len(f.fit), len(f.val), len(f.test)) == (3500, 500, 1000)
        roles = [set(f.fit.tolist()), set(f.val.tolist()), set(f.test.tolist())]
        assert not (roles[0] & roles[1]) and not (roles[0] & roles[2]) and not (roles[1] & roles[2])
        assert len(roles[0] | roles[1] | roles[2]) == 5000


def test_same_seed_same_folds_other_seed_other_folds():
    a, b, c = kfold(5000, 3, seed=0), kfold(5000, 3, seed=0), kfold(5000, 3, seed=1)
    assert all(np.array_equal(x.val, y.val) and np.array_equal(x.test, y.test) for x, y in zip(a, b))
    assert not np.array_equal(a[0].test, c[0].test) and not np.array_equal(a[0].val, c[0].val)


def test_bad_fold_counts_are_refused():
    with pytest.raises(DataError, match="folds"):
        kfold(100, 1, 0)
    with pytest.raises(DataError, match="val_fraction"):
        kfold(100, 5, 0, val_fraction=1.0)


def test_a_fit_fraction_trains_on_a_nested_seeded_subset_of_the_fit_digits():
    fold = kfold(5000, 5, seed=1)[3]
    half, quarter = with_fit_fraction(fold, 0.5), with_fit_fraction(fold, 0.25)
    assert (len(half.fit), len(quarter.fit)) == (1750, 875)
    assert set(quarter.fit) < set(half.fit) < set(fold.fit)  # nested: a smaller share only removes digits
    assert np.array_equal(half.val, fold.val) and np.array_equal(half.test, fold.test)
    assert np.array_equal(with_fit_fraction(fold, 0.5).fit, half.fit)  # the same share every time
    f2 = kfold(5000, 5, seed=1)[2]  # another fold keeps other positions of its fit digits
    assert not np.array_equal(np.searchsorted(fold.fit, half.fit), np.searchsorted(f2.fit, with_fit_fraction(f2, 0.5).fit))
    assert with_fit_fraction(fold, 1.0) is fold
    # spread over the fit digits, not the front of the pool
    assert half.fit.max() > np.quantile(fold.fit, 0.95) and half.fit.min() < np.quantile(fold.fit, 0.05)
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(DataError, match="fit_fraction"):
            with_fit_fraction(fold, bad)


def test_embedded_pool_and_fold_datasets():
    pool = digit_pool("mnist5k")
    assert len(pool) == 5000
    f = kfold(len(pool), 5, 0)[2]
    fit, val, test = fold_datasets(pool, f)
    assert torch.equal(test.tensors[0], pool.tensors[0][torch.as_tensor(f.test)])
    assert (len(fit), len(val), len(test)) == (3500, 500, 1000)


def _idx(array: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape) \
        + array.astype(np.uint8).tobytes()


def test_mnist_pool_joins_training_and_test_files(tmp_path):
    rng = np.random.default_rng(0)
    labels = {"train": rng.integers(0, 10, 9), "t10k": rng.integers(0, 10, 4)}
    for prefix, y in labels.items():
        (tmp_path / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(rng.integers(0, 256, (len(y), 28, 28)))))
        (tmp_path / f"{prefix}-labels-idx1-ubyte").write_bytes(_idx(y))
    pool = digit_pool("mnist", tmp_path)
    assert pool.tensors[1].tolist() == labels["train"].tolist() + labels["t10k"].tolist()
    with pytest.raises(DataError, match="--data-path"):
        digit_pool("mnist")
    with pytest.raises(DataError, match="cifar10"):
        digit_pool("cifar10")
