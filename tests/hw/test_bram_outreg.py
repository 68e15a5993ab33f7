"""The netlist pass that moves the register behind a DP16KD read port into the block RAM (REGMODE_B =
OUTREG): it takes plain registers only, leaves every other shape alone, and the engine's netlist simulation
(tests/flow/test_netlist_sim.py) runs on its result."""
from __future__ import annotations

import copy

import pytest

from sparsegate.hw.platform.bram_outreg import absorb_output_registers

CLK, OTHER_CLK, ENABLE, RESET = 2, 3, 4, 5


def _netlist(width: int = 9, ff: dict | None = None, extra_sink: bool = False, ocb: str = "1") -> dict:
    """A DP16KD whose two used read-data bits (nets 10, 11) each drive a TRELLIS_FF (outputs 20, 21)."""
    ram = {"type": "DP16KD",
           "parameters": {"REGMODE_A": "NOREG", "REGMODE_B": "NOREG", "CLKBMUX": "CLKB",
                          "DATA_WIDTH_B": format(width, "032b")},
           "port_directions": {"CLKB": "input", "OCEB": "input", "RSTB": "input", "DOB0": "output",
                               "DOB1": "output", "DOB2": "output"},
           "connections": {"CLKB": [CLK], "OCEB": [ocb], "RSTB": ["0"], "DOB0": [10], "DOB1": [11], "DOB2": [12]}}
    cells = {"ram": ram}
    for k, (d, q) in enumerate(((10, 20), (11, 21))):
        params = {"CEMUX": "1 ", "CLKMUX": "CLK", "GSR": "DISABLED", "LSRMUX": "LSR", "REGSET": "RESET",
                  "SRMODE": "LSR_OVER_CE"}
        conns = {"CLK": [CLK], "DI": [d], "Q": [q]}
        cells[f"ff{k}"] = {"type": "TRELLIS_FF", "parameters": {**params, **(ff or {}).get("parameters", {})},
                           "port_directions": {"CLK": "input", "DI": "input", "CE": "input", "LSR": "input",
                                               "Q": "output"},
                           "connections": {**conns, **(ff or {}).get("connections", {})}}
    if extra_sink:
        cells["lut"] = {"type": "LUT4", "parameters": {}, "port_directions": {"A": "input", "Z": "output"},
                        "connections": {"A": [11], "Z": [30]}}
    return {"modules": {"top": {"ports": {}, "cells": cells}}}


def test_plain_registers_move_into_the_block_ram():
    design = _netlist()
    assert absorb_output_registers(design) == 1
    cells = design["modules"]["top"]["cells"]
    assert set(cells) == {"ram"}
    ram = cells["ram"]
    assert ram["parameters"]["REGMODE_B"] == "OUTREG"
    assert ram["connections"]["DOB0"] == [20] and ram["connections"]["DOB1"] == [21]
    assert ram["connections"]["DOB2"] == [12]          # unused output left as it was


@pytest.mark.parametrize("change", [
    {"connections": {"CE": [ENABLE]}, "parameters": {"CEMUX": "CE"}},      # a clock enable
    {"connections": {"LSR": [RESET]}},                                    # a (synchronous) reset
    {"connections": {"CLK": [OTHER_CLK]}},                                # another clock
    {"parameters": {"CLKMUX": "INV"}},                                    # the falling edge
])
def test_registers_that_are_not_plain_stay(change):
    design = _netlist(ff=change)
    before = copy.deepcopy(design)
    assert absorb_output_registers(design) == 0
    assert design == before


def test_a_data_bit_with_a_second_reader_or_a_gated_output_stays():
    for design in (_netlist(extra_sink=True), _netlist(ocb="0")):
        before = copy.deepcopy(design)
        assert absorb_output_registers(design) == 0
        assert design == before


def test_wide_mode_sets_both_halves():
    design = _netlist(width=36)
    assert absorb_output_registers(design) == 1
    params = design["modules"]["top"]["cells"]["ram"]["parameters"]
    assert params["REGMODE_A"] == params["REGMODE_B"] == "OUTREG"
