"""``sparsegate prune --method lowrank``: SVD / channel-decomposition factorization on the ``prune`` command.

``sw/cli/prune.py`` registers the method (its ``REGISTERED_METHODS``); :func:`configure_prune` adds the
arguments, :func:`run_prune` runs it::

    sparsegate prune --method lowrank --target-compression 4 --checkpoint runs/lenet5/model.pt --out runs/lr
    sparsegate prune --method lowrank --ranks fc1=32,conv2=20 ...          # explicit ranks
    sparsegate prune --method lowrank --target-compression 4 --target-sparsity 0.5 ...   # then prune the factors

A pruned checkpoint (masks) is factorized as pruned: the masked weights are decomposed. ``--layers`` picks
the layers (default: all but the last), ``--rank-allocation energy|uniform`` how the budget is shared,
``--finetune-epochs`` the fine-tune after factorizing (and again after pruning the factors; default 3).

Outputs: ``lowrank.pt`` (weights, ranks and masks; :func:`sparsegate.sw.prune.lowrank.load_lowrank`), the per-layer
table of the factorized model (``layers.json``/``.md``, ``layers.png``: rows ``fc1.first``, ``fc1.second``, ...)
and ``prune.json``. Compression in the summary is against the original checkpoint's parameters.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from sparsegate.sw.prune.masks import PruneError

METHODS = ("lowrank",)


def configure_prune(parser: argparse.ArgumentParser) -> None:
    """The low-rank arguments (the shared ones — --layers, --target-sparsity, --finetune-epochs, --lr, --val-size,
    --dataset, --seed — come from ``prune``)."""
    g = parser.add_argument_group("low-rank factorization (lowrank)")
    g.add_argument("--target-compression", type=float, default=None,
                   help="lowrank: the factorized layers keep 1/C of their dense weights (C > 1)")
    g.add_argument("--rank-allocation", choices=("energy", "uniform"), default="energy",
                   help="lowrank: share the weight budget by singular-value energy per weight, or uniformly")
    g.add_argument("--ranks", default=None, help="lowrank: explicit ranks, e.g. fc1=32,conv2=20 (instead of a target)")


def parse_ranks(text: str) -> dict[str, int]:
    ranks = {}
    for item in (s.strip() for s in text.split(",") if s.strip()):
        name, sep, value = item.partition("=")
        try:
            ranks[name.strip()] = int(value)
        except ValueError:
            raise PruneError(f"ranks: expected LAYER=RANK items such as fc1=32, got {item!r}") from None
        if not sep:
            raise PruneError(f"ranks: expected LAYER=RANK items such as fc1=32, got {item!r}")
    if not ranks:
        raise PruneError("ranks: empty list")
    return ranks


def run_prune(args: argparse.Namespace) -> int:
    from sparsegate.sw.util.atomic_io import write_json, write_text
    from sparsegate.sw.prune.counting import layer_table, plot_layer_table
    from sparsegate.sw.ml.data import load_dataset
    from sparsegate.sw.prune.lowrank import choose_ranks, lowrank_prune, max_rank, save_lowrank
    from sparsegate.sw.prune.masks import apply_masks, check_ratio, resolve_layers, verify_masks
    from sparsegate.sw.ml.models import MODELS, prunable_layers
    from sparsegate.sw.prune.iterative import FineTuneConfig, accuracy, split_validation
    from sparsegate.sw.ml.train import load_checkpoint

    if args.method not in METHODS:
        raise PruneError(f"method: {args.method!r} is not the low-rank method")
    if args.target_flops is not None or args.granularity is not None or args.nrp or args.max_drop is not None:
        raise PruneError("method 'lowrank' does not take --target-flops, --granularity, --nrp or --max-drop")
    if (args.target_compression is None) == (args.ranks is None):
        raise PruneError("method 'lowrank' needs --target-compression or --ranks (one of them)")
    if args.finetune_epochs is not None and args.finetune_epochs < 0:
        raise PruneError(f"finetune_epochs must be >= 0, got {args.finetune_epochs}")
    sparsity = check_ratio(args.target_sparsity, "target_sparsity") if args.target_sparsity is not None else None
    model, masks, meta = load_checkpoint(args.checkpoint)
    model_name = next(name for name, cls in MODELS.items() if type(model) is cls)
    layers = [s.strip() for s in args.layers.split(",") if s.strip()] if args.layers else None
    mods = prunable_layers(model)
    if args.ranks is not None:
        ranks = parse_ranks(args.ranks)
        resolve_layers(model, list(ranks), field="ranks")
        for name, rank in ranks.items():
            if not 1 <= rank <= max_rank(mods[name]):
                raise PruneError(f"ranks: {name}={rank} outside [1, {max_rank(mods[name])}]")
    else:
        apply_masks(model, masks)
        ranks = choose_ranks(model, args.target_compression, layers, args.rank_allocation)
    dataset = args.dataset or meta.get("dataset") or ("mnist5k-rgb32" if model_name == "vgg" else "mnist5k")
    train_ds, test_ds = load_dataset(dataset, args.data_path, args.seed)
    fit_ds, val_ds = split_validation(train_ds, args.val_size, args.seed)
    apply_masks(model, masks)
    base_test = accuracy(model, test_ds)
    base = layer_table(model, masks).total
    ft = FineTuneConfig(epochs=3 if args.finetune_epochs is None else args.finetune_epochs, lr=args.lr,
                        seed=args.seed)
    res = lowrank_prune(model, fit_ds, val_ds, args.target_compression, args.rank_allocation, ft, masks, layers,
                        sparsity, ranks=ranks)
    verify_masks(model, res.masks)
    test_acc = accuracy(model, test_ds)
    table = layer_table(model, res.masks)
    t = table.total
    summary = {"method": "lowrank", "model": model_name, "dataset": dataset, "seed": args.seed,
               "checkpoint": str(args.checkpoint), "val_size": args.val_size, "base_test_accuracy": base_test,
               "test_accuracy": test_acc, "accuracy_drop": base_test - test_acc,
               "original_params": base.params, "original_nonzero_params": base.nonzero_params,
               "original_macs": base.macs, "nonzero_params": t.nonzero_params, "params": t.params,
               "compression": base.params / t.nonzero_params, "mac_reduction": 1 - t.macs / base.dense_macs,
               "info": res.summary(), "table": table.to_dict()}
    out = Path(args.out)
    paths = {"model": out / "lowrank.pt", "layers_json": out / "layers.json", "layers_md": out / "layers.md",
             "summary": out / "prune.json", "layers_png": out / "layers.png"}
    save_lowrank(paths["model"], model, model_name, res.masks,
                 meta={k: summary[k] for k in ("method", "dataset", "seed", "test_accuracy", "compression")})
    write_json(paths["layers_json"], table.to_dict())
    write_text(paths["layers_md"], (
        f"# {model_name} factorized (low rank, {res.allocation} allocation)\n\n"
        f"Ranks {res.ranks}; factorized layers keep {res.factorized_weights:,} of {res.dense_weights:,} weights "
        f"({res.achieved_compression:.2f}x){'' if sparsity is None else f', factors then pruned to {100 * sparsity:.0f}% sparsity'}. "
        f"Test accuracy {100 * test_acc:.2f}% (base {100 * base_test:.2f}%); {t.nonzero_params:,} nonzero of "
        f"{base.params:,} original params ({summary['compression']:.2f}x); MACs {t.macs:,} of the original "
        f"{base.dense_macs:,} ({100 * summary['mac_reduction']:.1f}% fewer).\n\n" + table.to_markdown()))
    plot_layer_table(table, paths["layers_png"])
    write_json(paths["summary"], dict(summary, outputs={k: str(v) for k, v in paths.items()}))
    print(f"{model_name} lowrank: ranks {res.ranks}, test accuracy {100 * test_acc:.2f}% (base {100 * base_test:.2f}%), "
          f"{t.nonzero_params:,}/{base.params:,} params ({summary['compression']:.2f}x), "
          f"MACs -{100 * summary['mac_reduction']:.1f}% [{res.wall_time_s:.1f} s]")
    print(f"outputs: {out}")
    return 0
