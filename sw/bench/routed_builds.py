"""The routed figures of a build sweep (``builds.json``, written by :func:`sparsegate.sw.bench.builds.run_build_sweep`),
for the benchmarks that price throughput per resource: per ``(device, lanes, engine)`` point nextpnr's post-route
Fmax and the LUT4 / MULT18X18D / DP16KD it used, or why the point has no such figure (placed only, does not fit,
failed, not in the sweep). Post-placement estimates are never taken for routed figures. A point without an
``engine`` (a sweep from before the variants) is the current engine's.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from sparsegate.sw.flow.build import DEFAULT_ENGINE

__all__ = ["RoutedBuild", "SweepFigures", "SweepFormatError", "find_sweep", "read_sweep"]


class SweepFormatError(ValueError):
    """A ``builds.json`` that is not the build sweep's: the message names the file and the field."""


@dataclass(frozen=True)
class RoutedBuild:
    """One placed-and-routed point: sign-off Fmax and the resources of its bitstream."""

    device: str        # "25F", "45F", "85F"
    lanes: int
    engine: str        # the variant (sw/flow/build.py:ENGINE_VARIANTS)
    fmax_mhz: float
    lut4: int
    ff: int
    dsp: int           # MULT18X18D
    ebr: int           # DP16KD
    met: bool          # timing met at the sweep's clock
    digest: str        # the build's cache key


@dataclass(frozen=True)
class SweepFigures:
    """What a sweep holds: its routed points, and for every other point the reason it has no routed figure."""

    path: Path
    sources: str              # digest of the gateware sources and tools the sweep built
    clock_mhz: float
    routed: dict = field(default_factory=dict)    # (device, lanes, engine) -> RoutedBuild
    missing: dict = field(default_factory=dict)   # (device, lanes, engine) -> why there is no routed figure

    def lookup(self, device: str, lanes: int, engine: str = DEFAULT_ENGINE) -> RoutedBuild | str:
        """The routed build of ``engine`` at ``(device, lanes)``, or a short reason why there is none."""
        key = (device.upper(), lanes, engine)
        return self.routed.get(key) or self.missing.get(key, "not in the sweep")


def find_sweep(candidates) -> Path | None:
    """The first of ``candidates`` (paths) that is a file; None if none is."""
    return next((Path(c) for c in candidates if Path(c).is_file()), None)


def read_sweep(path: str | Path) -> SweepFigures:
    """Read a build sweep's ``builds.json``; raises :class:`SweepFormatError` naming the file and field when it
    is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SweepFormatError(f"{path}: not a readable JSON file ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("points"), list):
        raise SweepFormatError(f"{path}: expected the build sweep's JSON, an object with a 'points' list")
    routed, missing = {}, {}
    for i, p in enumerate(data["points"]):
        try:
            key = (str(p["device"]).upper(), int(p["lanes"]), str(p.get("engine", DEFAULT_ENGINE)))
            if p["status"] != "ok":
                missing[key] = str(p["status"])
            elif p.get("mode", "routed") != "routed":
                missing[key] = "placed only (no routed Fmax)"
            elif p.get("fmax") is None:
                missing[key] = "routed, but nextpnr reported no Fmax"
            else:
                routed[key] = RoutedBuild(*key, float(p["fmax"]), int(p["lut"]), int(p["ff"]),
                                          int(p["dsp"]), int(p["ebr"]), bool(p["met"]), str(p.get("digest", "")))
        except (KeyError, TypeError, ValueError) as err:
            raise SweepFormatError(f"{path}: points[{i}]: expected device, lanes, status, mode, fmax, lut, ff, dsp, "
                                   f"ebr and met ({type(err).__name__}: {err})") from None
    return SweepFigures(path, str(data.get("sources", "")), float(data.get("clock_mhz", 0.0)), routed, missing)
