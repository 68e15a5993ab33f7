"""Dead channels cost nothing (issue #16): the compiler drops output channels that output 0 everywhere (no
weight on a live input, ``requant(bias)`` 0 after ReLU) or that nothing reads, with the next layer's
references to them — across conv → conv, conv → flatten → fc (the fc's columns renumbered) and fc → fc —
and keeps bias-only channels and every last-layer output. The engine's final outputs stay the golden
model's on the original network, every layer stays bit-exact (signatures of the reduced network), the
cycle model stays exact, and the cycles drop."""
from __future__ import annotations

import numpy as np
import pytest

from sparsegate.hw.engine.cycle_model import program_cycles
from sparsegate.hw.engine.dead_channels import drop_dead_channels
from sparsegate.hw.engine.program import compile_program
from sparsegate.sim.engine.amaranth_sim import check_run, random_inputs, random_network, run_amaranth
from sparsegate.sw.ir.golden import run_network

INPUT = (2, 8, 8)


def network_with_dead_channels(seed: int = 3):
    """conv(4) pool → conv(4) → flatten fc(6) → fc(4), with every kind of dead and live-but-weightless
    channel; returns the network and the channels that must survive, per layer."""
    rng = np.random.default_rng(seed)
    qnet = random_network(rng, INPUT, [
        {"kind": "conv", "cout": 4, "k": 3, "pad": 1, "relu": True, "pool": True, "density": 0.8},
        {"kind": "conv", "cout": 4, "k": 3, "pad": 1, "relu": True, "density": 0.8},
        {"kind": "fc", "cout": 6, "relu": True, "density": 0.5},
        {"kind": "fc", "cout": 4, "density": 1.0}])
    c1, c2, f1, f2 = qnet.layers
    c1.weight[1:] = 0
    c1.bias[1], c1.bias[2], c1.bias[3] = 0, -500, 3000      # dead; 0 after ReLU; bias only (kept)
    c2.weight[:, 1:3] = 7                                   # reads the dead channels: references dropped
    c2.weight[2] = 0
    c2.bias[2] = 0                                          # dead, read by fc1
    f1.weight[:, 32:48] = 5
    f1.weight[:, 0:16] = 0                                  # conv2 channel 0: nobody reads it
    f1.weight[5] = 0
    f1.bias[5] = 0                                          # dead, read by fc2
    f2.weight[1:3] = 0
    f2.bias[1], f2.bias[2] = 1000, 0                        # last layer: kept, read requant(bias) and 0
    return qnet, ((0, 3), (1, 3), (0, 1, 2, 3, 4), (0, 1, 2, 3))


def test_drop_keeps_final_outputs_and_the_live_channels():
    qnet, kept = network_with_dead_channels()
    dead = drop_dead_channels(qnet)
    assert dead.kept == kept and dead.dropped == (2, 2, 1, 0)
    x = random_inputs(np.random.default_rng(0), INPUT, 8)
    full, reduced = run_network(x, qnet.layers), run_network(x, dead.network.layers)
    np.testing.assert_array_equal(reduced[-1], full[-1])
    for i, k in enumerate(kept[:-1]):
        np.testing.assert_array_equal(reduced[i], full[i][:, list(k)])
    assert np.any(full[-1][:, 1]) and not np.any(full[-1][:, 2])
    assert dead.network.layers[2].in_shape == (32,)         # the fc's columns: channels 1 and 3 only


def test_nothing_dead_is_the_same_network():
    qnet = random_network(np.random.default_rng(5), INPUT, [
        {"kind": "conv", "cout": 3, "k": 3, "pad": 1, "density": 1.0}, {"kind": "fc", "cout": 4, "density": 1.0}])
    dead = drop_dead_channels(qnet)
    assert dead.network is qnet and dead.dropped == (0, 0)


def test_a_layer_keeps_one_channel():
    qnet = random_network(np.random.default_rng(6), INPUT, [
        {"kind": "conv", "cout": 3, "k": 3, "pad": 1, "relu": True, "density": 0.8},
        {"kind": "fc", "cout": 2, "density": 0.8}])
    qnet.layers[0].weight[:] = 0
    qnet.layers[0].bias[:] = 0
    dead = drop_dead_channels(qnet)
    assert dead.kept[0] == (0,) and dead.network.layers[1].in_shape == (64,)
    x = random_inputs(np.random.default_rng(1), INPUT, 2)
    np.testing.assert_array_equal(run_network(x, dead.network.layers)[-1], run_network(x, qnet.layers)[-1])


@pytest.mark.parametrize("lanes", [1, 4, 16])
def test_engine_skips_dead_channels_bit_exact(lanes):
    qnet, _ = network_with_dead_channels()
    x = random_inputs(np.random.default_rng(lanes), INPUT, 2)
    prog = compile_program(qnet, lanes, x)
    full = compile_program(qnet, lanes, x, drop_dead=False)
    assert [p.dropped for p in prog.layers] == [2, 2, 1, 0]
    runs, _, _ = run_amaranth(prog)
    report = check_run(prog, runs)
    assert report.ok and report.layers_checked == 8 and report.outputs_checked == 8, str(report)
    golden = run_network(x, qnet.layers)[-1]                 # the original network's outputs
    for s, regs in enumerate(runs):
        out = [(regs[f"result{k}"] ^ 0x80) - 0x80 for k in range(4)]
        assert out == golden[s].tolist()
        assert [regs[f"layer{i}.cycles"] for i in range(4)] == program_cycles(prog)
        assert [regs[f"layer{i}.active"] for i in range(4)] == [p.nonzero_macs for p in prog.layers]
    assert sum(program_cycles(prog)) < sum(program_cycles(full))
    assert all(a <= b for a, b in zip(program_cycles(prog), program_cycles(full)))
