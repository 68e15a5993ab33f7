"""Hostile weight images (issue #18): sizes checked against the file and the format's caps before anything
is allocated, only regular files read, reserved bytes, padding and names enforced, and property-based
corruption of CRC-valid images under a memory limit: always a clean ImageError, never a MemoryError or a
traceback."""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sparsegate.sw.ir import weight_image as wi
from sparsegate.sw.ir.golden import IntLayer, QuantizedNetwork
from sparsegate.sw.ir.weight_image import DESCRIPTOR, HEADER, ImageError, decode_image, encode_image, read_image
from support.hostile_images import raw_image, recrc
from support.int_networks import random_network


def test_raw_builder_makes_valid_images():
    qnet = decode_image(raw_image((300, 1, 1), 1, 300, 200, nnz=5))
    assert qnet.layers[0].weight.shape == (200, 300) and qnet.layers[0].nnz == 5


def refusal(data: bytes) -> ImageError:
    with pytest.raises(ImageError) as info:
        decode_image(data, "image.bin")
    return info.value


def test_huge_declared_layers_are_refused_before_allocation():
    # 983 KB, format-valid but for the cap: one fc layer 4096 -> 65535 (2^28 dense weights)
    data = raw_image((4096, 1, 1), 1, 4096, 65535)
    assert 900_000 < len(data) < 1_000_000
    t0 = time.process_time()  # CPU time: a busy machine does not inflate it
    err = refusal(data)
    assert err.field == "layer 0 ('big') weights" and "format limit of 4194304" in str(err)
    assert time.process_time() - t0 < 1.0
    # a 172-byte image whose 1x1 conv takes a 1x65535x65535 input
    data = raw_image((1, 65535, 65535), 0, 1, 1, hw_in=(65535, 65535), hw_out=(65535, 65535), nnz=1)
    assert len(data) == 172
    err = refusal(data)
    assert err.field == "input_shape" and "format limit of 1048576" in str(err)


def test_declared_total_size_over_the_cap_is_refused():
    data = bytearray(encode_image(random_network(1)))
    struct.pack_into("<I", data, 8, 2 << 30)
    assert refusal(bytes(data)).field == "total_size"


def test_only_regular_files_of_bounded_size_are_read(tmp_path):
    big = tmp_path / "sparse.bin"
    with big.open("wb") as f:
        f.truncate(2 << 30)  # a 2 GiB sparse file: refused from its size, never read
    with pytest.raises(ImageError, match="more than the 67108864"):
        read_image(big)
    with pytest.raises(ImageError, match="not a regular file"):
        read_image(tmp_path)
    with pytest.raises(ImageError, match="not a regular file"):
        read_image("/dev/zero")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    done = []
    reader = threading.Thread(target=lambda: done.append(pytest.raises(ImageError, read_image, fifo)), daemon=True)
    reader.start()
    reader.join(5)
    assert done, "reading a FIFO blocked"
    assert "not a regular file" in str(done[0].value)


def test_reserved_bytes_padding_and_names_are_enforced():
    good = encode_image(random_network(1))
    decode_image(good)
    at = HEADER.size
    cases = {
        "reserved": (at + 72, 1),  # descriptor's trailing reserved bytes
        "flags": (28, 1),  # header reserved u32
        "name": (32 + 31, ord("x")),  # fill the header name's last byte: 32 bytes, no NUL
    }
    for field, (offset, value) in cases.items():
        data = bytearray(good)
        if field == "name":
            data[32:64] = b"n" * 32
        data[offset] = value
        assert field in refusal(recrc(bytes(data))).field
    data = bytearray(good)
    data[32:64] = b"net\0x".ljust(32, b"\0")  # a byte after the terminating NUL
    assert refusal(recrc(bytes(data))).field == "name"
    # padding: the byte after the shift array (15 * cout is not a multiple of 4 for 3 channels)
    one = raw_image((7, 1, 1), 1, 7, 3, nnz=3)
    decode_image(one)
    offset = HEADER.size + DESCRIPTOR.size
    for pad_at in (offset + 45, offset + 48 + 3, len(one) - 5):
        data = bytearray(one)
        data[pad_at] = 1
        assert refusal(recrc(bytes(data))).field.endswith("padding"), pad_at


def test_names_are_printed_escaped():
    assert wi.printable("conv\x1b[2J1\n") == "conv\\x1b[2J1\\n"
    assert wi.printable("größe") == "größe"


# ------------------------------------------------------------------------------- property-based corruption

_HOSTILE_READER = r"""
import json, resource, sys, time, traceback
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from sparsegate.sw.ir.weight_image import ImageError, read_image
out = []
for path in sys.argv[2:]:
    t0 = time.perf_counter()
    try:
        read_image(path)
        outcome = "accepted"
    except ImageError as err:
        outcome = "refused"
        if "\n" in str(err):
            outcome = "multi-line message"
    except BaseException:
        outcome = traceback.format_exc()
    out.append({"outcome": outcome, "s": time.perf_counter() - t0})
out.append({"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss})
print(json.dumps(out))
"""

MEMORY_LIMIT = 1536 << 20  # address space of the reading process

# header and descriptor fields as (offset, struct format); descriptors of layer 0 and 1
_FIELDS = [(8, "<I"), (12, "<H"), (16, "<H"), (18, "<H"), (20, "<H"), (24, "<f")] + [
    (HEADER.size + i * DESCRIPTOR.size + off, fmt) for i in (0, 1) for off, fmt in
    ((24, "<B"), (25, "<B"), (26, "<B"), (27, "<B"), (28, "<B"), (29, "<B"), (32, "<H"), (34, "<H"), (36, "<H"),
     (38, "<H"), (40, "<H"), (42, "<H"), (44, "<B"), (47, "<B"), (49, "<B"), (52, "<I"), (56, "<I"), (60, "<I"))]
_LIMITS = {"<B": 0xFF, "<H": 0xFFFF, "<I": 0xFFFFFFFF}

_mutation = st.tuples(st.sampled_from(_FIELDS),
                      st.one_of(st.sampled_from([0, 1, 2, 255, 4096, 65535, 1 << 24, 1 << 28, 0xFFFFFFFF]),
                                st.integers(0, 0xFFFFFFFF)))
_image = st.tuples(st.integers(0, 5), st.lists(_mutation, min_size=1, max_size=4),
                   st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=3))


def _corrupt(seed: int, mutations, flips) -> bytes:
    data = bytearray(encode_image(random_network(seed)))
    for (offset, fmt), value in mutations:
        struct.pack_into(fmt, data, offset, float(value % 1e6) if fmt == "<f" else value % (_LIMITS[fmt] + 1))
    for pos, byte in flips:
        data[pos % (len(data) - 4)] = byte
    return recrc(bytes(data))  # CRC-valid: every check behind the CRC is exercised


@settings(max_examples=8, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(images=st.lists(_image, min_size=20, max_size=20))
def test_corrupt_crc_valid_images_are_refused_cleanly_under_a_memory_limit(images, tmp_path):
    paths = []
    for k, (seed, mutations, flips) in enumerate(images):
        path = tmp_path / f"corrupt{k}.bin"
        path.write_bytes(_corrupt(seed, mutations, flips))
        paths.append(str(path))
    proc = subprocess.run([sys.executable, "-c", _HOSTILE_READER, str(MEMORY_LIMIT), *paths],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    *results, usage = json.loads(proc.stdout)
    for path, r in zip(paths, results):
        assert r["outcome"] in ("refused", "accepted"), (path, r["outcome"])
        assert r["s"] < 2.0, (path, r)
    assert usage["maxrss_kb"] < MEMORY_LIMIT // 1024


def test_the_writer_refuses_what_the_reader_would():
    big = np.ones((2049, 2048), np.int8)
    layer = IntLayer(name="d", kind="fc", weight=big, bias=np.zeros(2049, np.int32), mult=np.ones(2049, np.uint16),
                     shift=np.full(2049, 20, np.uint8), in_shape=(2048,), flatten_input=True)
    with pytest.raises(ValueError, match="4196352 dense kernel elements exceed the format limit of 4194304"):
        encode_image(QuantizedNetwork("big", (2048, 1, 1), 1.0, [layer]))
