"""The host driver picks its per-core loader from the device's ID reply (through the core registry), refuses
another core's commands, and reads counters and outputs in the core's own widths — over the simulator
transport that `sim_transport` builds for a program (Amaranth's simulator: no Verilator build)."""
from __future__ import annotations

import numpy as np
import pytest

from sparsegate.hw.platform.cores import ENGINE, LIF
from sparsegate.sim.transports import SimTransport, sim_transport
from sparsegate.sw.host.driver import DeviceError, HostDriver, LinkError
from sparsegate.sw.host.loaders import LOADERS, EngineLoader, LifLoader


def engine_program():
    from sparsegate.hw.platform.board_top import capacity_geometry, retarget_program
    from sparsegate.sim.engine.amaranth_sim import small_program

    program = small_program(lanes=2, seed=1, n_samples=1)
    return retarget_program(program, capacity_geometry(program))


def test_every_registry_core_has_a_loader():
    assert LOADERS == {ENGINE.name: EngineLoader, LIF.name: LifLoader}


def test_lif_device_gets_the_lif_loader():
    from support.small_snn import lif_device

    design, golden = lif_device()
    transport = sim_transport(design, "amaranth", timeout=150, max_cycles=200_000)
    assert isinstance(transport, SimTransport)
    drv = HostDriver(transport)
    try:
        assert drv.core == LIF.name and isinstance(drv.loader, LifLoader)
        with pytest.raises(DeviceError, match="not the sparse engine") as err:
            drv.load_image(b"")
        assert err.value.status == "WRONG_CORE"
        drv.run(1)
        out = drv.read_outputs()
        assert out.dtype == np.dtype("<i4") and np.array_equal(out, golden.readout.v[1])
        regs = drv.read_counters()
        assert regs["total.cycles"] > 0 and [regs[f"result{k}"] for k in range(len(out))] == out.tolist()
    finally:
        drv.close()


def test_engine_device_gets_the_engine_loader():
    drv = HostDriver(sim_transport(engine_program(), "amaranth", timeout=150, max_cycles=500_000))
    try:
        assert drv.core == ENGINE.name and isinstance(drv.loader, EngineLoader)
        assert drv.geometry().lanes == 2
        with pytest.raises(DeviceError, match="not the LIF core"):
            drv.load_spikes(0, np.zeros((1, 1), bool))
        assert drv.read_outputs().dtype == np.int8
    finally:
        drv.close()


def test_unknown_simulator_and_silent_device():
    with pytest.raises(ValueError, match="simulator must be one of"):
        sim_transport(engine_program(), "iverilog")

    class Silent:
        def write(self, data: bytes) -> None:
            pass

        def read(self, n: int, timeout_s: float) -> bytes:
            return b""

        def close(self) -> None:
            pass

    with pytest.raises(LinkError, match="no reply"):
        HostDriver(Silent()).identify()


def test_an_mlp_loads_and_classifies_through_the_host_link():
    """A network whose first layer is fc: the loader writes each input in the flat layout, for the image
    baked into the device (the driver told which network runs) and for the image loaded over the link."""
    from sparsegate.hw.engine.program import compile_program
    from sparsegate.hw.platform.board_top import capacity_geometry, retarget_program
    from sparsegate.sim.engine.amaranth_sim import random_inputs, random_network

    rng = np.random.default_rng(3)
    mlp = random_network(rng, (2, 3, 5), [{"kind": "fc", "cout": 6, "relu": True, "density": 0.6},
                                          {"kind": "fc", "cout": 4, "density": 0.8}])
    x = random_inputs(rng, (2, 3, 5), 2)
    program = compile_program(mlp, 2, x[:1])
    assert program.geometry.input_depth == 30  # one word per input element
    golden = mlp.logits(x)
    drv = HostDriver(sim_transport(retarget_program(program, capacity_geometry(program)), "amaranth", timeout=150,
                                   max_cycles=500_000))
    try:
        drv.qnet = mlp  # the baked image, as `sparsegate run --no-load` tells the driver
        assert np.array_equal(drv.classify(x)[0], golden)
        drv.load_image(mlp)
        logits, predictions = drv.classify(x)
        assert np.array_equal(logits, golden) and np.array_equal(predictions, golden.argmax(axis=1))
    finally:
        drv.close()


def test_engine_loader_banks_inputs_for_the_first_layer_tile():
    """The host loads an input in the bank layout of the first layer's 2-D tile: the compiler's words."""
    from sparsegate.sim.engine.amaranth_sim import small_program

    program = small_program(lanes=4, seed=1, n_samples=2)
    assert program.layers[0].tiling.ty == 2

    class Recorder:
        ident = {"geometry": program.geometry.__dict__}
        qnet = program.qnet
        writes = []

        def write_mem(self, index, addr, words, bits):
            self.writes.append((addr, list(words)))

    driver = Recorder()
    loader = EngineLoader(driver)
    depth = program.geometry.input_depth
    loader.load_input(1, program.inputs[1])
    assert driver.writes == [(depth, program.input_words[depth:2 * depth])]
    from sparsegate.hw.engine.program import sample_words
    from sparsegate.hw.engine.tiling import Tiling
    assert sample_words(program.inputs[1], 8, Tiling(4)) != driver.writes[0][1]  # not the one-row layout
