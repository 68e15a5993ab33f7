"""The simulate job: a weight image run cycle-accurately on the sparse engine and checked bit for bit against
the golden model (docs/engine.md).

Inputs are the first ``samples`` held-out digits of the embedded MNIST split when the image takes 1x28x28
inputs, else seeded random int8 inputs. The result holds, per layer, the measured cycles, the analytical
model's prediction, the ideal cycles (nonzero MACs / P), lane utilization and stalls; the agreement with the
golden model (every layer's output signature and the final outputs) and with the PyTorch integer reference;
and the simulation speed.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

SIMS = ("verilator", "icarus", "amaranth")
DEFAULT_BUILD_DIR = Path("build/engine")
MAX_SAMPLES = 1000  # the held-out digits of the embedded MNIST split
MAX_WINDOW_ELEMENTS = 1 << 26  # samples x the largest layer's input windows (Ho*Wo x Cin*KH*KW): golden memory


class SimulationError(ValueError):
    """An impossible simulation request (sample count, lane count, simulator)."""


@dataclass
class LayerCycles:
    """One layer of sample 0: measured cycles, the cycle model's prediction, ideal cycles, utilization."""

    name: str
    kind: str
    cycles: int
    model: int
    ideal: float
    utilization: float
    stalls: int


@dataclass
class SimulationResult:
    """A simulation run: per-layer cycles, the golden-model check, the torch agreement and the speed."""

    network: str
    n_layers: int
    samples: int
    source: str  # "held-out MNIST digits" or "random int8 inputs"
    lanes: int
    sim: str
    layers: list[LayerCycles]
    total_cycles: int  # sample 0, input load included
    load_cycles: int
    check: str  # the golden-model comparison, one line plus up to ten mismatches
    ok: bool  # every layer's output and the final outputs equal the golden model's
    torch_agreement: tuple[int, int] | None  # (predictions equal to the PyTorch integer reference, samples)
    sim_cycles: int
    wall_s: float
    build_s: float | None = None  # HDL simulators: the model's build time
    vcd: Path | None = None

    @property
    def cycles(self) -> list[int]:
        return [layer.cycles for layer in self.layers]

    @property
    def model(self) -> list[int]:
        return [layer.model for layer in self.layers]

    def lines(self) -> list[str]:
        """The run as the text ``sparsegate simulate`` prints (names from the image escaped)."""
        from sparsegate.sw.ir.weight_image import printable

        out = [f"{printable(self.network)}: {self.n_layers} layers, {self.samples} {self.source}, {self.lanes} lanes, "
               f"{self.sim}"]
        if self.build_s is not None:
            out.append(f"built for {self.sim} in {self.build_s:.1f} s")
        if self.vcd is not None:
            out.append(f"VCD of sample 0: {self.vcd}")
        head = f"{'layer':<10} {'kind':<4} {'cycles':>9} {'model':>9} {'ideal':>9} {'util':>6} {'stalls':>7}"
        out += [head, "-" * len(head)]
        out += [f"{printable(r.name):<10} {r.kind:<4} {r.cycles:>9,} {r.model:>9,} {r.ideal:>9,.0f} "
                f"{100 * r.utilization:>5.1f}% {r.stalls:>7,}" for r in self.layers]
        out.append(f"{'total':<15} {self.total_cycles:>9,} (sample 0, including {self.load_cycles} input-load "
                   f"cycles)")
        out.append(f"golden model: {self.check}")
        if self.torch_agreement is not None:
            agree, n = self.torch_agreement
            out.append(f"predictions equal to the PyTorch integer reference: {agree}/{n}")
        out.append(f"simulation: {self.sim_cycles:,} cycles in {self.wall_s:.2f} s = "
                   f"{self.sim_cycles / max(self.wall_s, 1e-9):,.0f} cycles/s ({self.sim})")
        return out


def check_options(samples: int, sim: str, lanes: int) -> None:
    """Reject an impossible request before anything is read or built."""
    if not 1 <= samples <= MAX_SAMPLES:
        raise SimulationError(f"--samples must be in 1..{MAX_SAMPLES}, got {samples}")
    if sim not in SIMS:
        raise SimulationError(f"--sim must be one of {list(SIMS)}, got {sim!r}")
    if lanes < 1 or lanes & (lanes - 1) or lanes > 64:
        raise SimulationError(f"--lanes must be a power of two in 1..64, got {lanes}")


def check_workload(qnet, samples: int) -> None:
    """Reject a network and sample count whose golden run would not fit in memory, before any input exists:
    the golden model unfolds each layer's input into Ho*Wo windows of Cin*KH*KW elements per sample."""
    windows = max((layer.conv_shape[1] * layer.conv_shape[2] if layer.kind == "conv" else 1)
                  * int(layer.weight.size) // layer.out_channels for layer in qnet.layers)
    if samples * windows > MAX_WINDOW_ELEMENTS:
        raise SimulationError(f"{samples} samples of this network unfold into {samples * windows:,} window "
                              f"elements, more than the {MAX_WINDOW_ELEMENTS:,} a simulation may hold; "
                              "lower --samples")


def simulate(image: str | Path, samples: int, sim: str = "verilator", lanes: int = 16, vcd: Path | None = None,
             build_dir: str | Path = DEFAULT_BUILD_DIR) -> SimulationResult:
    """Run ``samples`` inputs of the weight image at ``image`` on the engine with ``lanes`` lanes under
    ``sim`` (HDL simulators build under ``build_dir``); ``vcd`` also writes sample 0's waveform."""
    import numpy as np

    from sparsegate.hw.engine.cycle_model import program_cycles
    from sparsegate.hw.engine.program import compile_program
    from sparsegate.sim.engine.amaranth_sim import check_run, layer_stats, run_amaranth
    from sparsegate.sw.flow.lenet import test_digits, torch_int_reference
    from sparsegate.sw.ir.weight_image import read_image

    check_options(samples, sim, lanes)
    qnet = read_image(image)
    check_workload(qnet, samples)
    if tuple(qnet.input_shape) == (1, 28, 28):
        x, _ = test_digits(qnet, samples)
        source = "held-out MNIST digits"
    else:
        rng = np.random.default_rng(0)
        x = rng.integers(-128, 128, size=(samples,) + tuple(qnet.input_shape)).astype(np.int8)
        source = "random int8 inputs"
    program = compile_program(qnet, lanes, x)
    build_s = None
    if sim == "amaranth":
        runs, sim_cycles, wall = run_amaranth(program)
    else:
        from sparsegate.sim.engine.hdl import build_engine, run_engine_hdl
        built, build_s = build_engine(program, sim, Path(build_dir) / f"{sim}-p{lanes}")
        runs, sim_cycles, wall = run_engine_hdl(program, built)
    if vcd is not None:
        run_amaranth(program, samples=[0], vcd=str(vcd))
    report = check_run(program, runs)
    layers = [LayerCycles(name=row["name"], kind=row["kind"], cycles=row["cycles"], model=predicted,
                          ideal=row["nonzero_macs"] / lanes, utilization=row["utilization"], stalls=row["stalls"])
              for row, predicted in zip(layer_stats(program, runs[0]), program_cycles(program))]
    torch_agreement = None
    if report.predictions_hw:
        ref = torch_int_reference(qnet, x).argmax(axis=1).tolist()
        torch_agreement = (sum(a == b for a, b in zip(report.predictions_hw, ref)), len(ref))
    return SimulationResult(network=qnet.name, n_layers=len(qnet.layers), samples=samples, source=source,
                            lanes=lanes, sim=sim, layers=layers, total_cycles=runs[0]["total.cycles"],
                            load_cycles=runs[0]["total.load_cycles"], check=str(report), ok=report.ok,
                            torch_agreement=torch_agreement, sim_cycles=sim_cycles, wall_s=wall, build_s=build_s,
                            vcd=None if vcd is None else Path(vcd))
