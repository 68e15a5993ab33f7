"""``sparsegate demo``: the main job on the embedded MNIST default, as resumable stages in a run folder.

train → SRA + NRP → quantize → export image → cycle-accurate simulation → report. Each stage writes its
outputs under ``RUN/<stage>/`` and, last, ``RUN/<stage>/stage.json`` (atomically); a re-run skips every
stage whose ``stage.json`` exists, so an interrupted demo resumes where it stopped.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from .atomic_io import write_json

DEMO_MODEL = "lenet5"
DEMO_SAMPLES = 20  # test digits run through the cycle-accurate engine
DEMO_LANES = 16
DEMO_SPARSITY = 0.97  # SRA target: ~33x fewer weights, reached in 14 rounds (30% steps, 15% below 10% kept)
DEMO_NRP_DROP = 0.003  # NRP guard: validation-accuracy drop allowed (the paper's 0.3 points)
DEMO_ROUNDS = 16  # prune → fine-tune rounds, to keep the demo within minutes
DEMO_FINETUNE_EPOCHS = 2  # per round


def _stage_train(run: Path, results: dict, progress: bool) -> dict:
    from .train_command import train_job

    summary = train_job(DEMO_MODEL, run / "train", progress=progress)
    return {"checkpoint": summary["checkpoint"], "test_accuracy": summary["test_accuracy"],
            "params": summary["params"], "macs": summary["macs"], "wall_time_s": summary["wall_time_s"]}


def _stage_prune(run: Path, results: dict, progress: bool) -> dict:
    from .counting import layer_table
    from .data import mnist_embedded
    from .prune_command import PruneOptions, prune_model, write_outputs
    from .prune_loop import accuracy, split_validation
    from .train import load_checkpoint

    model, masks, _ = load_checkpoint(results["train"]["checkpoint"])
    train_ds, test_ds = mnist_embedded()
    fit_ds, val_ds = split_validation(train_ds, 500)
    base = accuracy(model, test_ds)
    outcome = prune_model(model, PruneOptions(method="sra", target_sparsity=DEMO_SPARSITY, nrp=True, nrp_drop=DEMO_NRP_DROP,
                                                       rounds=DEMO_ROUNDS,
                                                       finetune_epochs=DEMO_FINETUNE_EPOCHS, progress=progress),
                          fit_ds, val_ds, masks)
    test_acc = accuracy(model, test_ds)
    table = layer_table(model, outcome.masks)
    summary = {"method": "sra+nrp", "model": DEMO_MODEL, "dataset": "mnist5k", "seed": 0,
               "base_test_accuracy": base, "test_accuracy": test_acc, "accuracy_drop": base - test_acc,
               "compression": table.total.compression, "mac_reduction": table.total.mac_reduction,
               "nonzero_params": table.total.nonzero_params, "params": table.total.params,
               "nrp": outcome.nrp, "history": outcome.history, "wall_time_s": outcome.wall_time_s}
    paths = write_outputs(run / "prune", model, DEMO_MODEL, outcome, summary)
    return {"checkpoint": str(paths["checkpoint"]), "test_accuracy": test_acc, "base_test_accuracy": base,
            "accuracy_drop": base - test_acc, "compression": table.total.compression,
            "mac_reduction": table.total.mac_reduction, "nonzero_params": table.total.nonzero_params,
            "layers_md": str(paths["layers_md"]), "layers_png": str(paths["layers_png"]),
            "history": outcome.history}


def _stage_quantize(run: Path, results: dict, progress: bool) -> dict:
    from .data import mnist_embedded
    from .quantize import calibration_split, compare, quantize_model
    from .train import load_checkpoint
    from .weight_image import write_image

    model, masks, _ = load_checkpoint(results["prune"]["checkpoint"])
    train_ds, test_ds = mnist_embedded()
    qnet = quantize_model(model, calibration_split(train_ds), masks, name=DEMO_MODEL)
    path = run / "quantize" / "quantized.bin"
    write_image(path, qnet)
    return {"quantized": str(path), **compare(model, qnet, test_ds)}


def _stage_export(run: Path, results: dict, progress: bool) -> dict:
    from .weight_image import export_image, format_storage_table, read_image, storage_report

    qnet = read_image(results["quantize"]["quantized"])
    export_image(qnet, run / "export")
    storage = storage_report(qnet)
    return {"image": str(run / "export" / "image.bin"), "storage": storage,
            "storage_table": format_storage_table(storage)}


def _stage_simulate(run: Path, results: dict, progress: bool) -> dict:
    from .simulate_command import simulate
    from .weight_image import read_image

    lines: list[str] = []
    result = simulate(Path(results["export"]["image"]), DEMO_SAMPLES, "verilator", DEMO_LANES,
                      build_dir=run / "simulate" / "build", log=lines.append)
    if not result["ok"]:
        raise RuntimeError("the engine disagreed with the golden model:\n" + "\n".join(lines))
    return {**result, "samples": DEMO_SAMPLES, "lanes": DEMO_LANES, "log": lines,
            "layer_names": [layer.name for layer in read_image(results["export"]["image"]).layers],
            "dense_model": _dense_cycles(results["train"]["checkpoint"])}


def _dense_cycles(checkpoint: str) -> list[int]:
    """Analytical cycles per layer of the same engine running the unpruned network."""
    from sparsegate.hw.engine_model import program_cycles
    from sparsegate.hw.engine_program import compile_program

    from .data import mnist_embedded
    from .quantize import calibration_split, quantize_model
    from .train import load_checkpoint

    model, masks, _ = load_checkpoint(checkpoint)
    train_ds, test_ds = mnist_embedded()
    dense = quantize_model(model, calibration_split(train_ds), masks, name=DEMO_MODEL)
    return program_cycles(compile_program(dense, DEMO_LANES, dense.quantize_input(test_ds.tensors[0][:1].numpy())))


def _stage_report(run: Path, results: dict, progress: bool) -> dict:
    from .demo_report import write_report

    return write_report(run, results)


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


# (name, function, one-line description of the result for the summary)
STAGES = [
    ("train", _stage_train, lambda r: f"LeNet-5-Caffe: {_pct(r['test_accuracy'])} on 1,000 held-out digits "
                                      f"({r['params']:,} params, {r['wall_time_s']:.0f} s)"),
    ("prune", _stage_prune, lambda r: f"SRA+NRP: {r['compression']:.1f}x compression, "
                                      f"{_pct(r['mac_reduction'])} MACs removed, accuracy {_pct(r['test_accuracy'])} "
                                      f"(drop {100 * r['accuracy_drop']:.2f} points)"),
    ("quantize", _stage_quantize, lambda r: f"int8: {_pct(r['quant_accuracy'])} (float {_pct(r['float_accuracy'])}), "
                                            f"predictions agree on {_pct(r['agreement'])}"),
    ("export", _stage_export, lambda r: f"weight image {r['storage']['total']['image_bytes']:,} bytes: {r['image']}"),
    ("simulate", _stage_simulate, lambda r: f"engine ({r['lanes']} lanes, Verilator): {r['total']:,} cycles per digit, "
                                            f"{r['samples']} digits bit-exact with the golden model"),
    ("report", _stage_report, lambda r: f"report: {r['markdown']} and {r['html']}"),
]


def run_demo(run: Path, progress: bool = True, fresh: bool = False, log=print) -> dict:
    """Run (or resume) every stage; returns ``{stage: result}``."""
    run = Path(run)
    results: dict = {}
    for name, function, describe in STAGES:
        marker = run / name / "stage.json"
        if marker.is_file() and not fresh:
            results[name] = json.loads(marker.read_text())
            log(f"[{name}] reused from {marker.parent}")
        else:
            log(f"[{name}] running ...")
            start = time.perf_counter()
            results[name] = function(run, results, progress)
            results[name]["stage_time_s"] = time.perf_counter() - start
            write_json(marker, results[name])
        log(f"[{name}] {describe(results[name])}")
    write_json(run / "summary.json", results)
    return results


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="run folder (default: runs/demo)")
    parser.add_argument("--fresh", action="store_true", help="redo every stage instead of resuming")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    run_demo(args.out, progress=not args.no_progress, fresh=args.fresh)
    print(f"demo finished: {args.out / 'summary.json'}")
    return 0
