"""Energy estimate of one inference on the sparse engine: operations and on-chip memory traffic counted
from the program (the passes and element commands the cycle model follows), priced with a published
per-operation energy table. It compares the same engine on two images (pruned vs dense); it is not a
power measurement of an FPGA.

What one layer does (docs/engine.md):

* every element command reads one weight word (``P`` slots of ``slot_bits``; a conv command then uses one
  slot, an fc command all of them) and the activation buffer (conv: all ``2P`` banks, one byte each; fc:
  ``P`` banks), and every lane multiplies and accumulates, useful or not;
* the output stage drains every accumulator of a pass: a parameter-word read (bias, multiplier, shift,
  destination) and the requantization (one wide multiply, two adds);
* each output element is written once, to one bank, or to all ``2P`` banks when the next layer is fc
  (its input is replicated per lane).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from sparsegate.hw.engine.layouts import param_layout
from sparsegate.hw.engine.cycle_model import layer_passes

__all__ = ["ENERGY_PJ", "ENERGY_SOURCE", "LayerEnergy", "layer_energy", "program_energy", "energy_totals"]

#: Energy per operation in pJ, as reported by M. Horowitz, "Computing's energy problem (and what we can do
#: about it)", ISSCC 2014, for 45 nm at 0.9 V. SRAM: a 64-bit read of an 8 KB array (the engine's memories
#: are block RAMs of 2 KB each), priced per bit; writes are priced as reads.
ENERGY_PJ = {"int8_mult": 0.2, "int32_add": 0.1, "int32_mult": 3.1, "sram_64bit_8kb": 10.0}
ENERGY_SOURCE = ("M. Horowitz, ISSCC 2014, 45 nm (reported): 8-bit multiply 0.2 pJ, 32-bit add 0.1 pJ, "
                 "32-bit multiply 3.1 pJ, 64-bit read of an 8 KB SRAM 10 pJ")

MAC_PJ = ENERGY_PJ["int8_mult"] + ENERGY_PJ["int32_add"]             # int8 x int8 into the int32 accumulator
REQUANT_PJ = ENERGY_PJ["int32_mult"] + 2 * ENERGY_PJ["int32_add"]    # bias add, multiply, rounding add
SRAM_PJ_PER_BIT = ENERGY_PJ["sram_64bit_8kb"] / 64


@dataclass
class LayerEnergy:
    """One layer's counted operations and accesses (bits), and their energy (pJ)."""

    name: str
    commands: int          # element commands: one weight-word read and P lane MACs each
    lane_macs: int         # multiply-accumulates the lanes perform (P per command, idle lanes included)
    useful_macs: int       # of which with a nonzero weight on a valid pixel
    drained: int           # accumulators through the output stage (a requantization each)
    weight_bits: int
    act_read_bits: int
    param_bits: int
    act_write_bits: int

    @property
    def compute_pj(self) -> float:
        return self.lane_macs * MAC_PJ + self.drained * REQUANT_PJ

    @property
    def memory_bits(self) -> int:
        return self.weight_bits + self.act_read_bits + self.param_bits + self.act_write_bits

    @property
    def memory_pj(self) -> float:
        return self.memory_bits * SRAM_PJ_PER_BIT

    def to_dict(self) -> dict:
        return {**asdict(self), "compute_pj": self.compute_pj, "memory_pj": self.memory_pj}


def layer_energy(program, index: int) -> LayerEnergy:
    plan, layer, g = program.layers[index], program.qnet.layers[index], program.geometry
    passes = layer_passes(plan)
    commands = sum(k for _, k, _ in passes)
    # pixels requantized (conv: nvalid lists one output channel's passes); parameter reads: one per
    # output-stage cycle (a pixel, or a pair when the layer drains two a cycle)
    drained = sum(plan.nvalid) * (len(plan.counts) if plan.kind == "conv" else 1)
    reads = sum(n for _, _, n in passes)
    banks_read = g.banks if plan.kind == "conv" else g.lanes
    banks_written = g.banks if plan.desc["out_repl"] else 1
    return LayerEnergy(
        name=plan.name, commands=commands, lane_macs=commands * g.lanes, useful_macs=plan.nonzero_macs,
        drained=drained, weight_bits=commands * g.lanes * g.slot_bits, act_read_bits=commands * banks_read * 8,
        param_bits=reads * param_layout(g).size,
        act_write_bits=int(np.prod(layer.out_shape)) * banks_written * 8)


def program_energy(program) -> list[LayerEnergy]:
    """Per layer of ``program`` (an :class:`~sparsegate.hw.engine.program.EngineProgram`)."""
    return [layer_energy(program, i) for i in range(len(program.layers))]


def energy_totals(layers: list[LayerEnergy]) -> dict:
    """Network totals in nJ per inference."""
    compute = sum(e.compute_pj for e in layers) / 1e3
    memory = sum(e.memory_pj for e in layers) / 1e3
    return {"compute_nj": compute, "memory_nj": memory, "total_nj": compute + memory,
            "memory_bits": sum(e.memory_bits for e in layers), "lane_macs": sum(e.lane_macs for e in layers),
            "useful_macs": sum(e.useful_macs for e in layers)}
