"""The last layer's outputs captured for the host (``result<k>``) on tiny maps: with fewer than 4 address
bits per activation region, the region base (nonzero after an odd layer count) must not move result ``k`` to
``k + base`` (issue #16). Every lane count, odd and even layer counts, conv and fc last layers; and
the same values read by the host over the simulated board's link."""
from __future__ import annotations

import numpy as np
import pytest

from sparsegate.hw.engine.program import compile_program, golden_outputs
from sparsegate.sim.engine.amaranth_sim import check_run, random_inputs, random_network, run_amaranth

INPUT = (1, 4, 4)
SPECS = {
    1: [{"kind": "conv", "cout": 1, "k": 3, "density": 0.8}],
    2: [{"kind": "conv", "cout": 1, "k": 3, "pad": 1, "relu": True, "density": 0.8},
        {"kind": "conv", "cout": 1, "k": 3, "density": 0.8}],
    3: [{"kind": "conv", "cout": 1, "k": 3, "pad": 1, "relu": True, "density": 0.8},
        {"kind": "conv", "cout": 1, "k": 3, "relu": True, "density": 0.8},
        {"kind": "fc", "cout": 3, "density": 0.8}],
}


def tiny_program(n_layers: int, lanes: int, seed: int = 1, n_samples: int = 1):
    rng = np.random.default_rng(seed)
    qnet = random_network(rng, INPUT, SPECS[n_layers])
    return compile_program(qnet, lanes, random_inputs(rng, INPUT, n_samples))


def test_issue_example_reads_the_golden_outputs():
    rng = np.random.default_rng(1)
    qnet = random_network(rng, INPUT, SPECS[1])
    prog = compile_program(qnet, 4)
    assert prog.regions.slot < 16 and prog.layers[-1].desc["out_base"] != 0  # the second region
    runs, _, _ = run_amaranth(prog)
    out = [(runs[0][f"result{k}"] ^ 0x80) - 0x80 for k in range(4)]
    assert out == golden_outputs(prog)[0][-1].reshape(-1).tolist()
    assert any(out)


@pytest.mark.parametrize("lanes", [1, 2, 4, 8, 16])
def test_results_on_tiny_maps(lanes):
    for n_layers in (1, 2, 3):
        prog = tiny_program(n_layers, lanes, seed=lanes + n_layers)
        assert prog.regions.slot < 16  # fewer than 4 address bits per region
        assert (prog.layers[-1].desc["out_base"] != 0) == bool(n_layers % 2)  # ping-pong regions
        runs, _, _ = run_amaranth(prog)
        report = check_run(prog, runs)
        assert report.ok and report.outputs_checked > 0, f"{n_layers} layers: {report}"


@pytest.mark.parametrize("n_layers", [1, 2])
def test_host_reads_tiny_results_over_the_link(n_layers):
    """The board top (engine behind the host link, Amaranth's simulator: ``run --sim``'s device) with a
    tiny network: the outputs the host reads with READ_OUTPUTS are the golden model's, after a load at run
    time and from the power-up contents."""
    from sparsegate.hw.platform.cores import ENGINE
    from sparsegate.sw.flow.run import sim_driver
    from sparsegate.sw.ir.golden import run_network

    rng = np.random.default_rng(7 + n_layers)
    qnet = random_network(rng, INPUT, SPECS[n_layers])
    x = random_inputs(rng, INPUT, 3)
    driver = sim_driver(ENGINE, qnet, lanes=4, simulator="amaranth")
    try:
        assert driver.geometry().act_depth < 32  # two regions of fewer than 16 words
        driver.qnet = qnet                          # the power-up contents
        outs, _ = driver.classify(x[:1])
        golden = run_network(x, qnet.layers)[-1].reshape(len(x), -1)
        np.testing.assert_array_equal(outs, golden[:1])
        driver.load_image(qnet)                     # loaded at run time
        outs, _ = driver.classify(x)
        np.testing.assert_array_equal(outs, golden)
        assert np.any(golden)
    finally:
        driver.close()


def test_a_shorter_network_loaded_later_reads_its_own_results():
    """A device built for a 3-layer network, then loaded with a 2-layer and a 1-layer one: results are
    captured from the layer the descriptor marks ``last``, not the geometry's final layer slot (which still
    holds the earlier image's descriptor), so the host reads the new network's outputs, not stale ones."""
    from sparsegate.hw.platform.cores import ENGINE
    from sparsegate.sw.flow.run import sim_driver
    from sparsegate.sw.ir.golden import run_network

    rng = np.random.default_rng(11)
    built_for = random_network(rng, INPUT, SPECS[3])
    x = random_inputs(rng, INPUT, 2)
    driver = sim_driver(ENGINE, built_for, lanes=2, simulator="amaranth")
    try:
        driver.qnet = built_for                     # the power-up contents
        driver.classify(x)                          # results of the 3-layer network left in the registers
        for n_layers in (2, 1):
            qnet = random_network(rng, INPUT, SPECS[n_layers])
            driver.load_image(qnet)
            outs, _ = driver.classify(x)
            golden = run_network(x, qnet.layers)[-1].reshape(len(x), -1)
            np.testing.assert_array_equal(outs, golden, err_msg=f"{n_layers}-layer network")
    finally:
        driver.close()
