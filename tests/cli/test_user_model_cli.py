"""A user's own model class on the command line: ``--model file.py:Class`` / ``package.module:Class`` for
train, then prune and quantize finding the class from the checkpoint's record; a moved or changed file,
and every bad spec, end with one line naming it (exit 2)."""
from __future__ import annotations

import shutil
import sys

import pytest
import torch

from sparsegate.sw.cli.main import main

NET = '''
import torch
from torch import nn
import torch.nn.functional as F


class BnNet(nn.Module):
    input_shape = (1, 28, 28)

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 5, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.2)
        self.fc1 = nn.Linear(4 * 12 * 12, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x)), inplace=True), 2)
        return self.fc1(self.drop(x.view(x.size(0), -1)))


class NeedsArgs(nn.Module):
    def __init__(self, width):
        super().__init__()


class NotAModule:
    pass
'''

MLP = '''
from torch import nn


class Mlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(inplace=True), nn.Dropout(0.1),
                                  nn.Linear(32, 10))

    def forward(self, x):
        return self.body(x)
'''


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """net.py:BnNet trained one epoch and magnitude-pruned by the CLI; (folder, net.py, pruned checkpoint)."""
    folder = tmp_path_factory.mktemp("user")
    net = folder / "net.py"
    net.write_text(NET)
    assert main(["train", "--model", f"{net}:BnNet", "--epochs", "1", "--out", str(folder / "t"), "--no-progress"]) == 0
    assert main(["prune", "--method", "magnitude", "--checkpoint", str(folder / "t" / "model.pt"), "--out",
                 str(folder / "p"), "--rounds", "1", "--finetune-epochs", "0", "--target-sparsity", "0.5",
                 "--no-progress"]) == 0
    return folder, net, folder / "p" / "model.pt"


@pytest.mark.slow
def test_train_prune_quantize_a_user_model_from_its_file(trained, capsys):
    folder, net, pruned = trained
    for checkpoint in (folder / "t" / "model.pt", pruned):
        payload = torch.load(checkpoint, weights_only=True)
        assert payload["source"]["kind"] == "file" and payload["source"]["location"] == str(net.resolve())
        assert payload["source"]["class_name"] == "BnNet" and len(payload["source"]["sha256"]) == 64
    assert main(["quantize", "--checkpoint", str(pruned), "--out", str(folder / "q"), "--eval-size", "200",
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("bnnet on mnist5k (200 test images)") and "predictions agree" in out
    assert (folder / "q" / "quantized.bin").is_file()


@pytest.mark.slow
def test_a_moved_or_changed_class_file_is_named(trained, tmp_path, capsys):
    folder, net, pruned = trained
    moved = tmp_path / "elsewhere.py"
    shutil.move(net, moved)
    try:
        assert main(["quantize", "--checkpoint", str(pruned), "--out", str(tmp_path / "q"), "--no-progress"]) == 2
        err = _error(capsys)
        assert f"{pruned}: its model class file {net.resolve()} no longer exists" in err and "--model" in err
        assert main(["quantize", "--checkpoint", str(pruned), "--out", str(tmp_path / "q"), "--eval-size", "50",
                     "--model", f"{moved}:BnNet", "--no-progress"]) == 0
        capsys.readouterr()
        net.write_text(NET + "\n# edited\n")
        assert main(["prune", "--method", "magnitude", "--checkpoint", str(pruned), "--out", str(tmp_path / "p"),
                     "--rounds", "1", "--finetune-epochs", "0", "--target-sparsity", "0.6", "--no-progress"]) == 2
        err = _error(capsys)
        assert f"its model class file {net.resolve()} changed since the checkpoint was written" in err
    finally:
        net.write_text(NET)


@pytest.mark.slow
def test_a_package_module_class_trains_and_quantizes(tmp_path, monkeypatch, capsys):
    package = tmp_path / "mynets"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "mlp.py").write_text(MLP)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert main(["train", "--model", "mynets.mlp:Mlp", "--epochs", "1", "--out", str(tmp_path / "t"),
                     "--no-progress"]) == 0
        assert torch.load(tmp_path / "t" / "model.pt", weights_only=True)["source"]["kind"] == "module"
        assert main(["quantize", "--checkpoint", str(tmp_path / "t" / "model.pt"), "--out", str(tmp_path / "q"),
                     "--eval-size", "100", "--no-progress"]) == 0
        assert "mlp on mnist5k" in capsys.readouterr().out
    finally:
        for name in ("mynets", "mynets.mlp"):
            sys.modules.pop(name, None)


@pytest.mark.parametrize("spec, message", [
    ("{dir}/missing.py:Net", "{dir}/missing.py: no such file"),
    ("{dir}/net.py:Nope", "no class 'Nope' in {dir}/net.py (nn.Module classes there: BnNet, NeedsArgs)"),
    ("{dir}/net.py:NotAModule", "'NotAModule' in {dir}/net.py is not an nn.Module subclass"),
    ("{dir}/net.py:NeedsArgs", "NeedsArgs() fails (TypeError"),
    ("no_such_package.nets:Net", "cannot import module 'no_such_package.nets' (ModuleNotFoundError"),
    ("lenet6", "unknown model 'lenet6'; expected one of ['lenet300', 'lenet5', 'vgg'] or path/to/file.py:ClassName"),
])
def test_bad_model_specs_end_with_one_line(tmp_path, capsys, spec, message):
    (tmp_path / "net.py").write_text(NET)
    spec, message = spec.format(dir=tmp_path), message.format(dir=tmp_path)
    assert main(["train", "--model", spec, "--epochs", "1", "--out", str(tmp_path / "t")]) == 2
    assert message in _error(capsys)
    assert not (tmp_path / "t").exists()


def test_demo_refuses_a_bad_model_before_any_stage(tmp_path, capsys):
    assert main(["demo", "--model", f"{tmp_path}/none.py:Net", "--out", str(tmp_path / "d"), "--no-build"]) == 2
    assert "none.py: no such file" in _error(capsys)
    assert main(["demo", "--model", "lenet300", "--out", str(tmp_path / "d"), "--no-build"]) == 2
    assert "--model lenet300: the demo's KEP stage prunes conv kernels and this model has no Conv2d" in _error(capsys)
    assert not (tmp_path / "d").exists()


def test_a_malformed_source_record_is_one_line(tmp_path, capsys):
    from sparsegate.sw.ml.models import build_model
    from sparsegate.sw.ml.train import save_checkpoint

    save_checkpoint(tmp_path / "model.pt", build_model("lenet300"), "lenet300", meta={"seed": 0})
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    payload["model"], payload["source"] = "x.py:Net", {"kind": "file", "location": 3}
    torch.save(payload, tmp_path / "bad.pt")
    assert main(["quantize", "--checkpoint", str(tmp_path / "bad.pt"), "--out", str(tmp_path / "q")]) == 2
    assert f"{tmp_path / 'bad.pt'}: malformed model source record" in _error(capsys)
    del payload["source"]
    torch.save(payload, tmp_path / "bad.pt")
    assert main(["quantize", "--checkpoint", str(tmp_path / "bad.pt"), "--out", str(tmp_path / "q")]) == 2
    assert "model 'x.py:Net' is neither built in" in _error(capsys)
