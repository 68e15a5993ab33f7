"""The training flags shared by ``train``, ``prune`` and ``prune-bench``: the random affine warp and weight decay."""
from __future__ import annotations

import argparse

from sparsegate.sw.cli.main import CliError
from sparsegate.sw.ml.train import RECIPES, TrainConfig, check_augmentation, check_weight_decay


def recipe_weight_decay() -> str:
    """Which built-in recipes train with weight decay, and how strong (help text of ``train`` and ``demo``)."""
    decays = {name: recipe.weight_decay for name, (_, recipe) in RECIPES.items() if recipe.weight_decay}
    strengths = " / ".join(sorted({f"{wd:g}" for wd in decays.values()}))
    return f"{strengths} for {' and '.join(decays)}, 0 for the other models"


def add_training_flags(parser: argparse.ArgumentParser, applies_to: str, weight_decay: float | None) -> None:
    """``--augment-rotate``, ``--augment-scale`` and ``--weight-decay`` (default ``weight_decay``; ``None``: the
    model's recipe decides) for ``applies_to`` ("training", "every fine-tune", ...)."""
    parser.add_argument("--augment-rotate", type=float, default=0.0, metavar="DEG",
                        help=f"{applies_to} rotates the digits by up to DEG degrees and, with --augment-scale, zooms "
                             f"them: a random affine warp on top of the {TrainConfig.augment_shift}-pixel shifts "
                             "(default 0: shifts only)")
    parser.add_argument("--augment-scale", type=float, default=0.0, metavar="FRAC",
                        help="zoom the digits by up to FRAC (e.g. 0.1) in the same warp")
    default = f"the model's recipe: {recipe_weight_decay()}" if weight_decay is None else f"{weight_decay:g}"
    parser.add_argument("--weight-decay", type=float, default=weight_decay, metavar="L2",
                        help=f"{applies_to} adds L2 weight decay of this strength to Adam's gradients "
                             f"(default {default})")


def training_from_args(args: argparse.Namespace) -> dict[str, float | None]:
    """``augment_rotate`` / ``augment_scale`` / ``weight_decay`` keyword arguments, checked before any work."""
    try:
        check_augmentation(TrainConfig.augment_shift, args.augment_rotate, args.augment_scale)
    except ValueError as err:
        raise CliError(f"--augment-rotate / --augment-scale: {err}") from None
    if args.weight_decay is not None:
        try:
            check_weight_decay(args.weight_decay)
        except ValueError as err:
            raise CliError(f"--weight-decay: {err}") from None
    return {"augment_rotate": args.augment_rotate, "augment_scale": args.augment_scale,
            "weight_decay": args.weight_decay}
