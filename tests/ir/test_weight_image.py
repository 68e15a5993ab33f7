"""The sparse-index weight image: round trip, every corruption class rejected with a clear ImageError,
hex memory files, manifest, storage accounting, and atomic writes."""
from __future__ import annotations

import json
import re
import struct
import zlib

import numpy as np
import pytest

from sparsegate.sw.ir import weight_image as wi
from sparsegate.sw.ir.golden import IntLayer, QuantizedNetwork
from sparsegate.sw.ir.weight_image import DESCRIPTOR, HEADER, ImageError, decode_image, encode_image
from support.int_networks import random_network


@pytest.fixture(scope="module")
def net() -> QuantizedNetwork:
    """conv 5x5 pad 2 + pool (cin 2), conv 3x3 stride 2, fc (flatten), fc; one output channel empty."""
    net = random_network(11)
    net.layers[1].weight[2] = 0
    net.layers[0].in_scale = net.input_scale = float(np.float32(0.0221))
    net.layers[0].weight_scale[:] = np.float32(0.003)
    net.validate()
    return net


@pytest.fixture(scope="module")
def image(net) -> bytes:
    return encode_image(net)


def recrc(data: bytearray | bytes) -> bytes:
    data = bytearray(data)
    data[-4:] = struct.pack("<I", zlib.crc32(bytes(data[:-4])))
    return bytes(data)


def descriptor(data: bytes, i: int) -> dict:
    fields = ("name kind flags kh kw stride padding in_zp out_zp cin hin win cout hout wout cin_bits ky_bits "
              "kx_bits index_bytes out_bits acc_bits reserved nnz offset size in_scale out_scale").split()
    values = dict(zip(fields, DESCRIPTOR.unpack_from(data, HEADER.size + i * DESCRIPTOR.size)))
    values["at"] = HEADER.size + i * DESCRIPTOR.size
    values["values_at"] = values["offset"] + ((values["cout"] * 15 + 3) & ~3)
    values["index_at"] = values["values_at"] + ((values["nnz"] + 3) & ~3)
    return values


def patch(data: bytes, offset: int, fmt: str, value, crc: bool = True) -> bytes:
    out = bytearray(data)
    struct.pack_into(fmt, out, offset, value)
    return recrc(out) if crc else bytes(out)


# ---------------------------------------------------------------------------------------------- round trip

def test_round_trip_is_exact(net, image, tmp_path):
    back = decode_image(image)
    assert back.equals(net)
    assert encode_image(back) == image
    path = tmp_path / "sub" / "net.bin"
    assert wi.write_image(path, net) == len(image) == path.stat().st_size
    assert wi.read_image(path).equals(net)
    x = np.random.default_rng(0).integers(-128, 128, size=(3, 2, 13, 12)).astype(np.int8)
    assert all(np.array_equal(a, b) for a, b in zip(net.run(x), back.run(x)))


def test_header_and_descriptors_describe_the_network(net, image):
    magic, version, header_size, total, n_layers = HEADER.unpack_from(image, 0)[:5]
    assert (magic, version, header_size, total, n_layers) == (b"SPGW", 2, 64, len(image), 4)
    d0, d2 = descriptor(image, 0), descriptor(image, 2)
    assert d0["name"].rstrip(b"\0") == b"conv1" and d0["kind"] == 0 and d0["flags"] == wi.FLAG_RELU | wi.FLAG_POOL
    assert (d0["kh"], d0["kw"], d0["stride"], d0["padding"]) == (5, 5, 1, 2)
    assert (d0["cin"], d0["hin"], d0["win"], d0["cout"], d0["hout"], d0["wout"]) == (2, 13, 12, 4, 6, 6)
    assert (d0["cin_bits"], d0["ky_bits"], d0["kx_bits"], d0["index_bytes"]) == (1, 3, 3, 2)
    assert d0["nnz"] == net.layers[0].nnz and d0["acc_bits"] == net.layers[0].accumulator_bits()
    assert d2["kind"] == 1 and d2["flags"] == wi.FLAG_RELU | wi.FLAG_FLATTEN
    assert (d2["cin"], d2["hin"], d2["win"], d2["kh"], d2["cin_bits"]) == (24, 1, 1, 1, 5)


def test_sparse_index_packing():
    w = np.zeros((2, 3, 5, 3), dtype=np.int8)
    w[0, 2, 4, 1], w[0, 0, 1, 2], w[1, 1, 0, 0] = -7, 100, 1
    layer = IntLayer("c", "conv", w, np.zeros(2, np.int32), np.ones(2, np.uint16), np.ones(2, np.uint8),
                     (3, 6, 4))
    sp = wi.sparse_layer(layer)
    assert (sp.cin_bits, sp.ky_bits, sp.kx_bits) == (2, 3, 2)
    assert sp.counts.tolist() == [2, 1] and sp.values.tolist() == [100, -7, 1]
    assert sp.index.tolist() == [(0 << 5) | (1 << 2) | 2, (2 << 5) | (4 << 2) | 1, (1 << 5) | 0]
    assert sp.entry_words.tolist() == [(100 << 7) | 6, (0xF9 << 7) | 81, (1 << 7) | 32]


# ---------------------------------------------------------------------------------------------- corruption

def expect(data: bytes, field: str, *words: str) -> ImageError:
    with pytest.raises(ImageError) as info:
        decode_image(data, "img.bin")
    err = info.value
    assert err.field.endswith(field), (err.field, str(err))
    text = str(err)
    assert text.startswith("img.bin: ") and field in text
    assert all(w in text for w in words), text
    assert isinstance(err, ValueError)
    return err


def test_wrong_magic(image):
    expect(b"PK\x03\x04" + image[4:], "magic", "not a sparsegate weight image")
    expect(recrc(b"SPGX" + image[4:]), "magic")


@pytest.mark.parametrize("crc", [False, True])
def test_unsupported_version(image, crc):
    expect(patch(image, 4, "<H", 3, crc), "version", "unsupported version 3")
    expect(patch(image, 4, "<H", 0, crc), "version")


def test_truncated_at_several_offsets(image):
    d1 = descriptor(image, 1)
    for cut in (0, 3, 4, 40, 63, 64, 100, HEADER.size + DESCRIPTOR.size, d1["offset"] + 5, d1["index_at"],
                len(image) // 2, len(image) - 4, len(image) - 1):
        expect(image[:cut], "total_size", "truncated")


def test_trailing_bytes_are_rejected(image):
    expect(image + b"\0\0\0\0", "total_size", "trailing")


def test_crc_mismatch(image):
    d = descriptor(image, 3)
    for offset in (d["index_at"], d["offset"] + 1, 70, len(image) - 2):
        data = bytearray(image)
        data[offset] ^= 0x10
        expect(bytes(data), "crc32", "corrupt")


def test_index_out_of_range_with_valid_crc(image):
    d0 = descriptor(image, 0)
    first = struct.unpack_from("<H", image, d0["index_at"])[0]
    err = expect(patch(image, d0["index_at"], "<H", first | 0b111), "index", "out of range", "kx 7")
    assert "layer 0 ('conv1')" in str(err)
    d2 = descriptor(image, 2)
    expect(patch(image, d2["index_at"] + 2, "<H", 31), "index", "in_channel 31", "24 in_channels")
    expect(patch(image, d2["index_at"], "<H", 0x8000), "index", "out of range")  # bits above the fields


def test_count_mismatch_with_valid_crc(image):
    d1 = descriptor(image, 1)
    count0 = struct.unpack_from("<I", image, d1["offset"])[0]
    expect(patch(image, d1["offset"], "<I", count0 + 1), "counts", "sum to", f"nnz is {d1['nnz']}")
    expect(patch(image, d1["offset"], "<I", 10 ** 6), "counts", "more than its")
    expect(patch(image, d1["at"] + 52, "<I", d1["nnz"] + 1), "payload_size")  # nnz field changed alone


def test_other_semantic_corruptions_with_valid_crc(image):
    d0, d1 = descriptor(image, 0), descriptor(image, 1)
    expect(patch(image, d0["values_at"], "<b", 0), "values", "nonzero")
    expect(patch(image, d0["values_at"], "<b", -128), "values")
    second = struct.unpack_from("<H", image, d0["index_at"] + 2)[0]
    expect(patch(image, d0["index_at"], "<H", second), "index", "strictly ascending")
    expect(patch(image, d0["at"] + 25, "<B", 0x80), "flags", "unknown flag")
    expect(patch(image, d0["at"] + 26, "<B", 8), "kernel")
    expect(patch(image, d0["at"] + 28, "<B", 3), "stride")
    expect(patch(image, d0["at"] + 30, "<b", 5), "zero_point")
    expect(patch(image, d0["at"] + 40, "<H", 7), "out_shape")
    expect(patch(image, d0["at"] + 44, "<B", 4), "index_bits")
    expect(patch(image, d0["at"] + 49, "<B", 33), "acc_bits")
    expect(patch(image, d0["at"] + 56, "<I", d0["offset"] + 4), "payload_offset")
    expect(patch(image, d0["at"] + 68, "<f", float("nan")), "scale")
    expect(patch(image, d1["at"] + 64, "<f", 0.5), "network", "in_scale")
    expect(patch(image, d1["at"] + 32, "<H", 3), "in_shape", "previous output")  # breaks the chain
    shift_at = d0["offset"] + d0["cout"] * 14
    expect(patch(image, shift_at, "<B", 0), "shift")
    expect(patch(image, 12, "<H", 5000), "n_layers")
    expect(patch(image, 12, "<H", 0), "n_layers")
    expect(patch(image, 32, "<4s", b"\xff\xfe\xfd\xfc"), "name", "UTF-8")


def test_random_mutations_never_escape_as_other_exceptions(image):
    rng = np.random.default_rng(0)
    rejected = 0
    for _ in range(400):
        data = bytearray(image)
        for _ in range(int(rng.integers(1, 4))):
            data[int(rng.integers(0, HEADER.size + 4 * DESCRIPTOR.size))] = int(rng.integers(0, 256))
        try:
            decode_image(recrc(data))
        except ImageError:
            rejected += 1
    assert rejected > 200


def test_read_image_missing_file(tmp_path):
    with pytest.raises(ImageError, match="cannot read"):
        wi.read_image(tmp_path / "nope.bin")


# ---------------------------------------------------------------------------------------------- writers

def test_writes_are_atomic(net, image, tmp_path):
    path = tmp_path / "image.bin"
    path.write_bytes(b"old")
    bad = random_network(1)
    bad.layers[0].name = "x" * 40  # does not fit the 24-byte name field
    with pytest.raises(ValueError, match="at most 23"):
        wi.write_image(path, bad)
    assert path.read_bytes() == b"old"
    wi.write_image(path, net)
    assert path.read_bytes() == image
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.bin"]


def _read_hex(path) -> list[int]:
    lines = path.read_text().splitlines()
    assert lines[0].startswith("// sparsegate")
    return [int(line, 16) for line in lines[1:]]


def test_export_writes_image_hex_files_and_manifest(net, image, tmp_path):
    doc = wi.export_image(net, tmp_path)
    assert (tmp_path / "image.bin").read_bytes() == image
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest == json.loads(json.dumps(doc))
    assert manifest["image"] == {"path": "image.bin", "bytes": len(image), "crc32": f"0x{zlib.crc32(image[:-4]):08x}"}
    assert manifest["storage"]["total"]["image_bytes"] == len(image)
    assert [layer["name"] for layer in manifest["layers"]] == ["conv1", "conv2", "fc1", "fc2"]
    for layer, entry in zip(net.layers, manifest["layers"]):
        files = entry["files"]
        cb, yb, xb = layer.index_bits
        bits = cb + yb + xb
        assert files["entries"]["width"] == 8 + bits and files["entries"]["depth"] == layer.nnz
        words = _read_hex(tmp_path / files["entries"]["path"])
        counts = _read_hex(tmp_path / files["counts"]["path"])
        assert sum(counts) == len(words) == layer.nnz
        w4 = np.zeros_like(layer.weight4d)
        channel = np.repeat(np.arange(layer.out_channels), counts)
        for c, word in zip(channel, words):
            value = ((word >> bits) ^ 0x80) - 0x80
            index = word & ((1 << bits) - 1)
            w4[c, index >> (yb + xb), (index >> xb) & ((1 << yb) - 1), index & ((1 << xb) - 1)] = value
        assert np.array_equal(w4, layer.weight4d), layer.name
        bias = [((b ^ 0x80000000) - 0x80000000) for b in _read_hex(tmp_path / files["bias"]["path"])]
        assert bias == layer.bias.tolist()
        assert _read_hex(tmp_path / files["mult"]["path"]) == layer.mult.tolist()
        assert _read_hex(tmp_path / files["shift"]["path"]) == layer.shift.tolist()
    assert not list(tmp_path.rglob("*.tmp"))


# ---------------------------------------------------------------------------------------------- storage

def test_storage_accounting_by_hand():
    w = np.zeros((2, 3, 3, 3), dtype=np.int8)
    w[0, 0, 0, :3] = 1
    w[1, 2, 2, 1:] = -1
    layer = IntLayer("c", "conv", w, np.zeros(2, np.int32), np.ones(2, np.uint16), np.ones(2, np.uint8),
                     (3, 4, 4))
    report = wi.storage_report(QuantizedNetwork("one", (3, 4, 4), 1.0, [layer]))
    row, total = report["layers"][0], report["total"]
    assert (row["nnz"], row["weights"], row["index_bits"], row["entry_bits"], row["count_bits"]) == (5, 54, 6, 14, 5)
    assert row["bits_per_nnz_packed"] == (5 * 14 + 2 * 5) / 5 == 16.0
    assert row["image_bytes"] == 80 + 32 + 8 + 12
    assert total["image_bytes"] == 64 + 132 + 4 == len(encode_image(QuantizedNetwork("one", (3, 4, 4), 1.0, [layer])))
    assert (row["dense_int8_bytes"], row["float32_bytes"]) == (54 + 8, 4 * 56)
    # the same weights and indexes in the formats it is compared with (by hand: row 0 has nonzeros at fan-in
    # positions 0, 1, 2; row 1 at 25, 26, after 25 zeros = one 4-bit filler entry)
    assert report["formats"]["total"] == {"dense_fp32": 32 * 54, "dense_int8": 8 * 54,
                                          "csr32": 5 * (8 + 32) + 3 * 32,
                                          "relative4": (5 + 1) * (8 + 4) + 3 * 32, "image": 5 * 14 + 2 * 5}
    table = wi.format_storage_table(report)
    assert "total" in table and re.search(r"CSR, 32-bit indexes +37 B +image = +27\.0% of it", table)


def test_relative_index_fillers():
    assert wi.relative_index_entries(np.array([], dtype=int)) == 0
    assert wi.relative_index_entries(np.array([15])) == 1      # 15 zeros skipped: fits 4 bits
    assert wi.relative_index_entries(np.array([16])) == 2      # 16 zeros: one filler
    assert wi.relative_index_entries(np.array([0, 40])) == 1 + 1 + 2   # 39 zeros between: two fillers
    assert wi.relative_index_entries(np.array([40, 0])) == 4   # order does not matter
