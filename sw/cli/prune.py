"""``sparsegate prune``: prune a trained checkpoint with one allocation method; write the pruned checkpoint,
the per-layer table (JSON + Markdown) and plots.

Methods: ``magnitude`` (layer-uniform), ``global``, ``torch-l1`` (PyTorch ``global_unstructured`` baseline)
and ``sra`` are iterative (``--target-sparsity`` and/or ``--max-drop``); ``acra-uniform`` and
``acra-sensitivity`` meet ``--target-flops``; ``sensitivity`` only writes the per-layer sensitivity
analysis. ``--nrp`` runs neuron re-pruning after any pruning method. :func:`prune_model` is the same
pipeline for Python callers (and the benchmark).
"""
from __future__ import annotations

import argparse
import importlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from torch import nn
from torch.utils.data import TensorDataset

from sparsegate.sw.util.atomic_io import write_json, write_text
from sparsegate.sw.ml.data import DATASETS, load_dataset
from sparsegate.sw.prune.masks import Masks, PruneError, apply_masks, check_fraction, check_ratio, copy_masks, resolve_layers, \
    verify_masks

ITERATIVE = ("magnitude", "global", "torch-l1", "sra")
ACRA = ("acra-uniform", "acra-sensitivity")
METHODS = ITERATIVE + ACRA + ("sensitivity",)

# --- methods registered by other modules (issue 4: KEP, coarse, task-guided) -------------------------------
# name -> module providing ``configure_prune(parser)`` (its extra arguments) and ``run_prune(args) -> int``
REGISTERED_METHODS = {"kep": "sparsegate.sw.cli.structured", "coarse": "sparsegate.sw.cli.structured",
                      "task": "sparsegate.sw.cli.structured", "lowrank": "sparsegate.sw.cli.lowrank"}


@dataclass
class PruneOptions:
    """Everything one pruning run needs besides the model and the data."""

    method: str
    target_sparsity: float | None = None  # iterative methods: fraction of the weights to remove
    max_drop: float | None = None  # iterative methods: validation-accuracy budget (fraction)
    target_flops: float | None = None  # ACRA: MAC reduction of the whole network
    granularity: str | None = None  # ACRA / sensitivity: "filter" (ACRA default) or "weight"
    tolerance: float = 0.01  # ACRA: |achieved - target| allowed
    nrp: bool = False
    nrp_drop: float = 0.0  # NRP guard: validation-accuracy drop allowed before its fine-tune
    layers: list[str] | None = None
    step: float = 0.3
    late_step: float | None = 0.15  # step once only 10% of the weights are left
    rounds: int = 40
    selection: str = "path"  # how --max-drop picks the result: "path" or "gate" (see prune_loop)
    finetune_epochs: int | None = None  # per round (iterative, NRP; default 3) or in total (ACRA; default 6)
    lr: float = 1e-3
    seed: int = 0
    progress: bool = True

    def validate(self, model: nn.Module) -> None:
        if self.method not in METHODS:
            raise PruneError(f"method: unknown method {self.method!r}; expected one of {list(METHODS)}")
        if self.target_sparsity is not None:
            self.target_sparsity = check_ratio(self.target_sparsity, "target_sparsity")
        if self.max_drop is not None:
            self.max_drop = check_fraction(self.max_drop, "max_drop")
        if self.target_flops is not None:
            self.target_flops = check_ratio(self.target_flops, "target_flops")
        self.nrp_drop = check_fraction(self.nrp_drop, "nrp_drop")
        if self.layers is not None:
            self.layers = resolve_layers(model, self.layers)
        if self.method in ITERATIVE and self.target_sparsity is None and self.max_drop is None:
            raise PruneError(f"method {self.method!r} needs target_sparsity (--target-sparsity) or max_drop "
                             f"(--max-drop)")
        if self.method in ACRA and self.target_flops is None:
            raise PruneError(f"method {self.method!r} needs target_flops (--target-flops)")
        if self.method not in ACRA and self.target_flops is not None:
            raise PruneError(f"target_flops applies to {list(ACRA)}, not to method {self.method!r}")
        if self.method in ACRA and (self.target_sparsity is not None or self.max_drop is not None):
            raise PruneError(f"method {self.method!r} takes target_flops, not target_sparsity/max_drop")
        if not 0 < self.tolerance < 1:
            raise PruneError(f"tolerance must be in (0, 1), got {self.tolerance!r}")
        if self.nrp and self.method == "sensitivity":
            raise PruneError("nrp: neuron re-pruning needs a pruning method, not 'sensitivity'")
        if self.granularity is not None and self.granularity not in ("filter", "weight"):
            raise PruneError(f"granularity: expected 'filter' or 'weight', got {self.granularity!r}")
        if self.finetune_epochs is not None and self.finetune_epochs < 0:
            raise PruneError(f"finetune_epochs must be >= 0, got {self.finetune_epochs}")


@dataclass
class PruneOutcome:
    method: str
    masks: Masks
    info: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    sensitivity: object | None = None  # SensitivityResult
    nrp: dict | None = None
    wall_time_s: float = 0.0


def prune_model(model: nn.Module, options: PruneOptions, fit_ds: TensorDataset, val_ds: TensorDataset,
                masks: Masks | None = None) -> PruneOutcome:
    """Prune ``model`` in place with ``options.method`` (then NRP if asked); decisions use ``val_ds`` only."""
    from sparsegate.sw.prune.iterative import FineTuneConfig, Schedule, accuracy, finetune

    options.validate(model)
    start = time.perf_counter()
    per_round = 3 if options.finetune_epochs is None else options.finetune_epochs
    ft = FineTuneConfig(epochs=per_round, lr=options.lr, seed=options.seed)
    masks = copy_masks(masks)
    apply_masks(model, masks)
    outcome = PruneOutcome(options.method, masks)
    method = options.method
    if method in ITERATIVE:
        schedule = Schedule(target_sparsity=options.target_sparsity, max_accuracy_drop=options.max_drop,
                            step=options.step, late_step=options.late_step, max_rounds=options.rounds,
                            selection=options.selection)
        if method == "sra":
            from sparsegate.sw.prune.sra import sra_prune
            res = sra_prune(model, fit_ds, val_ds, schedule, ft, masks=masks, layers=options.layers,
                            progress=options.progress)
            outcome.sensitivity = res.sensitivity
            res = res.iterative
        else:
            from sparsegate.sw.prune.magnitude import magnitude_prune
            res = magnitude_prune(model, fit_ds, val_ds, schedule, method, ft, masks, options.layers,
                                  progress=options.progress)
        outcome.masks = res.masks
        outcome.history = res.history_dicts()
        outcome.info = {"val_reference_accuracy": res.base_val_accuracy, "val_start_accuracy": res.start_val_accuracy,
                        "val_accuracy": res.val_accuracy, "weight_sparsity": res.sparsity,
                        "rounds": len(res.history)}
    elif method in ACRA:
        from sparsegate.sw.prune.acra import acra_prune
        granularity = options.granularity or "filter"
        res = acra_prune(model, fit_ds, val_ds, options.target_flops, method.split("-", 1)[1], granularity,
                         FineTuneConfig(epochs=6 if options.finetune_epochs is None else options.finetune_epochs,
                                        lr=options.lr, seed=options.seed),
                         masks, options.layers, options.tolerance, progress=options.progress)
        outcome.masks = res.masks
        outcome.info = res.summary()
        outcome.info["val_accuracy"] = res.search[-1]["val_accuracy_after_finetune"]
        outcome.history = res.search[:-1]
        outcome.sensitivity = res.sensitivity
    else:  # sensitivity analysis only
        from sparsegate.sw.prune.sensitivity import sensitivity_analysis
        outcome.sensitivity = sensitivity_analysis(model, val_ds, masks, options.layers,
                                                   granularity=options.granularity or "weight",
                                                   progress=options.progress)
        outcome.info = {"base_accuracy": outcome.sensitivity.base_accuracy}
    if options.nrp:
        from sparsegate.sw.prune.nrp import NRPGuard, nrp_prune
        before = accuracy(model, val_ds)
        x, y = fit_ds.tensors
        calib = TensorDataset(x[:1000], y[:1000])  # contribution scores: 1,000 training digits are plenty
        res = nrp_prune(model, outcome.masks, val_ds, NRPGuard(max_accuracy_drop=options.nrp_drop), calib_ds=calib,
                        layers=options.layers)
        outcome.masks = res.masks
        finetune(model, fit_ds, res.masks, ft, 777)
        outcome.nrp = {"removed": {k: len(v) for k, v in res.removed.items()},
                       "exact_removed": res.exact_removed, "folded": res.folded,
                       "val_accuracy_before": before, "val_accuracy_after_nrp": res.accuracy,
                       "val_accuracy_after_finetune": accuracy(model, val_ds), "history": res.history}
    apply_masks(model, outcome.masks)
    verify_masks(model, outcome.masks)
    outcome.wall_time_s = time.perf_counter() - start
    return outcome


# ------------------------------------------------------------------------------------------------- CLI

def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", required=True, choices=METHODS + tuple(REGISTERED_METHODS))
    parser.add_argument("--checkpoint", required=True, type=Path, help="a checkpoint from `sparsegate train`")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--target-sparsity", type=float, default=None,
                        help="iterative methods: fraction of the weights to prune, in [0, 1)")
    parser.add_argument("--max-drop", type=float, default=None,
                        help="iterative methods: prune while validation accuracy drops by at most this fraction "
                             "(0.003 = 0.3 points)")
    parser.add_argument("--target-flops", type=float, default=None,
                        help="ACRA: MAC (FLOPs) reduction of the whole network, in [0, 1)")
    parser.add_argument("--granularity", choices=("filter", "weight"), default=None,
                        help="ACRA/sensitivity: filter (ACRA default) or weight (sensitivity default)")
    parser.add_argument("--tolerance", type=float, default=0.01, help="ACRA: allowed |achieved - target|")
    parser.add_argument("--nrp", action="store_true", help="neuron re-pruning after the method, then fine-tune")
    parser.add_argument("--nrp-drop", type=float, default=0.0, help="NRP guard: validation-accuracy drop allowed")
    parser.add_argument("--layers", default=None, help="comma-separated layer names (default: all prunable)")
    parser.add_argument("--step", type=float, default=0.3, help="fraction of the kept weights removed per round")
    parser.add_argument("--late-step", type=float, default=0.15,
                        help="the step once only 10%% of the weights are left")
    parser.add_argument("--rounds", type=int, default=40, help="maximum prune/fine-tune rounds")
    parser.add_argument("--selection", choices=("path", "gate"), default="path",
                        help="with --max-drop: run the schedule and pick the sparsest round within budget (path), "
                             "or roll back rounds that break it (gate)")
    parser.add_argument("--finetune-epochs", type=int, default=None,
                        help="fine-tune epochs per round (iterative methods, NRP; default 3) or after pruning "
                             "(ACRA; default 6)")
    parser.add_argument("--lr", type=float, default=1e-3, help="fine-tune peak learning rate")
    parser.add_argument("--val-size", type=int, default=500,
                        help="validation digits split off the training set for all pruning decisions")
    parser.add_argument("--dataset", default=None, choices=DATASETS, help="default: the checkpoint's dataset")
    parser.add_argument("--data-path", default=None, help="folder of the mnist/cifar10 files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true")
    for module in dict.fromkeys(REGISTERED_METHODS.values()):  # registered methods add their own arguments
        importlib.import_module(module).configure_prune(parser)


def write_outputs(out: Path, model: nn.Module, model_name: str, outcome: PruneOutcome, summary: dict) -> dict:
    """Checkpoint, per-layer table (JSON + Markdown), summary JSON and plots, all written atomically."""
    from sparsegate.sw.prune.counting import layer_table, plot_layer_table
    from sparsegate.sw.ml.train import save_checkpoint

    out = Path(out)
    table = layer_table(model, outcome.masks)
    paths = {"checkpoint": out / "model.pt", "layers_json": out / "layers.json", "layers_md": out / "layers.md",
             "summary": out / "prune.json", "layers_png": out / "layers.png"}
    save_checkpoint(paths["checkpoint"], model, model_name, outcome.masks,
                    meta={k: summary[k] for k in ("method", "dataset", "seed", "test_accuracy", "compression",
                                                  "mac_reduction") if k in summary})
    write_json(paths["layers_json"], table.to_dict())
    header = (f"# {model_name} pruned with {summary['method']}\n\n"
              f"Test accuracy {100 * summary['test_accuracy']:.2f}% (base {100 * summary['base_test_accuracy']:.2f}%, "
              f"drop {100 * summary['accuracy_drop']:.2f} points); compression {table.total.compression:.1f}x; "
              f"MAC reduction {100 * table.total.mac_reduction:.1f}%.\n\n")
    write_text(paths["layers_md"], header + table.to_markdown())
    plot_layer_table(table, paths["layers_png"])
    if outcome.sensitivity is not None:
        for kind, path in outcome.sensitivity.write(out, "sensitivity").items():
            paths[f"sensitivity_{kind}"] = path
    summary = dict(summary, table=table.to_dict(), outputs={k: str(v) for k, v in paths.items()})
    write_json(paths["summary"], summary)
    return paths


def run(args: argparse.Namespace) -> int:
    if args.method in REGISTERED_METHODS:  # registered methods run themselves
        return importlib.import_module(REGISTERED_METHODS[args.method]).run_prune(args)
    from sparsegate.sw.prune.iterative import accuracy, split_validation
    from sparsegate.sw.ml.train import load_checkpoint
    from sparsegate.sw.prune.counting import layer_table
    from sparsegate.sw.ml.models import MODELS

    model, masks, meta = load_checkpoint(args.checkpoint)
    model_name = next(name for name, cls in MODELS.items() if type(model) is cls)
    dataset = args.dataset or meta.get("dataset") or "mnist5k"
    layers = [s.strip() for s in args.layers.split(",") if s.strip()] if args.layers else None
    options = PruneOptions(method=args.method, target_sparsity=args.target_sparsity, max_drop=args.max_drop,
                           target_flops=args.target_flops, granularity=args.granularity, tolerance=args.tolerance,
                           nrp=args.nrp, nrp_drop=args.nrp_drop, layers=layers, step=args.step,
                           late_step=args.late_step, rounds=args.rounds,
                           selection=args.selection,
                           finetune_epochs=args.finetune_epochs, lr=args.lr, seed=args.seed,
                           progress=not args.no_progress)
    options.validate(model)  # fail on bad arguments before loading data
    train_ds, test_ds = load_dataset(dataset, args.data_path, args.seed)
    fit_ds, val_ds = split_validation(train_ds, args.val_size, args.seed)
    apply_masks(model, masks)
    base_test = accuracy(model, test_ds)
    base_table = layer_table(model, masks)
    outcome = prune_model(model, options, fit_ds, val_ds, masks)
    test_acc = accuracy(model, test_ds)
    table = layer_table(model, outcome.masks)
    summary = {
        "method": args.method, "model": model_name, "dataset": dataset, "seed": args.seed,
        "checkpoint": str(args.checkpoint), "options": asdict(options), "val_size": args.val_size,
        "base_test_accuracy": base_test, "test_accuracy": test_acc, "accuracy_drop": base_test - test_acc,
        "base_compression": base_table.total.compression, "compression": table.total.compression,
        "mac_reduction": table.total.mac_reduction, "nonzero_params": table.total.nonzero_params,
        "params": table.total.params, "info": outcome.info, "nrp": outcome.nrp, "history": outcome.history,
        "wall_time_s": outcome.wall_time_s,
    }
    paths = write_outputs(args.out, model, model_name, outcome, summary)
    print(f"{model_name} {args.method}{' + nrp' if args.nrp else ''}: test accuracy {100 * test_acc:.2f}% "
          f"(base {100 * base_test:.2f}%), {table.total.nonzero_params:,}/{table.total.params:,} params kept "
          f"({table.total.compression:.1f}x), MACs -{100 * table.total.mac_reduction:.1f}% "
          f"[{outcome.wall_time_s:.1f} s]")
    print(f"outputs: {paths['checkpoint'].parent}")
    return 0

