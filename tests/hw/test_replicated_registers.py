"""Registers marked REPLICA stay separate flip-flops through the build's Yosys script; unmarked copies merge."""
from __future__ import annotations

import json

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, Signal
from support.build_synthesis import synthesize_like_the_build

from sparsegate.hw.engine.act_buffer import BANKS_PER_ROT_COPY, LANES_PER_COPY
from sparsegate.hw.engine.engine import HOST_MEMS, SparseEngine
from sparsegate.hw.engine.layouts import BANKS_PER_WRITE_COPY
from sparsegate.hw.engine.mac_array import LANES_PER_LOAD
from sparsegate.hw.engine.weight_decoder import LANES_PER_SLICE
from sparsegate.hw.platform.replicated_registers import REPLICA
from sparsegate.sim.engine.amaranth_sim import small_program
from sparsegate.sw.util.toolchain import yowasp_available

needs_yowasp = pytest.mark.skipif(not yowasp_available(), reason="YoWASP Yosys is not installed")

COPIES = 4


def _copies_top(attrs: dict | None) -> str:
    """RTLIL of COPIES registered copies of one input, each the synchronous clear of its own 8-bit counter."""
    m = Module()
    go = Signal()
    total = Signal(8)
    counts = []
    for i in range(COPIES):
        clear = Signal(name=f"clear_{i}", attrs=attrs or {})
        count = Signal(8, name=f"count_{i}")
        m.d.sync += [clear.eq(go), count.eq(count + i + 1)]
        with m.If(clear):
            m.d.sync += count.eq(0)
        counts.append(count)
    m.d.comb += total.eq(counts[0] ^ counts[1] ^ counts[2] ^ counts[3])
    return rtlil.convert(m, ports=[go, total])


def _clear_flops(tmp_path, attrs: dict | None) -> int:
    """Flip-flops left driving a ``clear_*`` net after the build's script-after-read and ``synth_ecp5``."""
    synthesize_like_the_build(tmp_path, _copies_top(attrs), "write_json out.json")
    top = json.loads((tmp_path / "out.json").read_text())["modules"]["top"]
    clear_bits = {b for name, net in top["netnames"].items() if name.startswith("clear_") for b in net["bits"]}
    return sum(1 for c in top["cells"].values()
               if c["type"] == "TRELLIS_FF" and c["connections"]["Q"][0] in clear_bits)


@needs_yowasp
def test_replicas_survive_synthesis_where_plain_copies_merge(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "replica").mkdir()
    assert _clear_flops(tmp_path / "plain", None) == 1
    assert _clear_flops(tmp_path / "replica", REPLICA) == COPIES


def _replica_names(lanes: int) -> set[str]:
    """The names of the REPLICA registers of a host-loaded engine of ``lanes`` lanes."""
    text = rtlil.convert(SparseEngine(small_program(lanes=lanes).contents, host_write=True))
    attribute = f"attribute \\{next(iter(REPLICA))} 1"
    replicas = set()
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == attribute:
            wire = next(ln for ln in lines[i:] if ln.strip().startswith("wire"))
            replicas.add(wire.split()[-1].lstrip("\\"))
    return replicas


def test_engine_resets_each_block_from_its_own_replica():
    replicas = _replica_names(4)
    # one copy of `abort` per block (weight decoder, activation buffer, MAC array, output stage,
    # sequencer) and one for the engine's own registers; the activation buffer's padding compares read
    # their own copies of the window's row and column, one pair per LANES_PER_COPY lanes; the MAC array's
    # output register loads from one enable per LANES_PER_LOAD lanes, one for the pass context and one for
    # the walker's copy of its fields; the output stage's two-a-cycle flag has a copy for its walker and one
    # for its pooling; the activation buffer's rotation steps read a copy of the rotation amount per
    # BANKS_PER_ROT_COPY output banks (r5 and r6); the banks' writes (the output stage's, the input load's
    # flag and address) come in a copy per BANKS_PER_WRITE_COPY banks; the output stage's walker keeps the
    # pixel's position (jx, jy, the way's lane) once for its loop and once for the accumulator select, and its
    # tile width (tx) apart from the activation buffer's equal per-lane offsets; the lane-activity count its
    # own tile width (activity_tlx); the host's writes a copy of their address and data per memory; the weight
    # memory's read address a copy per column slice (one slice of LANES_PER_SLICE lanes here)
    aborts = {name for name in replicas if "abort_" in name}
    loads = {name for name in replicas if name.startswith("load")}
    duals = {name for name in replicas if name in ("dual", "pool_dual")}
    assert len(aborts) == 6
    assert len(loads) == -(-4 // LANES_PER_LOAD) + 2
    assert len(duals) == 2
    rots = {name for name in replicas if "_rot_copy" in name}
    assert {name.split("_copy")[0] for name in rots} == {"r5_rot", "r6_rot"}
    assert len(rots) == 2 * -(-2 * 4 // BANKS_PER_ROT_COPY)
    writes = _write_copies(replicas)
    assert writes == _expected_write_copies(4)
    walker = {name for name in replicas if name.startswith(("jx", "jy", "lane")) or name == "tx"}
    ways = small_program(lanes=4).contents.geometry.ways
    assert walker == {"jx", "jx_out", "jy", "jy_out", "tx", *(f"lane{w}" for w in range(ways)),
                      *(f"lane_out{w}" for w in range(ways))}
    assert "activity_tlx" in replicas
    # (the memories' write ports are the same nets: they carry the attribute too)
    host_writes = {name for name in replicas if "wr_" in name and not name.startswith("write")}
    assert {f"wr_{field}_{mem}" for field in ("addr", "data") for mem in HOST_MEMS} <= host_writes
    # (the read ports' address nets carry the attribute too)
    weight_reads = {name for name in replicas if name.startswith("waddr") or name.startswith("rd__addr")}
    assert {f"waddr0_{k}" for k in range(-(-4 // LANES_PER_SLICE))} <= weight_reads
    pads = replicas - aborts - loads - duals - rots - writes - walker - host_writes - weight_reads - {"activity_tlx"}
    assert {name.split("_pad")[0] for name in pads} == {"y", "base"}
    assert len(pads) == 2 * -(-4 // LANES_PER_COPY)


def _write_copies(replicas: set[str]) -> set[str]:
    return {name for name in replicas if name.startswith(("write", "input_load_"))}


def _expected_write_copies(lanes: int) -> set[str]:
    """One copy per BANKS_PER_WRITE_COPY banks of each write register the banks read: the output stage's
    address and data (both ways), the input load's flag and address."""
    geometry = small_program(lanes=lanes).contents.geometry
    copies = -(-geometry.banks // BANKS_PER_WRITE_COPY)
    prefixes = ["write_addr", "write_data", "input_load_copy", "input_load_addr"]
    if geometry.ways == 2:
        prefixes += ["write2_addr", "write2_data"]
    return {f"{prefix}{k}" for prefix in prefixes for k in range(copies)}


def test_bank_writes_come_in_a_copy_per_bank_group():
    """At 16 lanes (32 banks) the banks' write registers come in several copies, kept apart."""
    assert _write_copies(_replica_names(16)) == _expected_write_copies(16)
