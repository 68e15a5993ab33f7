"""``sparsegate train``: train a model on a dataset, write the checkpoint and a JSON summary."""
from __future__ import annotations

import argparse
from pathlib import Path

from sparsegate.sw.cli.training_flags import add_training_flags, training_from_args
from sparsegate.sw.ml.data import DATASETS
from sparsegate.sw.ml.train import RECIPES
from sparsegate.sw.prune.iterative import VAL_SIZE


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="lenet5", metavar="MODEL",
                        help=f"one of {', '.join(sorted(RECIPES))}, or your own class: path/to/file.py:ClassName or "
                             "package.module:ClassName (constructs with no arguments; an input_shape attribute "
                             "(3, 32, 32) picks mnist5k-rgb32)")
    parser.add_argument("--dataset", default=None, choices=DATASETS,
                        help="default: mnist5k (mnist5k-rgb32 for vgg)")
    parser.add_argument("--data-path", default=None, help="folder of the mnist/cifar10 files")
    parser.add_argument("--epochs", type=int, default=None, help="default: the model's recipe")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-size", type=int, default=VAL_SIZE, metavar="N",
                        help="training digits held out (the seeded validation split sparsegate prune reads), so "
                             f"pruning decides on digits the model has not seen; 0 trains on all (default {VAL_SIZE})")
    add_training_flags(parser, "training", None)
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from sparsegate.sw.flow.train import train_job

    summary = train_job(args.model, args.out, dataset=args.dataset, data_path=args.data_path,
                        epochs=args.epochs, lr=args.lr, seed=args.seed, progress=not args.no_progress,
                        val_size=args.val_size, **training_from_args(args))
    print(f"{summary.model} on {summary.dataset}: test accuracy {100 * summary.test_accuracy:.2f}% "
          f"({summary.params:,} params, {summary.macs:,} MACs, {summary.wall_time_s:.1f} s; "
          f"{summary.held_out} training digits held out for validation)")
    print(f"checkpoint: {summary.checkpoint}")
    return 0
