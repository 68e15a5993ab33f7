"""The model zoo: ordinary PyTorch spellings of common networks (BatchNorm, Dropout, view/reshape, in-place
ReLU, nn.Sequential, average pools, a residual block), sized so that a brief training and an engine run fit a
test budget. Each class works as ``--model sparsegate.sw.ml.zoo:ClassName``; :data:`ZOO` names them for the
zoo benchmark (``sparsegate bench --only zoo``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn


class LeNet5BN(nn.Module):
    """LeNet-5 (narrowed to 8/16 filters) with BatchNorm after every layer but the last, x.view flatten."""

    input_shape = (1, 28, 28)

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 8, 5, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 16, 5, bias=False), nn.BatchNorm2d(16)
        self.fc1, self.bn3 = nn.Linear(16 * 4 * 4, 64), nn.BatchNorm1d(64)
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x)), inplace=True), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x)), inplace=True), 2)
        x = F.relu(self.bn3(self.fc1(x.view(x.size(0), -1))))
        return self.fc2(x)


class LeNet300(nn.Module):
    """LeNet-300-100 as users write it: reshape, then three Linear layers."""

    input_shape = (1, 28, 28)

    def __init__(self, num_classes=10):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(784, 300), nn.Linear(300, 100), nn.Linear(100, num_classes)

    def forward(self, x):
        x = torch.relu(self.fc1(x.reshape(-1, 784)))
        return self.fc3(torch.relu(self.fc2(x)))


def sequential_net(num_classes=10) -> nn.Sequential:
    """A small CNN written as one nn.Sequential: Conv-BN-ReLU6-MaxPool, Dropout2d, Flatten, Dropout."""
    net = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU6(inplace=True), nn.MaxPool2d(2),
                        nn.Conv2d(6, 12, 3, stride=2, padding=1), nn.ReLU(), nn.Dropout2d(0.1), nn.Flatten(),
                        nn.Dropout(0.3), nn.Linear(12 * 7 * 7, num_classes))
    net.input_shape = (1, 28, 28)
    return net


class VGGBN(nn.Module):
    """VGG-style for 32x32x3: two blocks of (conv-BN-ReLU) x2, the first ending in a max-pool, the second in a
    2x2 average pool; Dropout before the classifier."""

    input_shape = (3, 32, 32)

    def __init__(self, num_classes=10, widths=(8, 16)):
        super().__init__()
        layers, cin = [], 3
        for w in widths:
            layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                       nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            cin = w
        self.features = nn.Sequential(*layers[:-1])  # the last block pools by average
        self.pool = nn.AvgPool2d(2)
        self.drop = nn.Dropout(0.5)
        self.classifier = nn.Linear(cin * 8 * 8, num_classes)

    def forward(self, x):
        return self.classifier(self.drop(torch.flatten(self.pool(self.features(x)), 1)))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                      if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.short(x))


class ResNet8(nn.Module):
    """ResNet-8 for 32x32x3: a stem conv, three basic blocks (16, 32, 64), global average pooling, fc."""

    input_shape = (3, 32, 32)

    def __init__(self, num_classes=10):
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.layer1, self.layer2, self.layer3 = BasicBlock(16, 16, 1), BasicBlock(16, 32, 2), BasicBlock(32, 64, 2)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(F.relu(self.bn(self.stem(x))))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class SequentialNet(nn.Sequential):
    """:func:`sequential_net` as a class, so ``--model sparsegate.sw.ml.zoo:SequentialNet`` reaches it."""

    input_shape = (1, 28, 28)

    def __init__(self, num_classes=10):
        super().__init__(*sequential_net(num_classes))


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry: its name, the class (built with ``num_classes=``), the dataset it trains on and what it
    shows."""

    name: str
    make: Callable[..., nn.Module]
    dataset: str
    description: str

    @property
    def spec(self) -> str:
        """The ``--model`` value that names the class."""
        return f"{__name__}:{self.make.__name__}"


ZOO: dict[str, ZooModel] = {m.name: m for m in (
    ZooModel("lenet5-bn", LeNet5BN, "mnist5k", "LeNet-5 (8/16 filters), BatchNorm after every layer, x.view flatten"),
    ZooModel("sequential", SequentialNet, "mnist5k",
             "one nn.Sequential: Conv-BN-ReLU6-MaxPool, stride-2 conv, Dropout2d, Flatten, Dropout, Linear"),
    ZooModel("lenet300", LeNet300, "mnist5k", "LeNet-300-100 MLP, reshape to a flat input"),
    ZooModel("vgg-bn-dropout", VGGBN, "mnist5k-rgb32",
             "VGG-style, 2 blocks of (conv-BN-ReLU) x2, max and 2x2 average pool, Dropout, on 32x32x3"),
    ZooModel("resnet8", ResNet8, "mnist5k-rgb32",
             "ResNet-8: stem conv, 3 basic blocks with residual adds, global average pool, on 32x32x3"),
)}
