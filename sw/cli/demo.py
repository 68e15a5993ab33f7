"""``sparsegate demo``: the main job on the embedded MNIST default, resumable
(:func:`sparsegate.sw.flow.demo.run_demo`); prints each stage as it goes and the closing summary."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from sparsegate.sw.flow.demo import DEMO_BOARD, DEMO_LANES
from sparsegate.sw.cli.training_flags import recipe_weight_decay
from sparsegate.sw.prune.api import REWOUND_LR, PruneOptions
from sparsegate.sw.prune.iterative import FineTuneConfig


def configure(parser: argparse.ArgumentParser) -> None:
    from sparsegate.hw.platform.boards import board_names

    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder (default: runs/demo)")
    parser.add_argument("--model", default="lenet5", metavar="MODEL",
                        help="lenet5 (default), lenet300, vgg, or your own class: path/to/file.py:ClassName or "
                             "package.module:ClassName")
    parser.add_argument("--board", choices=board_names(), default=DEMO_BOARD,
                        help=f"board of the bitstream stage (default {DEMO_BOARD})")
    parser.add_argument("--lanes", type=int, default=DEMO_LANES,
                        help=f"engine lanes P for the simulation and the bitstream (default {DEMO_LANES})")
    parser.add_argument("--clock-mhz", type=float, default=100.0, help="engine clock of the bitstream (default 100)")
    parser.add_argument("--samples", type=int, default=20, help="test digits simulated on the engine (default 20)")
    parser.add_argument("--no-build", action="store_true", help="skip the bitstream stage")
    parser.add_argument("--baud", type=int, default=None,
                        help="UART rate of the bitstream (default: the fastest the board's USB-serial bridge does; "
                             "`sparsegate run --build RUN/build` uses the build's)")
    parser.add_argument("--netlist-sim", type=int, default=20, metavar="N",
                        help="digits the bitstream's synthesized netlist classifies through its UART pins "
                             "(default 20; 0: no netlist simulation)")
    parser.add_argument("--finetune-lr", type=float, default=None, metavar="LR",
                        help=f"peak learning rate of every fine-tune (default: rewound to the training's, "
                             f"{REWOUND_LR:g}; the plain loop's was {FineTuneConfig.lr:g})")
    parser.add_argument("--weight-decay", type=float, default=None, metavar="L2",
                        help="L2 weight decay of the training and every fine-tune (default: the training's is the "
                             f"model's recipe, {recipe_weight_decay()}; every fine-tune's PruneOptions', "
                             f"{PruneOptions.weight_decay:g}; 0: none)")
    parser.add_argument("--fresh", action="store_true", help="redo every stage instead of resuming")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from sparsegate.sw.flow.demo import DemoOptions, format_recap, run_demo

    options = DemoOptions(model=args.model, board=args.board, lanes=args.lanes, build=not args.no_build, clock_mhz=args.clock_mhz,
                          samples=args.samples, baud=args.baud, netlist_samples=args.netlist_sim,
                          finetune_lr=args.finetune_lr, weight_decay=args.weight_decay,
                          progress=not args.no_progress)
    start = time.perf_counter()
    results = run_demo(args.out, options, fresh=args.fresh, log=print)
    print(format_recap(results, time.perf_counter() - start))
    print(f"demo finished: {args.out / 'report.html'} (all results: {args.out / 'summary.json'})")
    return 0
