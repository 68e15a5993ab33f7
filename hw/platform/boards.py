"""The ECP5 boards ``sparsegate build`` targets: amaranth-boards platforms, plus the pinouts they lack
from ``constraints/<board>.json`` (e.g. the OrangeCrab has no UART resource).

:func:`make_platform` returns a fresh platform instance (an instance can be built once). Programmer
tools (openFPGALoader, dfu-util, ecpprog) are never needed to build: :func:`~sparsegate.hw.platform.ecp5_build.build_ecp5`
renders the plan without Amaranth's up-front tool check.
"""
from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Board", "BOARDS", "make_platform", "board_names", "CONSTRAINTS_DIR", "DEVICE_RESOURCES"]

CONSTRAINTS_DIR = Path(__file__).resolve().parents[2] / "constraints"

#: nextpnr capacities per device size (LUT4, FF, MULT18X18D, DP16KD) for quick fit estimates.
DEVICE_RESOURCES = {
    "12F": {"LUT4": 12096, "FF": 12096, "MULT18X18D": 28, "DP16KD": 56},   # 12F = 25F die, licensed smaller
    "25F": {"LUT4": 24288, "FF": 24288, "MULT18X18D": 28, "DP16KD": 56},
    "45F": {"LUT4": 43848, "FF": 43848, "MULT18X18D": 72, "DP16KD": 108},
    "85F": {"LUT4": 83640, "FF": 83640, "MULT18X18D": 156, "DP16KD": 208},
}


@dataclass(frozen=True)
class Board:
    name: str
    module: str              # amaranth_boards module
    platform: str            # class name in it
    description: str
    constraints: str | None = None   # file in constraints/
    #: the fastest rate of the board's USB-serial bridge (FT231X 3 Mbaud, FT2232H 12 Mbaud); 115200 where the
    #: host link goes through an external adapter of unknown kind
    uart_max_baud: int = 115_200

    @property
    def size(self) -> str:
        return self.name.rsplit("-", 1)[-1].upper() if self.name[-1] in "fF" else ""


BOARDS = {b.name: b for b in [
    Board("ulx3s-12f", "ulx3s", "ULX3S_12F_Platform", "Radiona ULX3S, LFE5U-12F", uart_max_baud=3_000_000),
    Board("ulx3s-25f", "ulx3s", "ULX3S_25F_Platform", "Radiona ULX3S, LFE5U-25F", uart_max_baud=3_000_000),
    Board("ulx3s-45f", "ulx3s", "ULX3S_45F_Platform", "Radiona ULX3S, LFE5U-45F", uart_max_baud=3_000_000),
    Board("ulx3s-85f", "ulx3s", "ULX3S_85F_Platform", "Radiona ULX3S, LFE5U-85F", uart_max_baud=3_000_000),
    Board("orangecrab-25f", "orangecrab_r0_2", "OrangeCrabR0_2_25FPlatform", "OrangeCrab r0.2, LFE5U-25F",
          "orangecrab_r0_2.json"),
    Board("orangecrab-85f", "orangecrab_r0_2", "OrangeCrabR0_2_85FPlatform", "OrangeCrab r0.2, LFE5U-85F",
          "orangecrab_r0_2.json"),
    Board("ecpix5-45f", "ecpix5", "ECPIX545Platform", "LambdaConcept ECPIX-5, LFE5UM5G-45F", uart_max_baud=12_000_000),
    Board("ecpix5-85f", "ecpix5", "ECPIX585Platform", "LambdaConcept ECPIX-5, LFE5UM5G-85F", uart_max_baud=12_000_000),
    Board("colorlight-5a75b", "colorlight_5a75b_r7_0", "Colorlight_5A75B_R70Platform",
          "Colorlight 5A-75B r7.0, LFE5U-25F", "colorlight_5a75b_r7_0.json"),
    Board("versa-ecp5", "versa_ecp5", "VersaECP5Platform", "Lattice ECP5 Versa, LFE5UM-45F", uart_max_baud=12_000_000),
]}


def board_names() -> list[str]:
    return list(BOARDS)


def _constraints(board: Board) -> dict:
    if not board.constraints:
        return {}
    return json.loads((CONSTRAINTS_DIR / board.constraints).read_text())


def make_platform(name: str, *, uart_pins: tuple[str, str] | None = None):
    """A new platform instance for board ``name`` with the constraints it lacks added; ``uart_pins``
    (tx, rx) replaces the UART pinout."""
    from amaranth.build import Attrs, Pins, Resource, Subsignal

    try:
        board = BOARDS[name]
    except KeyError:
        raise ValueError(f"unknown board {name!r}; known: {', '.join(BOARDS)}") from None
    cls = getattr(importlib.import_module(f"amaranth_boards.{board.module}"), board.platform)
    platform = cls()
    extra = dict(_constraints(board).get("resources", {}))
    if uart_pins is not None:
        extra["uart"] = {"tx": uart_pins[0], "rx": uart_pins[1], "attrs": {"IO_TYPE": "LVCMOS33"}}
        platform.resources.pop(("uart", 0), None)
    if "uart" in extra:
        u = extra["uart"]
        platform.add_resources([Resource("uart", 0, Subsignal("tx", Pins(u["tx"], dir="o")),
                                         Subsignal("rx", Pins(u["rx"], dir="i")), Attrs(**u.get("attrs", {})))])
    return platform


def device_size(device: str) -> str:
    """``LFE5U-25F`` / ``LFE5UM5G-85F`` -> ``25F``."""
    return device.rsplit("-", 1)[-1]
