"""The core registry: every device that can sit behind the host link, and what the rest of the toolkit needs
to know about it — so builds, host loaders and simulator transports dispatch on a :class:`Core` record
instead of comparing core names.

A record gives the core's ``name`` (the ``--core`` value and the name the ID reply carries), the class of
program it is built from, the linked top level (the core behind :class:`~sparsegate.hw.link.host_link.HostLink`,
byte streams ``rx``/``tx``), its host memories, its debug register map, its identity fields, the inputs of a
build digest, and a block-RAM / DSP estimate. The names are the cores' own ``CORE_NAME`` (what their ID reply
says); the rest of each core's modules is imported inside the functions.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from sparsegate.hw.engine.engine import CORE_NAME as ENGINE_NAME
from sparsegate.hw.lif.design import CORE_NAME as LIF_NAME
from sparsegate.sw.ir.golden import index_width

__all__ = ["Core", "ResourceEstimate", "ENGINE", "LIF", "CORES", "core_named", "core_for", "dp16kd_blocks"]


@dataclass(frozen=True)
class ResourceEstimate:
    """Block RAM (DP16KD, per memory in ``parts``) and DSP (MULT18X18D) cells a board top needs."""

    dp16kd: int
    mult18x18d: int
    parts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The ``report.json`` form: ``{"DP16KD", "DP16KD_parts", "MULT18X18D"}``."""
        return {"DP16KD": self.dp16kd, "DP16KD_parts": dict(self.parts), "MULT18X18D": self.mult18x18d}


@dataclass(frozen=True)
class Core:
    """One core behind the host link (see the module docstring); ``label``/``heading`` name a sized design
    from its identity fields in the build log and the report."""

    name: str
    title: str
    is_program: Callable[[Any], bool]
    linked: Callable[..., Any]
    host_memories: Callable[[Any], list[tuple[str, int, int]]]
    dbg_map: Callable[[dict], dict]
    identity: Callable[[Any], dict]
    digest_inputs: Callable[[Any], tuple[dict, list[bytes]]]
    estimate: Callable[..., ResourceEstimate]
    label: Callable[[dict], str]
    heading: Callable[[dict], str]
    result_bytes: int


def dp16kd_blocks(width: int, depth: int) -> int:
    """Fewest DP16KD blocks for a ``width`` x ``depth`` memory (1 write + 1 read port)."""
    configs = [(16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)]
    return min(-(-depth // d) * -(-width // w) for d, w in configs)


# ------------------------------------------------------------------------------------------ sparse engine

def _is_engine_program(program) -> bool:
    from sparsegate.hw.engine.program import EngineProgram
    return isinstance(program, EngineProgram)


def _engine_linked(program, *, timeout: int, clk_hz: int = 0):
    from sparsegate.hw.platform.board_top import LinkedEngine
    return LinkedEngine(program, timeout=timeout, clk_hz=clk_hz)


def _engine_memories(program) -> list[tuple[str, int, int]]:
    from sparsegate.hw.engine.engine import HOST_MEMS, host_memories
    mems = host_memories(program.contents)
    return [(name, *mems[name]) for name in HOST_MEMS]


def _engine_dbg_map(geometry: dict) -> dict:
    from sparsegate.hw.engine.engine import dbg_map
    from sparsegate.hw.engine.layouts import EngineGeometry
    return dbg_map(EngineGeometry(**geometry))


def _engine_identity(program) -> dict:
    return dict(program.geometry.__dict__)


def _engine_digest_inputs(program) -> tuple[dict, list[bytes]]:
    words = (program.desc_words, program.chan_words, program.param_words, program.weight_words, program.input_words)
    return {"geometry": program.geometry.__dict__}, [",".join(map(str, w)).encode() for w in words]


def _engine_estimate(program, max_payload: int = 2048) -> ResourceEstimate:
    """Activation banks, weight, parameter and input memories, the host link's frame buffer (memories under
    2 kbit are assumed in LUT RAM, and the input memory where the engine puts it there); P lane multipliers, two
    per output-stage pipeline (requant halves), one for the sequencer's sample address and one for the link's
    length check."""
    g = program.geometry
    from sparsegate.hw.engine.engine import input_in_lutram
    from sparsegate.hw.engine.weight_decoder import weight_memories
    mems = {name: (w, d) for name, w, d in _engine_memories(program)}
    parts = {"activation banks": g.banks * dp16kd_blocks(8, g.act_depth)}
    lutram = {"input"} if input_in_lutram(program.contents) else set()
    # the weight memory in the weight decoder's banks and column slices
    weight = sum(dp16kd_blocks(lanes * g.slot_bits, depth) for _, depth, _, lanes in weight_memories(g)
                 if lanes * g.slot_bits * depth > 2048)
    if weight:
        parts["weight"] = weight
    for name in ("param", "input", "chan"):
        w, d = mems[name]
        if w * d > 2048 and name not in lutram:
            parts[name] = dp16kd_blocks(w, d)
    parts["frame buffer"] = dp16kd_blocks(8, max_payload)
    return ResourceEstimate(sum(parts.values()), g.lanes + 2 * g.ways + 2, parts)


# ---------------------------------------------------------------------------------------------- LIF core

def _is_lif_design(program) -> bool:
    from sparsegate.hw.lif.design import LifDesign
    return isinstance(program, LifDesign)


def _lif_linked(design, *, timeout: int, clk_hz: int = 0):
    from sparsegate.hw.lif.design import LinkedLif
    return LinkedLif(design, timeout=timeout, clk_hz=clk_hz)


def _lif_memories(design) -> list[tuple[str, int, int]]:
    from sparsegate.hw.lif.design import lif_host_memories
    return lif_host_memories(design)


def _lif_dbg_map(geometry: dict) -> dict:
    from sparsegate.hw.lif.design import lif_dbg_map
    return lif_dbg_map(geometry["n_outputs"])


def _lif_identity(design) -> dict:
    return design.ident_values()


def _lif_digest_inputs(design) -> tuple[dict, list[bytes]]:
    snn = design.snn
    fields = {"hidden": dataclasses.asdict(snn.hidden), "readout": dataclasses.asdict(snn.readout),
              "steps": snn.steps, "units": design.units, "per_word": design.per_word,
              "source_depth": design.source_depth, "n_samples": design.n_samples}
    return fields, [a.astype("int64").tobytes() for a in (snn.w1, snn.w2, snn.mask, *design.samples)]


def _lif_estimate(design, max_payload: int = 2048) -> ResourceEstimate:
    """Hidden and readout weight banks, the spike-train memory, the event buffer, the frame buffer (memories
    under 2 kbit assumed in LUT RAM); a multiplier per unit for a multiplier leak, 2 for the synaptic-operation
    counters."""
    snn, hg = design.snn, design.hidden_geom
    parts: dict[str, int] = {}
    for name, bits, depth in _lif_memories(design):
        if bits * depth > 2048 and name != "mask":
            key = ("hidden banks" if name.startswith("hidden") else "readout banks" if name.startswith("readout")
                   else "spike trains")
            parts[key] = parts.get(key, 0) + dp16kd_blocks(bits, depth)
    ev_bits = max(1, index_width(snn.n_inputs))
    if ev_bits * snn.n_inputs > 2048:
        parts["event buffer"] = dp16kd_blocks(ev_bits, snn.n_inputs)
    parts["frame buffer"] = dp16kd_blocks(8, max_payload)
    return ResourceEstimate(sum(parts.values()), 2 + (hg.units if snn.hidden.leak == "mult" else 0), parts)


ENGINE = Core(name=ENGINE_NAME, title="sparse engine", is_program=_is_engine_program, linked=_engine_linked,
              host_memories=_engine_memories, dbg_map=_engine_dbg_map, identity=_engine_identity,
              digest_inputs=_engine_digest_inputs, estimate=_engine_estimate,
              label=lambda g: f"{g['lanes']}-lane engine", heading=lambda g: f"{g['lanes']} lanes", result_bytes=1)
LIF = Core(name=LIF_NAME, title="LIF core", is_program=_is_lif_design, linked=_lif_linked, host_memories=_lif_memories,
           dbg_map=_lif_dbg_map, identity=_lif_identity, digest_inputs=_lif_digest_inputs, estimate=_lif_estimate,
           label=lambda g: f"LIF core ({g['units']} units)", heading=lambda g: f"LIF core, {g['units']} units",
           result_bytes=4)

#: Every core by name, the default (the sparse engine) first.
CORES = {core.name: core for core in (ENGINE, LIF)}


def core_named(name: str) -> Core:
    """The core called ``name`` (a ``--core`` value or the ID reply's core name); ``KeyError`` names the known ones."""
    try:
        return CORES[name]
    except KeyError:
        raise KeyError(f"unknown core {name!r} (known: {', '.join(CORES)})") from None


def core_for(program) -> Core:
    """The core a program is for: an engine program or a :class:`~sparsegate.hw.lif.design.LifDesign`."""
    for core in CORES.values():
        if core.is_program(program):
            return core
    raise TypeError(f"no core is built from a {type(program).__name__}")

