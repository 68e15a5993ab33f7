"""Weight images built field by field, for the hostile-input tests: huge declared layers and inputs that no
:class:`~sparsegate.sw.ir.golden.QuantizedNetwork` could be built for (so ``encode_image`` cannot make them)."""
from __future__ import annotations

import struct
import zlib

from sparsegate.sw.ir.weight_image import DESCRIPTOR, HEADER


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


def recrc(data: bytes) -> bytes:
    return with_crc(bytes(data[:-4]))


def raw_image(input_shape, kind, cin, cout, hw_in=(1, 1), hw_out=(1, 1), kernel=(1, 1), nnz=0,
              flags=None) -> bytes:
    """A format-valid one-layer image built field by field (no dense weights ever exist): ``nnz`` entries
    of value 1 at indexes 0..nnz-1 in output channel 0, scale 1, mult 1, shift 1."""
    flags = (4 if kind == 1 else 0) if flags is None else flags
    bits = [(n - 1).bit_length() for n in (cin, *kernel)]
    ib = 2 if sum(bits) <= 16 else 4
    pad4 = lambda n: (n + 3) & ~3  # noqa: E731
    counts = struct.pack(f"<{cout}I", nnz, *([0] * (cout - 1)))
    head = counts + bytes(4 * cout) + struct.pack(f"<{cout}f", *([1.0] * cout)) \
        + struct.pack(f"<{cout}H", *([1] * cout)) + bytes([1] * cout)
    values = bytes([1] * nnz)
    index = struct.pack(f"<{nnz}{'H' if ib == 2 else 'I'}", *range(nnz))
    payload = b"".join(p.ljust(pad4(len(p)), b"\0") for p in (head, values, index))
    acc_bits = (128 * nnz).bit_length() + 1
    offset = HEADER.size + DESCRIPTOR.size
    total = offset + len(payload) + 4
    desc = DESCRIPTOR.pack(b"big", kind, flags, *kernel, 1, 0, 0, 0, cin, *hw_in, cout, *hw_out, *bits, ib, 8,
                           acc_bits, 0, nnz, offset, len(payload), 1.0, 1.0, 0, 0, 0, 0, 0)  # version 1: no references
    header = HEADER.pack(b"SPGW", 1, 64, total, 1, 80, *input_shape, 0, 0, 1.0, 0, b"hostile")
    return with_crc(header + desc + payload)
