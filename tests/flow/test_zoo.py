"""The model zoo through the whole flow: each ordinary PyTorch network (tests/support/zoo.py) trained briefly
on the embedded digits (the 32x32x3 ones on the digits padded and replicated to three channels), pruned
(global magnitude, one round, no fine-tune), quantized, written as a weight image and read back, compiled for
the engine; float-vs-int8 agreement measured. The MLP (flat input) and the VGG-style net (BatchNorm,
Dropout, a 2x2 average pool) run on the engine in Verilator, bit-exact with the golden model. The
ResNet's residual adds are refused, naming the add and its block."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from sparsegate.hw.engine.cycle_model import program_cycles
from sparsegate.hw.engine.program import compile_program
from sparsegate.sw.flow.simulate import simulate
from sparsegate.sw.ir.weight_image import decode_image, encode_image, export_image
from sparsegate.sw.ml.data import load_dataset
from sparsegate.sw.ml.quantize import QuantizationError, calibration_split, compare, quantize_model
from sparsegate.sw.ml.train import TrainConfig, train
from sparsegate.sw.prune import PruneOptions, ScheduleParams, prune_model
from sparsegate.sw.prune.iterative import split_validation

from sparsegate.sw.ml.zoo import LeNet300, LeNet5BN, ResNet8, VGGBN, sequential_net

ZOO = {  # name: (constructor, dataset, engine run in Verilator?)
    "lenet5-bn": (LeNet5BN, "mnist5k", False),
    "sequential": (sequential_net, "mnist5k", False),
    "lenet300": (LeNet300, "mnist5k", True),
    "vgg-bn-dropout": (VGGBN, "mnist5k-rgb32", True),
}
TRAIN = 2000  # digits per epoch of the brief training (2 epochs: 64 steps of 64)


@pytest.fixture(scope="module")
def datasets():
    return {name: load_dataset(name, None, 0) for name in ("mnist5k", "mnist5k-rgb32")}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_trains_prunes_quantizes_and_runs(name, datasets, tmp_path):
    make, dataset, on_verilator = ZOO[name]
    train_ds, test_ds = datasets[dataset]
    torch.manual_seed(0)
    model = make()
    subset = TensorDataset(*(t[:TRAIN] for t in train_ds.tensors))
    train(model, subset, TrainConfig(epochs=2, lr=3e-3, seed=0, progress=False, augment_shift=0))
    fit_ds, val_ds = split_validation(subset, 300)
    outcome = prune_model(model, PruneOptions("global", ScheduleParams(target_sparsity=0.6, rounds=1),
                                              finetune_epochs=0, progress=False), fit_ds, val_ds)
    model.eval()
    qnet = quantize_model(model, calibration_split(train_ds, 256), outcome.masks, name=name)
    assert decode_image(encode_image(qnet)).equals(qnet)
    test = TensorDataset(*(t[:500] for t in test_ds.tensors))
    result = compare(model, qnet, test)
    assert result.float_accuracy > 0.3  # learned something in 64 steps (VGG on padded digits is the slowest)
    assert result.agreement >= 0.95, result
    masks = outcome.masks
    assert sum(int(m.sum()) for m in masks.values()) <= 0.75 * sum(m.numel() for m in masks.values())
    for layer in qnet.layers:  # pruned weights stay zero through BatchNorm folding, average-pool spreading
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


def test_resnet_residual_adds_are_refused_by_name(datasets):
    with pytest.raises(QuantizationError, match=r"^function operator\.add \('add'\) in BasicBlock 'layer1': a "
                                                r"residual add.*hint: remove the skip connection"):
        quantize_model(ResNet8().eval(), calibration_split(datasets["mnist5k-rgb32"][0], 8))
