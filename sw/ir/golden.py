"""The integer golden model: the one definition of the engine's arithmetic (see docs/arithmetic.md).

Everything here is numpy on integers only. Each layer is

    acc = sum(w * x) + bias            (int64 here; the quantizer guarantees it fits int32)
    y   = (acc * mult + 2**(shift-1)) >> shift    (per output channel; round half toward +inf)
    y   = clamp(y, -128, 127)          (saturation, never wrap-around)
    y   = max(y, 0)                    (optional fused ReLU)
    y   = maxpool2x2(y)                (optional fused 2x2/stride-2 max-pool, floor size)

A layer reads the previous layer's output, or (``IntLayer.inputs``) tensors named by reference: 0 is the
network input, ``k`` the output of layer ``k - 1``. A conv layer may read two tensors of the same height and
width: their channel concatenation, the first one's channels first. A residual add is such a layer, a 1x1
conv with two nonzero weights per output channel (:mod:`~.residual`).

Activations and weights are int8 with zero point 0; weights are in [-127, 127]. ``mult`` is an unsigned
16-bit integer and ``shift`` is in [1, 47]. The RTL tests, the quantized accuracy and the simulator all call
this module; :func:`run_network` returns every layer's output so hardware can be compared layer by layer.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

INT8_MIN, INT8_MAX = -128, 127
WEIGHT_MAX = 127            # weights are symmetric: [-127, 127]; -128 is never produced or accepted
ACC_BITS = 32               # accumulator width of the engine (signed)
ACC_MIN, ACC_MAX = -(1 << (ACC_BITS - 1)), (1 << (ACC_BITS - 1)) - 1
MULT_BITS = 16              # requant multiplier: unsigned, 0 .. 2**16 - 1
MULT_MAX = (1 << MULT_BITS) - 1
SHIFT_MIN, SHIFT_MAX = 1, 47
MAX_KERNEL = 7
STRIDES = (1, 2)
KINDS = ("conv", "fc")
MAX_INPUTS = 2              # tensors one layer reads (their channel concatenation)


class AccumulatorOverflow(ArithmeticError):
    """An accumulator (sum of products plus bias) left the signed 32-bit range of the engine."""


def _int_array(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, got dtype {x.dtype}")
    return x


def _check_range(x: np.ndarray, lo: int, hi: int, name: str) -> None:
    if x.size and (int(x.min()) < lo or int(x.max()) > hi):
        raise ValueError(f"{name} values must lie in [{lo}, {hi}], got [{int(x.min())}, {int(x.max())}]")


# ----------------------------------------------------------------------------------------- layer functions

def saturate_int8(v) -> np.ndarray:
    """Clamp to [-128, 127] and return int8 (saturation: never wrap-around)."""
    v = _int_array(v, "value")
    return np.clip(v, INT8_MIN, INT8_MAX).astype(np.int8)


def rounding_shift(v, shift) -> np.ndarray:
    """``(v + 2**(shift-1)) >> shift`` with an arithmetic (flooring) shift: round half toward +infinity."""
    v = _int_array(v, "value").astype(np.int64)
    shift = _int_array(shift, "shift").astype(np.int64)
    _check_range(shift, SHIFT_MIN, SHIFT_MAX, "shift")
    return np.right_shift(v + np.left_shift(np.int64(1), shift - 1), shift)


def _per_channel(param, ndim: int, channels: int, name: str) -> np.ndarray:
    p = _int_array(param, name).astype(np.int64)
    if p.ndim == 0:
        return p
    if p.shape != (channels,):
        raise ValueError(f"{name} has shape {p.shape}, expected ({channels},) (one per output channel)")
    return p.reshape((1, channels) + (1,) * (ndim - 2))


def requantize(acc, mult, shift) -> np.ndarray:
    """int32 accumulators (axis 1 = output channel) to int8: multiply, rounding shift, saturate.

    ``mult`` and ``shift`` are scalars or one value per output channel (axis 1 of ``acc``).
    """
    acc = _int_array(acc, "acc").astype(np.int64)
    check_accumulator(acc)
    if acc.ndim < 2:
        raise ValueError(f"acc must have a batch and a channel axis, got shape {acc.shape}")
    m = _per_channel(mult, acc.ndim, acc.shape[1], "mult")
    s = _per_channel(shift, acc.ndim, acc.shape[1], "shift")
    _check_range(m, 0, MULT_MAX, "mult")
    _check_range(s, SHIFT_MIN, SHIFT_MAX, "shift")
    # |acc| < 2**31 and mult < 2**16: the product and the rounding term stay far inside int64.
    return saturate_int8(rounding_shift(acc * m, s))


def relu_int(x) -> np.ndarray:
    x = _int_array(x, "x")
    return np.maximum(x, 0).astype(x.dtype)


def maxpool2x2(x) -> np.ndarray:
    """2x2 max-pool, stride 2, no padding; odd trailing rows/columns are dropped (floor), as in PyTorch."""
    x = _int_array(x, "x")
    if x.ndim != 4:
        raise ValueError(f"maxpool2x2 expects (N, C, H, W), got shape {x.shape}")
    n, c, h, w = x.shape
    if h < 2 or w < 2:
        raise ValueError(f"maxpool2x2 needs at least 2x2 input, got {h}x{w}")
    h2, w2 = h // 2, w // 2
    return x[:, :, :2 * h2, :2 * w2].reshape(n, c, h2, 2, w2, 2).max(axis=(3, 5))


def flatten(x) -> np.ndarray:
    """(N, C, H, W) -> (N, C*H*W) in C-major order (channel, row, column), as ``torch.flatten(x, 1)``."""
    x = _int_array(x, "x")
    return x.reshape(x.shape[0], -1)


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def conv2d_acc(x, w, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Sum of products of a zero-padded 2-D convolution (cross-correlation, as PyTorch), int64, no bias.

    ``x``: (N, Cin, H, W) integers; ``w``: (Cout, Cin, KH, KW) integers. Returns (N, Cout, Ho, Wo).
    """
    x = _int_array(x, "x").astype(np.int64)
    w = _int_array(w, "w").astype(np.int64)
    if x.ndim != 4 or w.ndim != 4:
        raise ValueError(f"conv2d expects x (N, Cin, H, W) and w (Cout, Cin, KH, KW), got {x.shape}, {w.shape}")
    n, cin, h, wd = x.shape
    cout, wcin, kh, kw = w.shape
    if wcin != cin:
        raise ValueError(f"conv2d: input has {cin} channels, weights expect {wcin}")
    if stride < 1 or padding < 0:
        raise ValueError(f"conv2d: stride must be >= 1 and padding >= 0, got {stride}, {padding}")
    ho, wo = conv_output_size(h, kh, stride, padding), conv_output_size(wd, kw, stride, padding)
    if ho < 1 or wo < 1:
        raise ValueError(f"conv2d: {kh}x{kw} kernel does not fit a {h}x{wd} input with padding {padding}")
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))
    windows = windows[:, :, : stride * (ho - 1) + 1: stride, : stride * (wo - 1) + 1: stride]
    cols = windows.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, cin * kh * kw)
    acc = cols @ w.reshape(cout, cin * kh * kw).T
    return acc.reshape(n, ho, wo, cout).transpose(0, 3, 1, 2)


def sparse_entries(w) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per output channel, its nonzero kernel elements ``(cin, ky, kx, value)`` in the engine's walk order
    (ascending cin, then ky, then kx). ``w``: (Cout, Cin, KH, KW)."""
    w = _int_array(w, "w")
    out = []
    for c in range(w.shape[0]):
        ci, ky, kx = np.nonzero(w[c])  # row-major order: exactly (cin, ky, kx) ascending
        out.append((ci, ky, kx, w[c, ci, ky, kx].astype(np.int64)))
    return out


def conv2d_acc_sparse(x, w, stride: int = 1, padding: int = 0) -> np.ndarray:
    """The same sums as :func:`conv2d_acc`, computed the way the engine does: for every output channel,
    walk its nonzero kernel elements and broadcast each one to all output pixels (the lanes), each lane
    reading the padded input plane ``cin`` shifted by (ky, kx). A reference for the RTL, not for speed."""
    x = _int_array(x, "x").astype(np.int64)
    w = _int_array(w, "w")
    n, cin, h, wd = x.shape
    cout, _, kh, kw = w.shape
    ho, wo = conv_output_size(h, kh, stride, padding), conv_output_size(wd, kw, stride, padding)
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    acc = np.zeros((n, cout, ho, wo), dtype=np.int64)
    for c, (cis, kys, kxs, values) in enumerate(sparse_entries(w)):
        for ci, ky, kx, v in zip(cis, kys, kxs, values):
            acc[:, c] += v * xp[:, ci, ky: ky + stride * (ho - 1) + 1: stride, kx: kx + stride * (wo - 1) + 1: stride]
    return acc


def linear_acc(x, w) -> np.ndarray:
    """Sum of products of a fully connected layer, int64, no bias. ``x``: (N, Cin); ``w``: (Cout, Cin)."""
    x = _int_array(x, "x").astype(np.int64)
    w = _int_array(w, "w").astype(np.int64)
    if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"linear expects x (N, Cin) and w (Cout, Cin), got {x.shape}, {w.shape}")
    return x @ w.T


def check_accumulator(acc: np.ndarray) -> None:
    """Raise :class:`AccumulatorOverflow` if any accumulator leaves the signed 32-bit range."""
    if acc.size and (int(acc.min()) < ACC_MIN or int(acc.max()) > ACC_MAX):
        raise AccumulatorOverflow(f"accumulator range [{int(acc.min())}, {int(acc.max())}] exceeds "
                                  f"the {ACC_BITS}-bit accumulator of the engine")


def _add_bias(acc: np.ndarray, bias) -> np.ndarray:
    bias = _int_array(bias, "bias").astype(np.int64)
    if bias.shape != (acc.shape[1],):
        raise ValueError(f"bias has shape {bias.shape}, expected ({acc.shape[1]},)")
    acc = acc + bias.reshape((1, -1) + (1,) * (acc.ndim - 2))
    check_accumulator(acc)
    return acc


def conv2d_int(x, w, bias, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Convolution accumulators plus int32 bias: int64 values guaranteed to fit int32 (else it raises)."""
    return _add_bias(conv2d_acc(x, w, stride, padding), bias)


def linear_int(x, w, bias) -> np.ndarray:
    """Fully connected accumulators plus int32 bias (int64 values that fit int32, else it raises)."""
    return _add_bias(linear_acc(x, w), bias)


def output_stage(acc, mult, shift, relu: bool = False, pool: bool = False) -> np.ndarray:
    """The engine's fused output stage on biased accumulators: requant, saturate, ReLU, 2x2 max-pool."""
    y = requantize(acc, mult, shift)
    if relu:
        y = relu_int(y)
    if pool:
        y = maxpool2x2(y)
    return y


# --------------------------------------------------------------------------------------- layers and network

def index_width(n: int) -> int:
    """Bits of an unsigned index into ``n`` items, 0 .. n-1 (0 bits when n == 1): the one width rule of the
    image's index fields, the compiler's address fields and the index-cost accounting."""
    return max(0, int(n) - 1).bit_length()


@dataclass(eq=False)
class IntLayer:
    """One layer of the integer network, as the engine executes it.

    ``weight``: int8, (Cout, Cin, KH, KW) for ``conv``, (Cout, Cin) for ``fc``. ``in_shape`` is the input
    the layer sees: (Cin, H, W) for conv, (Cin,) for fc (after ``flatten_input`` flattening, if set).
    Scales are float metadata (real value = scale * integer); the integer path never uses them.
    """

    name: str
    kind: str
    weight: np.ndarray
    bias: np.ndarray            # int32, (Cout,)
    mult: np.ndarray            # uint16, (Cout,)
    shift: np.ndarray           # uint8, (Cout,), in [SHIFT_MIN, SHIFT_MAX]
    in_shape: tuple
    stride: int = 1
    padding: int = 0
    relu: bool = False
    pool: bool = False
    flatten_input: bool = False
    in_scale: float = 1.0
    out_scale: float = 1.0
    weight_scale: np.ndarray = field(default=None)  # float32, (Cout,)
    inputs: tuple | None = None  # tensor references (0 = network input, k = layer k-1); None = the previous

    def __post_init__(self):
        self.weight = np.asarray(self.weight)
        self.bias = np.asarray(self.bias)
        self.mult = np.asarray(self.mult)
        self.shift = np.asarray(self.shift)
        self.in_shape = tuple(int(s) for s in self.in_shape)
        # Scales are float32 metadata (that is what the weight image stores), so round them once here.
        self.in_scale, self.out_scale = float(np.float32(self.in_scale)), float(np.float32(self.out_scale))
        if self.weight_scale is None:
            self.weight_scale = np.ones(self.weight.shape[0] if self.weight.ndim else 0, dtype=np.float32)
        self.weight_scale = np.asarray(self.weight_scale, dtype=np.float32)
        if self.inputs is not None:
            self.inputs = tuple(int(r) for r in self.inputs)
        self.validate()

    # geometry ---------------------------------------------------------------------------------------
    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    @property
    def in_channels(self) -> int:
        return int(self.weight.shape[1])

    @property
    def kernel(self) -> tuple[int, int]:
        return (int(self.weight.shape[2]), int(self.weight.shape[3])) if self.kind == "conv" else (1, 1)

    @property
    def conv_shape(self) -> tuple:
        """Output shape before the optional pool."""
        if self.kind == "fc":
            return (self.out_channels,)
        _, h, w = self.in_shape
        kh, kw = self.kernel
        return (self.out_channels, conv_output_size(h, kh, self.stride, self.padding),
                conv_output_size(w, kw, self.stride, self.padding))

    @property
    def out_shape(self) -> tuple:
        shape = self.conv_shape
        if self.pool:
            return (shape[0], shape[1] // 2, shape[2] // 2)
        return shape

    @property
    def weight4d(self) -> np.ndarray:
        """Weights as (Cout, Cin, KH, KW); an fc layer is a 1x1 kernel over a (Cin, 1, 1) input."""
        return self.weight if self.kind == "conv" else self.weight.reshape(self.out_channels, self.in_channels, 1, 1)

    @property
    def nnz(self) -> int:
        return int(np.count_nonzero(self.weight))

    @property
    def index_bits(self) -> tuple[int, int, int]:
        """(cin_bits, ky_bits, kx_bits) of the compact sparse index."""
        kh, kw = self.kernel
        return index_width(self.in_channels), index_width(kh), index_width(kw)

    def accumulator_bound(self) -> int:
        """Worst case |sum(w*x) + bias| over all int8 inputs, over all output channels."""
        w = np.abs(self.weight.astype(np.int64)).reshape(self.out_channels, -1).sum(axis=1)
        return int((w * 128 + np.abs(self.bias.astype(np.int64))).max(initial=0))

    def accumulator_bits(self) -> int:
        """Signed accumulator width that can never overflow for this layer."""
        return self.accumulator_bound().bit_length() + 1

    def validate(self) -> None:
        """Raise ValueError unless the layer is executable by the engine."""
        name = f"layer {self.name!r}"
        if self.kind not in KINDS:
            raise ValueError(f"{name}: kind must be one of {KINDS}, got {self.kind!r}")
        want_ndim = 4 if self.kind == "conv" else 2
        if self.weight.ndim != want_ndim:
            raise ValueError(f"{name}: {self.kind} weight must be {want_ndim}-D, got shape {self.weight.shape}")
        if self.weight.dtype != np.int8:
            raise ValueError(f"{name}: weight dtype must be int8, got {self.weight.dtype}")
        _check_range(self.weight, -WEIGHT_MAX, WEIGHT_MAX, f"{name}: weight")
        cout = self.out_channels
        for arr, attr, dtype in ((self.bias, "bias", np.int32), (self.mult, "mult", np.uint16),
                                 (self.shift, "shift", np.uint8)):
            if arr.shape != (cout,):
                raise ValueError(f"{name}: {attr} has shape {arr.shape}, expected ({cout},)")
            if arr.dtype != dtype:
                raise ValueError(f"{name}: {attr} dtype must be {np.dtype(dtype)}, got {arr.dtype}")
        if self.weight_scale.shape != (cout,):
            raise ValueError(f"{name}: weight_scale has shape {self.weight_scale.shape}, expected ({cout},)")
        _check_range(self.shift, SHIFT_MIN, SHIFT_MAX, f"{name}: shift")
        if self.kind == "conv":
            kh, kw = self.kernel
            if not (1 <= kh <= MAX_KERNEL and 1 <= kw <= MAX_KERNEL):
                raise ValueError(f"{name}: kernel {kh}x{kw} outside 1..{MAX_KERNEL}")
            if self.stride not in STRIDES:
                raise ValueError(f"{name}: stride must be one of {STRIDES}, got {self.stride}")
            if not 0 <= self.padding < max(kh, kw):
                raise ValueError(f"{name}: padding must be in [0, {max(kh, kw) - 1}], got {self.padding}")
            if len(self.in_shape) != 3 or self.in_shape[0] != self.in_channels:
                raise ValueError(f"{name}: in_shape {self.in_shape} does not match {self.in_channels} input channels")
            if min(self.conv_shape[1:]) < 1:
                raise ValueError(f"{name}: kernel {kh}x{kw} does not fit input {self.in_shape}")
        else:
            if self.stride != 1 or self.padding != 0:
                raise ValueError(f"{name}: fc layers have stride 1 and padding 0")
            if self.in_shape != (self.in_channels,):
                raise ValueError(f"{name}: in_shape {self.in_shape} does not match {self.in_channels} inputs")
            if self.pool:
                raise ValueError(f"{name}: fc layers cannot pool")
        if self.inputs is not None:
            if not 1 <= len(self.inputs) <= MAX_INPUTS or min(self.inputs) < 0:
                raise ValueError(f"{name}: inputs {self.inputs}: one or {MAX_INPUTS} tensor references >= 0")
            if len(self.inputs) > 1 and (self.kind != "conv" or self.flatten_input):
                raise ValueError(f"{name}: only a conv layer reads several tensors (their concatenation)")
        if self.pool and min(self.conv_shape[1:]) < 2:
            raise ValueError(f"{name}: cannot 2x2-pool a {self.conv_shape[1:]} output")
        for attr in ("in_scale", "out_scale"):
            v = getattr(self, attr)
            if not (np.isfinite(v) and v > 0):
                raise ValueError(f"{name}: {attr} must be finite and positive, got {v}")
        if self.accumulator_bound() > ACC_MAX:
            raise ValueError(f"{name}: worst-case accumulator {self.accumulator_bound()} exceeds {ACC_BITS} bits")

    def accumulate(self, x) -> np.ndarray:
        """Biased accumulators (int64 holding int32 values) for input ``x`` (after any flattening)."""
        if self.kind == "conv":
            return conv2d_int(x, self.weight, self.bias, self.stride, self.padding)
        return linear_int(x, self.weight, self.bias)

    def forward(self, x, return_acc: bool = False):
        """int8 input -> int8 output of this layer (flattening first when ``flatten_input``)."""
        x = _int_array(x, "x")
        if self.flatten_input:
            x = flatten(x)
        if tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(f"layer {self.name!r}: input shape {tuple(x.shape[1:])}, expected {self.in_shape}")
        acc = self.accumulate(x)
        y = output_stage(acc, self.mult, self.shift, self.relu, self.pool)
        return (y, acc) if return_acc else y

    def equals(self, other: "IntLayer") -> bool:
        scalars = ("name", "kind", "in_shape", "stride", "padding", "relu", "pool", "flatten_input",
                   "in_scale", "out_scale", "inputs")
        arrays = ("weight", "bias", "mult", "shift", "weight_scale")
        return (all(getattr(self, a) == getattr(other, a) for a in scalars)
                and all(getattr(self, a).dtype == getattr(other, a).dtype
                        and np.array_equal(getattr(self, a), getattr(other, a)) for a in arrays))


def layer_sources(layers: list[IntLayer]) -> list[tuple]:
    """Per layer, the tensors it reads: 0 = the network input, ``k`` = the output of layer ``k - 1``."""
    return [layer.inputs if layer.inputs is not None else (i,) for i, layer in enumerate(layers)]


def gather_input(tensors: list, refs: tuple) -> np.ndarray:
    """A layer's input from the tensors so far: one tensor, or the channel concatenation (axis 1) of several."""
    return tensors[refs[0]] if len(refs) == 1 else np.concatenate([tensors[r] for r in refs], axis=1)


def run_network(x, layers: list[IntLayer]) -> list[np.ndarray]:
    """Run int8 input ``x`` (N, C, H, W) through ``layers``; return every layer's int8 output, in order."""
    x = _int_array(x, "x")
    _check_range(x, INT8_MIN, INT8_MAX, "input")
    tensors = [x]
    for i, (layer, refs) in enumerate(zip(layers, layer_sources(layers))):
        if max(refs) > i:
            raise ValueError(f"layer {layer.name!r} reads tensor {max(refs)}, which is not computed before it")
        tensors.append(layer.forward(gather_input(tensors, refs)))
    return tensors[1:]


@dataclass(eq=False)
class QuantizedNetwork:
    """A whole integer network: the input quantizer (scale, zero point 0) and its layers.

    The real value of the input is ``input_scale * x_int8``; of the logits, ``layers[-1].out_scale * y``.
    """

    name: str
    input_shape: tuple
    input_scale: float
    layers: list[IntLayer]

    def __post_init__(self):
        self.input_shape = tuple(int(s) for s in self.input_shape)
        self.input_scale = float(np.float32(self.input_scale))
        for i, layer in enumerate(self.layers):  # one spelling of "the previous output": no reference
            if layer.inputs == (i,):
                layer.inputs = None
        self.validate()

    @property
    def is_chain(self) -> bool:
        """Every layer reads the previous layer's output (no tensor references)."""
        return all(layer.inputs is None for layer in self.layers)

    def validate(self) -> None:
        """Raise ValueError unless the layers chain: each input shape is the output shape of the tensor(s) it
        reads (the previous layer's, or those its ``inputs`` name, concatenated), its scale the first one's."""
        if len(self.input_shape) != 3:
            raise ValueError(f"input_shape must be (C, H, W), got {self.input_shape}")
        if not self.layers:
            raise ValueError("a network needs at least one layer")
        if not (np.isfinite(self.input_scale) and self.input_scale > 0):
            raise ValueError(f"input_scale must be finite and positive, got {self.input_scale}")
        shapes, scales = [self.input_shape], [self.input_scale]
        names = set()
        for i, (layer, refs) in enumerate(zip(self.layers, layer_sources(self.layers))):
            if layer.name in names:
                raise ValueError(f"duplicate layer name {layer.name!r}")
            names.add(layer.name)
            if max(refs) > i:
                raise ValueError(f"layer {layer.name!r}: reads tensor {max(refs)}, but only the input (0) and the "
                                 f"outputs of the layers before it (1..{i}) exist there")
            parts = [shapes[r] for r in refs]
            if len(parts) > 1 and (any(len(p) != 3 for p in parts) or len({p[1:] for p in parts}) != 1):
                raise ValueError(f"layer {layer.name!r}: concatenates tensors of shapes {parts}; they need the "
                                 "same height and width")
            shape = (sum(p[0] for p in parts),) + parts[0][1:] if len(parts) > 1 else parts[0]
            what = "the previous output" if layer.inputs is None else f"tensor(s) {refs}"
            expected = (int(np.prod(shape)),) if layer.flatten_input else shape
            if layer.in_shape != expected:
                raise ValueError(f"layer {layer.name!r}: in_shape {layer.in_shape}, but {what} "
                                 f"is {shape}{' (flattened)' if layer.flatten_input else ''}")
            if layer.in_scale != scales[refs[0]]:
                raise ValueError(f"layer {layer.name!r}: in_scale {layer.in_scale} differs from the output scale "
                                 f"{scales[refs[0]]} of {what}")
            shapes.append(layer.out_shape)
            scales.append(layer.out_scale)

    def quantize_input(self, x) -> np.ndarray:
        """Float input (already normalised as for the float model) to int8: round half to even, saturate.
        This is the host-side step before the engine; it is the only float operation of the pipeline."""
        q = np.rint(np.asarray(x, dtype=np.float64) / self.input_scale)
        return np.clip(q, INT8_MIN, INT8_MAX).astype(np.int8)

    def run(self, x_int8) -> list[np.ndarray]:
        """Every layer's int8 output for int8 input (N, C, H, W): the golden reference for the engine."""
        x_int8 = _int_array(x_int8, "x")
        if tuple(x_int8.shape[1:]) != self.input_shape:
            raise ValueError(f"input shape {tuple(x_int8.shape[1:])}, expected {self.input_shape}")
        return run_network(x_int8, self.layers)

    def logits(self, x_int8) -> np.ndarray:
        return self.run(x_int8)[-1]

    def predict(self, x_float, batch_size: int = 250) -> np.ndarray:
        """Class predictions (argmax of the int8 logits, first index on ties) for float inputs."""
        x_float = np.asarray(x_float)
        if x_float.ndim == 2 and len(self.input_shape) == 3 and self.input_shape[1:] == (1, 1):
            x_float = x_float.reshape(len(x_float), *self.input_shape)  # vectors of a (features, 1, 1) network
        out = [self.logits(self.quantize_input(x_float[i:i + batch_size])).argmax(axis=1)
               for i in range(0, len(x_float), batch_size)]
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def equals(self, other: "QuantizedNetwork") -> bool:
        return (self.name == other.name and self.input_shape == other.input_shape
                and self.input_scale == other.input_scale and len(self.layers) == len(other.layers)
                and all(a.equals(b) for a, b in zip(self.layers, other.layers)))
