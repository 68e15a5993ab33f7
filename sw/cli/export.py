"""``sparsegate export``: write the sparse-index weight image (image.bin), ``$readmemh`` hex files and a
JSON manifest for a checkpoint (quantized here) or an already quantized model, and print storage."""
from __future__ import annotations

import argparse
from pathlib import Path

from sparsegate.sw.cli.quantize import configure_calibration
from sparsegate.sw.flow.quantize import QUANTIZED_NAME
from sparsegate.sw.ir.weight_image import EXPORT_FORMATS


def configure(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path, help="float checkpoint: calibrate and quantize it first")
    source.add_argument("--quantized", type=Path, help="quantized model written by `sparsegate quantize` "
                                                        f"(file, or folder with {QUANTIZED_NAME})")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--format", action="append", choices=EXPORT_FORMATS, dest="formats",
                        help="what to write (repeatable): image.bin, hex/*.hex, manifest.json; default all three")
    configure_calibration(parser)


def run(args: argparse.Namespace) -> int:
    from sparsegate.sw.flow.quantize import load_and_quantize
    from sparsegate.sw.ir.weight_image import (HEX_DIR, IMAGE_NAME, MANIFEST_NAME, export_image,
                                               format_storage_table, read_image)

    if args.quantized is not None:
        path = Path(args.quantized)
        qnet = read_image(path / QUANTIZED_NAME if path.is_dir() else path)
    else:
        qnet = load_and_quantize(args.checkpoint, args.dataset, args.data_path, args.calib_size,
                                 args.calib_method).qnet
    out = Path(args.out)
    formats = args.formats or EXPORT_FORMATS
    doc = export_image(qnet, out, formats)
    print(format_storage_table(doc["storage"]))
    written = {"image": f"{out / IMAGE_NAME} ({doc['image']['bytes']:,} bytes, crc32 {doc['image']['crc32']})",
               "hex": f"{sum(len(layer['files']) for layer in doc['layers'])} hex files in {out / HEX_DIR}",
               "json": str(out / MANIFEST_NAME)}
    print("wrote " + ", ".join(written[f] for f in EXPORT_FORMATS if f in formats))
    return 0
