"""Shared fixtures: the embedded dataset and a quickly trained LeNet-5, built once per test session."""
from __future__ import annotations

import pytest
import torch

from sparsegate.sw.ml.data import mnist_embedded
from sparsegate.sw.ml.models import build_model
from sparsegate.sw.ml.train import TrainConfig, train


@pytest.fixture(scope="session")
def mnist5k():
    """(train, test) of the embedded 4,000/1,000 MNIST split."""
    return mnist_embedded(seed=0)


@pytest.fixture(scope="session")
def trained_lenet5(mnist5k):
    """A LeNet-5 trained for 3 epochs (~97% on the held-out digits); copy it before changing it."""
    torch.manual_seed(0)
    model = build_model("lenet5")
    train(model, mnist5k[0], TrainConfig(epochs=3, seed=0, progress=False))
    return model.eval()


@pytest.fixture(scope="session")
def lenet_checkpoint(trained_lenet5, tmp_path_factory):
    """``trained_lenet5`` saved as a checkpoint (``model.pt``), for the commands that read one."""
    from sparsegate.sw.ml.train import save_checkpoint
    path = tmp_path_factory.mktemp("lenet5_checkpoint") / "model.pt"
    save_checkpoint(path, trained_lenet5, "lenet5", meta={"dataset": "mnist5k", "seed": 0})
    return path
