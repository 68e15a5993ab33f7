"""Post-synthesis (gate-level) simulation of a board top level; see the module's full text below."""
from __future__ import annotations

from pathlib import Path

#: The MULT18X18D simulation model (Yosys ships only a black box for it).
MULT18X18D_MODEL = Path(__file__).parent / "cells" / "mult18x18d.v"
