"""Block-RAM output registers: the register behind a DP16KD read port moved into the block RAM.

A DP16KD read without its output register has a 5.8 ns clock-to-out (speed grade 6), more than half a
125 MHz cycle before any routing; Yosys's ECP5 mapping never sets ``REGMODE``. This pass runs on the Yosys
JSON netlist between synthesis and nextpnr: where every data output of a DP16KD's read port (port B; in the
36-bit mode both ``DOA`` and ``DOB``) drives exactly one flip-flop, a plain one (the read port's clock, no
clock enable, no set/reset), the flip-flops are removed and the block RAM's ``REGMODE_B`` becomes
``OUTREG``: the same register, inside the block RAM. The netlist means the same cycle for cycle (both
power up at 0), so the pass applies to any design; the engine keeps those registers reset-less so that it
finds them.
"""
from __future__ import annotations

import re

__all__ = ["absorb_output_registers"]

_DATA_OUT = re.compile(r"DO([AB])(\d+)$")


def _const(bits: list) -> str | None:
    """The constant a one-bit connection holds ("0", "1", "x"), or None for a net."""
    return bits[0] if len(bits) == 1 and isinstance(bits[0], str) else None


def _int(value) -> int:
    """A Yosys JSON parameter as an integer (a binary string of 32 or more digits, or a decimal one)."""
    text = str(value)
    return int(text, 2) if len(text) >= 32 and set(text) <= {"0", "1"} else int(text)


def _plain_ff(cell: dict, clock) -> bool:
    """A flip-flop clocked by ``clock`` on its rising edge, always enabled, never set or reset."""
    par, con = cell.get("parameters", {}), cell["connections"]
    if cell["type"] != "TRELLIS_FF" or con.get("CLK") != clock or par.get("CLKMUX", "CLK").strip() != "CLK":
        return False
    enabled = par.get("CEMUX", "1").strip() == "1" or _const(con.get("CE", ["1"])) == "1"
    no_reset = par.get("LSRMUX", "LSR").strip() == "0" or _const(con.get("LSR", ["0"])) == "0"
    return enabled and no_reset


def _absorb(cells: dict, sinks: dict, name: str) -> bool:
    ram = cells[name]
    par, con = ram["parameters"], ram["connections"]
    if par.get("REGMODE_B", "NOREG") != "NOREG" or par.get("CLKBMUX", "CLKB") != "CLKB":
        return False
    if _const(con.get("OCEB", ["1"])) != "1" or _const(con.get("RSTB", ["0"])) != "0":
        return False
    wide = _int(par.get("DATA_WIDTH_B", "18")) == 36
    moves = []                                      # (output port, flip-flop)
    for port, bits in con.items():
        match = _DATA_OUT.match(port)
        if not match or isinstance(bits[0], str) or not sinks.get(bits[0]):
            continue
        if match.group(1) == "A" and not wide:      # port A's own read: not this register's business
            return False
        users = sinks[bits[0]]
        if len(users) != 1 or users[0][1] != "DI" or not _plain_ff(cells[users[0][0]], con.get("CLKB")):
            return False
        moves.append((port, users[0][0]))
    if not moves:
        return False
    for port, ff in moves:
        con[port] = cells.pop(ff)["connections"]["Q"]
    par["REGMODE_B"] = "OUTREG"
    if wide:
        par["REGMODE_A"] = "OUTREG"
    return True


def absorb_output_registers(netlist: dict) -> int:
    """Move the plain register behind each DP16KD read port into the block RAM, in place (module
    docstring); returns how many block RAMs now use their output register."""
    moved = 0
    for module in netlist.get("modules", {}).values():
        cells = module.get("cells", {})
        sinks: dict[int, list[tuple[str, str]]] = {}
        for port in module.get("ports", {}).values():
            for bit in port["bits"]:
                if not isinstance(bit, str):
                    sinks.setdefault(bit, []).append(("", "port"))
        for name, cell in cells.items():
            directions = cell.get("port_directions", {})
            for port, bits in cell["connections"].items():
                if directions.get(port) == "input":
                    for bit in bits:
                        if not isinstance(bit, str):
                            sinks.setdefault(bit, []).append((name, port))
        for name in [n for n, c in cells.items() if c["type"] == "DP16KD"]:
            moved += _absorb(cells, sinks, name)
    return moved
