"""The train job: one model trained from scratch on its recipe, written as ``model.pt`` + ``train.json``."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from sparsegate.sw.ml.data import load_dataset
from sparsegate.sw.ml.models import build_model, count_layers
from sparsegate.sw.ml.train import RECIPES, TrainConfig, save_checkpoint, train
from sparsegate.sw.ml.user_model import build_user_model, is_spec, resolve
from sparsegate.sw.prune.iterative import VAL_SIZE, fit_digits
from sparsegate.sw.util.atomic_io import write_json

USER_RECIPE = TrainConfig(epochs=5, lr=2e-3)  # a user's model (--model file.py:Class): 5 epochs unless --epochs


class TrainJobError(ValueError):
    """An impossible train request (unknown model, fewer than one epoch)."""


@dataclass
class TrainSummary:
    """What ``train.json`` holds: the model, its data, the test accuracy, size and the per-epoch history."""

    model: str
    dataset: str
    seed: int
    epochs: int
    test_accuracy: float
    params: int
    macs: int
    wall_time_s: float
    history: list[dict]
    checkpoint: Path
    augment: dict  # the random warp's bounds: shift (pixels), rotate (degrees), scale (zoom fraction)
    weight_decay: float  # L2 strength inside Adam
    held_out: int  # leading digits of the seeded validation split not trained on (0: trained on all)

    def to_dict(self) -> dict:
        return {**asdict(self), "checkpoint": str(self.checkpoint)}


def train_job(model_name: str, out: Path, dataset: str | None = None, data_path: str | None = None,
              epochs: int | None = None, lr: float | None = None, seed: int = 0,
              progress: bool = True, augment_rotate: float = 0.0, augment_scale: float = 0.0,
              weight_decay: float | None = None, val_size: int = VAL_SIZE) -> TrainSummary:
    """Train ``model_name`` — a built-in name or a user's ``file.py:Class`` / ``package.module:Class``
    (:mod:`~sparsegate.sw.ml.user_model`) — from scratch (its recipe unless overridden); write
    ``out/model.pt`` and ``out/train.json``. Deterministic for a ``seed``: the initial weights follow it too.
    ``epochs``, ``lr`` and ``weight_decay`` default to the recipe's (the LeNets train with L2 weight decay).
    The ``val_size`` digits of the seeded validation split are held out of training (0: train on all), so that
    ``sparsegate prune`` decides on digits the model has not seen; the checkpoint records the split."""
    if is_spec(model_name):
        cls, _ = resolve(model_name)  # a bad spec fails before the data is loaded
        default_dataset = "mnist5k-rgb32" if tuple(getattr(cls, "input_shape", ())) == (3, 32, 32) else "mnist5k"
        recipe = USER_RECIPE
    elif model_name in RECIPES:
        default_dataset, recipe = RECIPES[model_name]
    else:
        raise TrainJobError(f"unknown model {model_name!r}; expected one of {sorted(RECIPES)} or "
                            "path/to/file.py:ClassName or package.module:ClassName")
    dataset = dataset or default_dataset
    config = TrainConfig(epochs=epochs if epochs is not None else recipe.epochs,
                         lr=lr if lr is not None else recipe.lr, seed=seed, progress=progress,
                         augment_shift=recipe.augment_shift, augment_rotate=augment_rotate,
                         augment_scale=augment_scale, batch_size=recipe.batch_size,
                         weight_decay=weight_decay if weight_decay is not None else recipe.weight_decay)
    if config.epochs < 1:
        raise TrainJobError(f"--epochs must be at least 1, got {config.epochs}")
    train_ds, test_ds = load_dataset(dataset, data_path, seed)
    if not 0 <= val_size < len(train_ds):
        raise TrainJobError(f"--val-size must be between 0 and {len(train_ds) - 1} (the {dataset} training digits - 1), "
                            f"got {val_size}")
    fit_ds = fit_digits(train_ds, val_size, seed)
    num_classes = int(max(train_ds.tensors[1].max(), test_ds.tensors[1].max())) + 1
    with torch.random.fork_rng():  # the initial weights follow the seed too, without touching the caller's RNG
        torch.manual_seed(seed)
        model = build_user_model(model_name, num_classes) if is_spec(model_name) else build_model(model_name, num_classes)
    try:
        layers = count_layers(model, tuple(train_ds.tensors[0].shape[1:]))
    except Exception as err:  # a user's forward() can fail in any way; name the model and the input
        if not is_spec(model_name):
            raise
        raise TrainJobError(f"--model {model_name}: forward() fails on a {tuple(train_ds.tensors[0].shape[1:])} "
                            f"input of {dataset} ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    result = train(model, fit_ds, config, test_ds=test_ds, desc=f"train {model_name}")
    out = Path(out)
    summary = TrainSummary(model=model_name, dataset=dataset, seed=seed, epochs=config.epochs,
                           test_accuracy=result.test_accuracy, params=sum(layer.params for layer in layers),
                           macs=sum(layer.macs for layer in layers), wall_time_s=result.wall_time_s,
                           history=result.history, checkpoint=out / "model.pt",
                           augment={"shift": config.augment_shift, "rotate": config.augment_rotate,
                                    "scale": config.augment_scale}, weight_decay=config.weight_decay,
                           held_out=val_size)
    save_checkpoint(summary.checkpoint, model, model_name, meta={"dataset": dataset, "seed": seed, "held_out": val_size,
                                                                 "test_accuracy": result.test_accuracy})
    write_json(out / "train.json", summary.to_dict())
    return summary
