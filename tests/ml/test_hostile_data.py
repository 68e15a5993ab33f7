"""Hostile data sets and checkpoints (issue #18): gzip bombs and oversized IDX headers refused from the
header, FIFOs never block, MNIST folders without usable images refused, CIFAR-10 batches unpickled without
running code, checkpoints without ``meta`` or with NaN weights refused with a CheckpointError."""
from __future__ import annotations

import gzip
import os
import pickle
import struct
import threading

import numpy as np
import pytest
import torch

from sparsegate.sw.ml import data
from sparsegate.sw.ml.data import DataError
from sparsegate.sw.ml.models import build_model
from sparsegate.sw.ml.train import CheckpointError, load_checkpoint, save_checkpoint


def idx_header(shape) -> bytes:
    return struct.pack(">HBB", 0, 8, len(shape)) + struct.pack(f">{len(shape)}I", *shape)


def write_mnist(directory, images_shape=(12, 28, 28), n_test=4):
    rng = np.random.default_rng(0)
    for prefix, shape in (("train", images_shape), ("t10k", (n_test, 28, 28))):
        (directory / f"{prefix}-images-idx3-ubyte").write_bytes(
            idx_header(shape) + rng.integers(0, 256, shape, dtype=np.uint8).tobytes())
        (directory / f"{prefix}-labels-idx1-ubyte").write_bytes(
            idx_header(shape[:1]) + rng.integers(0, 10, shape[:1], dtype=np.uint8).tobytes())


def test_gzip_bomb_is_read_only_as_far_as_its_header_says(tmp_path):
    # a 28x28 image header followed by 256 MiB of zeros, compressed to a few hundred KB
    bomb = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(bomb, "wb", compresslevel=1) as f:
        f.write(idx_header((1, 28, 28)))
        zeros = bytes(1 << 24)
        for _ in range(16):
            f.write(zeros)
    assert bomb.stat().st_size < 2 << 20
    with pytest.raises(DataError, match=r"IDX payload holds more than the 784 bytes its header \(1, 28, 28\) expects"):
        data.read_idx(bomb, 3)


def test_idx_header_declaring_more_than_the_cap_is_refused_before_reading(tmp_path):
    path = tmp_path / "big.gz"
    path.write_bytes(gzip.compress(idx_header((65535, 65535, 1)) + bytes(100)))
    with pytest.raises(DataError, match="declares 4294836225 bytes, more than the 268435456"):
        data.read_idx(path, 3)


def test_fifo_and_directories_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    caught = []
    reader = threading.Thread(target=lambda: caught.append(pytest.raises(DataError, data.read_idx, fifo, 3)),
                              daemon=True)
    reader.start()
    reader.join(5)
    assert caught and "not a regular file" in str(caught[0].value)
    with pytest.raises(DataError, match="not a regular file"):
        data.read_idx(tmp_path, 3)


@pytest.mark.parametrize("shape, message", [((0, 28, 28), "0 images of 28x28"), ((12, 5, 5), "12 images of 5x5")])
def test_mnist_without_usable_images_is_refused(tmp_path, shape, message):
    write_mnist(tmp_path, shape)
    with pytest.raises(DataError, match=f"train-images-idx3-ubyte: {message}, expected at least one 28x28"):
        data.mnist_idx(tmp_path)


class _Payload:
    """Unpickling this runs ``os.system``: what a crafted batch would do."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def write_cifar(directory, override=None):
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (3, 3072)).astype(np.uint8), b"labels": [1, 2, 3]}
        with (directory / name).open("wb") as f:
            pickle.dump(batch, f, protocol=2)  # the protocol of the real batches
    if override is not None:
        (directory / "data_batch_1").write_bytes(override)


def test_cifar_batches_load_with_the_restricted_unpickler(tmp_path):
    write_cifar(tmp_path)
    train, test = data.cifar10(tmp_path)
    assert train.tensors[0].shape == (15, 3, 32, 32) and test.tensors[0].shape == (3, 3, 32, 32)


@pytest.mark.parametrize("payload", [
    lambda marker: {b"data": _Payload(f"touch {marker}"), b"labels": [0]},
    lambda marker: [_Payload(f"touch {marker}")],
])
def test_a_malicious_cifar_batch_runs_no_code(tmp_path, payload):
    marker = tmp_path / "pwned"
    folder = tmp_path / "cifar"
    folder.mkdir()
    write_cifar(folder, pickle.dumps(payload(marker), protocol=2))
    with pytest.raises(DataError, match=r"data_batch_1: not a readable CIFAR-10 batch \(UnpicklingError: global "
                                        r"(posix|os)\.system is not allowed"):
        data.cifar10(folder)
    assert not marker.exists()


def test_cifar_array_reconstruction_cannot_allocate(tmp_path):
    # _reconstruct(ndarray, (2**40,), 'b') would ask numpy for a terabyte before any state is read
    crafted = (b"\x80\x02cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
               b"\x8a\x06\x00\x00\x00\x00\x00\x01\x85U\x01b\x87R.")
    folder = tmp_path / "cifar"
    folder.mkdir()
    write_cifar(folder, crafted)
    with pytest.raises(DataError, match="is not a pickled ndarray"):
        data.cifar10(folder)


def test_checkpoint_without_meta_or_with_nan_weights_is_refused(tmp_path):
    model = build_model("lenet300")
    good = tmp_path / "good.pt"
    save_checkpoint(good, model, "lenet300", meta={"seed": 0})
    payload = torch.load(good, weights_only=True)
    del payload["meta"]
    torch.save(payload, tmp_path / "no_meta.pt")
    with pytest.raises(CheckpointError, match=r"no_meta.pt: not a complete checkpoint \(missing 'meta'\)"):
        load_checkpoint(tmp_path / "no_meta.pt")
    payload = torch.load(good, weights_only=True)
    payload["state_dict"]["fc1.weight"][0, 0] = float("nan")
    torch.save(payload, tmp_path / "nan.pt")
    with pytest.raises(CheckpointError, match="nan.pt: parameter 'fc1.weight' holds NaN or infinite values"):
        load_checkpoint(tmp_path / "nan.pt")


@pytest.mark.parametrize("crafted, message", [
    # numpy.ndarray((2**40,)) called directly
    (b"\x80\x02cnumpy\nndarray\n\x8a\x06\x00\x00\x00\x00\x00\x01\x85\x85R.", "TypeError"),
    # an object array: its state, a list, could claim any length
    (b"\x80\x02cnumpy\ndtype\nU\x02O8\x85R.", "dtype object is not numeric"),
])
def test_cifar_pickles_cannot_call_ndarray_or_make_object_arrays(tmp_path, crafted, message):
    folder = tmp_path / "cifar"
    folder.mkdir()
    write_cifar(folder, crafted)
    with pytest.raises(DataError, match=message):
        data.cifar10(folder)
