"""Whole inferences of the trained, pruned SNN on the LIF network under cocotb + Verilator, bit-exact."""
from __future__ import annotations

import json

import pytest

from sparsegate.sim.cocotb_runner import SimulationFailed
from sparsegate.sw.ml.data import mnist_embedded
from sparsegate.sw.snn.model import encode, to_pixels
from sparsegate.sw.ir.snn_golden import quantize_snn
from sparsegate.sim.lif import hidden_cycles_model, simulate_network

from support.trained_snn import trained_pruned_snn


@pytest.mark.slow
def test_pruned_snn_runs_free_on_verilator_bit_exact(tmp_path):
    model, _ = trained_pruned_snn()
    snn = quantize_snn(model)
    assert snn.alive == 400
    _, test = mnist_embedded(seed=0)
    spikes = encode(to_pixels(test.tensors[0][:10]), model.config)
    labels = test.tensors[1][:10].tolist()
    build = tmp_path / "verilator"
    result = simulate_network(snn, spikes, build, fast_build=True)  # raises SimulationFailed on any mismatch
    assert result["samples"] == 10 and result["steps"] == snn.steps
    assert result["predictions"] == result["golden_predictions"]
    assert sum(int(p == y) for p, y in zip(result["predictions"], labels)) >= 7
    # start-to-done covers the hidden core's cycles (the model) plus clearing and the readout's tail
    model_cycles = hidden_cycles_model(snn, spikes).sum(axis=0)
    for measured, modelled in zip(result["cycles"], model_cycles):
        assert modelled < measured < modelled + 200 + 60 * snn.steps
    assert result["rounds"] < 40  # pruning shortened the rounds of the densest unit

    # the bench fails when the golden answer disagrees: corrupt one expected spike counter
    expected = json.loads((build / "expected.json").read_text())
    expected["samples"][0]["counts"][int(snn.mask.argmax())] += 1
    (build / "expected.json").write_text(json.dumps(expected))
    with pytest.raises(SimulationFailed, match="sample 0: spike counters of 1 neurons differ"):
        result["_sim"].test("sparsegate.sim.benches.lif_network_bench", name="corrupted",
                            extra_env={"LIF_EXPECTED": str(build / "expected.json")})
