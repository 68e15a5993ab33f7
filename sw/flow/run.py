"""Classifying held-out digits on a board, or on the simulated board top level, through the host link: one
code path (:func:`classify_with_driver`), two kinds of transport (a serial port, a simulator).

The network is compiled for the device's geometry (read with the ID command) and loaded at run time; each
digit is written into input slot 0, run, and its outputs read back; they are compared with the golden model
(bit-exact) and the labels. The ID reply says which core the device holds: for the sparse engine the network
is a weight image and the outputs int8 logits (:func:`~sparsegate.sw.ir.golden.run_network`); for the LIF
core it is an integer SNN (``sparsegate snn export``), each digit goes in as spike trains and the outputs are
the readout membranes (:class:`~sparsegate.sw.ir.snn_golden.IntSNN`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from sparsegate.hw.platform.cores import ENGINE, LIF, Core, core_named
from sparsegate.sw.host.driver import DeviceError, HostDriver, LinkError

__all__ = ["RunResult", "RunError", "sim_driver", "board_driver", "load_network", "classify_with_driver",
           "run_digits", "DEFAULT_SIM_BUILD"]

DEFAULT_SIM_BUILD = Path("build/host-sim")
MAX_SAMPLES = 1000  # the held-out digits of the embedded MNIST split


def _quiet(_: str) -> None:
    """The default log: say nothing."""


class RunError(ValueError):
    """The run cannot go ahead: the device holds another core than the network is for, a bad sample count,
    a network that does not take MNIST digits."""


@dataclass
class RunResult:
    """Digits classified on the device: how many outputs were bit-exact with the golden model, how many
    predictions matched the labels, the device's cycles for the last digit, the host's wall time."""

    core: str
    samples: int
    exact: int
    correct: int
    cycles: int
    wall_s: float
    predictions: list[int]
    labels: list[int]

    @property
    def ok(self) -> bool:
        """Every output bit-exact with the golden model."""
        return self.exact == self.samples


def load_network(core: Core, image: Path | None):
    """What ``core`` runs: an integer SNN read from ``image`` (LIF core, required), or the weight image's bytes
    (sparse engine; default the pruned LeNet-5)."""
    if core is LIF:
        from sparsegate.sw.ir.snn_golden import load_int_snn
        if image is None:
            raise RunError("--core lif needs --image: an integer SNN from `sparsegate snn export` (.npz)")
        return load_int_snn(image)
    if image is not None:
        from sparsegate.sw.ir.weight_image import read_image_bytes
        return read_image_bytes(image)
    from sparsegate.sw.flow.build import default_image
    return default_image()


def sim_driver(core: Core, network, *, lanes: int = 16, units: int = 20, per_word: int = 8,
               simulator: str = "verilator", build_dir: Path = DEFAULT_SIM_BUILD,
               log: Callable[[str], None] = _quiet) -> HostDriver:
    """A :class:`~sparsegate.sw.host.driver.HostDriver` on the simulated board top level of ``core`` with
    ``network`` (weight image or integer SNN) baked in as its power-up contents. A failed Verilator build
    raises :class:`~sparsegate.sw.host.driver.LinkError`."""
    from sparsegate.sim.cocotb_runner import SimulationFailed
    from sparsegate.sim.transports import sim_transport
    from sparsegate.sw.flow.build import board_program

    program = board_program(core, network, lanes=lanes, units=units, per_word=per_word)
    try:
        transport = sim_transport(program, simulator, build_dir, log=log)
    except SimulationFailed as err:
        raise LinkError(str(err)) from None
    return HostDriver(transport, timeout_s=(300 if core is LIF else 120) if simulator == "verilator" else 5.0)


def board_driver(port: str, baud: int = 115200) -> HostDriver:
    """A :class:`~sparsegate.sw.host.driver.HostDriver` on a board's serial port."""
    from sparsegate.sw.host.serial_port import SerialTransport
    return HostDriver(SerialTransport(port, baud))


def _classify_engine(driver: HostDriver, image: bytes, samples: int, load: bool, log) -> RunResult:
    import numpy as np

    from sparsegate.sw.flow.lenet import test_digits
    from sparsegate.sw.ir.golden import run_network
    from sparsegate.sw.ir.weight_image import decode_image

    ident = driver.ident
    g = ident["geometry"]
    log(f"device: {ident['core']} engine, {g['lanes']} lanes, protocol v{ident['version']}, "
        f"{g['weight_depth']} weight words, {ident['clk_hz'] / 1e6:g} MHz" if ident["clk_hz"] else
        f"device: {ident['core']} engine, {g['lanes']} lanes, protocol v{ident['version']} (simulated)")
    qnet = decode_image(image)
    t0 = time.perf_counter()
    if load:
        driver.load_image(qnet)
        log(f"image loaded in {time.perf_counter() - t0:.2f} s")
    else:
        driver.qnet = qnet
    if tuple(qnet.input_shape) != (1, 28, 28):
        raise RunError(f"`run` classifies MNIST digits; this image takes {qnet.input_shape} inputs")
    x, y = test_digits(qnet, samples)
    t0 = time.perf_counter()
    outs, pred = driver.classify(x)
    wall = time.perf_counter() - t0
    golden = run_network(x, qnet.layers)[-1]
    exact = int(sum(np.array_equal(o, gv) for o, gv in zip(outs, golden)))
    cycles = driver.read_counters()["total.cycles"]
    correct = int((pred == y).sum())
    log(f"{samples} digits in {wall:.2f} s: predictions {pred.tolist()}")
    log(f"labels      {y.tolist()}")
    log(f"logits bit-exact with the golden model: {exact}/{samples}; correct labels: {correct}/{samples}; "
        f"{cycles:,} engine cycles per digit")
    return RunResult(ENGINE.name, samples, exact, correct, cycles, wall, pred.tolist(), y.tolist())


def _classify_lif(driver: HostDriver, snn, samples: int, load: bool, log) -> RunResult:
    import numpy as np

    from sparsegate.sw.ml.data import mnist_embedded
    from sparsegate.sw.snn.model import SNNConfig, encode, to_pixels

    ident = driver.ident
    g = ident["geometry"]
    log(f"device: lif core, {g['n_inputs']}-{g['n_hidden']}-{g['n_outputs']}, {g['units']} units, protocol "
        f"v{ident['version']}" + (f", {ident['clk_hz'] / 1e6:g} MHz" if ident["clk_hz"] else " (simulated)"))
    t0 = time.perf_counter()
    if load:
        driver.load_snn(snn)
        log(f"network loaded in {time.perf_counter() - t0:.2f} s")
    else:
        driver.check_snn(snn)
    if snn.n_inputs != 784:
        raise RunError(f"`run` classifies MNIST digits; this network takes {snn.n_inputs} inputs")
    _, test_ds = mnist_embedded(0)
    config = SNNConfig(n_inputs=snn.n_inputs, n_hidden=snn.n_hidden, n_outputs=snn.n_outputs, steps=snn.steps,
                       encoding=snn.encoding)
    spikes = encode(to_pixels(test_ds.tensors[0][:samples]), config)
    y = test_ds.tensors[1][:samples].numpy()
    t0 = time.perf_counter()
    outs, pred = driver.classify_spikes(spikes)
    wall = time.perf_counter() - t0
    golden = snn.run(spikes)
    exact = int(sum(np.array_equal(o, gv) for o, gv in zip(outs, golden.readout.v)))
    regs = driver.read_counters()
    correct = int((pred == y).sum())
    log(f"{samples} digits in {wall:.2f} s: predictions {pred.tolist()}")
    log(f"labels      {y.tolist()}")
    log(f"readout membranes bit-exact with the golden model: {exact}/{samples}; correct labels: {correct}/{samples}; "
        f"{regs['total.cycles']:,} cycles and {regs['total.hidden_synops']:,} hidden synaptic operations for the last")
    return RunResult(LIF.name, samples, exact, correct, regs["total.cycles"], wall, pred.tolist(), y.tolist())


_CLASSIFIERS = {ENGINE.name: _classify_engine, LIF.name: _classify_lif}


def classify_with_driver(driver: HostDriver, network, samples: int, *, load: bool = True,
                         log: Callable[[str], None] = _quiet) -> RunResult:
    """Identify the device, load ``network`` (a weight image's bytes for the engine, an integer SNN for the LIF
    core; unless ``load`` is False: then it must be what the device was built with), classify ``samples``
    held-out digits and compare with the golden model."""
    return _CLASSIFIERS[driver.ident["core"]](driver, network, samples, load, log)


def run_digits(core: Core | str, image: Path | None, samples: int, *, port: str | None = None, baud: int = 115200,
               load: bool = True, lanes: int = 16, units: int = 20, per_word: int = 8, simulator: str = "verilator",
               build_dir: Path = DEFAULT_SIM_BUILD, auto: bool = False,
               log: Callable[[str], None] = _quiet) -> RunResult:
    """``sparsegate run``: ``samples`` held-out digits through the board on serial ``port``, or through the
    simulated board top level of ``core`` (``port`` None); ``image`` is the network file (``None``: the pruned
    LeNet-5). ``auto``: ``core`` was guessed from ``image``, not asked for. Raises :class:`RunError`,
    :class:`~sparsegate.sw.host.driver.LinkError` or :class:`~sparsegate.sw.host.driver.DeviceError`."""
    if not 1 <= samples <= MAX_SAMPLES:
        raise RunError(f"--samples must be in 1..{MAX_SAMPLES} (the held-out digits), got {samples}")
    if port is None and (lanes < 1 or lanes & (lanes - 1) or lanes > 64):
        raise RunError(f"--lanes must be a power of two in 1..64, got {lanes}")
    core = core_named(core) if isinstance(core, str) else core
    network = load_network(core, image)
    if port is None:
        driver = sim_driver(core, network, lanes=lanes, units=units, per_word=per_word, simulator=simulator,
                            build_dir=build_dir, log=log)
    else:
        driver = board_driver(port, baud)
    try:
        if driver.core != core.name and auto and image is None:
            raise RunError(f"the device holds the {driver.core} core: pass its --image")
        if driver.core != core.name:
            raise RunError(f"the device holds the {driver.core} core, --image {image} is for the {core.name} core")
        return classify_with_driver(driver, network, samples, load=load, log=log)
    except LinkError as err:
        where = f"the board on {port}" if port is not None else "the simulated board"
        raise LinkError(f"{err}: {where} does not answer. Check the port and --baud, and that the FPGA holds a "
                        "current bitstream (sparsegate build, then program it); if it still does not answer, "
                        "power-cycle or re-program the board") from None
    except DeviceError as err:
        if err.status == "BAD_DESC":
            raise DeviceError(f"{err}; load an image (drop --no-load)", err.status) from None
        if err.status == "RUN_TIMEOUT":
            raise DeviceError(f"{err}: the core did not finish within the device's cycle budget and was "
                              "aborted; reload the image (drop --no-load)", err.status) from None
        raise
    finally:
        driver.close()
