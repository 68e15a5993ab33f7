"""``sparsegate train``: train a model on a dataset, write the checkpoint and a JSON summary."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from sparsegate.sw.util.atomic_io import write_json
from sparsegate.sw.ml.data import DATASETS, load_dataset
from sparsegate.sw.ml.models import MODELS, build_model, count_layers
from sparsegate.sw.ml.train import TrainConfig, save_checkpoint, train

# Per-model recipe: default dataset and training settings.
RECIPES = {
    "lenet5": ("mnist5k", TrainConfig(epochs=12, lr=2e-3)),
    "lenet300": ("mnist5k", TrainConfig(epochs=15, lr=2e-3)),
    "vgg": ("mnist5k-rgb32", TrainConfig(epochs=8, lr=2e-3)),
}


def train_job(model_name: str, out: Path, dataset: str | None = None, data_path: str | None = None,
              epochs: int | None = None, lr: float | None = None, seed: int = 0,
              progress: bool = True) -> dict:
    """Train ``model_name`` from scratch; write ``out/model.pt`` and ``out/train.json``; return the summary."""
    if model_name not in RECIPES:
        raise ValueError(f"unknown model {model_name!r}; expected one of {sorted(MODELS)}")
    default_dataset, recipe = RECIPES[model_name]
    dataset = dataset or default_dataset
    config = TrainConfig(epochs=epochs if epochs is not None else recipe.epochs,
                         lr=lr if lr is not None else recipe.lr, seed=seed, progress=progress,
                         augment_shift=recipe.augment_shift, batch_size=recipe.batch_size)
    if config.epochs < 1:
        raise ValueError(f"--epochs must be at least 1, got {config.epochs}")
    train_ds, test_ds = load_dataset(dataset, data_path, seed)
    num_classes = int(max(train_ds.tensors[1].max(), test_ds.tensors[1].max())) + 1
    with torch.random.fork_rng():  # the initial weights follow the seed too, without touching the caller's RNG
        torch.manual_seed(seed)
        model = build_model(model_name, num_classes)
    input_shape = tuple(train_ds.tensors[0].shape[1:])
    layers = count_layers(model, input_shape)
    result = train(model, train_ds, config, test_ds=test_ds, desc=f"train {model_name}")
    out = Path(out)
    checkpoint = out / "model.pt"
    summary = {
        "model": model_name,
        "dataset": dataset,
        "seed": seed,
        "epochs": config.epochs,
        "test_accuracy": result.test_accuracy,
        "params": sum(layer.params for layer in layers),
        "macs": sum(layer.macs for layer in layers),
        "wall_time_s": result.wall_time_s,
        "history": result.history,
        "checkpoint": str(checkpoint),
    }
    save_checkpoint(checkpoint, model, model_name, meta={"dataset": dataset, "seed": seed,
                                                         "test_accuracy": result.test_accuracy})
    write_json(out / "train.json", summary)
    return summary


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="lenet5", choices=sorted(RECIPES))
    parser.add_argument("--dataset", default=None, choices=DATASETS,
                        help="default: mnist5k (mnist5k-rgb32 for vgg)")
    parser.add_argument("--data-path", default=None, help="folder of the mnist/cifar10 files")
    parser.add_argument("--epochs", type=int, default=None, help="default: the model's recipe")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    summary = train_job(args.model, args.out, dataset=args.dataset, data_path=args.data_path,
                        epochs=args.epochs, lr=args.lr, seed=args.seed, progress=not args.no_progress)
    print(f"{summary['model']} on {summary['dataset']}: test accuracy {100 * summary['test_accuracy']:.2f}% "
          f"({summary['params']:,} params, {summary['macs']:,} MACs, {summary['wall_time_s']:.1f} s)")
    print(f"checkpoint: {summary['checkpoint']}")
    return 0
