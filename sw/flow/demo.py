"""``sparsegate demo``: the main job on the embedded MNIST default, as resumable stages in a run folder.

train → SRA + NRP → KEP on the conv layers → torch global-L1 baseline → quantize → export image →
cycle-accurate simulation → ECP5 bitstream → report. Each stage writes its outputs under ``RUN/<stage>/``
and, last, ``RUN/<stage>/stage.json`` (atomically) with the options it ran under; a re-run skips every
stage whose ``stage.json`` exists and was made with the same options, so an interrupted demo resumes where
it stopped. Once one stage runs again, every later stage does too (its inputs changed).
:func:`run_demo` returns every stage's result; ``sparsegate demo`` (:mod:`sparsegate.sw.cli.demo`) prints them.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from sparsegate.sw.prune.iterative import VAL_SIZE
from sparsegate.sw.util.atomic_io import write_json

DEMO_MODEL = "lenet5"
DEMO_BOARD = "ulx3s-25f"  # the pruned LeNet-5 fits its 56 block RAMs at 4 lanes (16 lanes do not)
DEMO_LANES = 4
DEMO_SPARSITY = 0.97  # SRA target: ~33x fewer weights, reached in 14 rounds (30% steps, 15% below 10% kept)
DEMO_NRP_DROP = 0.003  # NRP guard: validation-accuracy drop allowed (the paper's 0.3 points)
DEMO_KEP_KEEP = 0.7  # KEP keeps this fraction of the conv weights SRA + NRP left (half: 0.8-1.4 test points lost)
DEMO_KEP_DROP = 0.005  # KEP guard: validation-accuracy drop allowed, else the SRA + NRP model goes on


class DemoError(ValueError):
    """Impossible demo options, or a stage that cannot finish (the board build refused or failed, the engine
    disagreeing with the golden model)."""


@dataclass
class DemoOptions:
    """What a demo run does; the defaults are ``make demo``'s (tests use a tiny configuration)."""

    model: str = DEMO_MODEL  # a built-in name or a user's file.py:Class / package.module:Class (``--model``)
    board: str = DEMO_BOARD
    lanes: int = DEMO_LANES
    build: bool = True  # False: no bitstream (``--no-build``)
    clock_mhz: float = 100.0  # engine clock the bitstream is timed for
    baud: int | None = None  # the host link's rate (None: the fastest the board's USB-serial bridge does)
    netlist_samples: int = 20  # digits the bitstream's synthesized netlist classifies through its UART pins (0: none)
    samples: int = 20  # test digits run through the cycle-accurate engine
    epochs: int | None = None  # training epochs (None: the model's recipe, 12)
    val_size: int = VAL_SIZE  # training digits held out of training: the validation split of every pruning decision
    rounds: int = 16  # SRA and baseline prune → fine-tune rounds, to keep the demo within minutes
    finetune_epochs: int = 2  # per round (SRA, baseline) and after NRP
    finetune_lr: float | None = None  # every fine-tune's peak lr; None: PruneOptions' default, rewound to the training's
    weight_decay: float | None = None  # L2 of the training and every fine-tune; None: the recipe's and PruneOptions'
    kep_finetune_epochs: int = 2  # after the KEP cut (plus one epoch under the penalty)
    kep_keep: float = DEMO_KEP_KEEP  # fraction of the conv weights left by SRA + NRP that KEP keeps
    progress: bool = True

    def check(self) -> None:
        from sparsegate.hw.platform.boards import board_names
        from sparsegate.sw.ml.train import RECIPES
        from sparsegate.sw.ml.user_model import is_spec

        from torch import nn

        from sparsegate.sw.ml.models import build_model
        from sparsegate.sw.ml.user_model import build_user_model

        if not is_spec(self.model) and self.model not in RECIPES:
            raise DemoError(f"--model: unknown model {self.model!r}; expected one of {sorted(RECIPES)} or "
                            "path/to/file.py:ClassName")
        model = build_user_model(self.model) if is_spec(self.model) else build_model(self.model)  # fails early
        if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
            raise DemoError(f"--model {self.model}: the demo's KEP stage prunes conv kernels and this model has no "
                            "Conv2d layer; run train, prune, quantize, export and simulate one by one instead")

        if self.board not in board_names():
            raise DemoError(f"--board: unknown board {self.board!r}; expected one of {board_names()}")
        if self.lanes < 1 or self.lanes & (self.lanes - 1) or self.lanes > 64:
            raise DemoError(f"--lanes must be a power of two in 1..64, got {self.lanes}")
        if self.samples < 1:
            raise DemoError(f"--samples must be at least 1, got {self.samples}")
        if self.netlist_samples < 0:
            raise DemoError(f"--netlist-sim must be at least 0, got {self.netlist_samples}")
        if self.baud is not None:
            from sparsegate.hw.link.uart import divisor_for
            try:
                divisor_for(self.clock_mhz * 1e6, self.baud)
            except ValueError as err:
                raise DemoError(f"--baud: {err}") from None
        if self.rounds < 1 or self.finetune_epochs < 0 or self.kep_finetune_epochs < 0:
            raise DemoError("rounds must be >= 1 and fine-tune epochs >= 0")
        if self.finetune_lr is not None and not self.finetune_lr > 0:
            raise DemoError(f"the fine-tune learning rate must be > 0, got {self.finetune_lr}")
        if self.weight_decay is not None:
            from sparsegate.sw.ml.train import check_weight_decay
            try:
                check_weight_decay(self.weight_decay)
            except ValueError as err:
                raise DemoError(f"--weight-decay: {err}") from None
        if self.val_size < 1:
            raise DemoError(f"the validation split must hold at least 1 digit, got {self.val_size}")
        if not 0.0 < self.kep_keep <= 1.0:
            raise DemoError(f"the KEP keep fraction must be in (0, 1], got {self.kep_keep}")


# the options each stage's outputs depend on (besides the earlier stages' outputs)
STAGE_OPTIONS = {
    "train": ("epochs", "model", "weight_decay", "val_size"),
    "prune": ("rounds", "finetune_epochs", "finetune_lr", "weight_decay"),
    "kep": ("kep_finetune_epochs", "kep_keep", "finetune_lr", "weight_decay"),
    "baseline": ("rounds", "finetune_epochs", "finetune_lr", "weight_decay"),
    "simulate": ("lanes", "samples"),
    "build": ("board", "lanes", "build", "clock_mhz", "baud", "netlist_samples"),
}


def _data(results: dict):
    """(train, test) of the dataset the train stage used (the embedded MNIST unless the model is 32x32x3)."""
    from sparsegate.sw.ml.data import load_dataset

    return load_dataset(results["train"].get("dataset", "mnist5k"), None, 0)


def _finetune(opts: DemoOptions) -> dict:
    """PruneOptions' ``lr`` and ``weight_decay`` where the demo sets them (else its defaults: learning-rate
    rewinding and L2 weight decay, the recoveries #19 kept)."""
    return {key: value for key, value in (("lr", opts.finetune_lr), ("weight_decay", opts.weight_decay))
            if value is not None}


def _name(results: dict) -> str:
    return results["train"].get("name", DEMO_MODEL)


def _splits(results: dict):
    from sparsegate.sw.prune.iterative import split_validation

    train_ds, test_ds = _data(results)
    fit_ds, val_ds = split_validation(train_ds, results["train"]["held_out"])
    return fit_ds, val_ds, test_ds


def _stage_train(run: Path, results: dict, opts: DemoOptions) -> dict:
    from sparsegate.sw.flow.train import train_job
    from sparsegate.sw.ml.models import model_name
    from sparsegate.sw.ml.train import load_checkpoint

    summary = train_job(opts.model, run / "train", epochs=opts.epochs, weight_decay=opts.weight_decay,
                        progress=opts.progress, val_size=opts.val_size)
    return {"checkpoint": str(summary.checkpoint), "test_accuracy": summary.test_accuracy,
            "params": summary.params, "macs": summary.macs, "wall_time_s": summary.wall_time_s,
            "dataset": summary.dataset, "weight_decay": summary.weight_decay, "held_out": summary.held_out,
            "name": model_name(load_checkpoint(summary.checkpoint)[0])}


def _prune_iterative(run: Path, results: dict, opts: DemoOptions, method: str, stage: str) -> dict:
    """SRA + NRP (``method="sra"``) or the torch global-L1 baseline, from the trained model, same budget."""
    from sparsegate.sw.prune.counting import layer_table
    from sparsegate.sw.prune.kep import conv_sparsity
    from sparsegate.sw.prune import PruneOptions, ScheduleParams, prune_model, write_outputs
    from sparsegate.sw.prune.iterative import accuracy
    from sparsegate.sw.ml.train import load_checkpoint

    model, masks, _ = load_checkpoint(results["train"]["checkpoint"])
    fit_ds, val_ds, test_ds = _splits(results)
    base = accuracy(model, test_ds)
    sra = method == "sra"
    options = PruneOptions(method, ScheduleParams(target_sparsity=DEMO_SPARSITY, rounds=opts.rounds), nrp=sra,
                           nrp_drop=DEMO_NRP_DROP, finetune_epochs=opts.finetune_epochs, progress=opts.progress,
                           **_finetune(opts))
    outcome = prune_model(model, options, fit_ds, val_ds, masks)
    test_acc = accuracy(model, test_ds)
    table = layer_table(model, outcome.masks)
    label = "sra+nrp" if sra else method
    summary = {"method": label, "model": _name(results), "dataset": results["train"].get("dataset", "mnist5k"), "seed": 0,
               "held_out": results["train"]["held_out"],
               "base_test_accuracy": base, "test_accuracy": test_acc, "accuracy_drop": base - test_acc,
               "compression": table.total.compression, "mac_reduction": table.total.mac_reduction,
               "nonzero_params": table.total.nonzero_params, "params": table.total.params,
               "nrp": outcome.nrp, "history": outcome.history, "wall_time_s": outcome.wall_time_s}
    paths = write_outputs(run / stage, model, _name(results), outcome, summary)
    return {"method": label, "checkpoint": str(paths["checkpoint"]), "test_accuracy": test_acc,
            "val_accuracy": accuracy(model, val_ds), "base_test_accuracy": base, "accuracy_drop": base - test_acc,
            "compression": table.total.compression, "mac_reduction": table.total.mac_reduction,
            "nonzero_params": table.total.nonzero_params, "conv_sparsity": conv_sparsity(model, outcome.masks),
            "layers": table.to_dict()["layers"], "layers_md": str(paths["layers_md"]),
            "layers_png": str(paths["layers_png"]), "history": outcome.history, "wall_time_s": outcome.wall_time_s,
            "finetune": {"epochs": opts.finetune_epochs, "lr": options.lr, "weight_decay": options.weight_decay}}


def _stage_prune(run: Path, results: dict, opts: DemoOptions) -> dict:
    return _prune_iterative(run, results, opts, "sra", "prune")


def _stage_baseline(run: Path, results: dict, opts: DemoOptions) -> dict:
    return _prune_iterative(run, results, opts, "torch-l1", "baseline")


def _stage_kep(run: Path, results: dict, opts: DemoOptions) -> dict:
    """KEP (free per plane, one shot) on the conv layers of the SRA + NRP model: keep ``opts.kep_keep`` of
    the conv weights left (per-layer keep allocated globally), penalty epoch → cut → fine-tune; under the
    accuracy guard, else the SRA + NRP model goes on unchanged."""
    from sparsegate.sw.prune.counting import layer_table
    from sparsegate.sw.prune import KEPParams, PruneOptions, prune_model, write_outputs
    from sparsegate.sw.prune.kep import KEPConfig, allocate_keep, conv_sparsity
    from sparsegate.sw.prune.iterative import accuracy
    from sparsegate.sw.ml.train import load_checkpoint

    start = time.perf_counter()
    model, masks, _ = load_checkpoint(results["prune"]["checkpoint"])
    fit_ds, val_ds, test_ds = _splits(results)
    before = {"conv_sparsity": conv_sparsity(model, masks), "test_accuracy": accuracy(model, test_ds),
              "val_accuracy": accuracy(model, val_ds)}
    target = 1.0 - (1.0 - before["conv_sparsity"]) * opts.kep_keep
    keep = allocate_keep(model, target, KEPConfig(mode="free", penalty_epochs=1), masks)
    result = prune_model(model, PruneOptions("kep", KEPParams(keep=keep, mode="free", penalty_epochs=1),
                                             finetune_epochs=opts.kep_finetune_epochs, **_finetune(opts)),
                          fit_ds, val_ds, masks)
    res = result.extra
    after = {"conv_sparsity": conv_sparsity(model, res.masks), "test_accuracy": accuracy(model, test_ds),
             "val_accuracy": res.val_accuracy, "val_accuracy_cut": res.val_accuracy_cut}
    accepted = before["val_accuracy"] - after["val_accuracy"] <= DEMO_KEP_DROP
    table = layer_table(model, res.masks)
    wall = time.perf_counter() - start
    summary = {"method": "sra+nrp+kep", "model": _name(results), "dataset": results["train"].get("dataset", "mnist5k"), "seed": 0,
               "held_out": results["train"]["held_out"],
               "base_test_accuracy": results["prune"]["base_test_accuracy"], "test_accuracy": after["test_accuracy"],
               "accuracy_drop": results["prune"]["base_test_accuracy"] - after["test_accuracy"],
               "compression": table.total.compression, "mac_reduction": table.total.mac_reduction,
               "nonzero_params": table.total.nonzero_params, "params": table.total.params, "keep": keep,
               "before": before, "after": after, "accepted": accepted, "kep": res.summary(), "wall_time_s": wall}
    paths = write_outputs(run / "kep", model, _name(results), result, summary)
    out = {"keep": keep, "keep_fraction": opts.kep_keep, "target_conv_sparsity": target, "before": before,
           "after": after, "accepted": accepted,
           "kep_checkpoint": str(paths["checkpoint"]), "wall_time_s": wall}
    if accepted:
        out.update(checkpoint=str(paths["checkpoint"]), test_accuracy=after["test_accuracy"],
                   val_accuracy=after["val_accuracy"], compression=table.total.compression,
                   mac_reduction=table.total.mac_reduction, nonzero_params=table.total.nonzero_params,
                   layers=table.to_dict()["layers"], layers_md=str(paths["layers_md"]))
    else:  # the SRA + NRP model goes on
        p = results["prune"]
        out.update({k: p[k] for k in ("checkpoint", "test_accuracy", "val_accuracy", "compression",
                                      "mac_reduction", "nonzero_params", "layers", "layers_md")})
    out["accuracy_drop"] = results["prune"]["base_test_accuracy"] - out["test_accuracy"]
    return out


def _stage_quantize(run: Path, results: dict, opts: DemoOptions) -> dict:
    from sparsegate.sw.ml.quantize import calibration_split, compare, quantize_model
    from sparsegate.sw.ml.train import load_checkpoint
    from sparsegate.sw.ir.weight_image import write_image

    model, masks, _ = load_checkpoint(results["kep"]["checkpoint"])
    train_ds, test_ds = _data(results)
    qnet = quantize_model(model, calibration_split(train_ds), masks, name=_name(results))
    path = run / "quantize" / "quantized.bin"
    write_image(path, qnet)
    return {"quantized": str(path), **asdict(compare(model, qnet, test_ds))}


def _stage_export(run: Path, results: dict, opts: DemoOptions) -> dict:
    from sparsegate.sw.ir.weight_image import export_image, format_storage_table, read_image, storage_report

    qnet = read_image(results["quantize"]["quantized"])
    export_image(qnet, run / "export")
    storage = storage_report(qnet)
    return {"image": str(run / "export" / "image.bin"), "storage": storage,
            "storage_table": format_storage_table(storage)}


def _stage_simulate(run: Path, results: dict, opts: DemoOptions) -> dict:
    """Verilator run of ``opts.samples`` test digits at ``opts.lanes`` lanes, every layer checked bit for bit
    against the golden model; plus the predictions of the golden model, the float PyTorch model and the
    integer PyTorch reference on the same digits, and the same engine's cycle model on the dense network."""
    import numpy as np
    from torch.utils.data import TensorDataset

    from sparsegate.hw.engine.cycle_model import program_cycles
    from sparsegate.hw.engine.program import compile_program
    from sparsegate.sw.flow.lenet import test_digits, torch_int_reference

    from sparsegate.sw.flow.simulate import simulate
    from sparsegate.sw.ir.weight_image import read_image
    from sparsegate.sw.ml.quantize import calibration_split, quantize_model
    from sparsegate.sw.ml.train import load_checkpoint, predict

    image = Path(results["export"]["image"])
    result = simulate(image, opts.samples, "verilator", opts.lanes, build_dir=run / "simulate" / "build")
    if not result.ok:
        raise DemoError(f"simulate stage: the engine disagreed with the golden model ({result.check.splitlines()[0]})")
    qnet = read_image(image)
    train_ds, test_ds = _data(results)
    x_int, labels = test_digits(qnet, opts.samples, (train_ds, test_ds))
    program = compile_program(qnet, opts.lanes, x_int[:1])
    nonzero_macs = [plan.nonzero_macs for plan in program.layers]
    # dense: the trained network before pruning, quantized the same way, on the same engine (cycle model)
    dense_model, dense_masks, _ = load_checkpoint(results["train"]["checkpoint"])
    dense = quantize_model(dense_model, calibration_split(train_ds), dense_masks, name=_name(results))
    dense_program = compile_program(dense, opts.lanes, dense.quantize_input(test_ds.tensors[0][:1].numpy()))
    dense_cycles = program_cycles(dense_program)
    # agreement on the simulated digits: the engine equals the golden model layer by layer (checked above)
    golden = qnet.logits(x_int).argmax(axis=1)
    model, _, _ = load_checkpoint(results["kep"]["checkpoint"])
    x_float = test_ds.tensors[0][:opts.samples]
    float_pred = predict(model, TensorDataset(x_float, test_ds.tensors[1][:opts.samples])).numpy()
    int_ref = torch_int_reference(qnet, x_int).argmax(axis=1)
    agree = {"engine_vs_golden_bit_exact": opts.samples,
             "engine_vs_torch_int": int(np.sum(golden == int_ref)),
             "engine_vs_torch_float": int(np.sum(golden == float_pred)),
             "engine_correct": int(np.sum(golden == labels)), "torch_float_correct": int(np.sum(float_pred == labels))}
    return {"ok": result.ok, "cycles": result.cycles, "model": result.model, "total": result.total_cycles,
            "samples": opts.samples, "lanes": opts.lanes, "log": result.lines(),
            "layer_names": [plan.name for plan in program.layers], "nonzero_macs": nonzero_macs,
            "utilization": [m / (opts.lanes * c) if c else 0.0 for m, c in zip(nonzero_macs, result.cycles)],
            "dense_model": dense_cycles,
            "dense_utilization": [plan.nonzero_macs / (opts.lanes * c) if c else 0.0
                                  for plan, c in zip(dense_program.layers, dense_cycles)],
            "agreement": agree}


def demo_baud(opts: DemoOptions) -> int:
    """The host link's rate: ``opts.baud``, else the fastest the board's USB-serial bridge does at the clock
    (:func:`~sparsegate.hw.link.uart.fastest_baud`; the ULX3S's FT231X: 3 Mbaud)."""
    from sparsegate.hw.link.uart import fastest_baud
    from sparsegate.hw.platform.boards import BOARDS

    return opts.baud or fastest_baud(opts.clock_mhz * 1e6, BOARDS[opts.board].uart_max_baud)


def _stage_build(run: Path, results: dict, opts: DemoOptions) -> dict:
    """The board top (engine + UART host link + PLL) with the demo's image, as an ECP5 bitstream
    (``sparsegate build``'s path: fit pre-check, cache by digest, report), and its synthesized netlist simulated
    through the UART pins on ``opts.netlist_samples`` digits with the image the bitstream holds (no load over the
    link: the block-RAM init values are what is checked); skipped with ``--no-build``."""
    if not opts.build:
        return {"skipped": True, "board": opts.board, "lanes": opts.lanes}
    from sparsegate.hw.platform.ecp5_build import BuildFailed, DesignDoesNotFit
    from sparsegate.sim.cocotb_runner import SimulationFailed
    from sparsegate.sw.flow.build import DEFAULT_CACHE, BuildError, build_board, format_report
    from sparsegate.sw.util.toolchain import ToolNotFoundError

    lines: list[str] = []
    image = Path(results["export"]["image"])
    baud = demo_baud(opts)
    try:
        info = build_board(opts.board, opts.lanes, run / "build", image=image.read_bytes(),
                           image_name=f"demo image {image}", clock_mhz=opts.clock_mhz, baud=baud, cache=DEFAULT_CACHE,
                           netlist_sim=opts.netlist_samples, netlist_load=False, log=lines.append)
    except (DesignDoesNotFit, BuildError) as err:
        raise DemoError(f"build stage: {err}") from None
    except (BuildFailed, ToolNotFoundError) as err:
        raise DemoError(f"build stage: {str(err).splitlines()[0]} (logs under {DEFAULT_CACHE})") from None
    except SimulationFailed as err:
        raise DemoError(f"build stage, netlist simulation: {str(err).splitlines()[0]}") from None
    if info.netlist_sim is not None and not info.netlist_sim["ok"]:
        raise DemoError(f"build stage: {info.netlist_sim['line']} (netlist and logs under {run / 'build'})")
    rep = info.report
    aliases = (("LUT4", "TRELLIS_COMB"), ("FF", "TRELLIS_FF"), ("MULT18X18D", "MULT18X18D"), ("DP16KD", "DP16KD"),
               ("LUT RAM", "TRELLIS_RAMW"))
    return {"skipped": False, "board": opts.board, "description": info.description, "lanes": opts.lanes,
            "device": rep["device"], "digest": info.digest, "bit": info.bitstream,
            "resources": {alias: info.utilisation[kind] for alias, kind in aliases if kind in info.utilisation},
            "clocks": rep["clocks"], "fmax_mhz": info.fmax_mhz, "target_mhz": info.clock_mhz,
            "timing_met": info.timing_met, "tool_time_s": rep["elapsed_s"], "cache_hit": info.cache_hit,
            "baud": baud, "netlist_sim": info.netlist_sim, "report_md": format_report(info), "log": lines}


def _stage_report(run: Path, results: dict, opts: DemoOptions) -> dict:
    from sparsegate.sw.flow.report import write_report

    return write_report(run, results)


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def _describe_kep(r: dict) -> str:
    b, a = r["before"], r["after"]
    return (f"KEP: conv sparsity {_pct(b['conv_sparsity'])} → {_pct(a['conv_sparsity'])}, test accuracy "
            f"{_pct(b['test_accuracy'])} → {_pct(a['test_accuracy'])}"
            + ("" if r["accepted"] else " — over the guard, SRA + NRP model kept"))


def _describe_build(r: dict) -> str:
    if r["skipped"]:
        return f"bitstream skipped (--no-build) for {r['board']}, {r['lanes']} lanes"
    res = r["resources"]
    net = r.get("netlist_sim")
    return (f"{r['board']} ({r['lanes']} lanes): LUT4 {res['LUT4']['used']:,}/{res['LUT4']['available']:,}, "
            f"DP16KD {res['DP16KD']['used']}/{res['DP16KD']['available']}, Fmax {r['fmax_mhz']:.1f} MHz "
            f"(timing at {r['target_mhz']:.0f} MHz {'met' if r['timing_met'] else 'NOT met'}): {r['bit']}"
            + (f"; {net['line']} ({net['elapsed_s']:.0f} s)" if net else ""))


# (name, function(run, results, options) -> dict, one-line description of the result for the summary)
STAGES = [
    ("train", _stage_train, lambda r: f"{r.get('name', 'lenet5')}: {_pct(r['test_accuracy'])} on the held-out "
                                      f"digits ({r['params']:,} params, {r['wall_time_s']:.0f} s)"),
    ("prune", _stage_prune, lambda r: f"SRA+NRP: {r['compression']:.1f}x compression, "
                                      f"{_pct(r['mac_reduction'])} MACs removed, accuracy {_pct(r['test_accuracy'])} "
                                      f"(drop {100 * r['accuracy_drop']:.2f} points)"),
    ("kep", _stage_kep, _describe_kep),
    ("baseline", _stage_baseline, lambda r: f"torch global L1 (same budget): {r['compression']:.1f}x, accuracy "
                                            f"{_pct(r['test_accuracy'])} (drop {100 * r['accuracy_drop']:.2f} points)"),
    ("quantize", _stage_quantize, lambda r: f"int8: {_pct(r['quant_accuracy'])} (float {_pct(r['float_accuracy'])}), "
                                            f"predictions agree on {_pct(r['agreement'])}"),
    ("export", _stage_export, lambda r: f"weight image {r['storage']['total']['image_bytes']:,} bytes: {r['image']}"),
    ("simulate", _stage_simulate, lambda r: f"engine ({r['lanes']} lanes, Verilator): {r['total']:,} cycles per digit, "
                                            f"{r['samples']} digits bit-exact with the golden model"),
    ("build", _stage_build, _describe_build),
    ("report", _stage_report, lambda r: f"report: {r['markdown']} and {r['html']}"),
]


def _stage_settings(name: str, options: DemoOptions) -> dict:
    d = asdict(options)
    return {k: d[k] for k in STAGE_OPTIONS.get(name, ())}


def run_demo(run: Path, options: DemoOptions | None = None, fresh: bool = False,
             log: Callable[[str], None] = lambda line: None) -> dict:
    """Run (or resume) every stage; returns ``{stage: result}``. ``log`` receives one line as each stage
    starts, is reused or finishes."""
    options = options or DemoOptions()
    options.check()
    run = Path(run)
    results: dict = {}
    redo = fresh
    for name, function, describe in STAGES:
        marker = run / name / "stage.json"
        settings = _stage_settings(name, options)
        previous = json.loads(marker.read_text()) if marker.is_file() and not redo else None
        if previous is not None and previous.get("options", {}) == settings:
            results[name] = {**previous, "reused": True}
            log(f"[{name}] reused from {marker.parent}")
        else:
            if previous is not None:
                log(f"[{name}] options changed ({previous.get('options')} → {settings}): running again ...")
            else:
                log(f"[{name}] running ...")
            redo = True  # later stages depend on this one's outputs
            start = time.perf_counter()
            results[name] = function(run, results, options)
            results[name]["stage_time_s"] = time.perf_counter() - start
            results[name]["options"] = settings
            write_json(marker, results[name])
        log(f"[{name}] {describe(results[name])}")
    write_json(run / "summary.json", results)
    return results


def format_recap(results: dict, wall_s: float) -> str:
    """The closing summary: each stage's result line and its time (reused stages marked), the total."""
    lines = ["", "sparsegate demo — summary"]
    for name, _, describe in STAGES:
        r = results[name]
        tag = "(reused)" if r.get("reused") else ""
        lines.append(f"  {name:<9} {r['stage_time_s']:7.1f} s {tag:<8}  {describe(r)}")
    lines.append(f"  total     {wall_s:7.1f} s this run")
    return "\n".join(lines)
