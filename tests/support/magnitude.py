"""Per-tensor magnitude masks with fixed keep fractions, for quantization tests on a pruned LeNet-5."""
from __future__ import annotations

import torch
from torch import nn

KEEP = {"conv1.weight": 0.6, "conv2.weight": 0.2, "fc1.weight": 0.08, "fc2.weight": 0.3}


def magnitude_masks(model: nn.Module, keep: dict[str, float]) -> dict[str, torch.Tensor]:
    """Keep the largest-magnitude fraction of each named weight tensor."""
    params = dict(model.named_parameters())
    masks = {}
    for name, fraction in keep.items():
        w = params[name].detach().abs().flatten()
        threshold = w.kthvalue(w.numel() - int(w.numel() * fraction)).values
        masks[name] = params[name].detach().abs() > threshold
    return masks
