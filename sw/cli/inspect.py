"""``sparsegate inspect IMAGE``: what a weight image holds — the network's layers (shape, kernel,
nonzeros, index and accumulator widths, :mod:`sparsegate.sw.ir.layer_summary`) and its storage, against
dense and the other sparse formats — read and validated without loading anything else."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def format_layers(qnet, rows) -> str:
    from sparsegate.sw.ir.weight_image import printable

    head = (f"{'layer':<8} {'kind':<4} {'input':>10} {'output':>10} {'kernel':>10} {'ops':>9} {'nnz':>8} "
            f"{'weights':>8} {'empty ch':>8} {'index bits':>11} {'acc bits':>8}")
    lines = [f"{printable(qnet.name)}: {len(rows)} layers, input {'x'.join(map(str, qnet.input_shape))}", head,
             "-" * len(head)]
    lines += [f"{printable(r.name):<8} {r.kind:<4} {r.in_shape:>10} {r.out_shape:>10} {r.kernel:>10} {r.ops:>9} "
              f"{r.nnz:>8,} {r.weights:>8,} {r.empty_channels:>8} {r.index_bits:>11} {r.acc_bits:>8}"
              for r in rows]
    return "\n".join(lines)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, help="weight image (image.bin from `sparsegate export`, or the "
                                                 "quantized.bin from `sparsegate quantize`)")
    parser.add_argument("--json", action="store_true", help="print the layers and storage as JSON instead")


def run(args: argparse.Namespace) -> int:
    from sparsegate.sw.ir.layer_summary import layer_summaries
    from sparsegate.sw.ir.weight_image import format_storage_table, read_image, storage_report

    qnet = read_image(args.image)
    rows, storage = layer_summaries(qnet), storage_report(qnet)
    if args.json:
        print(json.dumps({"name": qnet.name, "input_shape": list(qnet.input_shape),
                          "layers": [r.to_dict() for r in rows], "storage": storage}, indent=2))
    else:
        print(format_layers(qnet, rows))
        print()
        print(format_storage_table(storage))
    return 0
