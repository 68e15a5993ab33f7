"""``sparsegate inspect IMAGE``: what a weight image holds — the network's layers (shape, kernel,
nonzeros, index and accumulator widths) and its storage, against dense and the other sparse formats —
read and validated without loading anything else."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def layer_rows(qnet) -> list[dict]:
    """One row per layer, from the image alone."""
    from sparsegate.sw.ir.weight_image import sparse_layer

    rows = []
    for layer in qnet.layers:
        sp = sparse_layer(layer)
        kernel = f"{layer.weight.shape[2]}x{layer.weight.shape[3]}/s{layer.stride}/p{layer.padding}" \
            if layer.kind == "conv" else "-"
        ops = "+".join(op for op, on in (("relu", layer.relu), ("pool", layer.pool)) if on) or "-"
        rows.append({"name": layer.name, "kind": layer.kind, "in": "x".join(map(str, layer.in_shape)),
                     "out": "x".join(map(str, layer.out_shape)), "kernel": kernel, "ops": ops,
                     "nnz": len(sp.values), "weights": int(layer.weight.size),
                     "empty_channels": int((sp.counts == 0).sum()),
                     "index_bits": f"{sp.index_bits} ({sp.cin_bits}+{sp.ky_bits}+{sp.kx_bits})",
                     "acc_bits": layer.accumulator_bits()})
    return rows


def format_layers(qnet, rows: list[dict]) -> str:
    head = (f"{'layer':<8} {'kind':<4} {'input':>10} {'output':>10} {'kernel':>10} {'ops':>9} {'nnz':>8} "
            f"{'weights':>8} {'empty ch':>8} {'index bits':>11} {'acc bits':>8}")
    lines = [f"{qnet.name}: {len(rows)} layers, input {'x'.join(map(str, qnet.input_shape))}", head,
             "-" * len(head)]
    lines += [f"{r['name']:<8} {r['kind']:<4} {r['in']:>10} {r['out']:>10} {r['kernel']:>10} {r['ops']:>9} "
              f"{r['nnz']:>8,} {r['weights']:>8,} {r['empty_channels']:>8} {r['index_bits']:>11} {r['acc_bits']:>8}"
              for r in rows]
    return "\n".join(lines)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", type=Path, help="weight image (image.bin from `sparsegate export`, or the "
                                                 "quantized.bin from `sparsegate quantize`)")
    parser.add_argument("--json", action="store_true", help="print the layers and storage as JSON instead")


def run(args: argparse.Namespace) -> int:
    from sparsegate.sw.ir.weight_image import format_storage_table, read_image, storage_report

    qnet = read_image(args.image)
    rows, storage = layer_rows(qnet), storage_report(qnet)
    if args.json:
        print(json.dumps({"name": qnet.name, "input_shape": list(qnet.input_shape), "layers": rows,
                          "storage": storage}, indent=2))
    else:
        print(format_layers(qnet, rows))
        print()
        print(format_storage_table(storage))
    return 0
