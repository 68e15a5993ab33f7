"""``sparsegate snn train|prune|export|simulate``: the spiking-network engine from the command line.

* ``train``: a 784-800-10 LIF network on the embedded MNIST default -> ``OUT/snn.pt``, ``OUT/train.json``;
* ``prune``: spike-count pruning of a trained checkpoint, online while fine-tuning -> ``OUT/snn.pt``,
  ``OUT/prune.json``;
* ``export``: the integer model (``.npz``) and its accuracy next to the float one;
* ``simulate``: whole inferences of test digits on the LIF core under Verilator, bit-exact with the
  integer model, with cycle counts.
"""
from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from sparsegate.sw.util.atomic_io import write_json


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
    from sparsegate.sw.ml.data import mnist_embedded
    from sparsegate.sw.snn.model import SNNConfig, SNNTrainConfig, SpikingMLP, save_snn, train_snn
    import torch

    config = SNNConfig(n_hidden=args.hidden, steps=args.steps, encoding=args.encoding, reset=args.reset)
    if args.epochs < 1:
        raise ValueError(f"--epochs must be at least 1, got {args.epochs}")
    train_ds, test_ds = mnist_embedded(args.seed)
    torch.manual_seed(args.seed)
    model = SpikingMLP(config)
    result = train_snn(model, train_ds, SNNTrainConfig(epochs=args.epochs, lr=args.lr, seed=args.seed,
                                                       progress=not args.no_progress), test_ds=test_ds)
    save_snn(args.out / "snn.pt", model, meta={"test_accuracy": result.test_accuracy, "seed": args.seed})
    write_json(args.out / "train.json", {"config": asdict(config),
                                         "test_accuracy": result.test_accuracy, "history": result.history,
                                         "wall_time_s": result.wall_time_s})
    print(f"SNN 784-{config.n_hidden}-10, T={config.steps}: test accuracy {100 * result.test_accuracy:.2f}% "
          f"({result.wall_time_s:.0f} s) -> {args.out / 'snn.pt'}")
    return 0


def _prune(args) -> int:
    from sparsegate.sw.ml.data import mnist_embedded
    from sparsegate.sw.snn.model import SNNTrainConfig, evaluate_snn, load_snn, save_snn
    from sparsegate.sw.snn.neuron_prune import PruneConfig, prune_snn

    model, meta = load_snn(args.checkpoint)
    if args.epochs < 1:
        raise ValueError(f"--epochs must be at least 1, got {args.epochs}")
    prune = PruneConfig(target=args.target, start_epoch=0, end_epoch=max(0, min(args.prune_epochs, args.epochs) - 1))
    prune.check(model.config.n_hidden, args.epochs)
    train_ds, test_ds = mnist_embedded(args.seed)
    before = evaluate_snn(model, test_ds)
    result, pruner = prune_snn(model, train_ds, SNNTrainConfig(epochs=args.epochs, lr=args.lr, seed=args.seed,
                                                               progress=not args.no_progress), prune, test_ds)
    after = result.test_accuracy
    save_snn(args.out / "snn.pt", model, meta={**meta, "test_accuracy": after, "pruned": args.target})
    write_json(args.out / "prune.json", {"accuracy_before": before, "accuracy_after": after,
                                         "pruned": args.target, "alive": model.alive, "history": result.history,
                                         "pruning_events": pruner.history})
    print(f"pruned {args.target} of {model.config.n_hidden} neurons: accuracy {100 * before:.2f}% -> "
          f"{100 * after:.2f}% -> {args.out / 'snn.pt'}")
    return 0


def _export(args) -> int:
    from sparsegate.sw.ml.data import mnist_embedded
    from sparsegate.sw.snn.model import encode, evaluate_snn, load_snn, to_pixels
    from sparsegate.sw.ir.snn_golden import quantize_snn, save_int_snn

    model, _ = load_snn(args.checkpoint)
    snn = quantize_snn(model, v_width=args.v_width, refractory=args.refractory)
    _, test_ds = mnist_embedded(0)
    float_acc = evaluate_snn(model, test_ds)
    spikes = encode(to_pixels(test_ds.tensors[0]), model.config)
    int_acc = float((snn.predict(spikes) == test_ds.tensors[1].numpy()).mean())
    save_int_snn(args.out, snn)
    summary = {"float_accuracy": float_acc, "int_accuracy": int_acc, "alive": snn.alive,
               "hidden": asdict(snn.hidden),
               "weight_bytes": snn.weight_bytes(), "weight_bytes_dense": snn.weight_bytes(pruned=False)}
    write_json(args.out.with_suffix(".json"), summary)
    print(f"integer SNN: {100 * int_acc:.2f}% (float {100 * float_acc:.2f}%), {snn.alive} of {snn.n_hidden} "
          f"neurons, threshold {snn.hidden.threshold} -> {args.out}")
    return 0


def _simulate(args) -> int:
    from sparsegate.sw.ml.data import mnist_embedded
    from sparsegate.sw.snn.model import SNNConfig, encode, to_pixels
    from sparsegate.sw.ir.snn_golden import load_int_snn
    from sparsegate.sim.lif import DEFAULT_PER_WORD, DEFAULT_UNITS, simulate_network

    snn = load_int_snn(args.model)
    if not 1 <= args.samples <= 1000:
        raise ValueError(f"--samples must be in 1..1000, got {args.samples}")
    _, test_ds = mnist_embedded(0)
    config = SNNConfig(n_inputs=snn.n_inputs, n_hidden=snn.n_hidden, n_outputs=snn.n_outputs, steps=snn.steps,
                       encoding=snn.encoding)
    spikes = encode(to_pixels(test_ds.tensors[0][:args.samples]), config)
    result = simulate_network(snn, spikes, args.out, units=args.units or DEFAULT_UNITS,
                              per_word=args.per_word or DEFAULT_PER_WORD, seed=args.seed)
    labels = test_ds.tensors[1][:args.samples].tolist()
    correct = sum(int(p == y) for p, y in zip(result["predictions"], labels))
    write_json(args.out / "simulate.json", {k: v for k, v in result.items() if not k.startswith("_")})
    cycles = sum(result["cycles"]) / len(result["cycles"])
    print(f"{args.samples} digits bit-exact with the golden model on Verilator, {correct} correct; "
          f"{cycles / snn.steps:.0f} cycles per time step, {result['cycles_per_second'] / 1e6:.2f} M cycles/s")
    return 0


def run(args: argparse.Namespace) -> int:
    actions = {"train": _train, "prune": _prune, "export": _export, "simulate": _simulate}
    return actions[args.snn_command](args)
