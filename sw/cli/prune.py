"""``sparsegate prune``: prune a trained checkpoint with one registered method; write the pruned checkpoint,
the per-layer table (JSON + Markdown), plots and ``prune.json``.

The methods and their arguments come from :data:`sparsegate.sw.prune.registry.REGISTRY`: each method's params
dataclass declares its flags (:func:`sparsegate.sw.prune.api.param`); a flag shared by several methods is one
argument, and a flag the chosen method does not take is an error. Outputs:
:func:`sparsegate.sw.prune.outputs.write_outputs`, plus ``shrunk.pt`` with ``--shrink`` (structured methods).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from dataclasses import asdict
from pathlib import Path

from sparsegate.sw.cli.training_flags import add_training_flags, training_from_args
from sparsegate.sw.ml.data import DATASETS
from sparsegate.sw.prune.api import REWOUND_LR, PruneOptions
from sparsegate.sw.prune.iterative import VAL_SIZE
from sparsegate.sw.prune.params import param_flag
from sparsegate.sw.prune.task_guided import subtask_dataset
from sparsegate.sw.prune.masks import PruneError
from sparsegate.sw.prune.registry import REGISTRY, PruneMethod, get_method, methods


def _dest(flag: str) -> str:
    return "p_" + flag.lstrip("-").replace("-", "_")


def method_flags() -> dict[str, tuple[dataclasses.Field, list[str]]]:
    """Every method-parameter flag: (the first field declaring it, the methods that take it)."""
    flags: dict[str, tuple[dataclasses.Field, list[str]]] = {}
    for record in REGISTRY.values():
        for f in dataclasses.fields(record.params):
            flags.setdefault(param_flag(f), (f, []))[1].append(record.name)
    return flags


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", required=True, choices=methods(),
                        help="; ".join(f"{r.name}: {r.help}" for r in REGISTRY.values()))
    parser.add_argument("--checkpoint", required=True, type=Path, help="a checkpoint from `sparsegate train`")
    parser.add_argument("--model", default=None, metavar="FILE.py:CLASS",
                        help="your model class (file.py:Class or package.module:Class) when the one the checkpoint "
                             "recorded moved; default: the recorded one")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--nrp", action="store_true", help="neuron re-pruning after the method, then fine-tune")
    parser.add_argument("--nrp-drop", type=float, default=0.0,
                        help="NRP guard: accuracy drop allowed (on validation digits after a method; on training "
                             "digits in every round of sra-nrp)")
    parser.add_argument("--layers", default=None, help="comma-separated layer names (default: all prunable)")
    parser.add_argument("--finetune-epochs", type=int, default=None,
                        help="fine-tune epochs per round (iterative methods) or after pruning (one shot); default: "
                             "the method's")
    parser.add_argument("--lr", type=float, default=REWOUND_LR,
                        help="fine-tune peak learning rate (default: the training's peak, i.e. learning-rate rewinding)")
    add_training_flags(parser, "every fine-tune", PruneOptions.weight_decay)
    parser.add_argument("--shrink", action="store_true",
                        help="also write shrunk.pt: removed channels taken out for real (kep, coarse, task)")
    parser.add_argument("--val-size", type=int, default=None, metavar="N",
                        help="validation digits split off the training set for all pruning decisions (default: the "
                             f"digits the checkpoint held out of training, `sparsegate train --val-size`, else {VAL_SIZE})")
    parser.add_argument("--dataset", default=None, choices=DATASETS, help="default: the checkpoint's dataset")
    parser.add_argument("--data-path", default=None, help="folder of the mnist/cifar10 files")
    parser.add_argument("--seed", type=int, default=0,
                        help="fine-tune randomness (the train/test and validation splits follow the checkpoint's)")
    parser.add_argument("--no-progress", action="store_true")
    group = parser.add_argument_group("method parameters (the methods taking each are in brackets)")
    for flag, (f, names) in method_flags().items():
        meta = f.metadata
        kwargs = {"dest": _dest(flag), "default": argparse.SUPPRESS,
                  "help": f"{meta['help']} [{', '.join(names)}]"}
        if isinstance(f.default, bool):
            kwargs["action"] = "store_true"
        else:
            kwargs["type"] = meta["type"] or type(f.default)
            if meta["choices"]:
                kwargs["choices"] = meta["choices"]
        group.add_argument(flag, **kwargs)


def options_from_args(args: argparse.Namespace) -> tuple[PruneMethod, PruneOptions]:
    """The method record and its options from parsed arguments (params checked, model checks still to come)."""
    record = get_method(args.method)
    own = {param_flag(f): f.name for f in dataclasses.fields(record.params)}
    foreign = [flag for flag in method_flags() if flag not in own and hasattr(args, _dest(flag))]
    if foreign:
        raise PruneError(f"method {record.name!r} does not take {', '.join(foreign)}")
    if args.shrink and not record.structured:
        raise PruneError(f"--shrink applies to {[r.name for r in REGISTRY.values() if r.structured]}, "
                         f"not to method {record.name!r}")
    if record.model_kind != "cnn":
        raise PruneError(f"method {record.name!r} prunes an LSTM: run it with `sparsegate rnn` or from Python "
                         f"(sparsegate.sw.prune.prune_model)")
    params = record.params(**{name: getattr(args, _dest(flag)) for flag, name in own.items()
                              if hasattr(args, _dest(flag))})
    layers = [s.strip() for s in args.layers.split(",") if s.strip()] if args.layers else None
    return record, PruneOptions(args.method, params, layers=layers, finetune_epochs=args.finetune_epochs, lr=args.lr,
                                seed=args.seed, nrp=args.nrp, nrp_drop=args.nrp_drop, progress=not args.no_progress,
                                **training_from_args(args))


def run(args: argparse.Namespace) -> int:
    from sparsegate.sw.ml.data import load_dataset
    from sparsegate.sw.ml.models import model_name as name_of
    from sparsegate.sw.ml.train import checkpoint_split, load_checkpoint
    from sparsegate.sw.prune.counting import layer_table
    from sparsegate.sw.prune.iterative import accuracy, split_validation
    from sparsegate.sw.prune.kep import conv_sparsity, index_cost
    from sparsegate.sw.prune.masks import apply_masks
    from sparsegate.sw.prune.outputs import write_outputs
    from sparsegate.sw.prune.registry import prune_model, validate
    from sparsegate.sw.prune.shrink import save_shrunk, shrink_model

    record, options = options_from_args(args)  # argument errors before loading anything
    model, masks, meta = load_checkpoint(args.checkpoint, args.model)
    model_name = name_of(model)
    validate(model, options, masks)  # and the checks that need the model, before loading data
    dataset = args.dataset or meta.get("dataset") or ("mnist5k-rgb32" if model_name == "vgg" else "mnist5k")
    split = checkpoint_split(meta, args.checkpoint, args.seed, dataset)
    val_size = args.val_size if args.val_size is not None else split.held_out or VAL_SIZE
    if split.held_out and val_size > split.held_out:
        raise PruneError(f"--val-size {val_size}: {args.checkpoint} held only {split.held_out} training digits out of "
                         f"training; validate on at most those (or retrain with sparsegate train --val-size {val_size})")
    if not split.held_out:
        why = ("was trained on every training digit" if split.held_out == 0 else
               f"records no held-out digits of {dataset}")
        print(f"warning: {args.checkpoint} {why}: the validation digits may have been trained on, so pruning "
              "decisions are optimistic", file=sys.stderr)
    train_ds, test_ds = load_dataset(dataset, args.data_path, split.seed)
    split.check(len(train_ds), args.checkpoint, dataset)
    fit_ds, val_ds = split_validation(train_ds, val_size, split.seed)
    apply_masks(model, masks)
    base_test = accuracy(model, test_ds)
    base = layer_table(model, masks).total
    result = prune_model(model, options, fit_ds, val_ds, masks)
    if result.classes is not None:  # the sub-task's test digits, labels renumbered
        test_ds = subtask_dataset(test_ds, result.classes)
    if result.start_model is not None:  # the method changed the task: compare against its start model
        base_test = accuracy(result.start_model, test_ds)
        base = layer_table(result.start_model, {}).total
    test_acc = accuracy(result.model, test_ds)
    t = layer_table(result.model, result.masks).total
    summary = {
        "method": args.method, "model": model_name, "dataset": dataset, "seed": args.seed,
        "checkpoint": str(args.checkpoint), "options": asdict(options), "val_size": val_size,
        "data_seed": split.seed, "held_out": val_size if split.held_out else 0,
        "base_test_accuracy": base_test, "test_accuracy": test_acc, "accuracy_drop": base_test - test_acc,
        "base_params": base.params, "base_nonzero_params": base.nonzero_params,
        "base_compression": base.compression, "compression": base.params / t.nonzero_params,
        "mac_reduction": 1 - t.macs / base.dense_macs, "nonzero_params": t.nonzero_params, "params": t.params,
        "info": result.info, "nrp": result.nrp, "history": result.history, "wall_time_s": result.wall_time_s,
    }
    ranks = f"ranks {result.info['ranks']}, " if "ranks" in result.info else ""
    conv = ""
    if record.structured:
        idx = index_cost(result.model, result.masks)
        summary.update(conv_sparsity=conv_sparsity(result.model, result.masks), index=idx.to_dict())
        conv = f"conv sparsity {100 * summary['conv_sparsity']:.1f}%, index {idx.bits_per_kept:.2f} bits/kept conv " \
               f"weight, "
    if args.shrink:
        shrunk = shrink_model(result.model, result.masks)
        save_shrunk(Path(args.out) / "shrunk.pt", shrunk, model_name, meta={
            "method": args.method, "dataset": dataset, "classes": list(result.classes) if result.classes else None})
        summary["shrink"] = shrunk.summary()
    paths = write_outputs(args.out, result.model, model_name, result, summary)
    print(f"{model_name} {args.method}{' + nrp' if args.nrp else ''}: {ranks}test accuracy {100 * test_acc:.2f}% "
          f"(base {100 * base_test:.2f}%), {conv}{t.nonzero_params:,}/{base.params:,} params kept "
          f"({summary['compression']:.1f}x), MACs -{100 * summary['mac_reduction']:.1f}% [{result.wall_time_s:.1f} s]")
    if args.shrink:
        print(f"shrunk: {summary['shrink']['params_after']:,} params, widths {summary['shrink']['widths']}")
    print(f"outputs: {paths['checkpoint'].parent}")
    return 0
