"""The engine's reference workloads: pruned, quantized LeNet-5s as weight images, and the PyTorch
integer reference the engine's predictions are compared with.

:func:`pruned_lenet5` trains (or takes) a LeNet-5, prunes it layer-wise by magnitude (the usual
Han-et-al. shape: conv1 keeps most weights, fc1 very few), fine-tunes with the masks, quantizes it and
writes the weight image; the engine is always fed from the decoded image bytes. The result is cached
as ``<cache>/lenet5_pruned-<settings>-<code>.bin`` (+ ``lenet5_dense-...``, the unpruned network quantized the
same way); every cached file names its settings and the code digest (:func:`cache_file`).
:func:`sra_nrp_lenet5` prunes the same trained LeNet-5 with SRA + NRP through the prune registry instead
(the allocation the demo uses), for a workload whose sparsity the pruning method chose.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["MAGNITUDE_FINETUNE", "PRUNE_RATIOS", "SRANRPNetwork", "cache_file", "pruned_lenet5", "sra_nrp_lenet5",
           "torch_int_reference", "test_digits", "trained_lenet5"]

#: Fraction of weights removed per layer.
PRUNE_RATIOS = {"conv1": 0.4, "conv2": 0.85, "fc1": 0.95, "fc2": 0.8}
#: The magnitude-pruned network's fine-tune (``TrainConfig`` fields; reports state them from here).
MAGNITUDE_FINETUNE = {"lr": 5e-4, "weight_decay": 0.0}


def cache_file(cache: str | Path | None, stem: str, suffix: str, **settings) -> Path | None:
    """``<cache>/<stem>-<settings>-<code><suffix>`` (None without a cache): the settings' values and a digest of
    the code the network follows (models, data, training, pruning, this module, torch's version) in the name,
    so a file written with other settings or by other code is never read back as this one."""
    if cache is None:
        return None
    from sparsegate.sw.jobs.digest import sources_digest
    from sparsegate.sw.prune import MODEL_CODE

    tag = "-".join(f"{v:g}" for v in settings.values())
    code = sources_digest(*MODEL_CODE, __name__, libraries=("torch",))[:12]
    return Path(cache) / f"{stem}-{tag}-{code}{suffix}"


def pruned_lenet5(cache: str | Path | None = None, model=None, data=None, *, finetune_epochs: int = 1,
                  train_epochs: int = 3):
    """``(pruned image bytes, dense image bytes)`` of LeNet-5 on the embedded MNIST split.

    ``model`` (a trained LeNet-5, not changed) skips training (:func:`trained_lenet5`, the same network
    :func:`sra_nrp_lenet5` prunes); ``data`` is ``(train, test)``.
    """
    from sparsegate.sw.ml.data import mnist_embedded
    from sparsegate.sw.prune.masks import layer_magnitude_masks
    from sparsegate.sw.ml.quantize import calibration_split, quantize_model
    from sparsegate.sw.ml.train import TrainConfig, train
    from sparsegate.sw.ir.weight_image import encode_image
    from sparsegate.sw.prune.iterative import VAL_SIZE

    paths = None
    if cache is not None and model is None and data is None:
        paths = tuple(cache_file(cache, stem, ".bin", finetune_epochs=finetune_epochs, train_epochs=train_epochs)
                      for stem in ("lenet5_pruned", "lenet5_dense"))
        if all(p.is_file() for p in paths):
            return paths[0].read_bytes(), paths[1].read_bytes()
    train_ds, _ = data or mnist_embedded(seed=0)
    if model is None:
        model = trained_lenet5(cache, data, epochs=train_epochs, held_out=VAL_SIZE)
    import copy
    dense_model = copy.deepcopy(model).eval()
    pruned = copy.deepcopy(model)
    masks = layer_magnitude_masks(pruned, PRUNE_RATIOS)
    if finetune_epochs:
        train(pruned, train_ds, TrainConfig(epochs=finetune_epochs, seed=1, progress=False, **MAGNITUDE_FINETUNE),
              masks=masks)
    pruned.eval()
    calib = calibration_split(train_ds)
    pruned_img = encode_image(quantize_model(pruned, calib, masks, name="lenet5-pruned"))
    dense_img = encode_image(quantize_model(dense_model, calib, name="lenet5-dense"))
    if paths is not None:
        from sparsegate.sw.util.atomic_io import write_bytes
        write_bytes(paths[0], pruned_img)
        write_bytes(paths[1], dense_img)
    return pruned_img, dense_img


def trained_lenet5(cache: str | Path | None = None, data=None, *, epochs: int, held_out: int):
    """LeNet-5 trained ``epochs`` epochs on the embedded MNIST split (seed 0; ``data`` is ``(train, test)``)
    outside its validation split of ``held_out`` digits, so that pruning decisions on those digits read digits
    the network has not seen (as ``sparsegate train --val-size`` does for the demo); in eval mode; cached (its
    state dict, :func:`cache_file`; not when ``data`` is given) so the workloads pruned from it train it once."""
    import io

    import torch

    from sparsegate.sw.ml.data import mnist_embedded
    from sparsegate.sw.ml.models import build_model
    from sparsegate.sw.ml.train import TrainConfig, train
    from sparsegate.sw.prune.iterative import fit_digits

    path = cache_file(cache, "lenet5_trained", ".pt", epochs=epochs, held_out=held_out) if data is None else None
    torch.manual_seed(0)
    model = build_model("lenet5")
    if path is not None and path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval()
    train_ds = fit_digits((data or mnist_embedded(seed=0))[0], held_out)
    train(model, train_ds, TrainConfig(epochs=epochs, seed=0, progress=False))
    if path is not None:
        from sparsegate.sw.util.atomic_io import write_bytes
        blob = io.BytesIO()
        torch.save(model.state_dict(), blob)
        write_bytes(path, blob.getvalue())
    return model.eval()


@dataclass(frozen=True)
class SRANRPNetwork:
    """LeNet-5 pruned by SRA + NRP, as a weight image, with what the pruning reached."""

    image: bytes
    settings: dict            # the schedule and budget it ran with
    compression: float        # params / nonzero params (the prune registry's layer table)
    mac_reduction: float      # fraction of the dense MACs removed (float model, before dead channels)
    base_test_accuracy: float  # float model on the held-out digits, before pruning
    test_accuracy: float      # after SRA + NRP and their fine-tunes
    rounds: int               # SRA rounds run
    wall_s: float             # pruning time when it ran (the cached run's)


def sra_nrp_lenet5(cache: str | Path | None = None, model=None, data=None, *, target_sparsity: float, rounds: int,
                   step: float, late_step: float, finetune_epochs: int, nrp_drop: float, val_size: int,
                   train_epochs: int = 3) -> SRANRPNetwork:
    """LeNet-5 pruned by SRA to ``target_sparsity`` (at most ``rounds`` rounds removing ``step`` of the kept
    weights each, ``late_step`` below 10% kept, ``finetune_epochs`` per round), then NRP guarded at
    ``nrp_drop`` validation accuracy and its fine-tune, through the prune registry; every decision on
    ``val_size`` digits split off the training set, which :func:`trained_lenet5` held out, as the demo does.
    ``model`` (trained, not changed) skips training; ``data`` is ``(train, test)``. Cached as
    ``lenet5_sra_nrp-<settings>-<code>.bin`` + ``.json`` (:func:`cache_file`; not when ``model`` or ``data`` is
    given, which the name cannot say)."""
    import copy

    from sparsegate.sw.ir.weight_image import encode_image
    from sparsegate.sw.ml.data import mnist_embedded
    from sparsegate.sw.ml.quantize import calibration_split, quantize_model
    from sparsegate.sw.prune import PruneOptions, ScheduleParams, prune_model
    from sparsegate.sw.prune.counting import layer_table
    from sparsegate.sw.prune.iterative import accuracy, split_validation

    schedule = ScheduleParams(target_sparsity=target_sparsity, rounds=rounds, step=step, late_step=late_step)
    options = PruneOptions("sra", schedule, nrp=True, nrp_drop=nrp_drop, finetune_epochs=finetune_epochs,
                           progress=False)
    settings = dict(target_sparsity=target_sparsity, rounds=rounds, step=step, late_step=late_step,
                    finetune_epochs=finetune_epochs, finetune_lr=options.lr, finetune_weight_decay=options.weight_decay,
                    nrp_drop=nrp_drop, val_size=val_size, train_epochs=train_epochs)
    paths = None
    if cache is not None and model is None and data is None:
        paths = tuple(cache_file(cache, "lenet5_sra_nrp", suffix, **settings) for suffix in (".bin", ".json"))
        if all(p.is_file() for p in paths):
            return SRANRPNetwork(image=paths[0].read_bytes(), **json.loads(paths[1].read_text()))
    train_ds, test_ds = data or mnist_embedded(seed=0)
    if model is None:
        model = trained_lenet5(cache, data, epochs=train_epochs, held_out=val_size)
    start = time.perf_counter()
    pruned = copy.deepcopy(model)
    fit_ds, val_ds = split_validation(train_ds, val_size)
    outcome = prune_model(pruned, options, fit_ds, val_ds)
    pruned.eval()
    table = layer_table(pruned, outcome.masks)
    qnet = quantize_model(pruned, calibration_split(train_ds), outcome.masks, name="lenet5-sra-nrp")
    result = SRANRPNetwork(encode_image(qnet), settings, table.total.compression, table.total.mac_reduction,
                           accuracy(model, test_ds), accuracy(pruned, test_ds), len(outcome.history),
                           time.perf_counter() - start)
    if paths is not None:
        from sparsegate.sw.util.atomic_io import write_bytes, write_json
        write_bytes(paths[0], result.image)
        write_json(paths[1], {k: v for k, v in asdict(result).items() if k != "image"})
    return result


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
