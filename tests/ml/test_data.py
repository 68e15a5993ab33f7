"""Dataset loaders: the embedded default, IDX and CIFAR-10 files written here, sklearn digits, and errors."""
from __future__ import annotations

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from sparsegate.sw.ml import data
from sparsegate.sw.ml.data import DataError


def test_embedded_split_is_fixed_and_normalised(mnist5k):
    train, test = mnist5k
    assert train.tensors[0].shape == (4000, 1, 28, 28)
    assert test.tensors[0].shape == (1000, 1, 28, 28)
    assert train.tensors[1].dtype == torch.int64
    assert set(test.tensors[1].tolist()) == set(range(10))
    mean, std = float(train.tensors[0].mean()), float(train.tensors[0].std())
    assert abs(mean) < 0.1 and 0.8 < std < 1.2
    again_train, again_test = data.mnist_embedded(seed=0)
    assert torch.equal(again_test.tensors[0], test.tensors[0])
    other_train, _ = data.mnist_embedded(seed=1)
    assert not torch.equal(other_train.tensors[1], train.tensors[1])
    # No image is in both splits.
    train_keys = {row.tobytes() for row in train.tensors[0].numpy().reshape(4000, -1)}
    assert not any(row.tobytes() in train_keys for row in test.tensors[0].numpy().reshape(1000, -1))


def test_rgb32_pads_and_replicates(mnist5k):
    rgb = data.to_rgb32(mnist5k[1])
    assert rgb.tensors[0].shape == (1000, 3, 32, 32)
    assert torch.equal(rgb.tensors[0][:, 0, 2:30, 2:30], mnist5k[1].tensors[0][:, 0])
    assert torch.equal(rgb.tensors[0][:, 1], rgb.tensors[0][:, 2])


def _idx_bytes(array: np.ndarray) -> bytes:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def _write_mnist(directory, n_train=12, n_test=5, compress=False, rng=np.random.default_rng(3)):
    files = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    for name, array in files.items():
        raw = _idx_bytes(array)
        if compress:
            (directory / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (directory / name).write_bytes(raw)
    return files


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_reads_raw_and_gz(tmp_path, compress):
    files = _write_mnist(tmp_path, compress=compress)
    train, test = data.mnist_idx(tmp_path)
    assert train.tensors[0].shape == (12, 1, 28, 28) and test.tensors[0].shape == (5, 1, 28, 28)
    assert train.tensors[1].tolist() == files["train-labels-idx1-ubyte"].tolist()
    pixels = train.tensors[0] * data.MNIST_STD + data.MNIST_MEAN
    expected = torch.as_tensor(files["train-images-idx3-ubyte"], dtype=torch.float32)[:, None] / 255.0
    assert torch.allclose(pixels, expected, atol=1e-5)


def test_mnist_idx_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="not a directory"):
        data.mnist_idx(tmp_path / "nowhere")
    _write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: missing"):
        data.mnist_idx(tmp_path)
    _write_mnist(tmp_path)
    images = tmp_path / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-10])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: IDX payload holds"):
        data.mnist_idx(tmp_path)
    images.write_bytes(b"\x00\x00\x0d\x03" + b"\x00" * 12)
    with pytest.raises(DataError, match="not an unsigned-byte IDX file"):
        data.mnist_idx(tmp_path)
    images.write_bytes(b"\x1f\x8bnot gzip at all")
    with pytest.raises(DataError, match="corrupt gzip"):
        data.mnist_idx(tmp_path)
    _write_mnist(tmp_path, n_train=12)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(11)))
    with pytest.raises(DataError, match="11 labels for 12 images"):
        data.mnist_idx(tmp_path)


def _write_cifar(directory, per_batch=4, rng=np.random.default_rng(5)):
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (per_batch, 3072)).astype(np.uint8),
                 b"labels": rng.integers(0, 10, per_batch).tolist()}
        with (directory / name).open("wb") as f:
            pickle.dump(batch, f)


def test_cifar10_reads_batches(tmp_path):
    _write_cifar(tmp_path)
    train, test = data.cifar10(tmp_path)
    assert train.tensors[0].shape == (20, 3, 32, 32) and test.tensors[0].shape == (4, 3, 32, 32)
    per_channel_mean = train.tensors[0].mean(dim=(0, 2, 3))
    assert torch.allclose(per_channel_mean, torch.zeros(3), atol=1e-4)


def test_cifar10_errors_name_the_file(tmp_path):
    _write_cifar(tmp_path)
    (tmp_path / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DataError, match="data_batch_3: not a readable CIFAR-10 batch"):
        data.cifar10(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3: missing"):
        data.cifar10(tmp_path)
    _write_cifar(tmp_path)
    with (tmp_path / "test_batch").open("wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(DataError, match=r"test_batch: b'data' is uint8 \(2, 100\)"):
        data.cifar10(tmp_path)


def test_sklearn_digits_split():
    train, test = data.sklearn_digits(seed=0)
    assert train.tensors[0].shape[1:] == (1, 8, 8)
    assert len(train) + len(test) == 1797 and len(test) == 359


def test_load_dataset_dispatch_and_errors(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'svhn'"):
        data.load_dataset("svhn")
    with pytest.raises(DataError, match="needs --data-path"):
        data.load_dataset("cifar10")
    _write_mnist(tmp_path)
    train, _ = data.load_dataset("mnist", tmp_path)
    assert len(train) == 12
