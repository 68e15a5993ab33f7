"""The engine's energy estimate: the commands it prices are the ones the hardware issues (its counters),
the counts follow the weights (derived here from the image, not from the program), zero weights cost
nothing, and the prices are the cited table's."""
from __future__ import annotations

import numpy as np
import pytest

from sparsegate.hw.engine.energy_model import ENERGY_PJ, MAC_PJ, REQUANT_PJ, energy_totals, program_energy
from sparsegate.hw.engine.program import compile_program, layer_tilings
from sparsegate.sw.bench.engine import energy_figures, energy_section
from sparsegate.sim.engine.amaranth_sim import random_inputs, random_network, run_amaranth, small_program
from sparsegate.sw.ir.weight_image import sparse_layer


def _commands_from_weights(layer, lanes: int, tile) -> int:
    """Element commands of one layer from its nonzero counts: conv: per output channel max(1, nnz) for every
    tile of ``tile.ty`` rows x ``tile.tx`` columns; fc: per round of P neurons (sorted by count) its longest
    list."""
    counts = sparse_layer(layer).counts.astype(int)
    if layer.kind == "conv":
        _, ho, wo = layer.conv_shape
        if layer.pool:
            ho, wo = ho & ~1, wo & ~1
        return int(sum(max(1, c) for c in counts)) * -(-ho // tile.ty) * -(-wo // tile.tx)
    ordered = sorted(counts, reverse=True)
    return sum(max(1, max(ordered[r:r + lanes])) for r in range(0, len(ordered), lanes))


@pytest.mark.parametrize("lanes", [1, 4, 8])
def test_counts_follow_the_weights(lanes):
    prog = small_program(lanes=lanes, seed=lanes, n_samples=1)
    tiles = layer_tilings(prog.qnet, lanes)
    for layer, e, tile in zip(prog.qnet.layers, program_energy(prog), tiles):
        assert e.commands == _commands_from_weights(layer, lanes, tile), layer.name
        assert e.lane_macs == lanes * e.commands >= e.useful_macs
        assert e.weight_bits == e.commands * lanes * prog.geometry.slot_bits
        assert e.act_read_bits == e.commands * (2 * lanes if layer.kind == "conv" else lanes) * 8
        _, ho, wo = layer.conv_shape if layer.kind == "conv" else (1, 1, layer.out_channels)
        if layer.pool:
            ho, wo = ho & ~1, wo & ~1
        assert e.drained == (layer.out_channels * ho * wo if layer.kind == "conv" else layer.out_channels)
        assert e.compute_pj == pytest.approx(e.lane_macs * MAC_PJ + e.drained * REQUANT_PJ)
        assert e.memory_pj == pytest.approx(e.memory_bits * ENERGY_PJ["sram_64bit_8kb"] / 64)


def test_priced_commands_are_the_ones_the_hardware_issues():
    prog = small_program(lanes=4, seed=2, n_samples=1)
    runs, _, _ = run_amaranth(prog, timeout_s=300)
    energy = program_energy(prog)
    assert [e.commands for e in energy] == [runs[0][f"layer{i}.issued"] for i in range(len(prog.layers))]
    assert [e.useful_macs for e in energy] == [runs[0][f"layer{i}.active"] for i in range(len(prog.layers))]
    text = "\n".join(energy_section(energy_figures(prog, prog, runs[0])))  # the benchmark's; "dense" = same image
    assert "issued on Verilator (`layer.issued` counters): **True**" in text
    assert "compute energy **0.0%**" in text and "| **total** |" in text
    runs[0]["layer0.issued"] += 1
    assert "**False**" in "\n".join(energy_section(energy_figures(prog, prog, runs[0])))


def test_zero_weights_cost_nothing_and_pruning_saves_energy():
    rng = np.random.default_rng(5)
    spec = [{"kind": "conv", "cout": 4, "k": 3, "stride": 1, "pad": 1, "relu": True, "pool": True, "density": 1.0},
            {"kind": "fc", "cout": 6, "density": 1.0}]
    dense = random_network(rng, (1, 8, 8), spec)
    x = random_inputs(rng, (1, 8, 8), 1)
    pruned = random_network(np.random.default_rng(5), (1, 8, 8), spec)
    for layer in pruned.layers:  # keep every third weight
        flat = layer.weight.reshape(-1)
        flat[np.arange(flat.size) % 3 != 0] = 0
    d = energy_totals(program_energy(compile_program(dense, 4, x)))
    p = energy_totals(program_energy(compile_program(pruned, 4, x)))
    assert p["useful_macs"] < d["useful_macs"] / 2
    assert p["compute_nj"] < d["compute_nj"] and p["memory_nj"] < d["memory_nj"]
    assert d["total_nj"] == pytest.approx(d["compute_nj"] + d["memory_nj"])
    # the same image compiled again: the estimate depends on the image alone
    assert energy_totals(program_energy(compile_program(pruned, 4, x))) == p
