"""What a weight image holds, layer by layer: shape, kernel, fused ops, nonzeros, empty channels, index
and accumulator widths — computed from the decoded network alone (``sparsegate inspect``)."""
from __future__ import annotations

from dataclasses import dataclass

from sparsegate.sw.ir.golden import QuantizedNetwork
from sparsegate.sw.ir.weight_image import sparse_layer


@dataclass
class LayerSummary:
    name: str
    kind: str
    in_shape: str  # "CxHxW" or "N"
    out_shape: str
    kernel: str  # "KxK/sS/pP" for conv, "-" for fc
    ops: str  # "relu+pool", "relu", "-"
    nnz: int
    weights: int
    empty_channels: int  # output channels without a nonzero weight
    index_bits: str  # total (in-channel + ky + kx bits)
    acc_bits: int

    def to_dict(self) -> dict:
        """The ``sparsegate inspect --json`` row (``in``/``out`` keys for the shapes)."""
        return {"name": self.name, "kind": self.kind, "in": self.in_shape, "out": self.out_shape,
                "kernel": self.kernel, "ops": self.ops, "nnz": self.nnz, "weights": self.weights,
                "empty_channels": self.empty_channels, "index_bits": self.index_bits, "acc_bits": self.acc_bits}


def layer_summaries(qnet: QuantizedNetwork) -> list[LayerSummary]:
    """One summary per layer of ``qnet``, in order."""
    rows = []
    for layer in qnet.layers:
        sp = sparse_layer(layer)
        kernel = f"{layer.weight.shape[2]}x{layer.weight.shape[3]}/s{layer.stride}/p{layer.padding}" \
            if layer.kind == "conv" else "-"
        ops = "+".join(op for op, on in (("relu", layer.relu), ("pool", layer.pool)) if on) or "-"
        rows.append(LayerSummary(name=layer.name, kind=layer.kind, in_shape="x".join(map(str, layer.in_shape)),
                                 out_shape="x".join(map(str, layer.out_shape)), kernel=kernel, ops=ops,
                                 nnz=len(sp.values), weights=int(layer.weight.size),
                                 empty_channels=int((sp.counts == 0).sum()),
                                 index_bits=f"{sp.index_bits} ({sp.cin_bits}+{sp.ky_bits}+{sp.kx_bits})",
                                 acc_bits=layer.accumulator_bits()))
    return rows
