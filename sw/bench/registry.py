"""The benchmarks, in the order ``make bench`` runs them: one :class:`Benchmark` record each.

Each record loads its function only when asked (the benchmarks import torch, the simulators and the
toolchain; listing them must stay cheap), through a small function that imports it, so the import is a
real reference that tools and readers can follow. Every function takes ``(out_dir, quick=False,
**kwargs)`` and returns the :class:`~sparsegate.sw.bench.results.BenchResult` it wrote.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from sparsegate.sw.bench.results import BenchResult
from sparsegate.sw.jobs import RunnerOptions

__all__ = ["BENCHMARKS", "Benchmark", "UnknownBenchmarkError", "benchmark"]


class UnknownBenchmarkError(ValueError):
    """A benchmark name that is not in the registry."""


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: its name (``--only NAME``), a one-line title, the loader of its function, the keyword
    arguments it is called with, and whether it takes hours rather than minutes."""

    name: str
    title: str
    load: Callable[[], Callable[..., BenchResult]]
    kwargs: Mapping[str, object] = field(default_factory=dict)
    long: bool = False

    def function(self) -> Callable[..., BenchResult]:
        """The function behind the benchmark, checked to accept ``(out_dir, quick=..., **kwargs)`` (a
        TypeError when the wiring is stale, before anything runs)."""
        function = self.load()
        inspect.signature(function).bind(Path("out"), quick=True, **self.kwargs)
        return function

    def run(self, out_dir: Path, quick: bool = False, jobs: RunnerOptions | None = None) -> BenchResult:
        """Run it; a benchmark whose function takes ``jobs`` gets the runner options its jobs go through."""
        function = self.function()
        extra = {"jobs": jobs} if "jobs" in inspect.signature(function).parameters else {}
        return function(Path(out_dir), quick=quick, **self.kwargs, **extra)


def _prune():
    from sparsegate.sw.bench.prune import run_prune_benchmark
    return run_prune_benchmark


def _recovery():
    from sparsegate.sw.bench.prune import run_recovery_benchmark
    return run_recovery_benchmark


def _selection():
    from sparsegate.sw.bench.selection_noise import run_selection_benchmark
    return run_selection_benchmark


def _snn():
    from sparsegate.sw.bench.snn import run_snn_benchmark
    return run_snn_benchmark


def _engine():
    from sparsegate.sw.bench.engine import run_engine_benchmark
    return run_engine_benchmark


def _structured():
    from sparsegate.sw.bench.structured import run_structured_benchmark
    return run_structured_benchmark


def _rnn():
    from sparsegate.sw.bench.rnn import run_rnn_benchmark
    return run_rnn_benchmark


def _sweep_scaling():
    from sparsegate.sw.bench.sweep_scaling import run_sweep_scaling
    return run_sweep_scaling


def _netlist():
    from sparsegate.sw.bench.netlist import run_netlist_benchmark
    return run_netlist_benchmark


def _zoo():
    from sparsegate.sw.bench.zoo import run_zoo_benchmark
    return run_zoo_benchmark


def _builds():
    from sparsegate.sw.bench.builds import run_build_sweep
    return run_build_sweep


BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in (
    Benchmark("prune", "pruning methods cross-validated on LeNet-5", _prune, {"model": "lenet5"}),
    Benchmark("prune-lenet300", "pruning methods cross-validated on LeNet-300-100", _prune, {"model": "lenet300"}),
    Benchmark("prune-recovery", "recovery in SRA's loop (distillation, lr rewinding, longer fine-tune)", _recovery,
              {"model": "lenet5"}),
    Benchmark("prune-selection", "the pruning path's selection rules under validation noise, simulated on the "
              "measured LeNet-5 paths", _selection, {"source": "docs/results/prune_lenet5.json"}),
    Benchmark("snn", "spike-count neuron pruning of the SNN on the LIF core", _snn),
    Benchmark("engine", "sparse engine cycles, energy estimate and simulator speeds", _engine),
    Benchmark("structured", "structured pruning: KEP, coarse, filter-level, task-guided, shrinking", _structured),
    Benchmark("rnn", "gated-RNN sparsification and low-rank factorization", _rnn),
    Benchmark("builds-scaling", "the quick build sweep on 1 vs all local Dask workers", _sweep_scaling),
    Benchmark("netlist", "netlist simulation of the smallest board top vs its RTL", _netlist),
    Benchmark("zoo", "the model zoo through the flow: accuracy, compression, engine cycles, block RAM fit", _zoo),
    # at the engine's timing goal (issue #16: 125 MHz at 16 lanes on the 85F), which nextpnr's placer works towards
    Benchmark("builds", "ECP5 build sweep, lanes x ULX3S device", _builds, {"clock_mhz": 125.0},
              long=True),  # last: hours of P&R
)}


def benchmark(name: str) -> Benchmark:
    """The registry's record for ``name``."""
    if name not in BENCHMARKS:
        raise UnknownBenchmarkError(f"unknown benchmark {name!r}; expected one of {sorted(BENCHMARKS)}")
    return BENCHMARKS[name]
