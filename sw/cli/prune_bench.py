"""``sparsegate prune-bench``: the cross-validated pruning benchmark with the folds, seeds, methods and data
set chosen on the command line (``sparsegate bench`` runs it with its defaults); ``--recovery`` runs the
recovery study of SRA's loop instead, and ``--choose-weight-decay`` runs it at several weight-decay strengths
and chooses one per fold on validation digits. Writes ``OUT/prune_<model>.md`` / ``.json`` and the trade-off plot
(``prune_recovery_<model>.*`` with ``--recovery``). ``--workers N`` runs the jobs on the Dask job runner with
a result cache, so an interrupted run resumes."""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from sparsegate.sw.cli.main import CliError, invoked_as
from sparsegate.sw.cli.training_flags import add_training_flags, training_from_args
from sparsegate.sw.ml.folds import POOL_DATASETS, check_fit_fraction, check_val_fraction


def configure(parser: argparse.ArgumentParser) -> None:
    from sparsegate.sw.bench.prune import JOB_METHODS, RECOVERY, BenchSettings

    parser.add_argument("--model", choices=("lenet5", "lenet300"), default="lenet5")
    parser.add_argument("--folds", type=int, default=None,
                        help="K of the K-fold cross-validation (default 5; --quick: 2)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="seeds, each re-cuts the folds (default 0 1; --quick: 0)")
    parser.add_argument("--only-folds", type=int, nargs="+", default=None, metavar="FOLD",
                        help="run only these of the K folds (cut as for all K: a shorter run on the same digits)")
    parser.add_argument("--methods", nargs="+", choices=list(JOB_METHODS), default=list(JOB_METHODS),
                        help="sra runs SRA and SRA+NRP (NRP once, after SRA); sra-nrp runs SRA+NRP every round")
    parser.add_argument("--dataset", choices=POOL_DATASETS, default="mnist5k",
                        help="mnist5k: the embedded 5,000 digits; mnist: full MNIST IDX files in --data-path")
    parser.add_argument("--data-path", type=Path, default=None, help="folder of the MNIST IDX files (--dataset mnist)")
    parser.add_argument("--recovery", nargs="+", choices=list(RECOVERY), default=None,
                        help="run these recovery variants of SRA's loop instead (include 'plain' to compare)")
    parser.add_argument("--val-fraction", type=float, default=None,
                        help="validation share of the non-test digits (default 0.125 on mnist5k, 0.1 on mnist)")
    parser.add_argument("--epochs-per-round", type=int, default=None, metavar="N",
                        help="fine-tune epochs after each pruning round, every method (default 3)")
    parser.add_argument("--final-epochs", type=int, default=None, metavar="N",
                        help="epochs of the fine-tune every result gets at the end (default 4)")
    parser.add_argument("--base-epochs", type=int, default=None, metavar="N",
                        help="epochs of each fold's dense model (default: the model's training recipe)")
    parser.add_argument("--fit-fraction", type=float, default=None, metavar="F",
                        help="train on a seeded share F of each fold's fit digits, validation and test digits "
                             "unchanged: how the results scale with the training set (default 1)")
    parser.add_argument("--finish-from", type=float, default=None, metavar="X",
                        help="the at-equal-accuracy curves read path rounds from X weight compression on, each "
                             "finished as a selected result is (NRP for SRA+NRP, the final fine-tune); 0: the path's "
                             "own readings, as runs before 2026-12-06 (default 10; --quick: 1)")
    parser.add_argument("--finish-every", type=int, default=None, metavar="N",
                        help="finish every N-th path round, counted from the selected one (default 2; --quick: 1)")
    add_training_flags(parser, "every training call (the dense model, each fine-tune)", BenchSettings.weight_decay)
    parser.add_argument("--choose-weight-decay", type=float, nargs="+", default=None, metavar="L2",
                        help="run the benchmark at each of these weight-decay strengths (instead of --weight-decay; "
                             "each run's report in OUT/weight_decay_<L2>/) and choose one per seed x fold x method on "
                             "validation digits: OUT/prune_<model>_chosen.md / .json (sparsegate prune-choose does "
                             "the same from finished reports)")
    parser.add_argument("--quick", action="store_true", help="smoke-test schedule (not a measurement)")
    parser.add_argument("--out", type=Path, default=Path("runs/prune-bench"))
    parser.add_argument("--workers", type=int, default=None,
                        help="run the jobs on a local Dask cluster of this many worker processes, one core each, "
                             "caching every finished job in --cache (default: in order, in this process)")
    parser.add_argument("--cache", type=Path, default=None,
                        help="with --workers: folder of finished jobs, reused by a re-run (default OUT/job-cache)")


def run(args: argparse.Namespace) -> int:
    from sparsegate.sw.bench.prune import BenchSettings, run_prune_benchmark, run_recovery_benchmark
    from sparsegate.sw.jobs import RunnerOptions
    from sparsegate.sw.ml.data import DataError

    if args.dataset == "mnist" and args.data_path is None:
        raise DataError("--dataset mnist needs --data-path pointing at the MNIST IDX files")
    if args.val_fraction is not None:
        check_val_fraction(args.val_fraction, "--val-fraction")
    base = BenchSettings.quick() if args.quick else BenchSettings()
    folds = base.folds if args.folds is None else args.folds
    if folds < 2:
        raise DataError(f"--folds: expected at least 2, got {folds}")
    if args.only_folds is not None and not all(0 <= f < folds for f in args.only_folds):
        raise DataError(f"--only-folds: expected folds in 0..{folds - 1}, got {args.only_folds}")
    for flag, value, least in (("--epochs-per-round", args.epochs_per_round, 1), ("--base-epochs", args.base_epochs, 1),
                               ("--final-epochs", args.final_epochs, 0)):
        if value is not None and value < least:
            raise DataError(f"{flag}: expected at least {least}, got {value}")
    if args.fit_fraction is not None:
        check_fit_fraction(args.fit_fraction, "--fit-fraction")
    if args.finish_from is not None and not (args.finish_from == 0 or 1 <= args.finish_from < float("inf")):
        raise DataError(f"--finish-from: expected a weight compression >= 1, or 0 for the path curves, got "
                        f"{args.finish_from}")
    if args.finish_every is not None and args.finish_every < 1:
        raise DataError(f"--finish-every: expected at least 1, got {args.finish_every}")
    training = training_from_args(args)
    if args.choose_weight_decay is not None:
        from sparsegate.sw.bench.prune_choice import check_strengths

        if args.recovery:
            raise CliError("--choose-weight-decay: the recovery study runs its own variants; give one or the other")
        check_strengths(args.choose_weight_decay, "--choose-weight-decay")
    jobs = None if args.workers is None else RunnerOptions(cache=args.cache or args.out / "job-cache", progress=True,
                                                          workers=args.workers, log=print)
    only = None if args.only_folds is None else tuple(sorted(set(args.only_folds)))
    seeds = base.seeds if args.seeds is None else tuple(args.seeds)
    s = replace(base, folds=folds, seeds=seeds, only_folds=only, methods=tuple(args.methods),
                dataset=args.dataset, data_path=None if args.data_path is None else str(args.data_path),
                val_fraction=args.val_fraction or (base.val_fraction if args.dataset == "mnist5k" else 0.1),
                epochs_per_round=args.epochs_per_round or base.epochs_per_round,
                final_epochs=base.final_epochs if args.final_epochs is None else args.final_epochs,
                base_epochs=args.base_epochs or base.base_epochs, fit_fraction=args.fit_fraction or base.fit_fraction,
                finish_from=base.finish_from if args.finish_from is None else args.finish_from or None,
                finish_every=args.finish_every or base.finish_every, **training)
    command = invoked_as("prune-bench")
    if args.choose_weight_decay is not None:
        from sparsegate.sw.bench.prune_choice import run_weight_decay_choice

        result = run_weight_decay_choice(args.out, args.model, tuple(args.choose_weight_decay), s, args.quick,
                                         command=command, jobs=jobs)
    elif args.recovery:
        result = run_recovery_benchmark(args.out, args.model, args.quick, settings=s, variants=tuple(args.recovery),
                                        command=command, jobs=jobs)
    else:
        result = run_prune_benchmark(args.out, args.model, args.quick, settings=s, command=command, jobs=jobs)
    print(result.markdown)
    print(f"wrote {result.markdown_path} and {result.json_path}")
    return 0
