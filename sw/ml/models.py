"""The reference networks and a per-layer parameter/MAC counter.

Layer names (``conv1``, ``fc1``, ...) are the keys every report, mask and image uses, so each model
exposes its prunable layers as named attributes, in execution order.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
import torch.nn.functional as F


class LeNet5(nn.Module):
    """LeNet-5-Caffe: conv 20@5x5, pool, conv 50@5x5, pool, fc 800->500, fc 500->10 (431,080 params).

    ReLU follows each convolution (after pooling, which commutes with it) so the engine's fused
    ReLU/max-pool output stage maps one-to-one onto the layers.
    """

    input_shape = (1, 28, 28)

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(800, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


class LeNet300(nn.Module):
    """LeNet-300-100: fc 784->300, fc 300->100, fc 100->10 (266,610 params)."""

    input_shape = (1, 28, 28)

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(784, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)

    def forward(self, x):
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class SmallVGG(nn.Module):
    """A small VGG-style CNN for 32x32x3 inputs: three blocks of two 3x3 convs + max-pool, then two FCs."""

    input_shape = (3, 32, 32)
    widths = (32, 64, 128)

    def __init__(self, num_classes: int = 10):
        super().__init__()
        cin = 3
        for block, width in enumerate(self.widths, start=1):
            setattr(self, f"conv{block}_1", nn.Conv2d(cin, width, 3, padding=1))
            setattr(self, f"conv{block}_2", nn.Conv2d(width, width, 3, padding=1))
            cin = width
        self.fc1 = nn.Linear(cin * 4 * 4, 256)
        self.fc2 = nn.Linear(256, num_classes)

    def forward(self, x):
        for block in range(1, len(self.widths) + 1):
            x = F.relu(getattr(self, f"conv{block}_1")(x))
            x = F.max_pool2d(F.relu(getattr(self, f"conv{block}_2")(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


MODELS = {"lenet5": LeNet5, "lenet300": LeNet300, "vgg": SmallVGG}


def build_model(name: str, num_classes: int = 10) -> nn.Module:
    """Instantiate a model by its CLI name; unknown names list the choices."""
    try:
        cls = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; expected one of {sorted(MODELS)}") from None
    return cls(num_classes=num_classes)


def model_name(model: nn.Module) -> str:
    """The CLI name of a model instance (``lenet5``, ...), else its class name in lower case."""
    return next((name for name, cls in MODELS.items() if type(model) is cls), type(model).__name__.lower())


@dataclass(frozen=True)
class LayerCount:
    """Dense size of one conv/linear layer for one input image."""

    name: str
    kind: str  # "conv" or "fc"
    in_shape: tuple
    out_shape: tuple
    weights: int
    biases: int
    macs: int

    @property
    def params(self) -> int:
        return self.weights + self.biases


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The conv and linear layers of ``model`` by name, in definition order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def count_layers(model: nn.Module, input_shape: tuple | None = None) -> list[LayerCount]:
    """Per-layer dense weights, biases and MACs for one input, measured by tracing a forward pass."""
    input_shape = tuple(input_shape or model.input_shape)
    layers = prunable_layers(model)
    shapes: dict[str, tuple] = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: shapes.__setitem__(n, (tuple(i[0].shape[1:]), tuple(o.shape[1:]))))
             for n, m in layers.items()]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    finally:
        for h in hooks:
            h.remove()
    table = []
    for name, m in layers.items():
        in_shape, out_shape = shapes[name]
        weights = m.weight.numel()
        biases = m.bias.numel() if m.bias is not None else 0
        if isinstance(m, nn.Conv2d):
            kind = "conv"
            macs = (weights // m.out_channels) * out_shape[0] * out_shape[1] * out_shape[2]
        else:
            kind = "fc"
            macs = weights
        table.append(LayerCount(name, kind, in_shape, out_shape, weights, biases, macs))
    return table
