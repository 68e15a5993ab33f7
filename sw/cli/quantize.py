"""``sparsegate quantize``: calibrate a checkpoint to int8, compare float and quantized (golden model)
accuracy, and write the quantized model as a weight image plus a JSON summary
(:func:`sparsegate.sw.flow.quantize.quantize_job`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from sparsegate.sw.ml.quantize import CALIB_METHODS, CALIB_SIZE


def configure_calibration(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", default=None, help="default: the dataset recorded in the checkpoint")
    parser.add_argument("--data-path", default=None, help="folder of the mnist/cifar10 files")
    parser.add_argument("--calib-size", type=int, default=CALIB_SIZE, help="training images used for calibration")
    parser.add_argument("--calib-method", default="max", choices=CALIB_METHODS)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="checkpoint written by train/prune")
    parser.add_argument("--model", default=None, metavar="FILE.py:CLASS",
                        help="your model class (file.py:Class or package.module:Class) when the one the checkpoint "
                             "recorded moved; default: the recorded one")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    configure_calibration(parser)
    parser.add_argument("--qat-epochs", type=int, default=0,
                        help="quantization-aware fine-tuning epochs before quantizing (keeps masks)")
    parser.add_argument("--eval-size", type=int, default=None, help="evaluate on the first N test images")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from sparsegate.sw.flow.quantize import quantize_job

    s = quantize_job(args.checkpoint, args.out, args.dataset, args.data_path, args.calib_size, args.calib_method,
                     args.qat_epochs, args.eval_size, progress=not args.no_progress, model_spec=args.model)
    print(f"{s.model} on {s.dataset} ({s.samples} test images): float {100 * s.float_accuracy:.2f}%, int8 "
          f"{100 * s.quant_accuracy:.2f}% ({s.accuracy_drop_points:+.2f} points drop), predictions agree on "
          f"{100 * s.agreement:.2f}%")
    print(f"quantized model: {s.quantized} ({s.image_bytes:,} bytes)")
    return 0
