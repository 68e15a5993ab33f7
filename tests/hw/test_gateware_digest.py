"""The bitstream cache digest covers the gateware a top level elaborates — the engine's blocks, the link, the
layouts they import, the build flow — and nothing else: editing the energy or cycle model or the compiler
leaves every cached bitstream valid, editing a block's source does not."""
from __future__ import annotations

from pathlib import Path

import pytest

from sparsegate.hw.platform import gateware_digest as gd
from sparsegate.hw.platform.board_top import SerialTop, capacity_geometry, retarget_program
from sparsegate.sim.engine.amaranth_sim import small_program

HW = Path(gd.__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def engine_top():
    program = small_program(lanes=2, seed=1, n_samples=1)
    return SerialTop(retarget_program(program, capacity_geometry(program)), divisor=4, timeout=16)


def names(paths) -> set[str]:
    return {str(p.relative_to(HW)) for p in paths}


def test_engine_digest_inputs_are_the_elaborated_blocks(engine_top):
    got = names(gd.gateware_sources(engine_top))
    blocks = {"engine/engine.py", "engine/sequencer.py", "engine/weight_decoder.py", "engine/act_buffer.py",
              "engine/mac_array.py", "engine/output_stage.py", "engine/layouts.py", "link/host_link.py",
              "link/uart.py", "platform/board_top.py", "platform/boards.py", "platform/ecp5_build.py"}
    assert blocks <= got
    assert not got & {"engine/energy_model.py", "engine/cycle_model.py", "engine/program.py", "engine/mac_lane.py",
                      "lif/core.py", "lif/design.py", "platform/smoke_top.py"}


def test_lif_digest_inputs_are_the_lif_blocks():
    from sparsegate.hw.lif.design import LifDesign
    from support.small_snn import small_snn

    got = names(gd.gateware_sources(SerialTop(LifDesign(small_snn(1), units=3, per_word=2), divisor=4, timeout=16)))
    assert {"lif/core.py", "lif/design.py", "link/host_link.py", "link/uart.py"} <= got
    assert not got & {"engine/engine.py", "engine/energy_model.py", "engine/cycle_model.py"}


def test_a_block_source_change_changes_the_digest(engine_top, monkeypatch):
    before = gd.gateware_digest(engine_top)
    assert gd.gateware_digest(engine_top) == before
    read = gd._read_source

    def edited(name):
        return lambda path: read(path) + (b"# edit" if path.name == name else b"")

    monkeypatch.setattr(gd, "_read_source", edited("energy_model.py"))
    assert gd.gateware_digest(engine_top) == before
    monkeypatch.setattr(gd, "_read_source", edited("mac_array.py"))
    assert gd.gateware_digest(engine_top) != before
