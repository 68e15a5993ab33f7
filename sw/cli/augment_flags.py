"""The random affine warp's two flags, shared by ``train``, ``prune`` and ``prune-bench``."""
from __future__ import annotations

import argparse

from sparsegate.sw.cli.main import CliError
from sparsegate.sw.ml.train import TrainConfig, check_augmentation


def add_augment_flags(parser: argparse.ArgumentParser, applies_to: str) -> None:
    parser.add_argument("--augment-rotate", type=float, default=0.0, metavar="DEG",
                        help=f"{applies_to} rotates the digits by up to DEG degrees and, with --augment-scale, zooms "
                             f"them: a random affine warp on top of the {TrainConfig.augment_shift}-pixel shifts "
                             "(default 0: shifts only)")
    parser.add_argument("--augment-scale", type=float, default=0.0, metavar="FRAC",
                        help="zoom the digits by up to FRAC (e.g. 0.1) in the same warp")


def augment_from_args(args: argparse.Namespace) -> dict[str, float]:
    """``augment_rotate`` / ``augment_scale`` keyword arguments, checked before any work starts."""
    try:
        check_augmentation(TrainConfig.augment_shift, args.augment_rotate, args.augment_scale)
    except ValueError as err:
        raise CliError(f"--augment-rotate / --augment-scale: {err}") from None
    return {"augment_rotate": args.augment_rotate, "augment_scale": args.augment_scale}
