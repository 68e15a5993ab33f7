"""Build an Amaranth design into a Lattice ECP5 bitstream with the YoWASP tools, and report on it.

Flow: ``platform.build(..., do_build=False)`` renders Amaranth's build plan (RTLIL, LPF constraints,
``build_<name>.sh``) without its up-front tool check, which would also demand the board's
programmer (``openFPGALoader`` for the ULX3S) although nothing is programmed. The plan is extracted
to ``<build_dir>/work`` and its script run with ``YOSYS``/``NEXTPNR_ECP5``/``ECPPACK`` pointing at
the YoWASP executables (:func:`sparsegate.sw.util.toolchain.yowasp_env`). nextpnr runs with
``--report <name>.report.json`` (machine-readable utilisation and Fmax: the primary source; with
``--detailed-timing-report`` the arrival at every register input, from which a routed build lists its
:class:`LateRegister` s) and ``--timing-allow-fail`` (a slow design still gets a report; :func:`build_ecp5`
then decides).
Its log (``<name>.tim``) is the fallback source, and the only one when placement fails, since the
utilisation table is printed before placement: that is how a design that does not fit is reported
as :class:`DesignDoesNotFit` with its numbers.

``write_netlist`` (and :func:`synthesize`, which stops after Yosys) adds ``write_verilog -noattr <name>.netlist.v``
after ``synth_ecp5``: the gate-level netlist of exactly the synthesis the bitstream comes from, for
post-synthesis simulation (:mod:`sparsegate.sim.netlist_sim`).

``seeds`` places and routes the one synthesized netlist once per nextpnr placer seed, as many at a time as there
are cores (each in its own folder beside the netlist), and keeps the fastest: Fmax moves by several percent from
seed to seed on a full device, more than many design changes buy. The report names the seed it kept and every
seed's Fmax, worst register path and latest registers (the paths differ from seed to seed: a fix is judged on
all of them).

Outputs in ``build_dir``, each written atomically and removed before a rebuild so a failed build
never leaves a stale one: ``<name>.bit`` and ``<name>.build.json`` (the :class:`BuildReport`).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from sparsegate.hw.platform.bram_outreg import absorb_output_registers
from sparsegate.hw.platform import memory_hints, replicated_registers
from sparsegate.sw.util.toolchain import yowasp_env
from sparsegate.sw.util.atomic_io import write_bytes, write_json

__all__ = [
    "CellUsage", "ClockFmax", "CriticalPath", "BuildReport", "BuildFailed", "DesignDoesNotFit", "TimingNotMet",
    "CELL_ALIASES", "parse_nextpnr_report", "parse_critical_paths", "saved_critical_path",
    "LateRegister", "LATE_REGISTERS_KEPT", "parse_late_registers", "saved_late_registers", "parse_nextpnr_log",
    "check_fits", "build_ecp5", "synthesize", "Synthesis",
]

#: Friendly names for the nextpnr-ecp5 cell types that matter here.
CELL_ALIASES = {"LUT4": "TRELLIS_COMB", "FF": "TRELLIS_FF", "MULT": "MULT18X18D", "BRAM": "DP16KD",
                "IO": "TRELLIS_IO"}


class BuildFailed(RuntimeError):
    """A tool in the ECP5 flow failed for a reason other than size; the message has the log's tail."""


class DesignDoesNotFit(ValueError):
    """The design needs more of some resource than the device has; ``overused`` has the numbers."""

    def __init__(self, message: str, overused: dict[str, CellUsage]):
        super().__init__(message)
        self.overused = overused


class TimingNotMet(ValueError):
    """Place and route finished but some clock misses its constraint; ``report`` is the full report."""

    def __init__(self, message: str, report: BuildReport):
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class CellUsage:
    """How many cells of one type the design uses, of how many the device has."""

    used: int
    available: int

    @property
    def fraction(self) -> float:
        return self.used / self.available if self.available else float(self.used > 0)

    @property
    def fits(self) -> bool:
        return self.used <= self.available


@dataclass(frozen=True)
class ClockFmax:
    """Achieved maximum frequency of one clock net and its constraint (MHz)."""

    achieved_mhz: float
    constraint_mhz: float | None

    @property
    def met(self) -> bool:
        return self.constraint_mhz is None or self.achieved_mhz >= self.constraint_mhz


@dataclass(frozen=True)
class CriticalPath:
    """nextpnr's worst path from one clock edge to another: its delay split into logic and routing, how many
    logic cells it crosses, and the signals (the names Yosys left on the cells) it starts and ends at: where
    the next timing fix goes."""

    from_clock: str
    to_clock: str
    delay_ns: float
    logic_ns: float
    routing_ns: float
    levels: int        # logic cells with a delay on the path (a carry chain's hops through one slice count once)
    start: str
    end: str

    @property
    def register_to_register(self) -> bool:
        return "<async>" not in (self.from_clock, self.to_clock)

    def describe(self) -> str:
        """One line: ``start -> end: delay, levels, logic / routing``."""
        return (f"`{self.start}` -> `{self.end}`: {self.delay_ns:.2f} ns ({1000 / self.delay_ns:.1f} MHz), "
                f"{self.levels} logic levels, {self.logic_ns:.2f} ns logic + {self.routing_ns:.2f} ns routing")

    def to_dict(self) -> dict:
        return {"from_clock": self.from_clock, "to_clock": self.to_clock, "delay_ns": round(self.delay_ns, 3),
                "logic_ns": round(self.logic_ns, 3), "routing_ns": round(self.routing_ns, 3), "levels": self.levels,
                "start": self.start, "end": self.end}

    @classmethod
    def from_dict(cls, d: dict) -> CriticalPath:
        return cls(**{k: d[k] for k in ("from_clock", "to_clock", "delay_ns", "logic_ns", "routing_ns", "levels",
                                        "start", "end")})


# what synthesis and packing append to a signal's name on the cells that implement it
_CELL_SUFFIX = re.compile(r"(_TRELLIS_|_LUT4_|_CCU2C_|_PFUMX|_L6MUX|_DPR16X4|_MULT18X18D|_DP16KD|\$CCU2|\$DPRAM|"
                          r"\$nextpnr|\$PFUMX)")


def _signal_of(cell: str) -> str:
    """The signal a packed cell implements, e.g. ``top.seq.x0`` for ``top.seq.x0_TRELLIS_FF_Q_3``."""
    match = _CELL_SUFFIX.search(cell)
    return cell[:match.start()] if match and match.start() > 0 else cell


def parse_critical_paths(report: str | dict) -> tuple[CriticalPath, ...]:
    """The critical paths of nextpnr's ``--report`` JSON (text or decoded), one per clock pair, worst first."""
    data = json.loads(report) if isinstance(report, str) else report
    paths = []
    for entry in (data.get("critical_paths") or []) if isinstance(data, dict) else []:
        segments = entry.get("path") or []
        if not segments:
            continue
        logic = [s for s in segments if s.get("type") == "logic"]
        routing = [s for s in segments if s.get("type") == "routing"]
        levels = sum(1 for s in logic if float(s.get("delay", 0.0)) > 0.1)
        paths.append(CriticalPath(
            from_clock=str(entry.get("from", "")), to_clock=str(entry.get("to", "")),
            delay_ns=sum(float(s.get("delay", 0.0)) for s in segments),
            logic_ns=sum(float(s.get("delay", 0.0)) for s in logic),
            routing_ns=sum(float(s.get("delay", 0.0)) for s in routing), levels=levels,
            start=_signal_of(str(segments[0].get("from", {}).get("cell", ""))),
            end=_signal_of(str(segments[-1].get("to", {}).get("cell", "")))))
    return tuple(sorted(paths, key=lambda path: -path.delay_ns))


def _worst_register_path(paths) -> CriticalPath | None:
    """The first register-to-register path of ``paths`` (worst first): what sets Fmax."""
    return next((path for path in paths if path.register_to_register), None)


def saved_critical_path(report: dict) -> CriticalPath | None:
    """:attr:`BuildReport.critical_path` of a report saved with :meth:`BuildReport.to_dict` (None for a report
    from before critical paths were recorded, or without one)."""
    return _worst_register_path(CriticalPath.from_dict(d) for d in report.get("critical_paths", []))


@dataclass(frozen=True)
class LateRegister:
    """A signal whose flip-flop (or block-RAM / DSP) inputs miss their clock's target after routing: how many
    inputs, and the latest arrival among them. Fmax names one path; these name every register a faster clock
    must fix (nextpnr's ``--detailed-timing-report``)."""

    signal: str
    clock: str
    endpoints: int
    worst_ns: float       # latest arrival (clock-to-out, logic and routing) at one of its inputs
    period_ns: float      # the clock's target period

    def to_dict(self) -> dict:
        return {"signal": self.signal, "clock": self.clock, "endpoints": self.endpoints,
                "worst_ns": round(self.worst_ns, 3), "period_ns": round(self.period_ns, 3)}

    @classmethod
    def from_dict(cls, d: dict) -> LateRegister:
        return cls(**{k: d[k] for k in ("signal", "clock", "endpoints", "worst_ns", "period_ns")})


#: At most this many late registers are kept in a report (the worst first).
LATE_REGISTERS_KEPT = 60
#: ... and this many for each placer seed of a several-seed build (where the seeds differ: the next fix's target)
SEED_LATE_REGISTERS_KEPT = 10


def parse_late_registers(report: str | dict, clocks: dict[str, ClockFmax]) -> tuple[LateRegister, ...]:
    """The signals with inputs arriving after their clock's target period, grouped from the ``detailed_net_timings``
    of nextpnr's ``--report`` JSON, latest first (at most :data:`LATE_REGISTERS_KEPT`); ``()`` without them."""
    data = json.loads(report) if isinstance(report, str) else report
    period = {name: 1000.0 / c.constraint_mhz for name, c in clocks.items() if c.constraint_mhz}
    late: dict[tuple[str, str], list[float]] = {}
    for net in (data.get("detailed_net_timings") or []) if isinstance(data, dict) else []:
        for end in net.get("endpoints") or []:
            clock = str(end.get("event", "")).split(" ")[-1]
            arrival = float((end.get("delay") or [0.0, 0.0])[-1])
            if clock in period and arrival > period[clock]:
                late.setdefault((_signal_of(str(end.get("cell", ""))), clock), []).append(arrival)
    rows = [LateRegister(signal, clock, len(times), max(times), period[clock]) for (signal, clock), times in late.items()]
    return tuple(sorted(rows, key=lambda r: (-r.worst_ns, r.signal))[:LATE_REGISTERS_KEPT])


def saved_late_registers(report: dict) -> tuple[LateRegister, ...]:
    """:attr:`BuildReport.late_registers` of a report saved with :meth:`BuildReport.to_dict` (``()`` for one from
    before they were recorded)."""
    return tuple(LateRegister.from_dict(d) for d in report.get("late_registers", []))


@dataclass(frozen=True)
class BuildReport:
    """What a finished ECP5 build produced and measured."""

    design: str
    device: str
    package: str
    speed: str
    utilisation: dict[str, CellUsage]
    clocks: dict[str, ClockFmax]
    bitstream: Path | None
    build_dir: Path
    source: str  # "report" (nextpnr --report JSON) or "log" (parsed nextpnr log)
    elapsed_s: float
    routed: bool = True  # False: placed only (``place_only``): Fmax is nextpnr's post-placement estimate
    synth_opts: str = ""  # extra ``synth_ecp5`` options the build needed (see :data:`ABC9_WORKAROUND`)
    netlist: Path | None = None  # the synthesized netlist (``write_netlist``)
    critical_paths: tuple[CriticalPath, ...] = ()  # from nextpnr's report, worst first
    late_registers: tuple[LateRegister, ...] = ()  # registers missing their clock's target, latest first
    seed: int | None = None  # nextpnr's placer seed of this placement
    seed_fmax: dict[int, float | None] = field(default_factory=dict)  # every seed tried: its Fmax (None: failed)
    seed_critical: dict[int, CriticalPath | None] = field(default_factory=dict)  # every seed's worst path
    seed_late: dict[int, tuple[LateRegister, ...]] = field(default_factory=dict)  # every seed's latest registers

    @property
    def critical_path(self) -> CriticalPath | None:
        """The worst register-to-register path (what sets Fmax), if nextpnr reported one."""
        return _worst_register_path(self.critical_paths)

    def cell(self, kind: str) -> CellUsage:
        """Usage of a nextpnr cell type (``TRELLIS_COMB``) or an alias from :data:`CELL_ALIASES` (``LUT4``)."""
        kind = CELL_ALIASES.get(kind, kind)
        try:
            return self.utilisation[kind]
        except KeyError:
            raise KeyError(f"no cell type {kind!r} in the report; known: {', '.join(sorted(self.utilisation))}") from None

    @property
    def timing_met(self) -> bool:
        return all(clock.met for clock in self.clocks.values())

    @property
    def fmax_mhz(self) -> float | None:
        """The slowest clock's achieved Fmax (``None`` for a design without clocks)."""
        return min((c.achieved_mhz for c in self.clocks.values()), default=None)

    def summary(self) -> str:
        cells = ", ".join(f"{alias} {self.cell(alias).used}/{self.cell(alias).available}"
                          for alias in ("LUT4", "FF", "MULT", "BRAM") if CELL_ALIASES[alias] in self.utilisation)
        clocks = "; ".join(f"{name}: {c.achieved_mhz:.2f} MHz ({'met' if c.met else 'FAILED'} "
                           f"{c.constraint_mhz if c.constraint_mhz is not None else '-'} MHz)"
                           for name, c in self.clocks.items()) or "no clocks"
        seeds = (f"; fastest of {len(self.seed_fmax)} placer seeds (seed {self.seed})"
                 if len(self.seed_fmax) > 1 else "")
        return f"{self.design} on {self.device}: {cells}; {clocks}{seeds}"

    def to_dict(self) -> dict:
        return {
            "design": self.design, "device": self.device, "package": self.package, "speed": self.speed,
            "utilisation": {k: {"used": v.used, "available": v.available} for k, v in self.utilisation.items()},
            "clocks": {k: {"achieved_mhz": v.achieved_mhz, "constraint_mhz": v.constraint_mhz, "met": v.met}
                       for k, v in self.clocks.items()},
            "fmax_mhz": self.fmax_mhz, "timing_met": self.timing_met,
            "bitstream": str(self.bitstream) if self.bitstream else None,
            "build_dir": str(self.build_dir), "source": self.source, "elapsed_s": round(self.elapsed_s, 3),
            "routed": self.routed, "synth_opts": self.synth_opts,
            "netlist": str(self.netlist) if self.netlist else None,
            "critical_paths": [path.to_dict() for path in self.critical_paths],
            "late_registers": [late.to_dict() for late in self.late_registers],
            "seed": self.seed, "seed_fmax": {str(k): v for k, v in self.seed_fmax.items()},
            "seed_critical": {str(k): path.to_dict() if path else None for k, path in self.seed_critical.items()},
            "seed_late": {str(k): [late.to_dict() for late in lates] for k, lates in self.seed_late.items()},
        }


def parse_nextpnr_report(report: str | dict) -> tuple[dict[str, CellUsage], dict[str, ClockFmax]]:
    """Utilisation and per-clock Fmax from nextpnr's ``--report`` JSON (text or decoded)."""
    data = json.loads(report) if isinstance(report, str) else report
    if not isinstance(data, dict) or "utilization" not in data:
        raise ValueError("not a nextpnr report: no 'utilization' section")
    util = {kind: CellUsage(int(v["used"]), int(v["available"])) for kind, v in data["utilization"].items()}
    clocks = {}
    for name, v in (data.get("fmax") or {}).items():
        constraint = v.get("constraint")
        clocks[name] = ClockFmax(float(v["achieved"]), None if constraint is None else float(constraint))
    return util, clocks


_UTIL_HEADER = re.compile(r"^Info:\s*Device utilisation:\s*$", re.M)
_UTIL_LINE = re.compile(r"^Info:\s+(?P<kind>[A-Za-z0-9_]+):\s+(?P<used>\d+)/\s*(?P<avail>\d+)\s+\d+%\s*$")
_FMAX_LINE = re.compile(r"Max frequency for clock '(?P<name>[^']+)': (?P<fmax>[\d.]+) MHz"
                        r"(?: \((?:PASS|FAIL) at (?P<target>[\d.]+) MHz\))?")


def parse_nextpnr_log(text: str) -> tuple[dict[str, CellUsage], dict[str, ClockFmax]]:
    """Utilisation (the last ``Device utilisation:`` table) and per-clock Fmax (the last, i.e.
    post-route, figure for each clock) from a nextpnr-ecp5 log. Either may be empty."""
    util: dict[str, CellUsage] = {}
    headers = list(_UTIL_HEADER.finditer(text))
    if headers:
        for line in text[headers[-1].end():].lstrip("\n").splitlines():
            match = _UTIL_LINE.match(line)
            if not match:
                break
            util[match["kind"]] = CellUsage(int(match["used"]), int(match["avail"]))
    clocks = {}
    for match in _FMAX_LINE.finditer(text):
        target = match["target"]
        clocks[match["name"]] = ClockFmax(float(match["fmax"]), None if target is None else float(target))
    return util, clocks


def check_fits(utilisation: dict[str, CellUsage], *, design: str, device: str, detail: str = "") -> None:
    """Raise :class:`DesignDoesNotFit` naming every over-used cell type with used/available numbers."""
    over = {kind: use for kind, use in utilisation.items() if not use.fits}
    if over:
        numbers = ", ".join(f"{kind} {use.used}/{use.available} ({use.fraction:.0%})" for kind, use in over.items())
        raise DesignDoesNotFit(f"design '{design}' does not fit {device}: needs {numbers}"
                               + (f" [{detail}]" if detail else "") + "; use a larger device or a smaller design",
                               over)


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _default_platform():
    from amaranth_boards.ulx3s import ULX3S_25F_Platform
    return ULX3S_25F_Platform()


def _place_only_script(script: str, name: str) -> str:
    """Amaranth's build script changed to stop after placement: nextpnr ``--no-route`` without
    ``--textcfg``, no ecppack."""
    out = []
    for line in script.splitlines():
        if line.startswith('"$ECPPACK"'):
            continue
        if line.startswith('"$NEXTPNR_ECP5"'):
            line = re.sub(r" --textcfg \S+", "", line) + " --no-route"
        out.append(line)
    if not any("--no-route" in line for line in out):
        raise BuildFailed(f"cannot make a place-only flow: no nextpnr-ecp5 line in build_{name}.sh")
    return "\n".join(out) + "\n"


#: Yosys 0.70's abc9 reintegration reads a wire name ending in ``[N]`` as bit N of the wire named before it;
#: Amaranth names the elements of array-layout views so (``abuf.o__payload.a[14]``), and the engine at 16 lanes
#: came back with bit k of lane 1's activation joined to bit 0 of lane 8 + k (multiply driven nets nextpnr
#: refuses), or with the ABC_OPS_REINTEGRATE assertion below. Such wires get private names before synthesis.
#: Then the memories' synthesis hints (:mod:`~sparsegate.hw.platform.memory_hints`) and the registers kept as
#: copies (:mod:`~sparsegate.hw.platform.replicated_registers`).
SCRIPT_AFTER_READ = "\n".join(("rename -hide w:*]", *memory_hints.YOSYS_COMMANDS,
                               *replicated_registers.YOSYS_COMMANDS))

#: Yosys 0.70's abc9 asserts while reintegrating some netlists (the engine top at 8 lanes: "Assert
#: `GetSize(conn.first) == GetSize(conn.second)'" after ABC_OPS_REINTEGRATE); ``abc9 -dff`` takes another
#: path. A synthesis that fails so is run once more with this option, recorded in ``BuildReport.synth_opts``.
ABC9_WORKAROUND = ("ABC_OPS_REINTEGRATE", "-dff")


def _needs_abc9_workaround(work: Path, name: str) -> bool:
    rpt = work / f"{name}.rpt"
    text = rpt.read_text(errors="replace") if rpt.is_file() else ""
    stage = text.rfind(ABC9_WORKAROUND[0])
    return stage >= 0 and "ERROR: Assert" in text[stage:]


def _add_synth_option(work: Path, name: str, option: str) -> None:
    script = work / f"{name}.ys"
    text, count = re.subn(r"^(\s*synth_ecp5\b)", rf"\1 {option}", script.read_text(), flags=re.M)
    if count != 1:
        raise BuildFailed(f"cannot add {option} to the synthesis: no single synth_ecp5 line in {script}")
    script.write_text(text)


def _add_write_netlist(work: Path, name: str) -> Path:
    """Make the synthesis script also write the gate-level netlist; returns its path."""
    script = work / f"{name}.ys"
    text = script.read_text()
    if not re.search(r"^\s*synth_ecp5\b", text, flags=re.M):
        raise BuildFailed(f"cannot write the netlist: no synth_ecp5 line in {script}")
    script.write_text(text.rstrip("\n") + f"\nwrite_verilog -noattr {name}.netlist.v\n")
    return work / f"{name}.netlist.v"


def _synth_only_script(script: str, name: str) -> str:
    """Amaranth's build script cut after Yosys (no nextpnr, no ecppack)."""
    out = [line for line in script.splitlines() if not line.startswith(('"$NEXTPNR_ECP5"', '"$ECPPACK"'))]
    if not any(line.startswith('"$YOSYS"') for line in out):
        raise BuildFailed(f"cannot make a synthesis-only flow: no Yosys line in build_{name}.sh")
    return "\n".join(out) + "\n"


def _after_synthesis_script(script: str, name: str) -> str:
    """Amaranth's build script without its Yosys step (nextpnr and ecppack on the synthesized ``<name>.json``)."""
    out = [line for line in script.splitlines() if not line.startswith('"$YOSYS"')]
    if not any(line.startswith('"$NEXTPNR_ECP5"') for line in out):
        raise BuildFailed(f"cannot split the flow after synthesis: no nextpnr-ecp5 line in build_{name}.sh")
    return "\n".join(out) + "\n"


def _after_yosys(work: Path, name: str, tools: dict, netlist: Path | None) -> int:
    """The netlist pass between Yosys and nextpnr (:func:`~sparsegate.hw.platform.bram_outreg.
    absorb_output_registers` on ``<name>.json``); the gate-level Verilog netlist, when one is written, is
    rewritten from the result so that its simulation covers the pass. Returns the block RAMs changed."""
    path = work / f"{name}.json"
    design = json.loads(path.read_text())
    moved = absorb_output_registers(design)
    if moved:
        path.write_text(json.dumps(design))
        if netlist is not None:
            subprocess.run([tools["YOSYS"], "-q", "-p", f"read_json {path.name}; write_verilog -noattr {netlist.name}"],
                           cwd=work, check=True, capture_output=True, timeout=600)
    return moved


def _seeded_script(script: str, seed: int) -> str:
    """The place-and-route script with nextpnr's placer seed set."""
    if not re.search(r'^"\$NEXTPNR_ECP5"', script, flags=re.M):
        raise BuildFailed("cannot set the placer seed: no nextpnr-ecp5 line in the place-and-route script")
    return re.sub(r'^("\$NEXTPNR_ECP5")', rf"\1 --seed {seed}", script, flags=re.M)


def _log_fmax(log: Path) -> float | None:
    """The slowest clock's Fmax in a nextpnr log (post-route, or the placement estimate); None without one."""
    clocks = parse_nextpnr_log(log.read_text(errors="replace"))[1] if log.is_file() else {}
    return min((c.achieved_mhz for c in clocks.values()), default=None)


def _place_and_route(work: Path, name: str, tools: dict, timeout_s: float | None, seeds: Sequence[int]):
    """Run ``pnr_<name>.sh`` once per placer seed on the synthesized netlist in ``work``, each seed in its own
    folder, as many at a time as there are cores, and move the fastest successful run's outputs into ``work``.
    Returns that run's process, its seed, every seed's Fmax (None where nextpnr failed) and, when several ran,
    the other successful seeds' worst register paths and latest registers (read before their folders are removed;
    the kept seed's are the build's own report)."""
    script = (work / f"pnr_{name}.sh").read_text()
    inputs = (f"{name}.json", f"{name}.lpf")

    def run(seed: int) -> subprocess.CompletedProcess:
        folder = work / f"seed-{seed}"
        folder.mkdir()
        for file in inputs:         # nextpnr (WASI) opens files only inside its working folder
            try:
                os.link(work / file, folder / file)
            except OSError:
                shutil.copyfile(work / file, folder / file)
        (folder / f"pnr_{name}.sh").write_text(_seeded_script(script, seed))
        return _run_flow(folder, name, tools, timeout_s, f"pnr_{name}.sh")[0]

    with ThreadPoolExecutor(max(1, min(len(seeds), os.cpu_count() or 1))) as pool:
        procs = dict(zip(seeds, pool.map(run, seeds)))
    fmax = {seed: _log_fmax(work / f"seed-{seed}" / f"{name}.tim") if procs[seed].returncode == 0 else None
            for seed in seeds}
    best = max((s for s in seeds if fmax[s] is not None), key=lambda s: fmax[s], default=seeds[0])
    timing = {seed: _seed_timing(work / f"seed-{seed}" / f"{name}.report.json") for seed in seeds
              if seed != best and fmax[seed] is not None}
    for file in (work / f"seed-{best}").iterdir():
        if file.name not in inputs:
            file.replace(work / file.name)
    for seed in seeds:
        shutil.rmtree(work / f"seed-{seed}")
    return procs[best], best, fmax, timing


def _seed_timing(report_path: Path) -> tuple[CriticalPath | None, tuple[LateRegister, ...]]:
    """One seed's worst register path and its latest registers (at most SEED_LATE_REGISTERS_KEPT), from its
    nextpnr report (none without one)."""
    if not report_path.is_file():
        return None, ()
    data = json.loads(report_path.read_text())
    _, clocks = parse_nextpnr_report(data)
    return (_worst_register_path(parse_critical_paths(data)),
            parse_late_registers(data, clocks)[:SEED_LATE_REGISTERS_KEPT])


def _run_flow(work: Path, name: str, tools: dict, timeout_s: float | None, script: str | None = None):
    """Run ``script`` (default ``build_<name>.sh``) once, and once more with :data:`ABC9_WORKAROUND` when
    synthesis hit that assertion; returns the finished process and the extra synthesis options used."""
    synth_opts = ""
    while True:
        try:
            proc = subprocess.run(["sh", script or f"build_{name}.sh"], cwd=work, env={**os.environ, **tools},
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise BuildFailed(f"ECP5 build of '{name}' timed out after {timeout_s} s (work folder {work})") from None
        if proc.returncode == 0 or synth_opts or not _needs_abc9_workaround(work, name):
            return proc, synth_opts
        synth_opts = ABC9_WORKAROUND[1]
        _add_synth_option(work, name, synth_opts)


@dataclass(frozen=True)
class Synthesis:
    """A synthesis-only run: the gate-level netlist, the time Yosys took, the extra options it needed."""

    netlist: Path
    elapsed_s: float
    synth_opts: str = ""


def synthesize(design, *, build_dir: str | Path, platform=None, name: str = "top",
               timeout_s: float | None = None) -> Synthesis:
    """Only the Yosys step of :func:`build_ecp5` (the same script, the same abc9 workaround), writing the
    gate-level netlist ``<build_dir>/work/<name>.netlist.v``. Raises :class:`BuildFailed`."""
    tools = yowasp_env()
    platform = _default_platform() if platform is None else platform() if isinstance(platform, type) else platform
    work = Path(build_dir).resolve() / "work"
    shutil.rmtree(work, ignore_errors=True)
    platform.build(design, name=name, do_build=False, do_program=False,
                   script_after_read=SCRIPT_AFTER_READ).extract(str(work))
    script = work / f"build_{name}.sh"
    script.write_text(_synth_only_script(script.read_text(), name))
    netlist = _add_write_netlist(work, name)
    started = time.monotonic()
    proc, synth_opts = _run_flow(work, name, tools, timeout_s)
    if proc.returncode == 0 and (work / f"{name}.json").is_file():
        _after_yosys(work, name, tools, netlist)
    elapsed = time.monotonic() - started
    if proc.returncode != 0 or not netlist.is_file():
        raise BuildFailed(f"synthesis of '{name}' failed (exit {proc.returncode}); logs in {work}:\n"
                          f"{_tail(proc.stdout or '')}")
    return Synthesis(netlist, elapsed, synth_opts)


def build_ecp5(design, *, build_dir: str | Path, platform=None, name: str = "top",
               require_timing: bool = True, nextpnr_opts: tuple[str, ...] = (),
               timeout_s: float | None = None, place_only: bool = False, write_netlist: bool = False,
               after_synthesis: Callable[[Path], None] | None = None, seeds: Sequence[int] = (1,)) -> BuildReport:
    """Synthesise, place, route and pack ``design`` for an ECP5 board; return its :class:`BuildReport`.

    ``place_only`` stops after placement (nextpnr ``--no-route``, no bitstream): utilisation is final,
    Fmax is nextpnr's post-placement estimate (``report.routed`` is False), in a fraction of the time.
    ``write_netlist`` also writes Yosys's gate-level netlist (``report.netlist``); ``after_synthesis(netlist)``
    is then called between Yosys and nextpnr (the flow runs as two scripts), so work on the netlist (its simulation)
    can overlap place and route. ``seeds``: nextpnr's placer seeds; more than one places and routes once per seed
    and keeps the fastest (see the module).

    ``platform`` is an amaranth-boards ECP5 platform instance or class (default: ULX3S 25F,
    LFE5U-25F); an instance can be built only once. Raises
    :class:`~sparsegate.sw.util.toolchain.ToolNotFoundError` when YoWASP is missing,
    :class:`DesignDoesNotFit`, :class:`TimingNotMet` (only if ``require_timing``) or
    :class:`BuildFailed`. Nothing is programmed.
    """
    seeds = tuple(dict.fromkeys(seeds))
    if not seeds:
        raise ValueError("build_ecp5 needs at least one placer seed")
    tools = yowasp_env()
    if platform is None:
        platform = _default_platform()
    elif isinstance(platform, type):
        platform = platform()
    device = str(platform.device)
    build_dir = Path(build_dir).resolve()
    work = build_dir / "work"
    bit_out, report_out = build_dir / f"{name}.bit", build_dir / f"{name}.build.json"
    for stale in (bit_out, report_out):
        stale.unlink(missing_ok=True)
    shutil.rmtree(work, ignore_errors=True)

    opts = ["--report", f"{name}.report.json", "--detailed-timing-report", "--timing-allow-fail", *nextpnr_opts]
    plan = platform.build(design, name=name, do_build=False, do_program=False, nextpnr_opts=" ".join(opts),
                          script_after_read=SCRIPT_AFTER_READ)
    plan.extract(str(work))
    if place_only:
        script = work / f"build_{name}.sh"
        script.write_text(_place_only_script(script.read_text(), name))
    netlist = _add_write_netlist(work, name) if write_netlist else None

    started = time.monotonic()
    # Yosys, then the netlist pass (block-RAM output registers), then nextpnr and ecppack
    script = work / f"build_{name}.sh"
    (work / f"synth_{name}.sh").write_text(_synth_only_script(script.read_text(), name))
    (work / f"pnr_{name}.sh").write_text(_after_synthesis_script(script.read_text(), name))
    proc, synth_opts = _run_flow(work, name, tools, timeout_s, f"synth_{name}.sh")
    if proc.returncode == 0 and (work / f"{name}.json").is_file():
        _after_yosys(work, name, tools, netlist)
        if netlist is not None and after_synthesis is not None:
            after_synthesis(netlist)
        synth_log = proc.stdout or ""
        proc, seed, seed_fmax, seed_timing = _place_and_route(work, name, tools, timeout_s, seeds)
        proc.stdout = synth_log + (proc.stdout or "")
    else:
        seed, seed_fmax, seed_timing = None, {}, {}
    elapsed = time.monotonic() - started
    (work / "tools.log").write_text(proc.stdout or "")
    log_path = work / f"{name}.tim"
    log_text = log_path.read_text(errors="replace") if log_path.is_file() else ""

    if proc.returncode != 0:
        util, _ = parse_nextpnr_log(log_text)
        errors = [line for line in log_text.splitlines() if line.startswith("ERROR:")]
        check_fits(util, design=name, device=device, detail=errors[0] if errors else "")
        stage = "nextpnr" if log_text else "yosys"
        raise BuildFailed(f"ECP5 build of '{name}' failed in {stage} (exit {proc.returncode}); "
                          f"logs in {work}:\n{_tail(proc.stdout or '')}")

    report_path = work / f"{name}.report.json"
    if report_path.is_file():   # decoded once: with the detailed timings it is megabytes
        report_data = json.loads(report_path.read_text())
        util, clocks = parse_nextpnr_report(report_data)
        critical = parse_critical_paths(report_data)
        source = "report"
    else:  # e.g. nextpnr options overridden through AMARANTH_nextpnr_opts
        util, clocks = parse_nextpnr_log(log_text)
        report_data, critical = {}, ()
        source = "log"
    if not clocks:  # nextpnr's --report has no Fmax without routing: take the post-placement figure from the log
        clocks = parse_nextpnr_log(log_text)[1]
    late = parse_late_registers(report_data, clocks) if not place_only else ()
    if not util:
        raise BuildFailed(f"ECP5 build of '{name}' finished but nextpnr reported no utilisation (see {work})")
    check_fits(util, design=name, device=device)

    if place_only:
        bitstream = None
    else:
        bit = work / f"{name}.bit"
        if not bit.is_file() or bit.stat().st_size == 0:
            raise BuildFailed(f"ECP5 build of '{name}' finished without a bitstream ({bit} missing or empty)")
        write_bytes(bit_out, bit.read_bytes())
        bitstream = bit_out

    # every successful seed's timing in seed order, the kept one's from this report (one seed: none beside it)
    several = {s: (_worst_register_path(critical), late[:SEED_LATE_REGISTERS_KEPT]) if s == seed else seed_timing[s]
               for s in seed_fmax if len(seeds) > 1 and (s == seed or s in seed_timing)}
    report = BuildReport(design=name, device=device, package=str(platform.package), speed=str(platform.speed),
                         utilisation=util, clocks=clocks, bitstream=bitstream, build_dir=build_dir,
                         source=source, elapsed_s=elapsed, routed=not place_only, synth_opts=synth_opts,
                         netlist=netlist, critical_paths=critical, late_registers=late, seed=seed,
                         seed_fmax=seed_fmax, seed_critical={s: path for s, (path, _) in several.items()},
                         seed_late={s: lates for s, (_, lates) in several.items()})
    write_json(report_out, report.to_dict())
    if require_timing and not report.timing_met:
        raise TimingNotMet(f"timing not met: {report.summary()}", report)
    return report


def main(argv: list[str] | None = None) -> int:
    """``python -m sparsegate.hw.platform.ecp5_build [--out DIR]``: build the smoke top for the ULX3S 25F."""
    import argparse
    import sys

    from sparsegate.hw.platform.smoke_top import SmokeTop
    from sparsegate.sw.util.toolchain import ToolNotFoundError

    parser = argparse.ArgumentParser(prog="python -m sparsegate.hw.platform.ecp5_build", description=main.__doc__)
    parser.add_argument("--out", default="build/ecp5-smoke", help="build folder (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        report = build_ecp5(SmokeTop(), build_dir=args.out)
    except (ToolNotFoundError, BuildFailed, DesignDoesNotFit, TimingNotMet) as err:
        print(f"ecp5 build: error: {err}", file=sys.stderr)
        return 2
    print(report.summary())
    print(f"bitstream: {report.bitstream} ({report.elapsed_s:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
