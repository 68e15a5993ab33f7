"""An independent PyTorch reference of the integer semantics (float64 convolutions are exact here), used
to check the golden model and quantization."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from sparsegate.sw.ir.golden import IntLayer


def torch_requant(acc: torch.Tensor, mult, shift) -> torch.Tensor:
    """Same rule, written independently: floor((acc * mult + 2**(shift-1)) / 2**shift), then clamp."""
    shape = (1, -1) + (1,) * (acc.dim() - 2)
    m = torch.as_tensor(np.asarray(mult, dtype=np.int64)).view(shape)
    s = torch.as_tensor(np.asarray(shift, dtype=np.int64)).view(shape)
    scaled = torch.div(acc * m + 2 ** (s - 1), 2 ** s, rounding_mode="floor")
    return scaled.clamp(-128, 127)


def torch_conv_acc(x, w, bias, stride, padding) -> torch.Tensor:
    """conv2d on the integer values in float64 (exact: every partial sum is an integer far below 2**53)."""
    out = F.conv2d(torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(w, dtype=torch.float64),
                   torch.as_tensor(bias, dtype=torch.float64), stride=stride, padding=padding)
    return out.round().to(torch.int64)


def torch_linear_acc(x, w, bias) -> torch.Tensor:
    out = F.linear(torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(w, dtype=torch.float64),
                   torch.as_tensor(bias, dtype=torch.float64))
    return out.round().to(torch.int64)


def torch_layer(x: np.ndarray, layer: IntLayer) -> tuple[np.ndarray, np.ndarray]:
    """(biased accumulator, int8 output) of ``layer`` by the PyTorch reference."""
    if layer.flatten_input:
        x = torch.flatten(torch.as_tensor(x), 1).numpy()
    if layer.kind == "conv":
        acc = torch_conv_acc(x, layer.weight, layer.bias, layer.stride, layer.padding)
    else:
        acc = torch_linear_acc(x, layer.weight, layer.bias)
    y = torch_requant(acc, layer.mult, layer.shift)
    if layer.relu:
        y = F.relu(y)
    if layer.pool:
        y = F.max_pool2d(y.double(), 2).to(torch.int64)
    return acc.numpy(), y.numpy()
