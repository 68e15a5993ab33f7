"""The simulate job as a library call: a typed result whose lines are what `sparsegate simulate` prints, and a
typed error for an impossible request, raised before anything is read."""
from __future__ import annotations

import numpy as np
import pytest

from sparsegate.sim.engine.amaranth_sim import random_network
from sparsegate.sw.flow.simulate import SimulationError, SimulationResult, simulate
from sparsegate.sw.ir.weight_image import write_image


def test_simulate_returns_a_typed_result(tmp_path):
    qnet = random_network(np.random.default_rng(5), (1, 6, 6), [
        {"kind": "conv", "cout": 2, "k": 3, "stride": 1, "pad": 1, "relu": True, "pool": True, "density": 0.5},
        {"kind": "fc", "cout": 3, "density": 0.8}])
    write_image(tmp_path / "image.bin", qnet)
    result = simulate(tmp_path / "image.bin", 2, sim="amaranth", lanes=2)
    assert isinstance(result, SimulationResult) and result.ok and result.samples == 2
    assert len(result.cycles) == len(result.model) == 2 and all(c > 0 for c in result.cycles)
    assert result.total_cycles >= sum(result.cycles) and result.torch_agreement == (2, 2)
    text = "\n".join(result.lines())
    assert "random int8 inputs" in text and "0 mismatches" in text and "cycles/s (amaranth)" in text
    assert "PyTorch integer reference: 2/2" in text


@pytest.mark.parametrize("kwargs, match", [({"samples": 0}, "--samples"), ({"lanes": 3}, "power of two"),
                                           ({"sim": "modelsim"}, "--sim")])
def test_simulate_rejects_impossible_requests(tmp_path, kwargs, match):
    args = {"samples": 1, "sim": "amaranth", "lanes": 4, **kwargs}
    with pytest.raises(SimulationError, match=match):
        simulate(tmp_path / "missing.bin", **args)
