"""Memory synthesis hints: a memory marked read/write-disjoint maps to a bare DP16KD (no read-first emulation
in front of its first register), an unmarked one keeps Yosys's emulation, and the engine marks its memories."""
from __future__ import annotations

import json

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, Signal
from amaranth.lib.memory import Memory
from support.build_synthesis import synthesize_like_the_build

from sparsegate.hw.engine.engine import SparseEngine
from sparsegate.hw.link.host_link import HostLink
from sparsegate.hw.platform.memory_hints import READ_WRITE_DISJOINT, read_write_disjoint
from sparsegate.sim.engine.amaranth_sim import small_program
from sparsegate.sw.util.toolchain import yowasp_available

needs_yowasp = pytest.mark.skipif(not yowasp_available(), reason="YoWASP Yosys is not installed")


def _ram_top(attrs: dict | None) -> str:
    """RTLIL of a 1024 x 8 RAM, one write port and one registered read port, its data registered once more."""
    m = Module()
    m.submodules.ram = ram = Memory(shape=8, depth=1024, init=[], attrs=attrs)
    rd, wr = ram.read_port(), ram.write_port()
    raddr, waddr, wdata, we, out = Signal(10), Signal(10), Signal(8), Signal(), Signal(8)
    m.d.comb += [rd.addr.eq(raddr), wr.addr.eq(waddr), wr.data.eq(wdata), wr.en.eq(we)]
    m.d.sync += out.eq(rd.data)
    return rtlil.convert(m, ports=[raddr, waddr, wdata, we, out])


def _cells(tmp_path, attrs: dict | None) -> dict[str, int]:
    """Cell counts of the RAM top after the build's script-after-read and ``synth_ecp5``."""
    synthesize_like_the_build(tmp_path, _ram_top(attrs), "tee -q -o stat.json stat -json")
    stat = json.loads((tmp_path / "stat.json").read_text())
    return stat["modules"]["\\top"]["num_cells_by_type"]


@needs_yowasp
def test_disjoint_ram_is_a_bare_block_ram(tmp_path):
    (tmp_path / "plain").mkdir()
    (tmp_path / "hinted").mkdir()
    plain = _cells(tmp_path / "plain", None)
    hinted = _cells(tmp_path / "hinted", READ_WRITE_DISJOINT)
    assert plain["DP16KD"] == hinted["DP16KD"] == 1
    assert plain.get("LUT4", 0) > 8             # delayed write, address compare, a bypass multiplexer per bit
    assert hinted == {"DP16KD": 1, "TRELLIS_FF": 8}     # the block RAM and the register behind it, nothing else


def test_only_writable_memories_carry_the_hint():
    assert read_write_disjoint(False) == {}
    assert read_write_disjoint(True, {"ram_style": "distributed"}) == {**READ_WRITE_DISJOINT, "ram_style": "distributed"}


@pytest.mark.parametrize("host_write", [False, True])
def test_engine_marks_its_banked_and_host_written_memories(host_write):
    prog = small_program(lanes=4)
    n_banks = prog.contents.geometry.banks
    text = rtlil.convert(SparseEngine(prog.contents, host_write=host_write))
    marked = text.count(f"attribute \\{next(iter(READ_WRITE_DISJOINT))} 1")
    # the activation banks always; with host writes also the weight bank(s), parameters, channel table,
    # descriptors and the input memory (read-only memories have no collision to declare)
    assert marked == n_banks if not host_write else marked >= n_banks + 5


def test_link_marks_its_frame_buffer():
    """The executor reads the frame buffer only before it takes the decoder's record, and the decoder rewrites it
    only after: the hint holds, and the buffer's read reaches the executor's byte register without a bypass."""
    link = HostLink(mems=[(8, 4)], n_samples=2, n_regs=2, result_base=1, n_results=1, ident=b"STUB", timeout=64,
                    max_payload=16)
    text = rtlil.convert(link)
    assert text.count(f"attribute \\{next(iter(READ_WRITE_DISJOINT))} 1") == 1
