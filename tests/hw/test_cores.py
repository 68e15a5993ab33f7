"""The core registry: each record's linked top answers ID with the record's name, its debug map and host
memories match the linked top's, and programs find their core."""
from __future__ import annotations

import pytest
from amaranth.hdl import Fragment

from sparsegate.hw.link.protocol import parse_identity
from sparsegate.hw.platform.cores import CORES, ENGINE, LIF, core_for, core_named
from sparsegate.sim.engine.amaranth_sim import small_program


def programs():
    from sparsegate.hw.lif.design import LifDesign
    from sparsegate.hw.platform.board_top import capacity_geometry, retarget_program
    from support.small_snn import small_snn

    engine = small_program(lanes=2, seed=1, n_samples=1)
    return {ENGINE.name: retarget_program(engine, capacity_geometry(engine)),
            LIF.name: LifDesign(small_snn(1), units=3, per_word=2)}


@pytest.mark.parametrize("name", list(CORES))
def test_each_core_record_describes_its_linked_top(name):
    core = core_named(name)
    program = programs()[name]
    assert core_for(program) is core
    top = core.linked(program, timeout=100)
    Fragment.get(top, platform=None)     # it elaborates (and is not left unused)
    ident = parse_identity(top.ident)
    assert ident["core"] == core.name and ident["geometry"] == core.identity(program)
    assert core.dbg_map(ident["geometry"]) == top.names
    assert [(bits, depth) for _, bits, depth in core.host_memories(program)] == list(top.mems.values())
    est = core.estimate(program)
    assert est.dp16kd == sum(est.parts.values()) > 0 and est.mult18x18d > 0
    assert core.label(ident["geometry"]) and core.heading(ident["geometry"])


def test_unknown_core_and_program():
    with pytest.raises(KeyError, match="unknown core 'nope'"):
        core_named("nope")
    with pytest.raises(TypeError):
        core_for(object())
