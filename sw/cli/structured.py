"""``sparsegate prune --method kep|coarse|task``: the structured methods on the ``prune`` command.

``sw/cli/prune.py`` registers these methods (its ``REGISTERED_METHODS``) and hands them over here:
:func:`configure_prune` adds their arguments to the ``prune`` parser, :func:`run_prune` runs one. The outputs
are those of every ``prune`` run (:func:`sparsegate.sw.cli.prune.write_outputs`: ``model.pt``,
``layers.json``/``.md``, ``prune.json``, ``layers.png``), plus with ``--shrink`` the physically smaller model
``shrunk.pt`` (:func:`sparsegate.sw.prune.shrink.save_shrunk`).

* ``kep``: ``--keep K`` (elements per plane, one shot: penalty -> cut -> fine-tune) or ``--target-sparsity``
  / ``--max-drop`` (conv-weight sparsity under the shared schedule); ``--kep-mode pattern|free``,
  ``--patterns``, ``--penalty``, ``--penalty-epochs``, ``--allocation global|uniform``.
* ``coarse``: ``--fmap-ratio`` / ``--kernel-ratio`` (one shot) or ``--target-sparsity`` / ``--max-drop``;
  ``--coarse-level feature_map|kernel|both``, ``--candidates N``, ``--search layer|network``,
  ``--mask-choice random|l1``, ``--fmap-share``.
* ``task``: ``--classes 3,5,8 --filter-ratio R`` [``--criterion fisher|between|response``,
  ``--subtask-epochs``]: the checkpoint's model is specialised to the sub-task (its output rows), fine-tuned
  on it, and its least task-relevant filters are removed; the written model has ``len(classes)`` outputs and
  all accuracies are on the sub-task's data.

``--layers`` restricts any of them (conv layers for kep/coarse); ``--finetune-epochs`` is per round
(iterative) or after pruning (one shot; default 2 / 4).
"""
from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from sparsegate.sw.prune.masks import PruneError

METHODS = ("kep", "coarse", "task")


def configure_prune(parser: argparse.ArgumentParser) -> None:
    """The structured methods' arguments (the shared ones — --layers, --target-sparsity, --max-drop, --step,
    --late-step, --rounds, --selection, --finetune-epochs, --lr, --val-size, --dataset, --seed — come from
    ``prune``)."""
    g = parser.add_argument_group("structured methods (kep, coarse, task)")
    g.add_argument("--shrink", action="store_true", help="also write shrunk.pt: removed channels taken out for real")
    g.add_argument("--keep", type=int, default=None, help="kep: elements kept per kernel plane (one shot)")
    g.add_argument("--kep-mode", choices=("pattern", "free"), default="pattern",
                   help="kep: shared element patterns per layer, or free choice per plane")
    g.add_argument("--patterns", type=int, default=8, help="kep: shared patterns per layer (pattern mode)")
    g.add_argument("--penalty", type=float, default=4.0,
                   help="kep: prior-mask penalty, decay exponent over the penalty phase (0: none)")
    g.add_argument("--penalty-epochs", type=int, default=1, help="kep: epochs under the penalty before each cut")
    g.add_argument("--allocation", choices=("global", "uniform"), default="global",
                   help="kep with a sparsity target: per-layer keep chosen globally or the same for all layers")
    g.add_argument("--coarse-level", choices=("feature_map", "kernel", "both"), default="both",
                   help="coarse: granularity")
    g.add_argument("--fmap-ratio", type=float, default=None, help="coarse: fraction of feature maps removed (one shot)")
    g.add_argument("--kernel-ratio", type=float, default=None,
                   help="coarse: fraction of the live kernel planes removed (one shot)")
    g.add_argument("--candidates", type=int, default=20, help="coarse: random masks evaluated per choice (1: random)")
    g.add_argument("--search", choices=("layer", "network"), default="layer",
                   help="coarse: choose the least-adversarial mask layer by layer or for the whole network")
    g.add_argument("--mask-choice", choices=("random", "l1"), default="random",
                   help="coarse: random candidates (least adversarial) or smallest L1 norm (filter-norm baseline)")
    g.add_argument("--fmap-share", type=float, default=0.5,
                   help="coarse both with a sparsity target: share of it given to feature maps (log kept fraction)")
    g.add_argument("--classes", default=None, help="task: the sub-task's classes, e.g. 3,5,8")
    g.add_argument("--filter-ratio", type=float, default=None, help="task: fraction of each layer's filters removed")
    g.add_argument("--criterion", choices=("fisher", "between", "response"), default="fisher",
                   help="task: filter relevance score")
    g.add_argument("--subtask-epochs", type=int, default=2, help="task: fine-tune epochs on the sub-task before scoring")


def _check(args: argparse.Namespace) -> None:
    iterative = args.target_sparsity is not None or args.max_drop is not None
    if args.target_flops is not None or args.granularity is not None or args.nrp:
        raise PruneError(f"method {args.method!r} does not take --target-flops, --granularity or --nrp")
    if args.method == "kep":
        if args.keep is None and not iterative:
            raise PruneError("method 'kep' needs --keep (elements per plane) or --target-sparsity/--max-drop")
        if args.keep is not None and iterative:
            raise PruneError("method 'kep': give --keep or --target-sparsity/--max-drop, not both")
    elif args.method == "coarse":
        oneshot = args.fmap_ratio is not None or args.kernel_ratio is not None
        if oneshot == iterative:
            raise PruneError("method 'coarse' needs --fmap-ratio/--kernel-ratio (one shot) or "
                             "--target-sparsity/--max-drop (iterative), not both")
    elif args.method == "task":
        if args.classes is None or args.filter_ratio is None:
            raise PruneError("method 'task' needs --classes (e.g. 3,5,8) and --filter-ratio")
        if iterative:
            raise PruneError("method 'task' takes --filter-ratio, not --target-sparsity/--max-drop")
    if args.finetune_epochs is not None and args.finetune_epochs < 0:
        raise PruneError(f"finetune_epochs must be >= 0, got {args.finetune_epochs}")


def run_prune(args: argparse.Namespace) -> int:
    """Run one structured method from parsed ``prune`` arguments; write the outputs; print a summary line."""
    import time

    import torch
    from torch.utils.data import TensorDataset

    from sparsegate.sw.prune.coarse import CoarseConfig, check_ratios, coarse_prune, coarse_prune_ratios
    from sparsegate.sw.prune.counting import layer_table
    from sparsegate.sw.ml.data import load_dataset
    from sparsegate.sw.prune.kep import KEPConfig, conv_layers, conv_sparsity, index_cost, kep_masks, kep_prune, kep_prune_iterative
    from sparsegate.sw.prune.masks import apply_masks, copy_masks, verify_masks
    from sparsegate.sw.ml.models import MODELS
    from sparsegate.sw.cli.prune import PruneOutcome, write_outputs
    from sparsegate.sw.prune.iterative import FineTuneConfig, Schedule, accuracy, finetune, split_validation
    from sparsegate.sw.prune.shrink import check_supported, save_shrunk, shrink_model
    from sparsegate.sw.prune.task_guided import parse_classes, subtask_dataset, subtask_masks, subtask_model, task_prune
    from sparsegate.sw.ml.train import load_checkpoint

    if args.method not in METHODS:
        raise PruneError(f"method: {args.method!r} is not a structured method ({list(METHODS)})")
    _check(args)
    model, masks, meta = load_checkpoint(args.checkpoint)
    model_name = next(name for name, cls in MODELS.items() if type(model) is cls)
    layers = [s.strip() for s in args.layers.split(",") if s.strip()] if args.layers else None
    # argument errors before loading any data
    check_supported(model, structural=args.method != "kep", what=args.method)
    kep_cfg = coarse_cfg = classes = None
    if args.method == "kep":
        kep_cfg = KEPConfig(mode=args.kep_mode, patterns=args.patterns, penalty=args.penalty,
                            penalty_epochs=args.penalty_epochs, allocation=args.allocation)
        if args.keep is not None:
            kep_masks(model, args.keep, kep_cfg, masks, layers)  # checks keep and the layers
        else:
            conv_layers(model, layers)
    elif args.method == "coarse":
        coarse_cfg = CoarseConfig(granularity=args.coarse_level, candidates=args.candidates, search=args.search,
                                  selection=args.mask_choice, fmap_share=args.fmap_share, seed=args.seed)
        if args.fmap_ratio is not None or args.kernel_ratio is not None:
            check_ratios(model, args.fmap_ratio or 0.0, args.kernel_ratio or 0.0, coarse_cfg, layers)
        else:
            conv_layers(model, layers, what="coarse pruning")
    else:
        classes = parse_classes(args.classes, list(model.modules())[-1].out_features)
    schedule = None
    if args.target_sparsity is not None or args.max_drop is not None:
        schedule = Schedule(target_sparsity=args.target_sparsity, max_accuracy_drop=args.max_drop, step=args.step,
                            late_step=getattr(args, "late_step", None), max_rounds=args.rounds,
                            selection=args.selection)
    progress = not args.no_progress
    dataset = args.dataset or meta.get("dataset") or ("mnist5k-rgb32" if model_name == "vgg" else "mnist5k")
    train_ds, test_ds = load_dataset(dataset, args.data_path, args.seed)
    fit_ds, val_ds = split_validation(train_ds, args.val_size, args.seed)
    apply_masks(model, masks)
    start = time.perf_counter()
    info: dict = {}
    history: list = []
    if args.method == "task":
        fit_ds, val_ds, test_ds = (subtask_dataset(d, classes) for d in (fit_ds, val_ds, test_ds))
        full = accuracy(model, TensorDataset(test_ds.tensors[0], torch.tensor(classes)[test_ds.tensors[1]]))
        masks = subtask_masks(model, masks, classes)
        model = subtask_model(model, classes)
        info["full_model_subtask_accuracy"] = full
        ft = FineTuneConfig(epochs=args.subtask_epochs, lr=args.lr, seed=args.seed)
        finetune(model, fit_ds, masks, ft, 0)
    base_test = accuracy(model, test_ds)
    base_table = layer_table(model, masks)
    if args.method == "kep":
        if args.keep is not None:
            ft = FineTuneConfig(epochs=4 if args.finetune_epochs is None else args.finetune_epochs, lr=args.lr,
                                seed=args.seed)
            res = kep_prune(model, fit_ds, val_ds, args.keep, kep_cfg, ft, masks, layers)
            new_masks, info = res.masks, res.summary()
        else:
            ft = FineTuneConfig(epochs=2 if args.finetune_epochs is None else args.finetune_epochs, lr=args.lr,
                                seed=args.seed)
            res = kep_prune_iterative(model, fit_ds, val_ds, schedule, kep_cfg, ft, masks, layers, progress=progress)
            new_masks, history = res.masks, res.history_dicts()
            info = {"val_accuracy": res.val_accuracy, "conv_sparsity": res.sparsity, "rounds": len(res.history)}
        info["kep"] = asdict(kep_cfg)
    elif args.method == "coarse":
        if schedule is None:
            ft = FineTuneConfig(epochs=4 if args.finetune_epochs is None else args.finetune_epochs, lr=args.lr,
                                seed=args.seed)
            res = coarse_prune_ratios(model, fit_ds, val_ds, args.fmap_ratio or 0.0, args.kernel_ratio or 0.0,
                                      coarse_cfg, ft, masks, layers)
            new_masks = res.masks
            info = {"val_accuracy_before": res.val_accuracy_before, "val_accuracy_pruned": res.val_accuracy_pruned,
                    "val_accuracy": res.val_accuracy, **res.selection.summary()}
        else:
            ft = FineTuneConfig(epochs=2 if args.finetune_epochs is None else args.finetune_epochs, lr=args.lr,
                                seed=args.seed)
            res = coarse_prune(model, fit_ds, val_ds, schedule, coarse_cfg, ft, masks, layers, progress=progress)
            new_masks, history = res.masks, res.history_dicts()
            info = {"val_accuracy": res.val_accuracy, "conv_sparsity": res.sparsity, "rounds": len(res.history)}
        info["coarse"] = asdict(coarse_cfg)
    else:
        ft = FineTuneConfig(epochs=4 if args.finetune_epochs is None else args.finetune_epochs, lr=args.lr,
                            seed=args.seed)
        res = task_prune(model, fit_ds, val_ds, args.filter_ratio, args.criterion, ft, masks, layers)
        new_masks = res.masks
        info.update(res.summary(), classes=list(classes), criterion=args.criterion)
    apply_masks(model, new_masks)
    verify_masks(model, new_masks)
    wall = time.perf_counter() - start
    test_acc = accuracy(model, test_ds)
    table = layer_table(model, new_masks)
    idx = index_cost(model, new_masks)
    summary = {
        "method": args.method, "model": model_name, "dataset": dataset, "seed": args.seed,
        "checkpoint": str(args.checkpoint), "val_size": args.val_size,
        "base_test_accuracy": base_test, "test_accuracy": test_acc, "accuracy_drop": base_test - test_acc,
        "base_compression": base_table.total.compression, "compression": table.total.compression,
        "mac_reduction": table.total.mac_reduction, "nonzero_params": table.total.nonzero_params,
        "params": table.total.params, "conv_sparsity": conv_sparsity(model, new_masks),
        "index": idx.to_dict(), "info": info, "nrp": None, "history": history, "wall_time_s": wall,
    }
    outcome = PruneOutcome(args.method, copy_masks(new_masks), info, history, wall_time_s=wall)
    if args.shrink:
        shrunk = shrink_model(model, new_masks)
        path = Path(args.out) / "shrunk.pt"
        save_shrunk(path, shrunk, model_name, meta={"method": args.method, "dataset": dataset,
                                                    "classes": list(classes) if classes else None})
        summary["shrink"] = shrunk.summary()
    paths = write_outputs(Path(args.out), model, model_name, outcome, summary)
    print(f"{model_name} {args.method}: test accuracy {100 * test_acc:.2f}% (base {100 * base_test:.2f}%), conv "
          f"sparsity {100 * summary['conv_sparsity']:.1f}%, {table.total.nonzero_params:,}/{table.total.params:,} "
          f"params kept, MACs -{100 * table.total.mac_reduction:.1f}%, index {idx.bits_per_kept:.2f} bits/kept conv "
          f"weight [{wall:.1f} s]")
    if args.shrink:
        print(f"shrunk: {summary['shrink']['params_after']:,} params, widths {summary['shrink']['widths']}")
    print(f"outputs: {paths['checkpoint'].parent}")
    return 0
