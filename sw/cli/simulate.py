"""``sparsegate simulate``: run a weight image on the cycle-accurate sparse engine and check it bit-exactly
against the golden model (docs/engine.md).

Inputs are the first ``--samples`` held-out digits of the embedded MNIST split when the image takes
1x28x28 inputs, else seeded random int8 inputs. Prints, per layer: measured cycles, the analytical
model's prediction, ideal cycles (nonzero MACs / P), lane utilization and stalls; then the agreement with
the golden model (every layer's output signature and the final outputs) and the simulation speed.
"""
from __future__ import annotations

import argparse
from pathlib import Path

SIMS = ("verilator", "icarus", "amaranth")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--image", type=Path, required=True, help="weight image (image.bin)")
    parser.add_argument("--samples", type=int, default=20, help="inputs to run (default 20)")
    parser.add_argument("--sim", choices=SIMS, default="verilator", help="simulator (default verilator)")
    parser.add_argument("--lanes", type=int, default=16, help="MAC lanes P: a power of two (default 16)")
    parser.add_argument("--vcd", type=Path, help="also write a VCD of the first sample (Amaranth simulator)")
    parser.add_argument("--build-dir", type=Path, default=Path("build/engine"),
                        help="simulator build folder (default build/engine)")


def simulate(image: Path, samples: int, sim: str = "verilator", lanes: int = 16, vcd: Path | None = None,
             build_dir: Path = Path("build/engine"), log=print) -> dict:
    import numpy as np

    from sparsegate.hw.engine.cycle_model import program_cycles
    from sparsegate.hw.engine.program import compile_program
    from sparsegate.sim.engine.amaranth_sim import check_run, layer_stats, run_amaranth
    from sparsegate.sw.ir.weight_image import read_image

    from sparsegate.sw.cli.main import CliError

    if samples < 1:
        raise CliError(f"--samples must be at least 1, got {samples}")
    if lanes < 1 or lanes & (lanes - 1) or lanes > 64:
        raise CliError(f"--lanes must be a power of two in 1..64, got {lanes}")
    qnet = read_image(image)
    if tuple(qnet.input_shape) == (1, 28, 28):
        from sparsegate.sw.flow.lenet import test_digits
        x, _ = test_digits(qnet, samples)
        source = "held-out MNIST digits"
    else:
        rng = np.random.default_rng(0)
        x = rng.integers(-128, 128, size=(samples,) + tuple(qnet.input_shape)).astype(np.int8)
        source = "random int8 inputs"
    program = compile_program(qnet, lanes, x)
    log(f"{qnet.name}: {len(qnet.layers)} layers, {samples} {source}, {lanes} lanes, {sim}")
    if sim == "amaranth":
        runs, cycles, wall = run_amaranth(program)
    else:
        from sparsegate.sim.engine.hdl import build_engine, run_engine_hdl
        built, build_s = build_engine(program, sim, Path(build_dir) / f"{sim}-p{lanes}")
        log(f"built for {sim} in {build_s:.1f} s")
        runs, cycles, wall = run_engine_hdl(program, built)
    if vcd is not None:
        run_amaranth(program, samples=[0], vcd=str(vcd))
        log(f"VCD of sample 0: {vcd}")
    report = check_run(program, runs)
    model = program_cycles(program)
    stats = layer_stats(program, runs[0])
    head = f"{'layer':<10} {'kind':<4} {'cycles':>9} {'model':>9} {'ideal':>9} {'util':>6} {'stalls':>7}"
    log(head)
    log("-" * len(head))
    for row, predicted in zip(stats, model):
        log(f"{row['name']:<10} {row['kind']:<4} {row['cycles']:>9,} {predicted:>9,} "
            f"{row['nonzero_macs'] / lanes:>9,.0f} {100 * row['utilization']:>5.1f}% {row['stalls']:>7,}")
    total = runs[0]["total.cycles"]
    log(f"{'total':<15} {total:>9,} (sample 0, including {runs[0]['total.load_cycles']} input-load cycles)")
    log(f"golden model: {report}")
    if report.predictions_hw:
        from sparsegate.sw.flow.lenet import torch_int_reference
        ref = torch_int_reference(qnet, x).argmax(axis=1).tolist()
        agree = sum(a == b for a, b in zip(report.predictions_hw, ref))
        log(f"predictions equal to the PyTorch integer reference: {agree}/{len(ref)}")
    log(f"simulation: {cycles:,} cycles in {wall:.2f} s = {cycles / max(wall, 1e-9):,.0f} cycles/s ({sim})")
    return {"ok": report.ok, "cycles": [r["cycles"] for r in stats], "model": model, "total": total}


def run(args: argparse.Namespace) -> int:
    result = simulate(args.image, args.samples, args.sim, args.lanes, args.vcd, args.build_dir)
    return 0 if result["ok"] else 1
