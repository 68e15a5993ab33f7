"""Small random integer networks for tests of the golden model, the image format and the engine."""
from __future__ import annotations

import numpy as np

from sparsegate.sw.ir.golden import IntLayer, QuantizedNetwork


def _layer(rng, name, kind, in_shape, cout, kernel=3, stride=1, padding=1, relu=True, pool=False, flatten=False):
    cin = in_shape[0]
    wshape = (cout, cin, kernel, kernel) if kind == "conv" else (cout, cin)
    w = rng.integers(-127, 128, size=wshape).astype(np.int8)
    w[rng.random(wshape) < 0.6] = 0
    return IntLayer(name=name, kind=kind, weight=w, bias=rng.integers(-5000, 5000, size=cout).astype(np.int32),
                    mult=rng.integers(1 << 15, 1 << 16, size=cout).astype(np.uint16),
                    shift=rng.integers(22, 26, size=cout).astype(np.uint8), in_shape=in_shape,
                    stride=stride if kind == "conv" else 1, padding=padding if kind == "conv" else 0,
                    relu=relu, pool=pool, flatten_input=flatten)


def random_network(seed: int = 0) -> QuantizedNetwork:
    """A small LeNet-like integer network with random weights (conv-pool-relu, stride-2 conv, fc, fc)."""
    rng = np.random.default_rng(seed)
    l1 = _layer(rng, "conv1", "conv", (2, 13, 12), 4, kernel=5, padding=2, pool=True)
    l2 = _layer(rng, "conv2", "conv", l1.out_shape, 6, kernel=3, stride=2, padding=0)
    l3 = _layer(rng, "fc1", "fc", (int(np.prod(l2.out_shape)),), 16, flatten=True)
    l4 = _layer(rng, "fc2", "fc", (16,), 5, relu=False)
    return QuantizedNetwork("random", (2, 13, 12), 1.0, [l1, l2, l3, l4])
