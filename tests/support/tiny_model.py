"""A hand-built tiny conv + fc network whose counts are known by hand."""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


class Tiny(nn.Module):
    """conv 1->3 @3x3 on 4x4 (out 3x2x2), flatten 12, fc 12->4, fc 4->2. 92 params, 164 MACs."""

    input_shape = (1, 4, 4)

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 3, 3)
        self.fc1 = nn.Linear(12, 4)
        self.fc2 = nn.Linear(4, 2)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


def tiny_network() -> Tiny:
    """conv1: channel 0 keeps 2 taps, channel 1 has no weights and bias -1 (identically zero), channel 2 keeps
    all 9. fc1: n0 reads ch0 (cols 0, 1) and the dead ch1 (col 5); n1 reads only dead ch1 and has bias 0
    (identically zero); n2 reads ch2 but nothing reads n2; n3 reads ch2 (col 11). fc2: out0 reads n0, n3;
    out1 reads the dead n1 and n3."""
    torch.manual_seed(0)
    m = Tiny()
    with torch.no_grad():
        for p in m.parameters():
            p.zero_()
        m.conv1.weight[0, 0, 0, 0] = 1.0
        m.conv1.weight[0, 0, 2, 2] = -1.0
        m.conv1.weight[2] = torch.arange(1, 10, dtype=torch.float32).view(1, 3, 3) / 10
        m.conv1.bias.copy_(torch.tensor([0.5, -1.0, 0.1]))
        for col in (0, 1, 5):
            m.fc1.weight[0, col] = 0.5
        m.fc1.weight[1, 4] = 0.7
        for col in (8, 9, 10):
            m.fc1.weight[2, col] = -0.3
        m.fc1.weight[3, 11] = 0.9
        m.fc1.bias.copy_(torch.tensor([0.1, 0.0, 0.3, 0.2]))
        m.fc2.weight[0, 0] = 1.0
        m.fc2.weight[0, 3] = 1.0
        m.fc2.weight[1, 1] = 1.0
        m.fc2.weight[1, 3] = -1.0
        m.fc2.bias.copy_(torch.tensor([0.1, 0.1]))
    return m
