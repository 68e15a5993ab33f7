"""``sparsegate snn train|prune|export|simulate``: the spiking-network jobs (:mod:`sparsegate.sw.flow.snn`)
from the command line.

* ``train``: a 784-800-10 LIF network on the embedded MNIST default -> ``OUT/snn.pt``, ``OUT/train.json``;
* ``prune``: spike-count pruning of a trained checkpoint, online while fine-tuning -> ``OUT/snn.pt``,
  ``OUT/prune.json``;
* ``export``: the integer model (``.npz``) and its accuracy next to the float one;
* ``simulate``: whole inferences of test digits on the LIF core under Verilator, bit-exact with the
  integer model, with cycle counts.
"""
from __future__ import annotations

import argparse
from pathlib import Path


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="snn_command", metavar="ACTION", required=True)
    p = sub.add_parser("train", help="train the spiking MLP (surrogate gradients)")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--steps", type=int, default=16, help="time steps per inference (default 16)")
    p.add_argument("--hidden", type=int, default=800, help="hidden LIF neurons (default 800)")
    p.add_argument("--encoding", choices=("rate", "poisson"), default="rate")
    p.add_argument("--reset", choices=("subtract", "zero"), default="subtract")
    _add_common(p)

    p = sub.add_parser("prune", help="prune low-firing neurons online while fine-tuning")
    p.add_argument("--checkpoint", required=True, type=Path, help="a checkpoint from `snn train`")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--target", type=int, default=400, help="hidden neurons to prune (default 400)")
    p.add_argument("--epochs", type=int, default=16)
    p.add_argument("--prune-epochs", type=int, default=5, help="epochs over which pruning happens (default 5)")
    p.add_argument("--lr", type=float, default=2e-3)
    _add_common(p)

    p = sub.add_parser("export", help="quantize to the integer model and compare accuracies")
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="the .npz to write (a .json summary goes beside it)")
    p.add_argument("--refractory", type=int, default=0, help="refractory steps after a spike (default 0)")
    p.add_argument("--v-width", type=int, default=24, help="membrane bits (default 24)")

    p = sub.add_parser("simulate", help="run test digits on the LIF core in Verilator, bit-exact")
    p.add_argument("--model", required=True, type=Path, help="an .npz from `snn export`")
    p.add_argument("--out", required=True, type=Path, help="build folder")
    p.add_argument("--samples", type=int, default=10, help="test digits to run (default 10)")
    p.add_argument("--units", type=int, default=None, help="physical neuron units (default 20)")
    p.add_argument("--per-word", type=int, default=None, help="weights per bank word (default 8)")
    p.add_argument("--seed", type=int, default=0)


def _train(args) -> int:
    from sparsegate.sw.flow.snn import train_job
    from sparsegate.sw.snn.model import SNNConfig

    config = SNNConfig(n_hidden=args.hidden, steps=args.steps, encoding=args.encoding, reset=args.reset)
    r = train_job(args.out, epochs=args.epochs, lr=args.lr, config=config, seed=args.seed,
                  progress=not args.no_progress)
    print(f"SNN 784-{config.n_hidden}-10, T={config.steps}: test accuracy {100 * r.test_accuracy:.2f}% "
          f"({r.wall_time_s:.0f} s) -> {r.checkpoint}")
    return 0


def _prune(args) -> int:
    from sparsegate.sw.flow.snn import prune_job

    r = prune_job(args.checkpoint, args.out, target=args.target, epochs=args.epochs, prune_epochs=args.prune_epochs,
                  lr=args.lr, seed=args.seed, progress=not args.no_progress)
    print(f"pruned {r.pruned} of {r.hidden} neurons: accuracy {100 * r.accuracy_before:.2f}% -> "
          f"{100 * r.accuracy_after:.2f}% -> {r.checkpoint}")
    return 0


def _export(args) -> int:
    from sparsegate.sw.flow.snn import export_job

    r = export_job(args.checkpoint, args.out, refractory=args.refractory, v_width=args.v_width)
    print(f"integer SNN: {100 * r.int_accuracy:.2f}% (float {100 * r.float_accuracy:.2f}%), {r.alive} of {r.hidden} "
          f"neurons, threshold {r.threshold} -> {r.model}")
    return 0


def _simulate(args) -> int:
    from sparsegate.sw.flow.snn import simulate_job

    r = simulate_job(args.model, args.out, samples=args.samples, units=args.units, per_word=args.per_word,
                     seed=args.seed)
    print(f"{r.samples} digits bit-exact with the golden model on Verilator, {r.correct} correct; "
          f"{r.cycles_per_step:.0f} cycles per time step, {r.cycles_per_second / 1e6:.2f} M cycles/s")
    return 0


def run(args: argparse.Namespace) -> int:
    actions = {"train": _train, "prune": _prune, "export": _export, "simulate": _simulate}
    return actions[args.snn_command](args)
