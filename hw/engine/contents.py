"""What the engine RTL is built from: its geometry and the power-up contents of its five memories. The
compiler (:mod:`~sparsegate.hw.engine.program`) produces it; the gateware sees only these numbers, never the
compiler's network or layer plans."""
from __future__ import annotations

from dataclasses import dataclass

from sparsegate.hw.engine.layouts import EngineGeometry

__all__ = ["EngineContents"]


@dataclass(frozen=True)
class EngineContents:
    """The geometry and the initial words of every engine memory (docs/engine.md, "Memories")."""

    geometry: EngineGeometry
    desc_words: tuple            # layer descriptors (desc_layout)
    chan_words: tuple            # per output channel: weight range, parameter index (chan_layout)
    param_words: tuple           # requantization parameters (param_layout)
    weight_words: tuple          # lanes * slot_bits wide
    input_words: tuple           # banks * 8 wide; n_samples * input_depth words
