"""Activation regions (hw/engine/regions.py) and the engine on a residual network: the planner gives plain
chains the ping-pong layout, keeps a two-input layer's tensors adjacent, and never lets a layer write over a
tensor still to be read; the whole engine under Amaranth's simulator runs a small ResNet-like network
(identity and downsampling blocks, residual adds as 1x1 convs over a concatenation) bit-exact with the
golden model, every layer's cycles equal to the cycle model."""
from __future__ import annotations

import numpy as np
import pytest

from sparsegate.hw.engine.cycle_model import program_cycles
from sparsegate.hw.engine.program import compile_program
from sparsegate.hw.engine.regions import plan_regions
from sparsegate.sim.engine.amaranth_sim import check_run, random_inputs, run_amaranth
from sparsegate.sw.ir.golden import layer_sources

from support.int_networks import random_network, residual_network


def _check_plan(sizes, sources):
    plan = plan_regions(sizes, sources)
    n = len(sources)
    last_read = list(range(-1, n))
    for i, refs in enumerate(sources):
        for t in refs:
            last_read[t] = max(last_read[t], i)
    last_read[n] = n
    span = lambda t: (plan.bases[t], plan.bases[t] + sizes[t])  # noqa: E731
    for i in range(n):
        lo, hi = span(i + 1)
        assert hi <= plan.depth
        for t in range(i + 1):  # every tensor still to be read at layer i (or read by it) is untouched
            if last_read[t] >= i:
                a, b = span(t)
                assert hi <= a or b <= lo, (i, t, plan)
        if len(sources[i]) == 2:
            a, b = sources[i]
            assert plan.bases[b] == plan.bases[a] + sizes[a]
    return plan


def test_chain_gets_the_ping_pong_layout():
    sizes = [128, 640, 200, 500, 10]  # LeNet-5 at 4 lanes
    plan = _check_plan(sizes, [(0,), (1,), (2,), (3,)])
    assert plan.slot == 1024 and plan.depth == 2048 and plan.bases == (0, 1024, 0, 1024, 0) and plan.end == 1664


def test_residual_regions_adjacent_and_live():
    net = residual_network(0)
    sources = layer_sources(net.layers)
    sizes = [96, 512, 512, 512, 512, 256, 256, 256, 256, 10]
    plan = _check_plan(sizes, sources)
    live = max(sum(sizes[t] for t in range(len(sizes)) if t - 1 <= i <= max([t] + [j for j, r in enumerate(sources)
                                                                               if t in r])) for i in range(9))
    assert plan.slot == 1 and live <= plan.end <= live + sizes[0]  # word by word: little lost to fragmentation
    prog = compile_program(net, 4)
    assert prog.geometry.act_depth == prog.regions.depth
    for plan_i, refs in zip(prog.layers, sources):  # each layer reads its first tensor's region
        assert plan_i.desc["in_base"] == prog.regions.bases[refs[0]]
    with pytest.raises(ValueError, match="must follow"):
        plan_regions([4] * 4, [(0,), (0, 1), (2, 1)])


@pytest.mark.parametrize("lanes,seed", [(1, 1), (4, 2), (16, 3)])
def test_engine_residual_network_bit_exact(lanes, seed):
    rng = np.random.default_rng(seed)
    net = residual_network(seed)
    prog = compile_program(net, lanes, random_inputs(rng, net.input_shape, 2))
    assert prog.geometry.act_depth == prog.regions.depth
    runs, _, _ = run_amaranth(prog, timeout_s=600)
    report = check_run(prog, runs)
    assert report.ok, str(report)
    assert report.layers_checked == 2 * len(net.layers) and report.outputs_checked == 10
    model = program_cycles(prog)
    for regs in runs:
        assert [regs[f"layer{i}.cycles"] for i in range(len(prog.layers))] == model
        assert [regs[f"layer{i}.active"] for i in range(len(prog.layers))] == [p.nonzero_macs for p in prog.layers]


def test_chain_programs_keep_their_activation_memory():
    prog = compile_program(random_network(0), 4)
    assert prog.regions.depth == 2 * prog.regions.slot  # two regions: the old ping and pong halves
    assert [p.desc["in_base"] for p in prog.layers] == [prog.regions.slot * (i % 2) for i in range(4)]
