"""Hostile input at the command line (issue #18): every refusal is one line naming the file or field, exit
status 2, no traceback; names from an image are printed with their control characters escaped."""
from __future__ import annotations

import copy
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sparsegate.sw.cli.main import main
from sparsegate.sw.ir.weight_image import export_image, write_image
from sparsegate.sw.ml.models import build_model
from sparsegate.sw.ml.train import save_checkpoint
from support.hostile_images import raw_image
from support.int_networks import random_network

SPARSEGATE = str(Path(sys.executable).with_name("sparsegate"))


def refused(capsys, argv, *needles) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"sparsegate {argv[0]}: error: ")
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def test_inspect_refuses_what_is_not_a_bounded_regular_file(tmp_path, capsys):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    refused(capsys, ["inspect", str(fifo)], str(fifo), "not a regular file")
    refused(capsys, ["inspect", "/dev/zero"], "/dev/zero: file: not a regular file")
    refused(capsys, ["inspect", str(tmp_path)], "not a regular file")
    sparse = tmp_path / "sparse.bin"
    with sparse.open("wb") as f:
        f.truncate(2 << 30)
    refused(capsys, ["inspect", str(sparse)], "total_size: file is 2147483648 bytes")
    huge = tmp_path / "huge.bin"
    huge.write_bytes(raw_image((4096, 1, 1), 1, 4096, 65535))
    refused(capsys, ["inspect", str(huge)], "layer 0 ('big') weights")


def test_inspect_of_dev_zero_under_a_memory_limit_is_one_line(tmp_path):
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    proc = subprocess.run([SPARSEGATE, "inspect", "/dev/zero"], capture_output=True, text=True, timeout=120,
                          preexec_fn=limit)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_names_with_terminal_escapes_are_printed_escaped(tmp_path, capsys):
    qnet = random_network(3)
    qnet.name = "net\x1b]0;pwn\x07"
    qnet.layers[0].name = "c\x1b[2J"
    export_image(qnet, tmp_path / "e")
    assert main(["inspect", str(tmp_path / "e" / "image.bin")]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "net\\x1b]0;pwn\\x07: 4 layers" in out and "\nc\\x1b[2J " in out
    assert main(["export", "--quantized", str(tmp_path / "e" / "image.bin"), "--out", str(tmp_path / "f")]) == 0
    assert "\x1b" not in capsys.readouterr().out
    hex_file = next((tmp_path / "f" / "hex").glob("c__2J.entries.hex"))
    assert hex_file.read_text().splitlines()[0].startswith("// sparsegate net\\x1b]0;pwn\\x07 c\\x1b[2J entries")


def test_simulate_checks_samples_and_input_before_allocating(tmp_path, capsys):
    image = tmp_path / "image.bin"
    write_image(image, random_network(1))
    refused(capsys, ["simulate", "--image", str(image), "--samples", "1000000000", "--sim", "amaranth"],
            "--samples must be in 1..1000")
    wide = tmp_path / "wide.bin"
    wide.write_bytes(raw_image((1, 65535, 65535), 0, 1, 1, hw_in=(65535, 65535), hw_out=(65535, 65535), nnz=1))
    refused(capsys, ["simulate", "--image", str(wide), "--sim", "amaranth"], str(wide), "input_shape")
    heavy = tmp_path / "heavy.bin"  # within the format, but 49 x 1018^2 window elements per sample: 1 fits, 2 not
    heavy.write_bytes(raw_image((1, 1024, 1024), 0, 1, 1, hw_in=(1024, 1024), hw_out=(1018, 1018), kernel=(7, 7),
                                nnz=1))
    refused(capsys, ["simulate", "--image", str(heavy), "--samples", "2", "--sim", "amaranth"],
            "window elements", "lower --samples")


@pytest.mark.parametrize("args, message", [
    (["--lanes", "0"], "--lanes must be a power of two in 1..64, got 0"),
    (["--lanes", "3"], "--lanes must be a power of two in 1..64, got 3"),
    (["--samples", "0"], "--samples must be in 1..1000"),
    (["--samples", "1000000000"], "--samples must be in 1..1000"),
])
def test_run_checks_its_arguments_first(capsys, args, message):
    refused(capsys, ["run", "--sim", *args], message)


def test_run_image_is_read_bounded(tmp_path, capsys):
    refused(capsys, ["run", "--sim", "--core", "sparse", "--image", "/dev/zero"], "not a regular file")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt")
    save_checkpoint(folder / "good.pt", build_model("lenet300"), "lenet300", meta={"seed": 0})
    payload = torch.load(folder / "good.pt", weights_only=True)
    no_meta = copy.deepcopy(payload)
    del no_meta["meta"]
    torch.save(no_meta, folder / "no_meta.pt")
    payload["state_dict"]["fc1.weight"][3, 3] = float("nan")
    torch.save(payload, folder / "nan.pt")
    return folder


@pytest.mark.parametrize("command", [["quantize"], ["prune", "--method", "global", "--target-sparsity", "0.5"]])
def test_checkpoints_without_meta_or_with_nan_are_refused(checkpoints, tmp_path, capsys, command):
    refused(capsys, [*command, "--checkpoint", str(checkpoints / "no_meta.pt"), "--out", str(tmp_path / "o")],
            "no_meta.pt: not a complete checkpoint (missing 'meta')")
    refused(capsys, [*command, "--checkpoint", str(checkpoints / "nan.pt"), "--out", str(tmp_path / "o")],
            "nan.pt: parameter 'fc1.weight' holds NaN or infinite values")


@pytest.mark.parametrize("shape", [(0, 28, 28), (20, 5, 5)])
def test_train_on_mnist_without_usable_images_is_refused(tmp_path, capsys, shape):
    def idx(a):
        return bytes([0, 0, 8, a.ndim]) + b"".join(n.to_bytes(4, "big") for n in a.shape) + a.tobytes()
    for prefix in ("train", "t10k"):
        (tmp_path / f"{prefix}-images-idx3-ubyte").write_bytes(idx(np.zeros(shape, np.uint8)))
        (tmp_path / f"{prefix}-labels-idx1-ubyte").write_bytes(idx(np.zeros(shape[:1], np.uint8)))
    refused(capsys, ["train", "--dataset", "mnist", "--data-path", str(tmp_path), "--epochs", "1",
                     "--out", str(tmp_path / "o")], "train-images-idx3-ubyte", "expected at least one 28x28")


def test_run_on_a_silent_board_says_what_to_do(capsys):
    """A serial port where nothing answers (a pty nobody reads): the ID request times out and the user is
    told which port, and to check the baud rate and bitstream, then power-cycle."""
    controller, device = os.openpty()
    try:
        err = refused(capsys, ["run", "--board-port", os.ttyname(device)], os.ttyname(device),
                      "does not answer", "--baud", "sparsegate build", "power-cycle")
    finally:
        os.close(controller)
        os.close(device)
    assert "no reply from the device" in err


def test_run_takes_the_baud_rate_from_the_build(tmp_path, capsys, monkeypatch):
    """`run --build OUT` talks at the rate the bitstream was built for (report.json), refuses a --baud that
    contradicts it and a folder without a build report."""
    from sparsegate.sw.flow import run as flow_run

    refused(capsys, ["run", "--board-port", "/dev/null", "--build", str(tmp_path)], "--build:",
            str(tmp_path / "report.json"), "'baud' field")
    (tmp_path / "report.json").write_text(json.dumps({"board": "ulx3s-25f", "baud": 3_000_000}))
    refused(capsys, ["run", "--board-port", "/dev/null", "--build", str(tmp_path), "--baud", "115200"],
            "--baud 115200 contradicts --build", "built for 3000000 baud")
    seen = {}

    def opened(port, baud):
        seen.update(port=port, baud=baud)
        raise flow_run.LinkError("no reply from the device")

    monkeypatch.setattr(flow_run, "board_driver", opened)
    image = tmp_path / "image.bin"
    write_image(image, random_network(1))
    refused(capsys, ["run", "--board-port", "/dev/null", "--build", str(tmp_path), "--image", str(image)],
            "no reply from the device")
    assert seen == {"port": "/dev/null", "baud": 3_000_000}


class _StubDriver:
    core = "sparse"

    def close(self):
        pass


@pytest.mark.parametrize("status, advice", [("BAD_DESC", "load an image (drop --no-load)"),
                                            ("RUN_TIMEOUT", "within the device's cycle budget")])
def test_run_turns_device_refusals_into_advice(monkeypatch, capsys, status, advice):
    """The device's BAD_DESC (no image loaded) and RUN_TIMEOUT (watchdog) replies reach the user with what
    to do about them, as one line."""
    import sparsegate.sw.flow.run as flow_run
    from sparsegate.sw.host.driver import DeviceError

    def refuse(*args, **kwargs):
        raise DeviceError(f"RUN: device answered {status}", status)

    monkeypatch.setattr(flow_run, "sim_driver", lambda *args, **kwargs: _StubDriver())
    monkeypatch.setattr(flow_run, "classify_with_driver", refuse)
    refused(capsys, ["run", "--sim", "--no-load"], status, advice)
