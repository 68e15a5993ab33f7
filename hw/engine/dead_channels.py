"""Dead channels: the output channels (conv) and neurons (fc) the engine need not compute, dropped from a
network before it is compiled (:func:`~sparsegate.hw.engine.program.compile_program`), with the next
layer's references to them.

A channel is dead when it outputs 0 everywhere — no nonzero weight on a live input and a constant
``requant(bias)`` (after ReLU) of 0, e.g. a channel pruned whole with its bias — or when nothing reads it
(the next layer has no nonzero weight on it). The last layer's outputs depend on neither kind, so the
reduced network's final outputs are the original's bit for bit, and its intermediate outputs are the
original's without the dropped channels. The survivors are renumbered densely, so a conv map followed by a
flatten and an fc layer keeps the fc's columns in flatten order.

Never dropped: the last layer's outputs (the host reads them all), and a layer's last channel (a layer keeps
at least one). A channel with a nonzero constant output (bias only) is kept: it still runs its passes
(docs/engine.md, "Dead channels").
"""
from __future__ import annotations

import dataclasses

import numpy as np

from sparsegate.sw.ir.golden import IntLayer, QuantizedNetwork, relu_int, requantize

__all__ = ["DeadChannels", "drop_dead_channels"]


@dataclasses.dataclass(frozen=True)
class DeadChannels:
    """The network the engine runs, and per layer the original indices of the channels it kept."""

    network: QuantizedNetwork
    kept: tuple                  # per layer: the kept output channels (neurons), ascending original indices
    dropped: tuple               # per layer: how many were dropped


def _fan_in(layer: IntLayer, n_inputs: int) -> np.ndarray:
    """The weights as ``(cout, n_inputs, positions)``: axis 1 is the previous layer's output channel (a
    flattened conv map gives each channel a block of ``H * W`` columns)."""
    return layer.weight.reshape(layer.out_channels, n_inputs, -1)


def _constant_output(layer: IntLayer) -> np.ndarray:
    """Per output channel: what it outputs with no weight (acc = bias), by the golden arithmetic."""
    y = requantize(layer.bias.astype(np.int64)[None, :], layer.mult, layer.shift)
    return (relu_int(y) if layer.relu else y)[0]


def drop_dead_channels(qnet: QuantizedNetwork) -> DeadChannels:
    """``qnet`` without its dead channels (module docstring); the same network when it has none."""
    layers = qnet.layers
    n_in = [qnet.input_shape[0]] + [layer.out_channels for layer in layers[:-1]]
    # forward: channels that output 0 everywhere, given which inputs do
    live = []
    inputs_live = np.ones(n_in[0], dtype=bool)
    for i, layer in enumerate(layers):
        w = _fan_in(layer, n_in[i]) * inputs_live[None, :, None]
        out = np.any(w != 0, axis=(1, 2)) | (_constant_output(layer) != 0)
        if i == len(layers) - 1:
            out[:] = True
        live.append(out)
        inputs_live = out
    # backward: of those, the ones the next layer's kept channels read
    kept = [None] * len(layers)
    kept[-1] = np.arange(layers[-1].out_channels)
    for i in range(len(layers) - 2, -1, -1):
        consumer = _fan_in(layers[i + 1], n_in[i + 1])[kept[i + 1]]
        keep = np.flatnonzero(live[i] & np.any(consumer != 0, axis=(0, 2)))
        kept[i] = keep if len(keep) else np.arange(1)
    if all(len(k) == layer.out_channels for k, layer in zip(kept, layers)):
        return DeadChannels(qnet, tuple(tuple(int(c) for c in k) for k in kept), (0,) * len(layers))

    reduced, shape = [], tuple(qnet.input_shape)
    for i, layer in enumerate(layers):
        rows = kept[i]
        cols = kept[i - 1] if i else np.arange(n_in[0])
        w = _fan_in(layer, n_in[i])[rows][:, cols]
        in_shape = (int(np.prod(shape)),) if layer.flatten_input else shape
        weight = (w.reshape((len(rows), len(cols)) + layer.weight.shape[2:]) if layer.kind == "conv"
                  else w.reshape(len(rows), -1))
        reduced.append(dataclasses.replace(
            layer, weight=np.ascontiguousarray(weight), bias=layer.bias[rows], mult=layer.mult[rows],
            shift=layer.shift[rows], weight_scale=layer.weight_scale[rows], in_shape=in_shape))
        shape = reduced[-1].out_shape
    network = dataclasses.replace(qnet, layers=reduced)
    return DeadChannels(network, tuple(tuple(int(c) for c in k) for k in kept),
                        tuple(layer.out_channels - len(k) for layer, k in zip(layers, kept)))
