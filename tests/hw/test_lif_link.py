"""The LIF core behind the board top level's host link (Amaranth simulator): identity, runs of the power-up
samples, run-time loading of a different network (weights, mask, threshold) and of input spikes, counters
and readout membranes bit-exact with the integer golden model, and the host's checks. The protocol fuzz
tests shared with the sparse engine are in tests/hw/test_host_link.py."""
from __future__ import annotations

import numpy as np
import pytest

from sparsegate.hw.link.protocol import parse_identity
from sparsegate.hw.lif.design import CORE_NAME, LinkedLif, lif_dbg_map, lif_host_memories
from sparsegate.sim.transports import SimTransport
from sparsegate.sw.host.driver import DeviceError, HostDriver
from sparsegate.sw.ir.snn_golden import IntSNN, LifParams

from support.small_snn import N_HIDDEN, N_IN, N_OUT, STEPS, lif_device, small_snn

@pytest.fixture(scope="module")
def device():
    return lif_device()


def _driver(design):
    return HostDriver(SimTransport(LinkedLif(design, timeout=150)))


def test_identity_names_the_lif_core(device):
    design, _ = device
    drv = _driver(design)
    ident = drv.identify()
    assert ident["core"] == CORE_NAME and ident["n_regs"] == len(lif_dbg_map(N_OUT))
    g = ident["geometry"]
    assert (g["n_inputs"], g["n_hidden"], g["n_outputs"], g["units"], g["per_word"]) == (N_IN, N_HIDDEN, N_OUT, 3, 2)
    assert g["source_depth"] == design.source_depth and g["n_samples"] == 2
    assert len(lif_host_memories(design)) == 3 + 3 + 3
    with pytest.raises(ValueError, match="core kind 9"):
        parse_identity(b"SPGT\x01\x09\x05" + bytes(40))


def test_power_up_samples_match_golden(device):
    """RUN of each baked slot: readout membranes, synaptic operations, hidden spikes and steps as the golden model."""
    design, golden = device
    drv = _driver(design)
    for s in range(2):
        cycles = drv.run(s)
        regs = drv.read_counters()
        assert regs["total.cycles"] == cycles > 0
        assert np.array_equal(drv.read_outputs(), golden.readout.v[s])
        assert [regs[f"result{k}"] for k in range(N_OUT)] == golden.readout.v[s].tolist()
        assert regs["total.hidden_synops"] == golden.hidden.synops[s]
        assert regs["total.readout_synops"] == golden.readout.synops[s]
        assert regs["total.hidden_spikes"] == int(golden.hidden.spikes[:, s].sum())
        assert regs["total.steps"] == STEPS


def test_runtime_network_and_spike_load(device):
    """Another network (weights, mask and threshold all different) and new inputs loaded over the link."""
    design, _ = device
    drv = _driver(design)
    other = small_snn(7, threshold=80, mask_p=0.5)
    drv.load_snn(other)
    rng = np.random.default_rng(5)
    spikes = rng.random((STEPS, 3, N_IN)) < 0.5
    outs, pred = drv.classify_spikes(spikes)
    golden = other.run(spikes, trace=True)
    assert np.array_equal(outs, golden.readout.v)
    assert pred.tolist() == golden.predictions.tolist()
    regs = drv.read_counters()
    assert regs["total.hidden_synops"] == golden.hidden.synops[-1]
    assert regs["total.hidden_spikes"] == int(golden.hidden.spikes[:, -1].sum())
    # the threshold really is the loaded one: the same weights with the baked threshold give other outputs
    baked = IntSNN(other.w1, other.w2, design.snn.hidden, other.readout, other.mask, STEPS)
    assert not np.array_equal(baked.run(spikes).readout.v, golden.readout.v)


def test_host_refuses_what_the_device_cannot_run(device):
    design, _ = device
    drv = _driver(design)
    snn = small_snn(2)
    leaky = IntSNN(snn.w1, snn.w2, LifParams(threshold=100, leak="shift", leak_shift=3, v_width=16),
                   snn.readout, snn.mask, STEPS)
    with pytest.raises(ValueError, match=r"leak_shift 3 \(device: 2\)"):
        drv.load_snn(leaky)
    wide = small_snn(3)
    wide = IntSNN(np.zeros((N_HIDDEN, N_IN + 1), int), wide.w2, wide.hidden, wide.readout, wide.mask, STEPS)
    with pytest.raises(ValueError, match=r"n_inputs 17 \(device: 16\)"):
        drv.load_snn(wide)
    with pytest.raises(ValueError, match="spike entries"):
        drv.load_spikes(0, np.ones((design.source_depth, N_IN), bool))
    with pytest.raises(ValueError, match="input slot 2"):
        drv.load_spikes(2, np.zeros((STEPS, N_IN), bool))


def test_engine_methods_on_lif_device_fail_clearly(device):
    design, _ = device
    drv = _driver(design)
    with pytest.raises(DeviceError, match="not the sparse engine") as err:
        drv.load_image(b"")
    assert err.value.status == "WRONG_CORE"
    assert drv.core == CORE_NAME


def _mnist_sized_snn(path):
    """A small random 784-12-10 integer SNN saved like `sparsegate snn export` does."""
    from sparsegate.sw.ir.snn_golden import save_int_snn
    rng = np.random.default_rng(4)
    w1 = rng.integers(-20, 40, size=(12, 784))
    w2 = rng.integers(-127, 128, size=(10, 12))
    mask = np.ones(12, bool)
    mask[[2, 9]] = False
    snn = IntSNN(w1, w2, LifParams(threshold=400, leak="shift", leak_shift=4, v_width=20),
                 LifParams.integrator(v_width=20), mask, 4).with_mask(mask)
    save_int_snn(path, snn)
    return snn


@pytest.mark.slow
def test_run_command_sim_detects_lif_image(tmp_path, capsys):
    """`sparsegate run --sim` with an exported SNN: the LIF top level is simulated, the network loaded over
    the link, and the readout membranes of the digits equal the golden model's (exit status 0)."""
    from sparsegate.sw.cli.main import main

    _mnist_sized_snn(tmp_path / "snn.npz")
    code = main(["run", "--sim", "--simulator", "amaranth", "--image", str(tmp_path / "snn.npz"), "--units", "4",
                 "--per-word", "4", "--samples", "2"])
    out = capsys.readouterr()
    assert code == 0, out
    assert "device: lif core, 784-12-10, 4 units" in out.out
    assert "bit-exact with the golden model: 2/2" in out.out


@pytest.mark.slow
def test_run_lif_on_verilator_model(tmp_path):
    """The same through the Verilator model of the LIF top level (the `run --sim` default)."""
    from sparsegate.hw.platform.cores import LIF
    from sparsegate.sw.flow.run import classify_with_driver, sim_driver

    snn = _mnist_sized_snn(tmp_path / "snn.npz")
    driver = sim_driver(LIF, snn, units=4, per_word=4, build_dir=tmp_path / "hostsim")
    try:
        result = classify_with_driver(driver, snn, 5)
        assert result.exact == 5 and result.cycles > 0
    finally:
        driver.close()
