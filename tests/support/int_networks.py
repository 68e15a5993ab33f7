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


def residual_network(seed: int = 0, shape=(3, 8, 8), width: int = 4) -> QuantizedNetwork:
    """A small ResNet-like integer network: a stem conv, an identity block, a downsampling block (1x1 stride-2
    shortcut conv reading the block input), an fc; the adds are ``residual.residual_add_layer``s, tensors named
    by reference (0 = input, k = layer k-1); every scale 1."""
    from sparsegate.sw.ir.residual import residual_add_layer

    rng = np.random.default_rng(seed)
    c = width
    layers = [_layer(rng, "stem", "conv", shape, c)]                                         # tensor 1
    layers.append(_layer(rng, "b1c1", "conv", layers[0].out_shape, c))                         # 2
    layers.append(_layer(rng, "b1c2", "conv", layers[1].out_shape, c, relu=False))             # 3
    layers.append(residual_add_layer("b1add", layers[0].out_shape, (1, 3), 1.0, 1.0, 1.0))     # 4
    layers.append(_layer(rng, "b2c1", "conv", layers[3].out_shape, 2 * c, stride=2))           # 5
    layers.append(_layer(rng, "b2c2", "conv", layers[4].out_shape, 2 * c, relu=False))         # 6
    short = _layer(rng, "b2sc", "conv", layers[3].out_shape, 2 * c, kernel=1, stride=2, padding=0, relu=False)
    short.inputs = (4,)                                                                        # 7
    layers.append(short)
    # unequal factors (64, 127): the second input counts as if at twice the scale
    layers.append(residual_add_layer("b2add", layers[5].out_shape, (6, 7), 1.0, 2.0, 1.0))     # 8
    layers.append(_layer(rng, "fc", "fc", (int(np.prod(layers[-1].out_shape)),), 5, relu=False, flatten=True))
    return QuantizedNetwork("residual", shape, 1.0, layers)


def mixed_readers_network(seed: int = 0, shape=(2, 6, 10), width: int = 3) -> QuantizedNetwork:
    """A block input read by a stride-1 conv and a stride-2 shortcut (which would tile differently: the
    compiler gives both one-row tiles), the stride-1 branch downsampled by a stride-2 conv, an add, an fc."""
    from sparsegate.sw.ir.residual import residual_add_layer

    rng = np.random.default_rng(seed)
    c = width
    layers = [_layer(rng, "stem", "conv", shape, c)]                                         # tensor 1
    layers.append(_layer(rng, "a1", "conv", layers[0].out_shape, c))                           # 2
    layers.append(_layer(rng, "a2", "conv", layers[1].out_shape, c, stride=2, relu=False))     # 3
    short = _layer(rng, "sc", "conv", layers[0].out_shape, c, kernel=1, stride=2, padding=0, relu=False)
    short.inputs = (1,)                                                                        # 4
    layers.append(short)
    layers.append(residual_add_layer("add", layers[2].out_shape, (3, 4), 1.0, 1.0, 1.0))       # 5
    layers.append(_layer(rng, "fc", "fc", (int(np.prod(layers[-1].out_shape)),), 5, relu=False, flatten=True))
    return QuantizedNetwork("mixed_readers", shape, 1.0, layers)
