"""``sparsegate rnn``: train a small LSTM on the offline license corpus and sparsify it (weights, neurons,
gate preactivations), or prune it by magnitude (the unstructured baseline) — :mod:`sparsegate.sw.flow.rnn`::

    sparsegate rnn --task lm --method structured --target-sparsity 0.8 --out runs/rnn-lm
    sparsegate rnn --task lm --method weights --target-sparsity 0.8 --checkpoint runs/rnn-lm/dense.pt --out runs/w

Without ``--checkpoint`` the dense model is trained first and written as ``dense.pt`` (reuse it for further
methods).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from sparsegate.sw.flow.rnn import TASKS
from sparsegate.sw.prune.lstm_gates import METHODS


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=TASKS, default="lm", help="lm: character LM; classify: license family")
    parser.add_argument("--method", choices=tuple(METHODS), default="structured",
                        help="structured (weights+neurons+gates), neurons (weights+neurons), weights (L1), "
                             "magnitude (unstructured baseline)")
    parser.add_argument("--target-sparsity", type=float, required=True,
                        help="fraction of the LSTM and read-out weights to remove, in [0, 1)")
    parser.add_argument("--rounds", type=int, default=4, help="prune/fine-tune rounds")
    parser.add_argument("--group-bias", type=float, default=1.0,
                        help="a neuron/gate group goes when its RMS is below this times the weight threshold")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--checkpoint", type=Path, default=None, help="a dense.pt/lstm.pt to start from")
    parser.add_argument("--corpus", type=Path, default=None, help="license-text folder (default /usr/share/common-licenses)")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--embed", type=int, default=32)
    parser.add_argument("--seq-len", type=int, default=64, help="lm: characters per training window")
    parser.add_argument("--snippet", type=int, default=96, help="classify: characters per snippet")
    parser.add_argument("--epochs", type=int, default=8, help="dense training epochs (without --checkpoint)")
    parser.add_argument("--finetune-epochs", type=int, default=1, help="fine-tune epochs per round")
    parser.add_argument("--lr", type=float, default=2e-3, help="fine-tune learning rate")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from sparsegate.sw.flow.rnn import rnn_job

    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"}
    r = rnn_job(args.task, args.method, args.target_sparsity, args.out, checkpoint=args.checkpoint,
                corpus=args.corpus, rounds=args.rounds, group_bias=args.group_bias, hidden=args.hidden,
                embed=args.embed, seq_len=args.seq_len, snippet=args.snippet, epochs=args.epochs,
                finetune_epochs=args.finetune_epochs, lr=args.lr, seed=args.seed, options=options)
    if r.dense_trained is not None:
        print(f"dense {r.task}: {r.dense_trained['val']} [{r.dense_trained['wall_time_s']:.0f} s]")
    for warning in r.warnings:
        print(f"warning: {warning}")
    s, structure = r.summary, r.summary["structure"]
    print(f"{r.task} {r.method} {r.target_sparsity:g}: test {r.metric} {s['test'][r.metric]:.4g} "
          f"(dense {r.dense_test[r.metric]:.4g}), weights {s['kept_weights']:,}/{s['total_weights']:,}, "
          f"neurons {structure['live_hidden']}/{structure['hidden']}, non-constant gates "
          f"{structure['nonconstant_gates']}/{structure['gates']} {structure['constant_gates']}")
    print(f"outputs: {r.out}")
    return 0
