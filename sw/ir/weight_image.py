"""The sparse-index weight image (docs/format.md): writer, validating reader, hex memory files, manifest,
and storage accounting.

The binary image holds a whole :class:`~.golden.QuantizedNetwork`: a header (magic, version, network
description), one fixed-size descriptor per layer, one payload per layer (per output channel: its count
of nonzero kernel elements, bias and requant parameters; then every nonzero weight as an int8 value and a
compact ``(cin, ky, kx)`` bit-field index), and a CRC32. :func:`decode_image` checks everything and raises
:class:`ImageError` naming the offending field; it never returns a partially loaded network.
"""
from __future__ import annotations

import os
import re
import stat
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparsegate.sw.util.atomic_io import atomic_dir, write_bytes, write_json, write_text
from sparsegate.sw.ir.golden import (ACC_BITS, MAX_INPUTS, MAX_KERNEL, SHIFT_MAX, SHIFT_MIN, STRIDES, WEIGHT_MAX,
                                     IntLayer, QuantizedNetwork, conv_output_size, index_width, layer_sources)

MAGIC = b"SPGW"
VERSION = 2                 # 2: each layer names the tensors it reads; version 1 (a plain chain) still loads
VERSIONS = (1, 2)
HEADER = struct.Struct("<4sHHIHHHHHbBfI32s")        # 64 bytes
DESCRIPTOR = struct.Struct("<24s8B6H6BH3I2fBB3H")  # 80 bytes
CRC_BYTES = 4
KIND_CODES = {"conv": 0, "fc": 1}
FLAG_RELU, FLAG_POOL, FLAG_FLATTEN = 1, 2, 4
OUT_BITS = 8
MAX_IMAGE_BYTES = 64 << 20  # file size a version-1 reader accepts (refused before it is read)
MAX_WEIGHTS = 1 << 22  # dense kernel elements of all layers together: the reader builds them dense
MAX_FEATURE_MAP = 1 << 20  # elements of the input and of every layer's output (C*H*W)
NAME_BYTES = {"network": 32, "layer": 24}
IMAGE_NAME = "image.bin"
MANIFEST_NAME = "manifest.json"
HEX_DIR = "hex"

assert HEADER.size == 64 and DESCRIPTOR.size == 80


class ImageError(ValueError):
    """A weight image is malformed; ``field`` names what is wrong (magic, version, crc32, index, ...)."""

    def __init__(self, field: str, message: str, source: str | None = None):
        super().__init__(f"{source}: {field}: {message}" if source else f"{field}: {message}")
        self.field, self.message, self.source = field, message, source


# --------------------------------------------------------------------------------------- sparse encoding

def index_bytes(index_bits: int) -> int:
    """Bytes per stored index: 2 up to 16 index bits, else 4."""
    return 2 if index_bits <= 16 else 4


def _pad4(n: int) -> int:
    return (n + 3) & ~3


@dataclass
class SparseLayer:
    """A layer's nonzero kernel elements in walk order: per output channel ascending (cin, ky, kx)."""

    counts: np.ndarray   # uint32 (Cout,)
    values: np.ndarray   # int8 (nnz,)
    cin: np.ndarray      # (nnz,)
    ky: np.ndarray
    kx: np.ndarray
    index: np.ndarray    # packed: cin << (ky_bits + kx_bits) | ky << kx_bits | kx
    cin_bits: int
    ky_bits: int
    kx_bits: int

    @property
    def index_bits(self) -> int:
        return self.cin_bits + self.ky_bits + self.kx_bits

    @property
    def entry_words(self) -> np.ndarray:
        """On-chip entry words: value (8 bits, two's complement) above the index bits."""
        return ((self.values.astype(np.int64) & 0xFF) << self.index_bits) | self.index.astype(np.int64)


def sparse_layer(layer: IntLayer) -> SparseLayer:
    w = layer.weight4d
    ch, ci, ky, kx = np.nonzero(w)  # row-major: channel, then cin, ky, kx ascending
    cb, yb, xb = layer.index_bits
    index = (ci.astype(np.int64) << (yb + xb)) | (ky.astype(np.int64) << xb) | kx.astype(np.int64)
    counts = np.bincount(ch, minlength=layer.out_channels).astype(np.uint32)
    return SparseLayer(counts, w[ch, ci, ky, kx].astype(np.int8), ci, ky, kx, index, cb, yb, xb)


def _payload_size(cout: int, nnz: int, idx_bytes: int) -> int:
    head = _pad4(cout * (4 + 4 + 4 + 2 + 1))
    return head + _pad4(nnz) + _pad4(nnz * idx_bytes)


# -------------------------------------------------------------------------------------------------- writer

def _name_field(name: str, what: str) -> bytes:
    raw = name.encode("utf-8")
    limit = NAME_BYTES[what]
    if len(raw) >= limit or b"\0" in raw:
        raise ValueError(f"{what} name {name!r} must be at most {limit - 1} UTF-8 bytes without NUL")
    return raw


def _descriptor_shapes(layer: IntLayer) -> tuple[tuple, tuple]:
    if layer.kind == "fc":
        return (layer.in_channels, 1, 1), (layer.out_channels, 1, 1)
    return layer.in_shape, layer.out_shape


def encode_image(qnet: QuantizedNetwork) -> bytes:
    """The binary image of ``qnet`` (little-endian; see docs/format.md)."""
    qnet.validate()
    n = len(qnet.layers)
    offset = HEADER.size + n * DESCRIPTOR.size
    descriptors, payloads = [], []
    for layer, refs in zip(qnet.layers, layer_sources(qnet.layers)):
        sp = sparse_layer(layer)
        cout, nnz, ib = layer.out_channels, len(sp.values), index_bytes(sp.index_bits)
        (cin, hin, win), (_, hout, wout) = _descriptor_shapes(layer)
        kh, kw = layer.kernel
        flags = (FLAG_RELU * layer.relu) | (FLAG_POOL * layer.pool) | (FLAG_FLATTEN * layer.flatten_input)
        for v, what in ((cin, "in_channels"), (hin, "in_height"), (win, "in_width"), (cout, "out_channels")):
            if v > 0xFFFF:
                raise ValueError(f"layer {layer.name!r}: {what} {v} exceeds the format's 16-bit field")
        head = b"".join([sp.counts.astype("<u4").tobytes(), layer.bias.astype("<i4").tobytes(),
                         layer.weight_scale.astype("<f4").tobytes(), layer.mult.astype("<u2").tobytes(),
                         layer.shift.astype("u1").tobytes()])
        idx = sp.index.astype("<u2" if ib == 2 else "<u4").tobytes()
        payload = b"".join(part.ljust(_pad4(len(part)), b"\0") for part in (head, sp.values.tobytes(), idx))
        assert len(payload) == _payload_size(cout, nnz, ib)
        descriptors.append(DESCRIPTOR.pack(
            _name_field(layer.name, "layer"), KIND_CODES[layer.kind], flags, kh, kw, layer.stride,
            layer.padding, 0, 0, cin, hin, win, cout, hout, wout, sp.cin_bits, sp.ky_bits, sp.kx_bits, ib,
            OUT_BITS, layer.accumulator_bits(), 0, nnz, offset, len(payload), layer.in_scale, layer.out_scale,
            0, len(refs), refs[0], refs[1] if len(refs) > 1 else 0, 0))
        payloads.append(payload)
        offset += len(payload)
    total = offset + CRC_BYTES
    weights = sum(int(layer.weight.size) for layer in qnet.layers)
    biggest = max(int(np.prod(shape)) for shape in [qnet.input_shape] + [layer.out_shape for layer in qnet.layers])
    for value, limit, what in ((total, MAX_IMAGE_BYTES, "image bytes"), (weights, MAX_WEIGHTS, "dense kernel elements"),
                               (biggest, MAX_FEATURE_MAP, "elements in one feature map")):
        if value > limit:
            raise ValueError(f"network {qnet.name!r}: {value} {what} exceed the format limit of {limit}")
    c, h, w = qnet.input_shape
    header = HEADER.pack(MAGIC, VERSION, HEADER.size, total, n, DESCRIPTOR.size, c, h, w, 0, 0,
                         qnet.input_scale, 0, _name_field(qnet.name, "network"))
    body = header + b"".join(descriptors) + b"".join(payloads)
    return body + struct.pack("<I", zlib.crc32(body))


def write_image(path: str | Path, qnet: QuantizedNetwork) -> int:
    """Write the binary image atomically; returns its size in bytes."""
    data = encode_image(qnet)
    write_bytes(path, data)
    return len(data)


# -------------------------------------------------------------------------------------------------- reader

def _require(cond: bool, field: str, message: str) -> None:
    if not cond:
        raise ImageError(field, message)


def _decode_name(raw: bytes, field: str) -> str:
    end = raw.find(b"\0")
    _require(end >= 0, field, f"{len(raw)} bytes without a terminating NUL (a name holds at most {len(raw) - 1})")
    _require(not any(raw[end:]), field, "bytes after the terminating NUL must be NUL")
    raw = raw[:end]
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ImageError(field, f"not valid UTF-8 ({raw!r})") from None
    _require(bool(name) and "\0" not in name, field, f"empty or NUL inside ({raw!r})")
    return name


def printable(text: str) -> str:
    """``text`` with control and other unprintable characters escaped (``\\x1b``, ``\\n``): names come from
    files, and a name holding terminal escape sequences must not reach a terminal or a hex file raw."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def _finite_positive(v: float) -> bool:
    return bool(np.isfinite(v) and v > 0)


def _zero_padding(data: bytes, start: int, stop: int) -> bool:
    return not any(data[start:stop])


def _decode_layer(data: bytes, i: int, expected_offset: int, end: int, shapes: list, weights_before: int,
                  version: int) -> tuple[IntLayer, int]:
    base = HEADER.size + i * DESCRIPTOR.size
    (raw_name, kind, flags, kh, kw, stride, padding, in_zp, out_zp, cin, hin, win, cout, hout, wout,
     cin_bits, ky_bits, kx_bits, ib, out_bits, acc_bits, reserved, nnz, offset, size, in_scale,
     out_scale, reserved2, n_inputs, ref0, ref1, reserved3) = DESCRIPTOR.unpack_from(data, base)
    where = f"layer {i}"
    name = _decode_name(raw_name, f"{where} name")
    where = f"layer {i} ({name!r})"

    def need(cond, field, message):
        _require(cond, f"{where} {field}", message)

    need(kind in KIND_CODES.values(), "kind", f"unknown layer kind {kind} (expected 0=conv or 1=fc)")
    kind_name = "conv" if kind == 0 else "fc"
    need(flags & ~(FLAG_RELU | FLAG_POOL | FLAG_FLATTEN) == 0, "flags", f"unknown flag bits 0x{flags:02x}")
    relu, pool, flat = bool(flags & FLAG_RELU), bool(flags & FLAG_POOL), bool(flags & FLAG_FLATTEN)
    need(not (flat and kind != KIND_CODES["fc"]), "flags", "only an fc layer can flatten its input")
    need(in_zp == 0 and out_zp == 0, "zero_point",
         f"in/out zero points {in_zp}/{out_zp}; version {VERSION} is symmetric (zero point 0)")
    need(out_bits == OUT_BITS, "out_bits", f"{out_bits}, expected {OUT_BITS}")
    if version == 1:  # a plain chain: the trailing bytes are reserved, every layer reads the previous output
        need(_zero_padding(data, base + 72, base + DESCRIPTOR.size), "reserved", "reserved bytes must be 0")
        n_inputs, ref0 = 1, i
    need(reserved == 0 and reserved2 == 0 and reserved3 == 0, "reserved", "reserved bytes must be 0")
    need(1 <= n_inputs <= MAX_INPUTS and (n_inputs == 2 or ref1 == 0), "inputs",
         f"{n_inputs} input references ({ref0}, {ref1}); a layer reads 1 or {MAX_INPUTS} tensors")
    refs = (ref0, ref1)[:n_inputs]
    need(max(refs) <= i, "inputs", f"reference to tensor {max(refs)}: layer {i} reads the network input (0) or "
         f"an earlier layer's output (1..{i}), never a later one")
    parts = [tuple(shapes[r]) for r in refs]
    if n_inputs > 1:
        need(kind == KIND_CODES["conv"] and not flags & FLAG_FLATTEN, "inputs",
             "only a conv layer (without flatten) reads two tensors")
        need(all(len(p) == 3 for p in parts) and parts[0][1:] == parts[1][1:], "inputs",
             f"tensors {refs[0]} and {refs[1]} have shapes {' and '.join('x'.join(map(str, p)) for p in parts)}; "
             "concatenated tensors need the same height and width")
    prev_shape = (sum(p[0] for p in parts),) + parts[0][1:] if n_inputs > 1 else parts[0]
    in_shape = (int(np.prod(prev_shape)), 1, 1) if flat else tuple(prev_shape)
    if len(in_shape) == 1:
        in_shape = (in_shape[0], 1, 1)
    need(cin >= 1 and cout >= 1, "channels", f"in_channels {cin} and out_channels {cout} must be >= 1")
    if kind_name == "conv":
        need(1 <= kh <= MAX_KERNEL and 1 <= kw <= MAX_KERNEL, "kernel", f"{kh}x{kw} outside 1..{MAX_KERNEL}")
        need(stride in STRIDES, "stride", f"{stride}, expected one of {STRIDES}")
        need(padding < max(kh, kw), "padding", f"{padding} not below the kernel size {max(kh, kw)}")
        ho, wo = conv_output_size(hin, kh, stride, padding), conv_output_size(win, kw, stride, padding)
        need(ho >= 1 and wo >= 1, "kernel", f"{kh}x{kw} does not fit a {hin}x{win} input")
        if pool:
            need(ho >= 2 and wo >= 2, "flags", f"cannot 2x2-pool a {ho}x{wo} output")
            ho, wo = ho // 2, wo // 2
        need((hout, wout) == (ho, wo), "out_shape", f"{hout}x{wout}, but the geometry gives {ho}x{wo}")
    else:
        need((kh, kw, stride, padding, hin, win, hout, wout) == (1, 1, 1, 0, 1, 1, 1, 1), "geometry",
             "an fc layer has a 1x1 kernel, stride 1, padding 0 and 1x1 input and output planes")
        need(not pool, "flags", "an fc layer cannot pool")
    want_bits = (index_width(cin), index_width(kh), index_width(kw))
    need((cin_bits, ky_bits, kx_bits) == want_bits, "index_bits",
         f"cin/ky/kx bits {cin_bits}/{ky_bits}/{kx_bits}, expected {want_bits[0]}/{want_bits[1]}/{want_bits[2]}")
    index_bits = sum(want_bits)
    need(ib == index_bytes(index_bits), "index_bytes", f"{ib}, expected {index_bytes(index_bits)}")
    need(weights_before + cout * cin * kh * kw <= MAX_WEIGHTS, "weights",
         f"{cout}x{cin}x{kh}x{kw} dense kernel elements bring the network to "
         f"{weights_before + cout * cin * kh * kw}, over the format limit of {MAX_WEIGHTS}")
    need(cout * hout * wout <= MAX_FEATURE_MAP, "out_shape",
         f"{cout}x{hout}x{wout} output elements exceed the format limit of {MAX_FEATURE_MAP}")
    need((cin, hin, win) == in_shape, "in_shape",
         f"{cin}x{hin}x{win}, but the {'flattened ' if flat else ''}"
         f"{'previous output' if refs == (i,) else 'input (tensors ' + ', '.join(map(str, refs)) + ')'} is "
         f"{'x'.join(map(str, in_shape))}")
    need(nnz <= cout * cin * kh * kw, "nnz", f"{nnz} exceeds the {cout * cin * kh * kw} kernel elements")
    need(offset == expected_offset, "payload_offset", f"{offset}, expected {expected_offset}")
    need(size == _payload_size(cout, nnz, ib), "payload_size",
         f"{size}, but {cout} channels and {nnz} entries need {_payload_size(cout, nnz, ib)}")
    need(offset + size <= end, "payload_size", f"payload [{offset}, {offset + size}) runs past the CRC at {end}")
    need(_finite_positive(in_scale) and _finite_positive(out_scale), "scale",
         f"in/out scales {in_scale}/{out_scale} must be finite and positive")

    pos = offset
    counts = np.frombuffer(data, "<u4", cout, pos).astype(np.int64); pos += 4 * cout
    bias = np.frombuffer(data, "<i4", cout, pos).astype(np.int32); pos += 4 * cout
    w_scale = np.frombuffer(data, "<f4", cout, pos).astype(np.float32); pos += 4 * cout
    mult = np.frombuffer(data, "<u2", cout, pos).astype(np.uint16); pos += 2 * cout
    shift = np.frombuffer(data, "u1", cout, pos).astype(np.uint8)
    pos = offset + _pad4(cout * 15)
    values = np.frombuffer(data, "i1", nnz, pos).astype(np.int8); pos += _pad4(nnz)
    index = np.frombuffer(data, "<u2" if ib == 2 else "<u4", nnz, pos).astype(np.int64)
    need(_zero_padding(data, offset + 15 * cout, offset + _pad4(15 * cout))
         and _zero_padding(data, offset + _pad4(15 * cout) + nnz, offset + _pad4(15 * cout) + _pad4(nnz))
         and _zero_padding(data, pos + ib * nnz, offset + size), "padding", "padding bytes must be 0")

    per_channel = cin * kh * kw
    bad = np.flatnonzero(counts > per_channel)
    need(bad.size == 0, "counts", f"output channel {bad[0] if bad.size else 0} claims "
         f"{counts[bad[0]] if bad.size else 0} nonzeros, more than its {per_channel} kernel elements")
    need(int(counts.sum()) == nnz, "counts", f"per-channel counts sum to {int(counts.sum())}, but nnz is {nnz}")
    bad = np.flatnonzero((values == 0) | (values < -WEIGHT_MAX))
    need(bad.size == 0, "values", f"entry {bad[0] if bad.size else 0} has value "
         f"{values[bad[0]] if bad.size else 0}; stored weights are nonzero and in [-{WEIGHT_MAX}, {WEIGHT_MAX}]")
    need(bool(np.all((shift >= SHIFT_MIN) & (shift <= SHIFT_MAX))), "shift",
         f"values must lie in [{SHIFT_MIN}, {SHIFT_MAX}], got [{shift.min()}, {shift.max()}]")
    need(bool(np.all(np.isfinite(w_scale) & (w_scale > 0))), "weight_scale", "must be finite and positive")

    ci = index >> (ky_bits + kx_bits)
    ky = (index >> kx_bits) & ((1 << ky_bits) - 1)
    kx = index & ((1 << kx_bits) - 1)
    channel = np.repeat(np.arange(cout), counts)
    out_of_range = np.flatnonzero((ci >= cin) | (ky >= kh) | (kx >= kw))
    if out_of_range.size:
        e = int(out_of_range[0])
        raise ImageError(f"{where} index", f"entry {e} (output channel {channel[e]}) has in_channel "
                                           f"{ci[e]}, ky {ky[e]}, kx {kx[e]}; the layer has {cin} in_channels "
                                           f"and a {kh}x{kw} kernel (index out of range)")
    same = channel[1:] == channel[:-1]
    unordered = np.flatnonzero(same & (index[1:] <= index[:-1]))
    if unordered.size:
        e = int(unordered[0]) + 1
        raise ImageError(f"{where} index", f"entry {e} (output channel {channel[e]}) repeats or precedes "
                                           "the previous index; entries must be strictly ascending per channel")
    w4 = np.zeros((cout, cin, kh, kw), dtype=np.int8)
    w4[channel, ci, ky, kx] = values
    weight = w4 if kind_name == "conv" else w4.reshape(cout, cin)
    in_shape = (cin, hin, win) if kind_name == "conv" else (cin,)
    try:
        layer = IntLayer(name=name, kind=kind_name, weight=weight, bias=bias, mult=mult, shift=shift,
                         in_shape=in_shape, stride=stride, padding=padding, relu=relu, pool=pool,
                         flatten_input=flat, in_scale=in_scale, out_scale=out_scale, weight_scale=w_scale,
                         inputs=None if refs == (i,) else refs)
    except ValueError as err:
        raise ImageError(where, str(err)) from None
    need(acc_bits == layer.accumulator_bits() and acc_bits <= ACC_BITS, "acc_bits",
         f"{acc_bits}, but the weights and biases need {layer.accumulator_bits()} (at most {ACC_BITS})")
    return layer, offset + size


def decode_image(data: bytes, source: str = "image") -> QuantizedNetwork:
    """Parse and validate a binary image; raise :class:`ImageError` (prefixed by ``source``) if anything is
    wrong. Either the whole network comes back or nothing does."""
    try:
        return _decode(bytes(data))
    except ImageError as err:
        raise ImageError(err.field, err.message, source) from None
    except (struct.error, ValueError, IndexError, OverflowError, MemoryError) as err:  # a check was missed
        raise ImageError("image", f"malformed image ({type(err).__name__}: {err})", source) from None


def _decode(data: bytes) -> QuantizedNetwork:
    _require(len(data) >= len(MAGIC), "total_size", f"truncated: {len(data)} bytes, shorter than the magic")
    _require(data[:4] == MAGIC, "magic", f"{data[:4]!r} is not a sparsegate weight image (expected {MAGIC!r})")
    _require(len(data) >= HEADER.size, "total_size",
             f"truncated: {len(data)} bytes, shorter than the {HEADER.size}-byte header")
    (_, version, header_size, total, n_layers, desc_size, c, h, w, in_zp, flags, in_scale, reserved,
     raw_name) = HEADER.unpack_from(data, 0)
    _require(version in VERSIONS, "version",
             f"unsupported version {version} (this reader supports {', '.join(map(str, VERSIONS))})")
    _require(header_size == HEADER.size, "header_size", f"{header_size}, expected {HEADER.size}")
    _require(desc_size == DESCRIPTOR.size, "descriptor_size", f"{desc_size}, expected {DESCRIPTOR.size}")
    _require(total <= MAX_IMAGE_BYTES, "total_size",
             f"{total} bytes, more than the {MAX_IMAGE_BYTES} a version-1 image may hold")
    _require(len(data) >= total, "total_size", f"truncated: {len(data)} bytes, header says {total}")
    _require(len(data) == total, "total_size", f"{len(data) - total} trailing bytes after the {total}-byte image")
    stored = struct.unpack_from("<I", data, total - CRC_BYTES)[0] if total >= HEADER.size + CRC_BYTES else None
    _require(stored is not None, "total_size", f"{total} is smaller than a header and a CRC")
    actual = zlib.crc32(data[:total - CRC_BYTES])
    _require(stored == actual, "crc32", f"stored 0x{stored:08x}, computed 0x{actual:08x} (corrupt image)")
    _require(flags == 0 and reserved == 0, "flags", f"header flags/reserved {flags}/{reserved}, expected 0")
    _require(in_zp == 0, "zero_point", f"input zero point {in_zp}; version {VERSION} is symmetric")
    _require(min(c, h, w) >= 1, "input_shape", f"{c}x{h}x{w} must be at least 1x1x1")
    _require(c * h * w <= MAX_FEATURE_MAP, "input_shape",
             f"{c}x{h}x{w} input elements exceed the format limit of {MAX_FEATURE_MAP}")
    _require(_finite_positive(in_scale), "input_scale", f"{in_scale} must be finite and positive")
    name = _decode_name(raw_name, "name")
    _require(n_layers >= 1, "n_layers", "an image needs at least one layer")
    end = total - CRC_BYTES
    offset = HEADER.size + n_layers * DESCRIPTOR.size
    _require(offset <= end, "n_layers", f"{n_layers} descriptors do not fit in {total} bytes")
    layers = []
    shapes = [(c, h, w)]
    weights = 0
    for i in range(n_layers):
        layer, offset = _decode_layer(data, i, offset, end, shapes, weights, version)
        layers.append(layer)
        weights += int(layer.weight.size)
        shapes.append(layer.out_shape)
    _require(offset == end, "total_size", f"{end - offset} unused bytes between the last payload and the CRC")
    try:
        return QuantizedNetwork(name=name, input_shape=(c, h, w), input_scale=in_scale, layers=layers)
    except ValueError as err:
        raise ImageError("network", str(err)) from None


def read_image_bytes(path: str | Path) -> bytes:
    """The bytes of an image file. Only a regular file of at most :data:`MAX_IMAGE_BYTES` is read (a FIFO, a
    device, a directory or a larger file is refused before anything is read; opening never blocks)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as err:
        raise ImageError("file", f"cannot read ({err.strerror})", str(path)) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_IMAGE_BYTES:
        os.close(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageError("file", "not a regular file (a directory, FIFO or device cannot hold an image)",
                             str(path))
        raise ImageError("total_size", f"file is {st.st_size} bytes, more than the {MAX_IMAGE_BYTES} a "
                                       "version-1 image may hold", str(path))
    with os.fdopen(fd, "rb") as f:
        try:
            return f.read(MAX_IMAGE_BYTES + 1)
        except OSError as err:
            raise ImageError("file", f"cannot read ({err.strerror})", str(path)) from None


def read_image(path: str | Path) -> QuantizedNetwork:
    """Read and validate a binary image file (:func:`read_image_bytes`, :func:`decode_image`)."""
    return decode_image(read_image_bytes(path), str(path))


# ---------------------------------------------------------------------------------------- storage accounting

#: Sparse formats the image is compared with, for the weights and their indexes (biases and requantization
#: parameters are the same in every format and left out): int8 values throughout.
STORAGE_FORMATS = {
    "dense_fp32": "dense float32",
    "dense_int8": "dense int8",
    "csr32": "CSR, 32-bit indexes",                 # column index per nonzero, row pointers
    "relative4": "relative 4-bit (Deep Compression)",  # zeros skipped per entry, filler entries, row pointers
    "image": "this image",                          # packed (cin, ky, kx) index, per-channel count
}
RELATIVE_BITS = 4


def relative_index_entries(positions: np.ndarray, bits: int = RELATIVE_BITS) -> int:
    """Entries one row needs in relative indexing: each stores the zeros skipped since the previous entry in
    ``bits`` bits, so a run of more zeros than that holds is bridged by filler entries (a zero value)."""
    span = 1 << bits
    skipped = np.diff(np.concatenate([[-1], np.sort(positions)])) - 1
    return int(len(positions) + (skipped // span).sum())


def channel_count_bits(layer: IntLayer) -> int:
    """Bits of one output channel's nonzero count on chip (up to its fan-in)."""
    return max(1, int(layer.weight.size // layer.out_channels).bit_length())


def format_bits(layer: IntLayer, sp: SparseLayer) -> dict:
    """Bits of one layer's weights and indexes in each of :data:`STORAGE_FORMATS`."""
    weights, rows = int(layer.weight.size), layer.out_channels
    nnz = len(sp.values)
    flat = layer.weight4d.reshape(rows, -1)
    relative = sum(relative_index_entries(np.flatnonzero(flat[r])) for r in range(rows))
    return {"dense_fp32": 32 * weights, "dense_int8": 8 * weights, "csr32": nnz * (8 + 32) + 32 * (rows + 1),
            "relative4": relative * (8 + RELATIVE_BITS) + 32 * (rows + 1),
            "image": nnz * (8 + sp.index_bits) + rows * channel_count_bits(layer)}


def storage_report(qnet: QuantizedNetwork) -> dict:
    """Per-layer and total storage: nonzeros, index bits, bits per nonzero, and image bytes versus dense
    int8 (int8 weights + int32 biases) and float32 (weights + biases); and the weights with their indexes
    in each of :data:`STORAGE_FORMATS` (``formats``, bits per layer and in total)."""
    rows, formats = [], []
    for layer in qnet.layers:
        sp = sparse_layer(layer)
        formats.append(format_bits(layer, sp))
        nnz, cout = len(sp.values), layer.out_channels
        ib = index_bytes(sp.index_bits)
        weights = int(layer.weight.size)
        count_bits = channel_count_bits(layer)
        packed_bits = formats[-1]["image"]
        stream_bytes = 4 * cout + _pad4(nnz) + _pad4(nnz * ib)
        rows.append({
            "name": layer.name, "kind": layer.kind, "weights": weights, "nnz": nnz,
            "density": nnz / weights if weights else 0.0,
            "index_bits": sp.index_bits, "entry_bits": 8 + sp.index_bits, "count_bits": count_bits,
            "bits_per_nnz_packed": packed_bits / nnz if nnz else 0.0,
            "bits_per_nnz_image": 8 * stream_bytes / nnz if nnz else 0.0,
            "image_bytes": DESCRIPTOR.size + _payload_size(cout, nnz, ib),
            "dense_int8_bytes": weights + 4 * cout,
            "float32_bytes": 4 * (weights + cout),
            "acc_bits": layer.accumulator_bits(),
        })
    image_bytes = HEADER.size + sum(r["image_bytes"] for r in rows) + CRC_BYTES
    nnz = sum(r["nnz"] for r in rows)
    weights = sum(r["weights"] for r in rows)
    dense_int8 = sum(r["dense_int8_bytes"] for r in rows)
    float32 = sum(r["float32_bytes"] for r in rows)
    packed_bits = sum(r["bits_per_nnz_packed"] * r["nnz"] for r in rows)
    return {
        "layers": rows,
        "formats": {"layers": {layer.name: f for layer, f in zip(qnet.layers, formats)},
                    "total": {k: sum(f[k] for f in formats) for k in STORAGE_FORMATS}},
        "total": {
            "weights": weights, "nnz": nnz, "density": nnz / weights if weights else 0.0,
            "bits_per_nnz_packed": packed_bits / nnz if nnz else 0.0,
            "bits_per_nnz_image": 8 * image_bytes / nnz if nnz else 0.0,
            "image_bytes": image_bytes, "dense_int8_bytes": dense_int8, "float32_bytes": float32,
            "vs_dense_int8": image_bytes / dense_int8, "vs_float32": image_bytes / float32,
        },
    }


def format_storage_table(report: dict) -> str:
    head = (f"{'layer':<10} {'nnz':>8} {'weights':>8} {'density':>8} {'idx bits':>8} {'b/nnz':>6} "
            f"{'b/nnz img':>9} {'image B':>9} {'int8 B':>9} {'fp32 B':>9}")
    lines = [head, "-" * len(head)]
    for r in report["layers"]:
        lines.append(f"{printable(r['name']):<10} {r['nnz']:>8,} {r['weights']:>8,} {100 * r['density']:>7.1f}% "
                     f"{r['index_bits']:>8} {r['bits_per_nnz_packed']:>6.1f} {r['bits_per_nnz_image']:>9.1f} "
                     f"{r['image_bytes']:>9,} {r['dense_int8_bytes']:>9,} {r['float32_bytes']:>9,}")
    t = report["total"]
    lines.append("-" * len(head))
    lines.append(f"{'total':<10} {t['nnz']:>8,} {t['weights']:>8,} {100 * t['density']:>7.1f}% {'':>8} "
                 f"{t['bits_per_nnz_packed']:>6.1f} {t['bits_per_nnz_image']:>9.1f} {t['image_bytes']:>9,} "
                 f"{t['dense_int8_bytes']:>9,} {t['float32_bytes']:>9,}")
    lines.append(f"image is {100 * t['vs_dense_int8']:.1f}% of dense int8 and {100 * t['vs_float32']:.1f}% of "
                 "float32 (b/nnz: packed on-chip bits per nonzero incl. index and per-channel count; "
                 "b/nnz img: whole file bytes per nonzero in the total row)")
    formats = report.get("formats")
    if formats:
        ours = formats["total"]["image"]
        lines += ["", "weights + indexes (biases and requantization alike in every format):"]
        lines += [f"  {label:<34} {(bits + 7) // 8:>10,} B   image = {100 * ours / bits:5.1f}% of it"
                  for key, label in STORAGE_FORMATS.items() if (bits := formats["total"][key])]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ hex and manifest

def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _hex_lines(words, width: int) -> list[str]:
    digits = max(1, (width + 3) // 4)
    mask = (1 << width) - 1
    return [format(int(v) & mask, f"0{digits}x") for v in np.asarray(words, dtype=np.int64)]


def write_hex_files(directory: str | Path, qnet: QuantizedNetwork) -> dict:
    """``$readmemh`` files, one word per line after a ``//`` comment, per layer: ``entries`` (value above
    the packed index), ``counts``, ``bias`` (32-bit two's complement), ``mult`` (16), ``shift`` (6).
    Returns name -> {file: {path, width, depth}}, paths relative to ``directory``."""
    directory = Path(directory)
    result = {}
    for layer in qnet.layers:
        sp = sparse_layer(layer)
        cb, yb, xb = sp.cin_bits, sp.ky_bits, sp.kx_bits
        count_bits = channel_count_bits(layer)
        memories = {
            "entries": (sp.entry_words, 8 + sp.index_bits,
                        f"{{value[7:0], cin[{cb}], ky[{yb}], kx[{xb}]}} per nonzero, channel-major, "
                        "ascending (cin, ky, kx) within a channel"),
            "counts": (sp.counts, count_bits, "nonzero entries per output channel"),
            "bias": (layer.bias, 32, "int32 bias per output channel, two's complement"),
            "mult": (layer.mult, 16, "unsigned requant multiplier per output channel"),
            "shift": (layer.shift, 6, "requant right shift per output channel"),
        }
        files = {}
        for kind, (words, width, what) in memories.items():
            rel = f"{_safe(layer.name)}.{kind}.hex"
            lines = [f"// sparsegate {printable(qnet.name)} {printable(layer.name)} {kind}: {len(words)} x "
                     f"{width}-bit words: {what}"]
            write_text(directory / rel, "\n".join(lines + _hex_lines(words, width)) + "\n")
            files[kind] = {"path": rel, "width": width, "depth": int(len(words))}
        result[layer.name] = files
    return result


def manifest(qnet: QuantizedNetwork, image: bytes, hex_files: dict, storage: dict) -> dict:
    """A JSON-ready description of the image: network, arithmetic, per-layer layout and files, storage."""
    layers = []
    for layer, refs in zip(qnet.layers, layer_sources(qnet.layers)):
        sp = sparse_layer(layer)
        (cin, hin, win), out_shape = _descriptor_shapes(layer)
        layers.append({
            "name": layer.name, "kind": layer.kind, "inputs": list(refs), "in_shape": [cin, hin, win],
            "out_shape": list(out_shape),
            "kernel": list(layer.kernel), "stride": layer.stride, "padding": layer.padding,
            "relu": layer.relu, "pool": layer.pool, "flatten_input": layer.flatten_input,
            "in_zero_point": 0, "out_zero_point": 0, "in_scale": layer.in_scale, "out_scale": layer.out_scale,
            "nnz": int(len(sp.values)), "index_fields": {"cin": sp.cin_bits, "ky": sp.ky_bits, "kx": sp.kx_bits},
            "acc_bits": layer.accumulator_bits(), "files": hex_files.get(layer.name, {}),
        })
    return {
        "format": "sparsegate-weight-image", "version": VERSION, "network": qnet.name,
        "input": {"shape": list(qnet.input_shape), "scale": qnet.input_scale, "zero_point": 0},
        "arithmetic": {"activations": "int8, zero point 0", "weights": "int8 in [-127, 127], per-channel scale",
                       "bias": "int32", "accumulator_bits": ACC_BITS,
                       "requant": "y = (acc * mult + 2**(shift-1)) >> shift (round half up), mult uint16, "
                                  f"shift {SHIFT_MIN}..{SHIFT_MAX}",
                       "saturation": "clamp to [-128, 127]", "stage_order": "requant, saturate, relu, maxpool2x2"},
        "image": {"path": IMAGE_NAME, "bytes": len(image), "crc32": f"0x{zlib.crc32(image[:-4]):08x}"},
        "layers": layers,
        "storage": storage,
    }


#: What :func:`export_image` can write: the binary image, the ``$readmemh`` files, the JSON manifest.
EXPORT_FORMATS = ("image", "hex", "json")


#: What an export folder may hold: a folder with anything else is not replaced.
EXPORT_NAMES = (IMAGE_NAME, HEX_DIR, MANIFEST_NAME)


class ExportError(ValueError):
    """An export cannot be written where it was asked for (a file, or a folder holding other files)."""


def export_image(qnet: QuantizedNetwork, out_dir: str | Path, formats=EXPORT_FORMATS) -> dict:
    """Write ``image.bin`` (``image``), ``hex/*.hex`` (``hex``) and ``manifest.json`` (``json``), those named
    in ``formats``, as the folder ``out_dir``; return the manifest (it lists the hex files only if written).

    The export is written into a staging folder beside ``out_dir`` and swapped in whole, so ``out_dir`` holds
    either the earlier export or this one, never a mix, and nothing of an earlier export survives. A folder
    holding anything but an export's files is refused (:class:`ExportError`), not replaced."""
    unknown = sorted(set(formats) - set(EXPORT_FORMATS))
    if unknown or not formats:
        raise ValueError(f"export formats must be among {', '.join(EXPORT_FORMATS)}, got {list(formats)}")
    out_dir = Path(out_dir)
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise ExportError(f"{out_dir}: not a folder")
    foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in EXPORT_NAMES) if out_dir.is_dir() else []
    if foreign:
        raise ExportError(f"{out_dir}: holds files that are not an export ({', '.join(map(repr, foreign[:5]))}"
                          f"{', ...' if len(foreign) > 5 else ''}); export into a new folder or an earlier export")
    image = encode_image(qnet)
    decode_image(image, "freshly encoded image")  # never write an image the reader would reject
    storage = storage_report(qnet)
    assert storage["total"]["image_bytes"] == len(image)
    with atomic_dir(out_dir, "export") as stage:
        hex_files = write_hex_files(stage / HEX_DIR, qnet) if "hex" in formats else {}
        hex_files = {k: {m: {**f, "path": f"{HEX_DIR}/{f['path']}"} for m, f in v.items()}
                     for k, v in hex_files.items()}
        if "image" in formats:
            write_bytes(stage / IMAGE_NAME, image)
        doc = manifest(qnet, image, hex_files, storage)
        if "json" in formats:
            write_json(stage / MANIFEST_NAME, doc)
    return doc
