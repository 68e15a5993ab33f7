"""``sparsegate quantize``: calibrate a checkpoint to int8, compare float and quantized (golden model)
accuracy, and write the quantized model as a weight image plus a JSON summary."""
from __future__ import annotations

import argparse
from pathlib import Path

from sparsegate.sw.util.atomic_io import write_json

QUANTIZED_NAME = "quantized.bin"
SUMMARY_NAME = "quantize.json"
QAT_CHECKPOINT = "model_qat.pt"


def model_name(model) -> str:
    """The CLI name of a model instance (``lenet5``, ...), else its class name in lower case."""
    from sparsegate.sw.ml.models import MODELS

    return next((name for name, cls in MODELS.items() if type(model) is cls), type(model).__name__.lower())


def load_and_quantize(checkpoint: Path, dataset: str | None = None, data_path: str | None = None,
                      calib_size: int = 512, method: str = "max", qat_epochs: int = 0,
                      progress: bool = True):
    """Load a checkpoint, its dataset (from the checkpoint's metadata unless given), optionally run QAT,
    and quantize. Returns (model, masks, qnet, test_ds, info)."""
    from sparsegate.sw.ml.data import load_dataset
    from sparsegate.sw.ml.quantize import calibration_split, qat_finetune, quantize_model
    from sparsegate.sw.ml.train import TrainConfig, load_checkpoint

    if calib_size < 1:
        raise ValueError(f"--calib-size must be at least 1, got {calib_size}")
    if qat_epochs < 0:
        raise ValueError(f"--qat-epochs must be >= 0, got {qat_epochs}")
    model, masks, meta = load_checkpoint(checkpoint)
    seed = int(meta.get("seed", 0))
    dataset = dataset or meta.get("dataset") or "mnist5k"
    train_ds, test_ds = load_dataset(dataset, data_path, seed)
    calib = calibration_split(train_ds, calib_size, seed)
    if qat_epochs:
        qat_finetune(model, train_ds, calib, masks,
                     TrainConfig(epochs=qat_epochs, lr=2e-4, seed=seed, progress=progress))
    name = model_name(model)
    qnet = quantize_model(model, calib, masks, name=name, method=method)
    info = {"model": name, "dataset": dataset, "seed": seed, "calib_size": len(calib.tensors[0]),
            "calib_method": method, "qat_epochs": qat_epochs}
    return model, masks, qnet, test_ds, info


def configure_calibration(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default=None, help="default: the dataset recorded in the checkpoint")
    parser.add_argument("--data-path", default=None, help="folder of the mnist/cifar10 files")
    parser.add_argument("--calib-size", type=int, default=512, help="training images used for calibration")
    parser.add_argument("--calib-method", default="max", choices=("max", "percentile"))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="checkpoint written by train/prune")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    configure_calibration(parser)
    parser.add_argument("--qat-epochs", type=int, default=0,
                        help="quantization-aware fine-tuning epochs before quantizing (keeps masks)")
    parser.add_argument("--eval-size", type=int, default=None, help="evaluate on the first N test images")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from torch.utils.data import TensorDataset

    from sparsegate.sw.ml.quantize import compare
    from sparsegate.sw.ml.train import save_checkpoint
    from sparsegate.sw.ir.weight_image import write_image

    if args.eval_size is not None and args.eval_size < 1:
        raise ValueError(f"--eval-size must be at least 1, got {args.eval_size}")
    model, masks, qnet, test_ds, info = load_and_quantize(
        args.checkpoint, args.dataset, args.data_path, args.calib_size, args.calib_method, args.qat_epochs,
        progress=not args.no_progress)
    if args.eval_size is not None:
        test_ds = TensorDataset(*(t[:args.eval_size] for t in test_ds.tensors))
    metrics = compare(model, qnet, test_ds)
    out = Path(args.out)
    image_bytes = write_image(out / QUANTIZED_NAME, qnet)
    summary = {**info, "checkpoint": str(args.checkpoint), **metrics,
               "accuracy_drop_points": 100 * (metrics["float_accuracy"] - metrics["quant_accuracy"]),
               "input_scale": qnet.input_scale,
               "layers": [{"name": layer.name, "in_scale": layer.in_scale, "out_scale": layer.out_scale,
                           "nnz": layer.nnz, "weights": int(layer.weight.size),
                           "acc_bits": layer.accumulator_bits()} for layer in qnet.layers],
               "quantized": str(out / QUANTIZED_NAME), "image_bytes": image_bytes}
    if args.qat_epochs:
        save_checkpoint(out / QAT_CHECKPOINT, model, info["model"], masks,
                        meta={"dataset": info["dataset"], "seed": info["seed"], "qat_epochs": args.qat_epochs})
        summary["qat_checkpoint"] = str(out / QAT_CHECKPOINT)
    write_json(out / SUMMARY_NAME, summary)
    print(f"{info['model']} on {info['dataset']} ({metrics['samples']} test images): float "
          f"{100 * metrics['float_accuracy']:.2f}%, int8 {100 * metrics['quant_accuracy']:.2f}% "
          f"({summary['accuracy_drop_points']:+.2f} points drop), predictions agree on "
          f"{100 * metrics['agreement']:.2f}%")
    print(f"quantized model: {out / QUANTIZED_NAME} ({image_bytes:,} bytes)")
    return 0
