"""The zoo benchmark (issue #17): every model of :data:`sparsegate.sw.ml.zoo.ZOO` through the whole flow —
trained briefly on the embedded digits, pruned with the recipe a user would pick for it, quantized to int8,
written as a weight image, compiled for the engine at P lanes — with, per model: params and dense MACs, the
training budget, float accuracy dense and pruned, compression, int8 agreement with float and int8 accuracy
on the held-out digits, engine cycles and lane utilization (cycle model), a Verilator run of a few digits
checked bit for bit against the golden model, and the block RAM the board build would need
(:func:`sparsegate.sw.flow.build.board_program` + the engine core's estimate, as ``sparsegate build``
checks it) against the ECP5-25F and -85F.

A model that graph capture, the image format or the engine compiler refuses gets a row with the refusal,
and the benchmark goes on. Graph capture is tried on the untrained model first, so a model refused there
costs no training.
"""
from __future__ import annotations

import copy
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from sparsegate.sw.bench.results import BenchResult, write_results

__all__ = ["QUICK_RECIPE", "RECIPES", "Recipe", "run_zoo_benchmark"]

DEVICES = ("25F", "85F")


@dataclass(frozen=True)
class Recipe:
    """How one model is trained and pruned: ``epochs`` over the first ``train_size`` training digits (all
    when None), then ``method`` (a registry name) to ``sparsity`` in at most ``rounds`` rounds with
    ``finetune_epochs`` per round, each round removing ``step`` of the weights still kept; ``test_size``
    held-out digits measure; ``verilator`` digits run on the engine."""

    epochs: int
    method: str
    sparsity: float
    finetune_epochs: int
    rounds: int = 40
    step: float = 0.5
    train_size: int | None = None
    lr: float = 2e-3
    test_size: int = 1000
    verilator: int = 4
    calibration: str = "max"   # quantize_model's range method ("max" or "percentile")

    def describe(self) -> str:
        what = {"global": "global magnitude", "sra": "SRA"}.get(self.method, self.method)
        steps = f" in steps of {self.step:.0%} of the kept weights" if self.rounds > 1 else " in one shot"
        tune = (f", {self.finetune_epochs}-epoch fine-tune{' per round' if self.rounds > 1 else ''}"
                if self.finetune_epochs else ", no fine-tune")
        return f"{what} to {self.sparsity:.0%}{steps}{tune}"


#: The recipe per zoo model: the SRA schedule where the layers differ in sensitivity (the conv nets), one
#: global magnitude threshold for the MLP; sparsity targets a user would start from for nets this size; the
#: budgets keep the whole zoo within about 15 CPU minutes on two cores.
RECIPES: dict[str, Recipe] = {
    "lenet5-bn": Recipe(epochs=3, method="sra", sparsity=0.9, finetune_epochs=1),
    "sequential": Recipe(epochs=3, method="sra", sparsity=0.8, finetune_epochs=1),
    "lenet300": Recipe(epochs=3, method="global", sparsity=0.95, finetune_epochs=1),
    "vgg-bn-dropout": Recipe(epochs=2, method="sra", sparsity=0.8, finetune_epochs=1),
    # The prune registry's methods follow a chain of layers (sw/prune/masks.topology); a ResNet's skip
    # connections leave it, so the ResNet gets the one global threshold directly, then a masked fine-tune.
    # Its long-tailed deep activations are calibrated at the 99.99th percentile (max: 93% agreement).
    "resnet8": Recipe(epochs=2, method="global", sparsity=0.8, finetune_epochs=1, rounds=1,
                      calibration="percentile"),
}
DEFAULT_RECIPE = Recipe(epochs=2, method="global", sparsity=0.8, finetune_epochs=1)
#: ``--quick``: every model on a smoke budget (one epoch of 1,000 digits, one-shot global magnitude).
QUICK_RECIPE = Recipe(epochs=1, method="global", sparsity=0.5, finetune_epochs=0, rounds=1, step=0.5,
                      train_size=1000, lr=3e-3, test_size=200, verilator=1)


class _Refused(Exception):
    """A stage refused the model: ``stage`` and the library's one-line reason."""

    def __init__(self, stage: str, reason: str):
        super().__init__(reason)
        self.stage, self.reason = stage, reason


def run_zoo_benchmark(out_dir, quick: bool = False, models: list[str] | None = None, lanes: int = 16,
                      log=print) -> BenchResult:
    """Run the zoo (``models``: a subset of the zoo's names, default all) in ``out_dir``; the table goes to
    ``zoo.md``, its figures to ``zoo.json``; each model's weight image to ``out_dir/NAME/image``."""
    import torch

    from sparsegate.hw.platform.boards import DEVICE_RESOURCES
    from sparsegate.sw.ml.data import load_dataset
    from sparsegate.sw.ml.zoo import ZOO

    out_dir = Path(out_dir)
    names = list(ZOO) if models is None else list(models)
    unknown = sorted(set(names) - set(ZOO))
    if unknown:
        raise ValueError(f"unknown zoo models {unknown}; expected some of {sorted(ZOO)}")
    datasets = {}
    rows = []
    t0 = time.perf_counter()
    for name in names:
        entry = ZOO[name]
        recipe = QUICK_RECIPE if quick else RECIPES.get(name, DEFAULT_RECIPE)
        if entry.dataset not in datasets:
            datasets[entry.dataset] = load_dataset(entry.dataset, None, 0)
        started = time.perf_counter()
        with torch.random.fork_rng():
            torch.manual_seed(0)
            row = _run_model(entry, recipe, datasets[entry.dataset], lanes, out_dir / name, log)
        row["wall_s"] = round(time.perf_counter() - started, 1)
        log(f"[zoo] {name}: {row['status']} in {row['wall_s']:.0f} s")
        rows.append(row)
    data = {"generated": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.machine(),
            "python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "quick": quick, "lanes": lanes,
            "dp16kd_available": {d: DEVICE_RESOURCES[d]["DP16KD"] for d in DEVICES},
            "wall_s": round(time.perf_counter() - t0, 1), "models": rows}
    return write_results("zoo", _markdown(data), data, out_dir)


def _run_model(entry, recipe: Recipe, datasets, lanes: int, out: Path, log) -> dict:
    """One zoo model through the flow; the row of figures (``status`` "ok" or "refused")."""
    from torch.utils.data import TensorDataset

    from sparsegate.sw.ml.graph_capture import QuantizationError
    from sparsegate.sw.ml.models import count_layers
    from sparsegate.sw.ml.quantize import calibration_split, quantize_model
    from sparsegate.sw.ml.train import TrainConfig, evaluate, train
    from sparsegate.sw.prune import PruneError, PruneOptions, ScheduleParams, prune_model
    from sparsegate.sw.prune.iterative import split_validation

    train_ds, test_ds = datasets
    num_classes = int(train_ds.tensors[1].max()) + 1
    model = entry.make(num_classes=num_classes)
    input_shape = tuple(train_ds.tensors[0].shape[1:])
    layers = count_layers(model.eval(), input_shape)  # eval: BatchNorm statistics untouched, batch of 1
    row = {"name": entry.name, "class": entry.spec, "dataset": entry.dataset, "description": entry.description,
           "params": sum(layer.params for layer in layers), "dense_macs": sum(layer.macs for layer in layers),
           "recipe": {**asdict(recipe), "text": recipe.describe()}, "status": "ok"}
    calib = calibration_split(train_ds, 256)
    try:
        quantize_model(copy.deepcopy(model).eval(), TensorDataset(calib.tensors[0][:8], calib.tensors[1][:8]))
    except QuantizationError as err:
        return {**row, "status": "refused", "refused_at": "graph capture (before training)", "reason": str(err)}

    pool = train_ds if recipe.train_size is None else TensorDataset(*(t[:recipe.train_size] for t in train_ds.tensors))
    fit_ds, val_ds = split_validation(pool, _val_size(recipe is QUICK_RECIPE, len(pool.tensors[0])))
    test = TensorDataset(*(t[:recipe.test_size] for t in test_ds.tensors))
    log(f"[zoo] {entry.name}: training {recipe.epochs} epoch(s) on {len(fit_ds.tensors[0])} digits")
    trained = train(model, fit_ds, TrainConfig(epochs=recipe.epochs, lr=recipe.lr, seed=0, progress=False))
    row["training"] = {"epochs": recipe.epochs, "digits": len(fit_ds.tensors[0]),
                       "wall_s": round(trained.wall_time_s, 1)}
    row["float_accuracy_dense"] = evaluate(model, test)
    dense_model = copy.deepcopy(model)

    log(f"[zoo] {entry.name}: pruning ({recipe.describe()})")
    try:
        outcome = prune_model(model, PruneOptions(recipe.method, ScheduleParams(
            target_sparsity=recipe.sparsity, step=recipe.step, rounds=recipe.rounds),
            finetune_epochs=recipe.finetune_epochs, progress=False), fit_ds, val_ds)
        masks, compression, rounds, wall_s = (outcome.masks, outcome.compression, len(outcome.history),
                                              outcome.wall_time_s)
    except PruneError as err:
        if recipe.method != "global" or recipe.rounds != 1:
            raise
        masks, compression, wall_s = _global_threshold(model, recipe, fit_ds)
        rounds = 1
        row["recipe"]["text"] += " (applied directly: the prune registry's layer chain does not follow " \
                                 "skip connections)"
        log(f"[zoo] {entry.name}: {err}; global threshold applied directly")
    model.eval()
    row["pruning"] = {"compression": compression, "rounds": rounds, "wall_s": round(wall_s, 1),
                      "float_accuracy": evaluate(model, test)}
    try:
        row.update(_quantized(entry.name, model, dense_model, masks, calib, test, lanes, recipe.verilator,
                              out, log, recipe.calibration))
    except _Refused as refusal:
        row.update(status="refused", refused_at=refusal.stage, reason=refusal.reason)
    return row


def _global_threshold(model, recipe: Recipe, fit_ds) -> tuple[dict, float, float]:
    """One global magnitude threshold to ``recipe.sparsity`` over the prunable layers, then the recipe's masked
    fine-tune: ``(masks, compression of the prunable weights, wall seconds)``."""
    import time

    from sparsegate.sw.ml.train import TrainConfig, train
    from sparsegate.sw.prune.masks import apply_masks, global_magnitude_masks

    t0 = time.perf_counter()
    masks = global_magnitude_masks(model, recipe.sparsity)
    apply_masks(model, masks)
    if recipe.finetune_epochs:
        train(model, fit_ds, TrainConfig(epochs=recipe.finetune_epochs, lr=recipe.lr, seed=0, progress=False),
              masks=masks)
    kept = sum(int(m.sum()) for m in masks.values())
    return masks, sum(m.numel() for m in masks.values()) / max(kept, 1), time.perf_counter() - t0


def _quantized(name: str, model, dense_model, masks, calib, test, lanes: int, samples: int, out: Path,
               log, calibration: str = "max") -> dict:
    """Quantize, export, compile, estimate the block RAM and run ``samples`` digits on Verilator;
    :class:`_Refused` when the quantizer, the image format or the engine compiler refuses the model."""
    from sparsegate.hw.engine.cycle_model import program_cycles
    from sparsegate.hw.engine.program import compile_program
    from sparsegate.hw.platform.boards import DEVICE_RESOURCES
    from sparsegate.hw.platform.cores import ENGINE
    from sparsegate.sim.engine.amaranth_sim import check_run, layer_stats
    from sparsegate.sim.engine.hdl import build_engine, run_engine_hdl
    from sparsegate.sw.flow.build import board_program
    from sparsegate.sw.ml.graph_capture import QuantizationError
    from sparsegate.sw.ml.quantize import compare, quantize_model
    from sparsegate.sw.ir.weight_image import ExportError, ImageError, export_image, read_image

    try:
        qnet = quantize_model(model, calib, masks, name=name, method=calibration)
        dense_qnet = quantize_model(dense_model, calib, name=f"{name}-dense", method=calibration)
    except QuantizationError as err:
        raise _Refused("quantize", str(err)) from None
    try:
        export_image(qnet, out / "image", formats=("image",))
        qnet = read_image(out / "image" / "image.bin")  # the engine runs what the image holds
    except (ExportError, ImageError) as err:
        raise _Refused("weight image", str(err)) from None
    quant = compare(model, qnet, test)
    x = qnet.quantize_input(test.tensors[0][:max(samples, 1)].numpy())
    try:
        program = compile_program(qnet, lanes, x)
        dense_program = compile_program(dense_qnet, lanes, x[:1])
        board = board_program(ENGINE, qnet, lanes=lanes, samples=1)
    except ValueError as err:
        raise _Refused("engine compiler", str(err)) from None
    cycles = [int(c) for c in program_cycles(program)]
    dense_cycles = [int(c) for c in program_cycles(dense_program)]
    nonzero = [int(plan.nonzero_macs) for plan in program.layers]
    estimate = ENGINE.estimate(board)
    row = {
        "int8": {"agreement": quant.agreement, "accuracy": quant.quant_accuracy, "test_digits": quant.samples},
        "engine": {"lanes": lanes,
                   "layers": [{"name": plan.name, "kind": plan.kind, "nonzero_macs": nz, "cycles": c, "dense_cycles": d}
                              for plan, nz, c, d in zip(program.layers, nonzero, cycles, dense_cycles)],
                   "cycles": sum(cycles), "dense_cycles": sum(dense_cycles), "nonzero_macs": sum(nonzero),
                   "utilisation": sum(nonzero) / (lanes * sum(cycles))},
        "block_ram": {"dp16kd": estimate.dp16kd, "parts": dict(estimate.parts),
                      "devices": {d: {"available": DEVICE_RESOURCES[d]["DP16KD"],
                                      "fits": estimate.dp16kd <= DEVICE_RESOURCES[d]["DP16KD"]} for d in DEVICES}},
    }
    if samples:
        log(f"[zoo] {name}: Verilator, {samples} digit(s)")
        built, build_s = build_engine(program, "verilator", out / "verilator")
        runs, _, wall = run_engine_hdl(program, built)
        report = check_run(program, runs)
        measured = [r["cycles"] for r in layer_stats(program, runs[0])]
        row["verilator"] = {"digits": samples, "bit_exact": report.ok, "check": str(report),
                            "cycles": sum(measured), "load_cycles": int(runs[0]["total.load_cycles"]),
                            "cycles_equal_model": measured == cycles, "build_s": round(build_s, 1),
                            "run_s": round(wall, 3)}
    return row


def _val_size(quick: bool, pool: int = 4000) -> int:
    """Training digits kept for the pruning decisions: ``VAL_SIZE``, or a quarter of a smaller (quick) pool."""
    from sparsegate.sw.prune.iterative import VAL_SIZE

    return min(VAL_SIZE, (QUICK_RECIPE.train_size if quick else pool) // 4)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _markdown(data: dict) -> str:
    """The tables, from the figures alone (so ``zoo.md`` and ``zoo.json`` cannot disagree)."""
    lanes, rows = data["lanes"], data["models"]
    ok = [r for r in rows if r["status"] == "ok"]
    lines = [
        "# Model zoo through the whole flow" + (" (quick smoke run)" if data["quick"] else ""),
        "",
        f"Generated by `sparsegate bench --only zoo{' --quick' if data['quick'] else ''}` (`sw/bench/zoo.py`), "
        f"{data['generated']}, on {data['machine']} / Python {data['python']} / torch {data['torch']} "
        f"({data['threads']} threads), {data['wall_s']:.0f} s. Models: `sparsegate.sw.ml.zoo` (each usable as "
        "`--model sparsegate.sw.ml.zoo:Class`), trained from seed 0 on the embedded digits (`mnist5k`: 28x28; "
        f"`mnist5k-rgb32`: padded to 32x32, replicated to 3 channels) less {_val_size(data['quick'])} kept for the "
        "pruning decisions; accuracies on the held-out digits. Params and MACs: the conv/linear layers, dense, "
        "one inference.",
        "",
        "## Accuracy and compression",
        "",
        "| model | class | dataset | params | dense MACs | training | float acc. dense | pruning | compression "
        "| float acc. pruned | int8 agreement | int8 acc. |",
        "|---|---|---|---:|---:|---|---:|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        head = (f"| {r['name']} | `{r['class'].rsplit(':', 1)[1]}` | {r['dataset']} | {r['params']:,} | "
                f"{r['dense_macs']:,} |")
        if "training" not in r:
            lines.append(head + " — | — | — | — | — | — | — |")
            continue
        t, p = r["training"], r["pruning"]
        quant = (f"{_pct(r['int8']['agreement'])} | {_pct(r['int8']['accuracy'])} |" if "int8" in r
                 else "— | — |")
        lines.append(head + f" {t['epochs']} ep. x {t['digits']:,} digits ({t['wall_s']:.0f} s) | "
                     f"{_pct(r['float_accuracy_dense'])} | {r['recipe']['text']} ({p['rounds']} round{'s' if p['rounds'] != 1 else ''}, "
                     f"{p['wall_s']:.0f} s) | {p['compression']:.1f}x | {_pct(p['float_accuracy'])} | {quant}")
    lines += [
        "",
        f"int8 agreement: the golden model's prediction equals the pruned float model's, on the same "
        f"{', '.join(sorted({str(r['int8']['test_digits']) for r in ok})) or '—'} held-out digits; the golden "
        "model runs the network read back from its weight image.",
        "",
        f"## Engine at P={lanes} and block RAM",
        "",
        "| model | layers | cycles (model) | dense cycles | speed-up | lane util. | Verilator | DP16KD needed | "
        + " | ".join(f"{d} ({n} DP16KD)" for d, n in data["dp16kd_available"].items()) + " |",
        "|---|---:|---:|---:|---:|---:|---|---:|" + "---|" * len(DEVICES),
    ]
    for r in rows:
        if r["status"] != "ok":
            cells = [r["name"], f"refused at {r['refused_at']}: {_cell(r['reason'])}"] + [""] * (6 + len(DEVICES))
            lines.append("| " + " | ".join(cells) + " |")
            continue
        e, b = r["engine"], r["block_ram"]
        v = r.get("verilator")
        sim = ("not run" if v is None else
               f"{v['digits']} digit(s), {'bit-exact' if v['bit_exact'] else 'MISMATCH'}, cycles "
               f"{'= model' if v['cycles_equal_model'] else str(v['cycles']) + ' ≠ model'}")
        fits = " | ".join(f"{'fits' if fit['fits'] else 'no'} ({b['dp16kd']}/{fit['available']})"
                          for fit in b["devices"].values())
        lines.append(f"| {r['name']} | {len(e['layers'])} | {e['cycles']:,} | {e['dense_cycles']:,} | "
                     f"{e['dense_cycles'] / e['cycles']:.2f}x | {_pct(e['utilisation'])} | {sim} | {b['dp16kd']} | "
                     f"{fits} |")
    lines += [
        "",
        f"Cycles: the engine's cycle model per inference (all layers, input load excluded), exact against the "
        "Verilator run where the Verilator column says `= model`; dense: the same network quantized without its "
        f"masks, on the same engine. Lane utilization: nonzero MACs / ({lanes} x cycles). Verilator: held-out "
        "digits run whole on the engine, every layer's output and the logits compared with the golden model. "
        f"DP16KD needed: the estimate `sparsegate build` checks before synthesis (`hw/platform/cores.py`: "
        f"activation banks, weight / parameter / input / channel memories, the host link's frame buffer) for "
        f"a board top at {lanes} lanes holding this image; fewer lanes need fewer activation banks. Per model "
        "(block RAM parts): " + "; ".join(f"{r['name']} " + ", ".join(f"{k} {v}" for k, v in
                                                                        r["block_ram"]["parts"].items())
                                          for r in ok) + ".",
        "",
    ]
    return "\n".join(lines)


def _cell(text: str) -> str:
    """One table cell: a single line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")
