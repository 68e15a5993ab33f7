"""The quantize job: a checkpoint calibrated to int8 (optionally after quantization-aware fine-tuning),
float vs golden-model accuracy compared, the quantized network written as a weight image plus
``quantize.json``."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from torch import nn
from torch.utils.data import TensorDataset

from sparsegate.sw.ir.golden import QuantizedNetwork
from sparsegate.sw.ir.weight_image import write_image
from sparsegate.sw.ml.data import load_dataset
from sparsegate.sw.ml.models import model_name
from sparsegate.sw.ml.quantize import CALIB_SIZE, calibration_split, compare, qat_finetune, quantize_model
from sparsegate.sw.ml.train import Masks, TrainConfig, checkpoint_split, load_checkpoint, save_checkpoint
from sparsegate.sw.prune.iterative import fit_digits
from sparsegate.sw.util.atomic_io import write_json

QUANTIZED_NAME = "quantized.bin"
SUMMARY_NAME = "quantize.json"
QAT_CHECKPOINT = "model_qat.pt"


class QuantizeJobError(ValueError):
    """An impossible quantize request (calibration size, QAT epochs, evaluation size)."""


@dataclass
class QuantizedCheckpoint:
    """A checkpoint and its int8 network: the float model (after QAT, if any), its masks, the test split;
    ``held_out``: how many validation digits the model (QAT included) never trained on."""

    model: nn.Module
    masks: Masks
    qnet: QuantizedNetwork
    test_ds: TensorDataset
    name: str
    dataset: str
    seed: int
    calib_size: int
    calib_method: str
    qat_epochs: int
    held_out: int


@dataclass
class QuantizeSummary:
    """What ``quantize.json`` holds: the calibration, float vs int8 accuracy, per-layer scales and sizes."""

    model: str
    dataset: str
    seed: int
    calib_size: int
    calib_method: str
    qat_epochs: int
    checkpoint: str
    float_accuracy: float
    quant_accuracy: float
    agreement: float
    samples: int
    accuracy_drop_points: float
    input_scale: float
    layers: list[dict]
    quantized: str
    image_bytes: int
    qat_checkpoint: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        if d["qat_checkpoint"] is None:
            del d["qat_checkpoint"]
        return d


def load_and_quantize(checkpoint: Path, dataset: str | None = None, data_path: str | None = None,
                      calib_size: int = CALIB_SIZE, method: str = "max", qat_epochs: int = 0,
                      progress: bool = True, model_spec: str | None = None) -> QuantizedCheckpoint:
    """Load a checkpoint and its dataset (the checkpoint's own unless given), optionally run QAT, and
    quantize on ``calib_size`` training images. QAT fine-tunes on the training digits outside the checkpoint's
    hold-out, so the hold-out stays unseen for a later prune. ``model_spec`` names a user's model class that moved
    (:func:`~sparsegate.sw.ml.train.load_checkpoint`)."""
    if calib_size < 1:
        raise QuantizeJobError(f"--calib-size must be at least 1, got {calib_size}")
    if qat_epochs < 0:
        raise QuantizeJobError(f"--qat-epochs must be >= 0, got {qat_epochs}")
    model, masks, meta = load_checkpoint(checkpoint, model_spec)
    dataset = dataset or meta.get("dataset") or "mnist5k"
    split = checkpoint_split(meta, checkpoint, dataset=dataset)
    seed, held_out = split.seed, split.held_out or 0
    train_ds, test_ds = load_dataset(dataset, data_path, seed)
    split.check(len(train_ds), checkpoint, dataset)
    calib = calibration_split(train_ds, calib_size, seed)
    if qat_epochs:
        fit_ds = fit_digits(train_ds, held_out, seed)
        qat_finetune(model, fit_ds, calib, masks,
                     TrainConfig(epochs=qat_epochs, lr=2e-4, seed=seed, progress=progress))
    name = model_name(model)
    qnet = quantize_model(model, calib, masks, name=name, method=method)
    return QuantizedCheckpoint(model=model, masks=masks, qnet=qnet, test_ds=test_ds, name=name, dataset=dataset,
                               seed=seed, calib_size=len(calib.tensors[0]), calib_method=method,
                               qat_epochs=qat_epochs, held_out=held_out)


def quantize_job(checkpoint: Path, out: Path, dataset: str | None = None, data_path: str | None = None,
                 calib_size: int = CALIB_SIZE, method: str = "max", qat_epochs: int = 0,
                 eval_size: int | None = None, progress: bool = True,
                 model_spec: str | None = None) -> QuantizeSummary:
    """Quantize ``checkpoint`` and compare float and int8 accuracy on the test split (its first
    ``eval_size`` images); write ``out/quantized.bin``, ``out/quantize.json`` and, after QAT, the
    fine-tuned float checkpoint ``out/model_qat.pt``."""
    if eval_size is not None and eval_size < 1:
        raise QuantizeJobError(f"--eval-size must be at least 1, got {eval_size}")
    q = load_and_quantize(checkpoint, dataset, data_path, calib_size, method, qat_epochs, progress, model_spec)
    test_ds = q.test_ds if eval_size is None else TensorDataset(*(t[:eval_size] for t in q.test_ds.tensors))
    metrics = compare(q.model, q.qnet, test_ds)
    out = Path(out)
    image_bytes = write_image(out / QUANTIZED_NAME, q.qnet)
    summary = QuantizeSummary(
        model=q.name, dataset=q.dataset, seed=q.seed, calib_size=q.calib_size, calib_method=q.calib_method,
        qat_epochs=qat_epochs, checkpoint=str(checkpoint), **asdict(metrics),
        accuracy_drop_points=100 * (metrics.float_accuracy - metrics.quant_accuracy), input_scale=q.qnet.input_scale,
        layers=[{"name": layer.name, "in_scale": layer.in_scale, "out_scale": layer.out_scale, "nnz": layer.nnz,
                 "weights": int(layer.weight.size), "acc_bits": layer.accumulator_bits()} for layer in q.qnet.layers],
        quantized=str(out / QUANTIZED_NAME), image_bytes=image_bytes)
    if qat_epochs:
        save_checkpoint(out / QAT_CHECKPOINT, q.model, q.name, q.masks,
                        meta={"dataset": q.dataset, "seed": q.seed, "held_out": q.held_out, "qat_epochs": qat_epochs})
        summary.qat_checkpoint = str(out / QAT_CHECKPOINT)
    write_json(out / SUMMARY_NAME, summary.to_dict())
    return summary
