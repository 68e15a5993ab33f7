"""``sparsegate run``: classify digits on a board, or on the simulated board top level, through the host
link — one code path (:func:`classify_with_driver`), two transports.

    sparsegate run --board-port /dev/ttyUSB0 [--image IMG] [--samples 20]
    sparsegate run --sim [--simulator verilator|amaranth] [--lanes 16] [--image IMG] [--samples 20]
    sparsegate run --sim --core lif --image SNN.npz [--units 20 --per-word 8] [--samples 20]

The image is compiled for the device's geometry (read with the ID command) and loaded at run time; each
digit is written into input slot 0, run, and its logits read back; predictions and logits are compared
with the golden model (bit-exact) and the labels. The ID reply says which core the device holds; for the
LIF core the image is an integer SNN (``sparsegate snn export``), each digit's spike trains are loaded,
and the readout membranes are compared with :class:`~sparsegate.sw.ir.snn_golden.IntSNN` (bit-exact).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

__all__ = ["configure", "run", "classify_with_driver", "classify_snn_with_driver", "sim_driver", "lif_sim_driver"]


def configure(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--board-port", help="serial port of a board running `sparsegate build`'s bitstream")
    where.add_argument("--sim", action="store_true", help="the board top level in simulation")
    parser.add_argument("--baud", type=int, default=115200, help="UART baud rate (default 115200)")
    parser.add_argument("--image", type=Path,
                        help="weight image (default: the pruned LeNet-5), or an integer SNN (.npz) for the LIF core")
    parser.add_argument("--core", choices=("auto", "sparse", "lif"), default="auto",
                        help="--sim: which core to simulate (default: from --image)")
    parser.add_argument("--units", type=int, default=20, help="--sim --core lif: neuron units (default 20)")
    parser.add_argument("--per-word", type=int, default=8, help="--sim --core lif: weights per bank word (default 8)")
    parser.add_argument("--samples", type=int, default=20, help="held-out digits to classify (default 20)")
    parser.add_argument("--lanes", type=int, default=16, help="--sim: MAC lanes (default 16)")
    parser.add_argument("--simulator", choices=("verilator", "amaranth"), default="verilator",
                        help="--sim: Verilator (fast, builds once) or Amaranth's simulator (slow)")
    parser.add_argument("--build-dir", type=Path, default=Path("build/host-sim"), help="--sim: Verilator build cache")
    parser.add_argument("--no-load", action="store_true",
                        help="use the image baked into the bitstream instead of loading --image")


def sim_driver(image: bytes, lanes: int, simulator: str = "verilator", build_dir: Path = Path("build/host-sim"),
               log=print):
    """A :class:`~sparsegate.sw.host.driver.HostDriver` on the simulated board top level, built with
    ``image`` as its power-up contents."""
    from sparsegate.hw.platform.board_top import LinkedEngine, capacity_geometry, retarget_program
    from sparsegate.hw.engine.program import program_from_image
    from sparsegate.sw.host.driver import HostDriver, SimTransport, VerilatorTransport

    program = program_from_image(image, lanes)
    program = retarget_program(program, capacity_geometry(program, n_samples=1))
    dut = LinkedEngine(program, timeout=1_000_000)
    if simulator == "verilator":
        return HostDriver(VerilatorTransport(dut, build_dir, log=log), timeout_s=120)
    return HostDriver(SimTransport(dut, max_cycles=50_000_000))


def lif_sim_driver(snn, units: int = 20, per_word: int = 8, simulator: str = "verilator",
                   build_dir: Path = Path("build/host-sim"), log=print):
    """A :class:`~sparsegate.sw.host.driver.HostDriver` on the simulated LIF board top level
    (:class:`~sparsegate.hw.lif.design.LinkedLif`), ``snn`` baked in as its power-up network."""
    from sparsegate.hw.lif.design import LifDesign, LinkedLif
    from sparsegate.sw.host.driver import HostDriver, SimTransport, VerilatorTransport

    dut = LinkedLif(LifDesign(snn, units=units, per_word=per_word), timeout=1_000_000)
    if simulator == "verilator":
        return HostDriver(VerilatorTransport(dut, build_dir, log=log), timeout_s=300)
    return HostDriver(SimTransport(dut, max_cycles=50_000_000))


def classify_snn_with_driver(driver, snn, samples: int, *, load: bool = True, log=print) -> dict:
    """The LIF counterpart of :func:`classify_with_driver`: load ``snn`` (unless ``load`` is False), run
    ``samples`` held-out digits as spike trains, compare readout membranes with the integer golden model."""
    import numpy as np

    from sparsegate.sw.ml.data import mnist_embedded
    from sparsegate.sw.snn.model import SNNConfig, encode, to_pixels

    ident = driver.identify()
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
        raise ValueError(f"`run` classifies MNIST digits; this network takes {snn.n_inputs} inputs")
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
    return {"exact": exact, "samples": samples, "correct": correct, "cycles": regs["total.cycles"], "wall_s": wall,
            "predictions": pred.tolist()}


def classify_with_driver(driver, image: bytes, samples: int, *, load: bool = True, log=print) -> dict:
    """Identify the device, load ``image`` (unless ``load`` is False), classify ``samples`` held-out digits,
    compare with the golden model. Returns counts and timings."""
    import numpy as np

    from sparsegate.sw.flow.lenet import test_digits
    from sparsegate.sw.ir.golden import run_network
    from sparsegate.sw.ir.weight_image import decode_image

    ident = driver.identify()
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
        raise ValueError(f"`run` classifies MNIST digits; this image takes {qnet.input_shape} inputs")
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
    return {"exact": exact, "samples": samples, "correct": correct, "cycles": cycles, "wall_s": wall,
            "predictions": pred.tolist()}


def run(args: argparse.Namespace) -> int:
    from sparsegate.sw.cli.build import default_image, detect_core
    from sparsegate.sw.cli.main import CliError
    from sparsegate.sw.host.driver import HostDriver, LinkError, SerialTransport

    if args.samples < 1:
        raise CliError(f"--samples must be at least 1, got {args.samples}")
    core = detect_core(args.core, args.image)
    if core == "lif":
        from sparsegate.sw.ir.snn_golden import load_int_snn
        if args.image is None:
            raise CliError("--core lif needs --image: an integer SNN from `sparsegate snn export` (.npz)")
        image = load_int_snn(args.image)
    else:
        image = args.image.read_bytes() if args.image else default_image()
    try:
        if args.sim:
            driver = (lif_sim_driver(image, args.units, args.per_word, args.simulator, args.build_dir)
                      if core == "lif" else sim_driver(image, args.lanes, args.simulator, args.build_dir))
        else:
            driver = HostDriver(SerialTransport(args.board_port, args.baud))
        try:
            if driver.core != core and args.core == "auto" and args.image is None:
                raise CliError(f"the device holds the {driver.core} core: pass its --image")
            if driver.core != core:
                raise CliError(f"the device holds the {driver.core} core, --image {args.image} is for the "
                               f"{core} core")
            if core == "lif":
                result = classify_snn_with_driver(driver, image, args.samples, load=not args.no_load)
            else:
                result = classify_with_driver(driver, image, args.samples, load=not args.no_load)
        finally:
            driver.close()
    except LinkError as err:
        raise CliError(str(err)) from None
    return 0 if result["exact"] == result["samples"] else 1
