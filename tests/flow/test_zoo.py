"""The model zoo through the whole flow: each ordinary PyTorch network (sparsegate.sw.ml.zoo) trained briefly
on the embedded digits (the 32x32x3 ones on the digits padded and replicated to three channels), pruned
(global magnitude, one round, no fine-tune), quantized, written as a weight image and read back, compiled for
the engine; float-vs-int8 agreement measured. The MLP (flat input), the VGG-style net (BatchNorm,
Dropout, a 2x2 average pool) and ResNet-8 (residual adds, a downsampling shortcut conv with BatchNorm,
global average pooling) run on the engine in Verilator, bit-exact with the golden model."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from sparsegate.hw.engine.cycle_model import program_cycles
from sparsegate.hw.engine.program import compile_program
from sparsegate.sw.flow.simulate import simulate
from sparsegate.sw.ir.weight_image import decode_image, encode_image, export_image
from sparsegate.sw.ml.data import load_dataset
from sparsegate.sw.ml.quantize import calibration_split, compare, quantize_model
from sparsegate.sw.ml.threads import pinned_threads
from sparsegate.sw.ml.train import TrainConfig, train
from sparsegate.sw.prune import PruneOptions, ScheduleParams, prune_model
from sparsegate.sw.prune.iterative import split_validation
from sparsegate.sw.prune.masks import apply_masks, global_magnitude_masks

from sparsegate.sw.ml.zoo import LeNet300, LeNet5BN, ResNet8, VGGBN, sequential_net

ZOO = {  # name: (constructor, dataset, engine run in Verilator?, calibration method)
    "lenet5-bn": (LeNet5BN, "mnist5k", False, "max"),
    "sequential": (sequential_net, "mnist5k", False, "max"),
    "lenet300": (LeNet300, "mnist5k", True, "max"),
    "vgg-bn-dropout": (VGGBN, "mnist5k-rgb32", True, "max"),
    # the briefly trained, pruned ResNet's deep activations have long tails: with max calibration its int8
    # predictions agree with float on 93.2% of the 500 digits, with the 99.99th percentile on 96.8%
    "resnet8": (ResNet8, "mnist5k-rgb32", True, "percentile"),
}
TRAIN = 2000  # digits per epoch of the brief training (2 epochs: 64 steps of 64)
# The figures below were measured at 2 torch threads. The ResNet is barely trained (64 steps, then 60% of its weights
# cut without a fine-tune: 48-64% float accuracy) and its int8 agreement swings with the last bits of its training
# (93.8% at 1 thread, 97.0% at 2), so the thread count is pinned, not left to the machine or an earlier test.
THREADS = 2


def _prune(model, subset, name):
    """Global magnitude pruning to 60%, one round, no fine-tune: through ``prune_model``, or — for the ResNet,
    whose skip connections ``prune_model``'s layer topology (a chain, sw/prune/masks.topology) does not
    follow — the same global threshold directly."""
    if name == "resnet8":
        masks = global_magnitude_masks(model, 0.6)
        apply_masks(model, masks)
        return masks
    fit_ds, val_ds = split_validation(subset, 300)
    return prune_model(model, PruneOptions("global", ScheduleParams(target_sparsity=0.6, rounds=1),
                                           finetune_epochs=0, progress=False), fit_ds, val_ds).masks


@pytest.fixture(autouse=True, scope="module")
def _pinned_threads():
    """The brief training's weights follow torch's thread count (sw/ml/threads.py): pinned, so the figures do not
    depend on the machine or on what an earlier test left the count at."""
    with pinned_threads(THREADS):
        yield


@pytest.fixture(scope="module")
def datasets():
    return {name: load_dataset(name, None, 0) for name in ("mnist5k", "mnist5k-rgb32")}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_trains_prunes_quantizes_and_runs(name, datasets, tmp_path):
    make, dataset, on_verilator, method = ZOO[name]
    train_ds, test_ds = datasets[dataset]
    torch.manual_seed(0)
    model = make()
    subset = TensorDataset(*(t[:TRAIN] for t in train_ds.tensors))
    train(model, subset, TrainConfig(epochs=2, lr=3e-3, seed=0, progress=False, augment_shift=0))
    masks = _prune(model, subset, name)
    model.eval()
    qnet = quantize_model(model, calibration_split(train_ds, 256), masks, name=name, method=method)
    assert decode_image(encode_image(qnet)).equals(qnet)
    test = TensorDataset(*(t[:500] for t in test_ds.tensors))
    result = compare(model, qnet, test)
    print(f"{name}: {result}")
    assert result.float_accuracy > 0.3  # learned something in 64 steps (VGG on padded digits is the slowest)
    assert result.agreement >= 0.95, result
    assert sum(int(m.sum()) for m in masks.values()) <= 0.75 * sum(m.numel() for m in masks.values())
    for layer in qnet.layers:  # pruned weights stay zero through BatchNorm folding, average-pool spreading
        if layer.inputs is not None and len(layer.inputs) == 2:  # a residual add: two factors per channel
            assert layer.nnz == 2 * layer.out_channels
            continue
        mask = masks[f"{layer.name}.weight"]
        assert layer.nnz <= int(mask.sum()) * (layer.weight.size // mask.numel())
    x = qnet.quantize_input(test.tensors[0][:2].numpy())
    program = compile_program(qnet, 16, x)
    assert all(c > 0 for c in program_cycles(program))
    if on_verilator:
        export_image(qnet, tmp_path / "img")
        run = simulate(tmp_path / "img" / "image.bin", samples=2, sim="verilator", lanes=16,
                       build_dir=tmp_path / "build")
        assert run.ok, run.check
        assert [row.cycles for row in run.layers] == [row.model for row in run.layers]
        print("\n".join(run.lines()))

