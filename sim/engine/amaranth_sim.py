"""Running the sparse engine: random test networks, Amaranth-simulator runs, and checking the engine's
read-back (counters, per-layer output signatures, last-layer outputs) against the golden model.

The same checks serve every simulator: a run yields, per sample, the dict of debug registers
(:func:`sparsegate.hw.engine.engine.dbg_map` names -> values), and :func:`check_run` compares it with the golden
model's per-layer outputs through :func:`sparsegate.hw.engine.program.expected_signatures`.
"""
from __future__ import annotations

import time

import numpy as np

from sparsegate.hw.engine.program import EngineProgram, compile_program, expected_signatures, golden_outputs
from sparsegate.sw.ir.golden import IntLayer, QuantizedNetwork, conv2d_acc, flatten, linear_acc, output_stage
from sparsegate.sw.ir.requant import requant_params

__all__ = ["random_network", "run_amaranth", "check_run", "layer_stats", "random_inputs", "CheckReport"]


def random_inputs(rng: np.random.Generator, shape: tuple, n: int) -> np.ndarray:
    return rng.integers(-128, 128, size=(n,) + tuple(shape)).astype(np.int8)


def random_network(rng: np.random.Generator, input_shape: tuple, spec: list[dict],
                   calib: np.ndarray | None = None) -> QuantizedNetwork:
    """A valid :class:`QuantizedNetwork` from ``spec`` (one dict per layer: ``kind`` conv/fc, ``cout``,
    conv ``k``, ``stride``, ``pad``, and ``density``, ``relu``, ``pool``), with random sparse int8 weights and
    per-channel requant chosen on ``calib`` inputs so outputs spread over the int8 range (with some
    saturation)."""
    if calib is None:
        calib = random_inputs(rng, input_shape, 4)
    x = calib
    shape = tuple(input_shape)
    layers = []
    for i, s in enumerate(spec):
        kind = s["kind"]
        flat = kind == "fc" and len(shape) == 3
        if flat:
            x = flatten(x)
            shape = (int(np.prod(shape)),)
        cout, density = s["cout"], s.get("density", 0.5)
        if kind == "conv":
            wshape = (cout, shape[0], s["k"], s["k"])
        else:
            wshape = (cout, shape[0])
        w = rng.integers(-127, 128, size=wshape)
        w[rng.random(wshape) >= density] = 0
        if s.get("empty_channel") and cout > 1:
            w[rng.integers(cout)] = 0
        w = w.astype(np.int8)
        acc = (conv2d_acc(x, w, s.get("stride", 1), s.get("pad", 0)) if kind == "conv" else linear_acc(x, w))
        bias = rng.integers(-2000, 2001, size=cout).astype(np.int32)
        per = np.moveaxis(acc, 1, 0).reshape(cout, -1) + bias[:, None]
        spread = np.maximum(np.abs(per).max(axis=1), 1) / 100.0
        mult, shift = zip(*(requant_params(1.0 / float(sp)) for sp in spread))
        layer = IntLayer(name=f"l{i}_{kind}", kind=kind, weight=w, bias=bias,
                         mult=np.array(mult, dtype=np.uint16), shift=np.array(shift, dtype=np.uint8),
                         in_shape=shape, stride=s.get("stride", 1), padding=s.get("pad", 0),
                         relu=s.get("relu", False), pool=s.get("pool", False), flatten_input=flat)
        layers.append(layer)
        x = output_stage(layer.accumulate(x), layer.mult, layer.shift, layer.relu, layer.pool)
        shape = layer.out_shape
    return QuantizedNetwork(name="random", input_shape=tuple(input_shape), input_scale=1.0, layers=layers)


def run_amaranth(program: EngineProgram, samples=None, *, vcd: str | None = None, timeout_s: float = 600.0):
    """Run ``samples`` (indices into the program's inputs; all by default) free-running in Amaranth's
    simulator (one wait on ``done`` per sample); returns ``(per-sample dbg dicts, total simulated cycles,
    wall seconds)``. Raises TimeoutError after ``timeout_s`` wall seconds."""
    from amaranth.sim import Simulator

    from sparsegate.hw.engine.engine import SparseEngine

    dut = SparseEngine(program.contents)
    names = dut.dbg_names
    samples = list(range(len(program.inputs))) if samples is None else list(samples)
    results, state = [], {"cycles": 0}

    async def bench(ctx):
        for s in samples:
            ctx.set(dut.sample, s)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            await ctx.tick().until(dut.done)
            regs = {}
            for name, index in names.items():
                ctx.set(dut.dbg_sel, index)
                await ctx.tick().repeat(3)      # the engine registers its debug read in three stages
                regs[name] = ctx.get(dut.dbg_data)
            state["cycles"] += regs["total.cycles"]
            results.append(regs)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    t0 = time.perf_counter()

    def advance_all():
        while sim.advance():
            if time.perf_counter() - t0 > timeout_s:
                raise TimeoutError(f"engine finished {len(results)} of {len(samples)} samples in {timeout_s} s")

    if vcd:
        with sim.write_vcd(vcd):
            advance_all()
    else:
        advance_all()
    wall = time.perf_counter() - t0
    return results, state["cycles"], wall


class CheckReport:
    """Bit-exact comparison of engine runs with the golden model."""

    def __init__(self, program: EngineProgram, runs: list[dict], samples=None):
        samples = list(range(len(runs))) if samples is None else list(samples)
        self.program = program
        sigs = expected_signatures(program)
        golden = golden_outputs(program)
        n_layers = len(program.layers)
        self.mismatches: list[str] = []
        self.layers_checked = 0
        self.outputs_checked = 0
        self.predictions_hw, self.predictions_golden = [], []
        last = program.qnet.layers[-1]
        n_last = int(np.prod(last.out_shape))
        for s, regs in zip(samples, runs):
            for i in range(n_layers):
                got, want = regs[f"layer{i}.signature"], sigs[s][i]
                self.layers_checked += 1
                if got != want:
                    self.mismatches.append(f"sample {s} layer {i} ({program.layers[i].name}): signature "
                                           f"0x{got:08x}, golden 0x{want:08x}")
            if n_last <= program.geometry.n_results:
                out = np.array([(regs[f"result{k}"] ^ 0x80) - 0x80 for k in range(n_last)])
                want = np.asarray(golden[s][-1]).reshape(-1)
                self.outputs_checked += n_last
                if not np.array_equal(out, want):
                    self.mismatches.append(f"sample {s}: outputs {out.tolist()}, golden {want.tolist()}")
                self.predictions_hw.append(int(np.argmax(out)))
                self.predictions_golden.append(int(np.argmax(want)))

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def __str__(self):
        head = (f"{self.layers_checked} layer outputs (signatures) and {self.outputs_checked} final outputs "
                f"checked: {len(self.mismatches)} mismatches")
        return "\n".join([head] + self.mismatches[:10])


def check_run(program: EngineProgram, runs: list[dict], samples=None) -> CheckReport:
    return CheckReport(program, runs, samples)


def layer_stats(program: EngineProgram, regs: dict) -> list[dict]:
    """Per-layer measured counters of one run, with lane utilization (nonzero MACs / (P x cycles))."""
    p = program.lanes
    rows = []
    for i, plan in enumerate(program.layers):
        cycles = regs[f"layer{i}.cycles"]
        rows.append({"name": plan.name, "kind": plan.kind, "cycles": cycles, "stalls": regs[f"layer{i}.stalls"],
                     "issued": regs[f"layer{i}.issued"], "active": regs[f"layer{i}.active"],
                     "nonzero_macs": plan.nonzero_macs,
                     "utilization": plan.nonzero_macs / (p * cycles) if cycles else 0.0})
    return rows


def small_program(lanes: int = 4, seed: int = 0, n_samples: int = 2, spec=None, input_shape=(2, 9, 11),
                  **options):
    """A compiled random network covering conv stride 1/2, padding, pooling, an empty channel, flatten
    and two fc layers (the default unit-test workload); ``options`` go to ``compile_program``."""
    rng = np.random.default_rng(seed)
    spec = spec or [
        {"kind": "conv", "cout": 3, "k": 3, "stride": 1, "pad": 1, "relu": True, "pool": True, "density": 0.6,
         "empty_channel": True},
        {"kind": "conv", "cout": 4, "k": 2, "stride": 2, "pad": 1, "relu": False, "density": 0.7},
        {"kind": "fc", "cout": 7, "relu": True, "density": 0.5},
        {"kind": "fc", "cout": 5, "density": 0.8},
    ]
    qnet = random_network(rng, input_shape, spec)
    return compile_program(qnet, lanes, random_inputs(rng, input_shape, n_samples), **options)
