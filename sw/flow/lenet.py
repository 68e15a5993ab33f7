"""The engine's reference workload: a pruned, quantized LeNet-5 as a weight image, and the PyTorch
integer reference the engine's predictions are compared with.

:func:`pruned_lenet5` trains (or takes) a LeNet-5, prunes it layer-wise by magnitude (the usual
Han-et-al. shape: conv1 keeps most weights, fc1 very few), fine-tunes with the masks, quantizes it and
writes the weight image; the engine is always fed from the decoded image bytes. The result is cached
as ``<cache>/lenet5_pruned.bin`` (+ ``lenet5_dense.bin``, the unpruned network quantized the same way).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["PRUNE_RATIOS", "pruned_lenet5", "torch_int_reference", "test_digits"]

#: Fraction of weights removed per layer.
PRUNE_RATIOS = {"conv1": 0.4, "conv2": 0.85, "fc1": 0.95, "fc2": 0.8}


def pruned_lenet5(cache: str | Path | None = None, model=None, data=None, *, finetune_epochs: int = 1,
                  train_epochs: int = 3):
    """``(pruned image bytes, dense image bytes)`` of LeNet-5 on the embedded MNIST split.

    ``model`` (a trained LeNet-5, not changed) skips training; ``data`` is ``(train, test)``.
    """
    import torch

    from sparsegate.sw.ml.data import mnist_embedded
    from sparsegate.sw.prune.masks import layer_magnitude_masks
    from sparsegate.sw.ml.models import build_model
    from sparsegate.sw.ml.quantize import calibration_split, quantize_model
    from sparsegate.sw.ml.train import TrainConfig, train
    from sparsegate.sw.ir.weight_image import encode_image

    paths = None
    if cache is not None:
        cache = Path(cache)
        paths = cache / "lenet5_pruned.bin", cache / "lenet5_dense.bin"
        if all(p.is_file() for p in paths):
            return paths[0].read_bytes(), paths[1].read_bytes()
    train_ds, _ = data or mnist_embedded(seed=0)
    if model is None:
        torch.manual_seed(0)
        model = build_model("lenet5")
        train(model, train_ds, TrainConfig(epochs=train_epochs, seed=0, progress=False))
    import copy
    dense_model = copy.deepcopy(model).eval()
    pruned = copy.deepcopy(model)
    masks = layer_magnitude_masks(pruned, PRUNE_RATIOS)
    if finetune_epochs:
        train(pruned, train_ds, TrainConfig(epochs=finetune_epochs, lr=5e-4, seed=1, progress=False), masks=masks)
    pruned.eval()
    calib = calibration_split(train_ds)
    pruned_img = encode_image(quantize_model(pruned, calib, masks, name="lenet5-pruned"))
    dense_img = encode_image(quantize_model(dense_model, calib, name="lenet5-dense"))
    if paths is not None:
        from sparsegate.sw.util.atomic_io import write_bytes
        write_bytes(paths[0], pruned_img)
        write_bytes(paths[1], dense_img)
    return pruned_img, dense_img


def test_digits(qnet, n: int, data=None):
    """The first ``n`` held-out digits: ``(int8 inputs (n, 1, 28, 28), labels)``."""
    from sparsegate.sw.ml.data import mnist_embedded
    _, test_ds = data or mnist_embedded(seed=0)
    x, y = test_ds.tensors
    return qnet.quantize_input(x[:n].numpy()), y[:n].numpy()


def torch_int_reference(qnet, x_int8) -> np.ndarray:
    """The integer network evaluated with PyTorch ops (float64 convolutions are exact on these integers,
    then the same requant/saturate/ReLU/pool in int64 tensors, a layer with tensor references reading their
    channel concatenation): int8 logits, one row per input."""
    import torch
    import torch.nn.functional as F

    tensors = [torch.from_numpy(np.asarray(x_int8, dtype=np.int64))]
    for i, layer in enumerate(qnet.layers):
        refs = layer.inputs if layer.inputs is not None else (i,)
        x = torch.cat([tensors[r] for r in refs], dim=1)
        if layer.flatten_input:
            x = x.flatten(1)
        w = torch.from_numpy(layer.weight.astype(np.float64))
        if layer.kind == "conv":
            acc = F.conv2d(x.double(), w, stride=layer.stride, padding=layer.padding)
        else:
            acc = F.linear(x.double(), w)
        acc = acc.round().long()
        shape = (1, -1) + (1,) * (acc.dim() - 2)
        acc = acc + torch.from_numpy(layer.bias.astype(np.int64)).view(shape)
        mult = torch.from_numpy(layer.mult.astype(np.int64)).view(shape)
        shift = torch.from_numpy(layer.shift.astype(np.int64)).view(shape)
        y = torch.bitwise_right_shift(acc * mult + torch.bitwise_left_shift(torch.ones_like(shift), shift - 1), shift)
        y = y.clamp(-128, 127)
        if layer.relu:
            y = y.clamp_min(0)
        if layer.pool:
            y = F.max_pool2d(y.double(), 2).long()
        tensors.append(y)
    return tensors[-1].numpy().astype(np.int8)
