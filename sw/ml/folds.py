"""K-fold splits of a digit pool into train / validation / test, for cross-validated benchmarks.

The pool is every digit a data set holds (the embedded default: its 5,000 digits; full MNIST: the 60,000
training plus 10,000 test digits). A seeded permutation cuts it into ``k`` equal blocks; fold ``i`` tests on
block ``i`` and splits the rest into validation (``val_fraction`` of it, taken from a second seeded
permutation) and fit digits. Within a fold the three roles are disjoint; over the ``k`` folds every digit is
tested exactly once. Another seed gives another permutation (repeated cross-validation).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils.data import TensorDataset

from sparsegate.sw.ml.data import DataError, mnist_embedded, mnist_idx

POOL_DATASETS = ("mnist5k", "mnist")


@dataclass(frozen=True)
class Fold:
    """Indices into the pool of one fold's fit (training), validation and test digits."""

    index: int
    k: int
    seed: int
    fit: np.ndarray
    val: np.ndarray
    test: np.ndarray


def kfold(n: int, k: int, seed: int, val_fraction: float = 0.125) -> list[Fold]:
    """The ``k`` folds of ``n`` digits for ``seed`` (see the module docstring)."""
    if not 2 <= k <= n:
        raise DataError(f"folds: expected 2 <= k <= {n} (the pool's digits), got {k}")
    check_val_fraction(val_fraction)
    order = np.random.default_rng(seed).permutation(n)
    blocks = np.array_split(order, k)
    folds = []
    for i, test in enumerate(blocks):
        rest = np.concatenate([b for j, b in enumerate(blocks) if j != i])
        rest = rest[np.random.default_rng(1_000_003 * (seed + 1) + i).permutation(len(rest))]
        n_val = max(1, int(round(val_fraction * len(rest))))
        folds.append(Fold(i, k, seed, fit=np.sort(rest[n_val:]), val=np.sort(rest[:n_val]), test=np.sort(test)))
    return folds


def check_val_fraction(fraction: float, name: str = "val_fraction") -> None:
    """Refuse a validation share outside (0, 1); ``name`` is the field or flag the message names."""
    if not 0 < fraction < 1:
        raise DataError(f"{name}: expected a fraction in (0, 1), got {fraction}")


def check_fit_fraction(fraction: float, name: str = "fit_fraction") -> None:
    """Refuse a training share outside (0, 1]; ``name`` is the field or flag the message names."""
    if not 0 < fraction <= 1:
        raise DataError(f"{name}: expected a fraction in (0, 1], got {fraction}")


def with_fit_fraction(fold: Fold, fraction: float) -> Fold:
    """``fold`` training on a seeded ``fraction`` of its fit digits (validation and test digits unchanged): how
    a result scales with the training set's size. The subsets of one fold are nested (a smaller fraction keeps a
    subset of a larger one's digits), so a learning curve changes only the amount of data."""
    check_fit_fraction(fraction)
    if fraction == 1:
        return fold
    n = max(1, int(round(fraction * len(fold.fit))))
    order = np.random.default_rng([fold.seed, fold.index, 7]).permutation(len(fold.fit))
    return replace(fold, fit=np.sort(fold.fit[order[:n]]))


def digit_pool(dataset: str = "mnist5k", data_path=None) -> TensorDataset:
    """All digits of ``dataset`` as one pool ("mnist5k": the embedded 5,000; "mnist": the IDX files in
    ``data_path``, training and test files together). Both normalise with the fixed MNIST constants, so
    pooling does not leak statistics between roles."""
    if dataset == "mnist5k":
        parts = mnist_embedded(0)
    elif dataset == "mnist":
        if data_path is None:
            raise DataError("dataset 'mnist' needs --data-path pointing at its IDX files")
        parts = mnist_idx(data_path)
    else:
        raise DataError(f"dataset: the cross-validated benchmarks pool {list(POOL_DATASETS)}, got {dataset!r}")
    return TensorDataset(*(torch.cat(t) for t in zip(*(p.tensors for p in parts))))


def fold_datasets(pool: TensorDataset, fold: Fold) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
    """(fit, val, test) datasets of ``fold``."""
    x, y = pool.tensors

    def take(idx):
        i = torch.as_tensor(idx, dtype=torch.int64)
        return TensorDataset(x[i], y[i])
    return take(fold.fit), take(fold.val), take(fold.test)
