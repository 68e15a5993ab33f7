"""Design-space sweep: the board top level with the pruned LeNet-5 for lanes P in {1, 4, 8, 16, 32, 64} on
the ULX3S 25F / 45F / 85F -> LUT4, FF, MULT18X18D, DP16KD and Fmax per point, a Markdown table, a JSON
file and a plot (``builds.md``, ``builds.json``, ``sweep.png`` in the output folder).

Every point goes through :func:`sparsegate.sw.flow.build.build_board` (cached by design digest, so a
rerun only builds what changed). Points whose block-RAM / DSP estimate is clearly over the device are
reported as "does not fit" with the estimate, without running the tools; points nextpnr cannot place are
reported with nextpnr's numbers. Each point is either

* routed: placed and routed, Fmax is nextpnr's post-route (sign-off) figure, a bitstream is written; or
* placed: placed only (nextpnr ``--no-route``, no bitstream), Fmax is the **post-placement estimate**,
  labelled as such in every output.

``routed`` picks which: a list of ``(device, lanes)`` points — by default :data:`ROUTED_POINTS`, the points
that matter, with the rest of the grid placed (a whole routed grid is hours on a small machine) —, every point
(``"all"``), or none (``quick``). ``lanes`` may be ``"largest"``: the
most lanes whose block-RAM/DSP estimate fits the device.

``lanes`` / ``devices`` pick a slice of the grid; routed points on other devices are left out.

``seeds``: nextpnr's placer seeds for the routed points (default :data:`ROUTED_SEEDS`): each is placed and routed
once per seed and keeps the fastest (:func:`~sparsegate.sw.flow.build.build_board`); the table gives the kept
Fmax and every seed's, since on a full device the seeds differ by several percent. Placed-only points use seed 1.

The grid is the current engine (``v2``, :data:`~sparsegate.sw.flow.build.ENGINE_VARIANTS`); ``routed_v1`` adds
routed points of the old engine (``v1``; by default :data:`V1_ROUTED_POINTS`, none in quick mode), each its own row
(``engine`` in the JSON, a column in the table), built from the same gateware sources, for the engine benchmark's
new-vs-old throughput.

The points are jobs of :mod:`sparsegate.sw.jobs` (a local Dask cluster by default, or the one ``jobs`` names):
each one builds in a scratch folder of its worker and sends back its figures and files (``report.json``,
``report.md``, ``top.bit``), which land in ``OUT/ulx3s-DEV-pP`` here (``OUT/ulx3s-DEV-pP-v1`` for the old
engine); the table and JSON are the same rows in the same order whatever ran where, and the JSON adds each job's
wall time, worker, attempts and whether it came from the runner's cache. A worker whose gateware sources differ
from this checkout's refuses the point.
"""
from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

from sparsegate.hw.platform.ecp5_build import CriticalPath, saved_critical_path
from sparsegate.sw.bench.results import BenchResult, write_results
from sparsegate.sw.flow.build import DEFAULT_ENGINE, OLD_ENGINE, placer_seeds
from sparsegate.sw.jobs import Job, JobResult, RunnerOptions, run_jobs
from sparsegate.sw.util.atomic_io import write_bytes

__all__ = ["run_build_sweep", "sweep_point", "gateware_sources_digest", "largest_fitting_lanes", "LANES", "DEVICES",
           "ROUTED_POINTS", "ROUTED_SEEDS", "V1_ROUTED_POINTS"]

LANES = (1, 4, 8, 16, 32, 64)
DEVICES = ("25f", "45f", "85f")
#: The points a sweep places and routes by default (sign-off Fmax); the rest of the grid is placed only.
ROUTED_POINTS = (("25f", 4), ("25f", "largest"), ("45f", 16), ("85f", 16), ("85f", 32))
#: The placer seeds of a routed point: the Fmax kept is the fastest, the table lists each (two rounds of two on
#: a 2-core machine).
ROUTED_SEEDS = (1, 2, 3, 4)
#: The old engine's points a sweep places and routes too (its own rows): the engine benchmark's new vs old.
V1_ROUTED_POINTS = (("85f", 16), ("85f", 32), ("25f", 4))


def largest_fitting_lanes(dev: str, image, lanes=LANES, engine: str = DEFAULT_ENGINE) -> int | None:
    """The most of ``lanes`` whose engine (the variant ``engine``), with ``image``, fits the ULX3S ``dev`` by the
    build's block-RAM and DSP estimate (the same numbers that stop a build before the tools run); None if none
    does."""
    from sparsegate.hw.platform.boards import DEVICE_RESOURCES, device_size, make_platform
    from sparsegate.sw.flow.build import ENGINE, board_program

    avail = DEVICE_RESOURCES[device_size(str(make_platform(f"ulx3s-{dev}").device))]
    fitting = [p for p in lanes
               if (lambda est: est.dp16kd <= avail["DP16KD"] and est.mult18x18d <= avail["MULT18X18D"])(
                   ENGINE.estimate(board_program(ENGINE, image, lanes=p, engine=engine)))]
    return max(fitting, default=None)


def gateware_sources_digest() -> str:
    """A digest of this installation's gateware sources and tool versions: the part of a point's inputs that is
    code, so the runner's cache and a remote worker's checkout are tied to the gateware that was built."""
    from sparsegate.sw.flow.build import toolchain_versions
    from sparsegate.sw.jobs.digest import sources_digest

    return sources_digest("sparsegate.hw", extra=repr(sorted(toolchain_versions().items())))


def sweep_point(board: str, dev: str, lanes: int, *, image, clock_mhz: float, place_only: bool, sources: str,
                build_cache: str | None = None, engine: str = DEFAULT_ENGINE, seeds: tuple[int, ...] = (1,)) -> dict:
    """One sweep point as a pure job: build in a scratch folder, return ``{"point": figures, "files": {name:
    bytes}}``. ``sources`` is :func:`gateware_sources_digest` where the sweep was started; a worker with other
    gateware raises rather than report numbers of a different design. ``build_cache``: the bitstream cache
    folder on the worker (default ``build/bitstreams`` under its working folder); ``engine``: the variant;
    ``seeds``: nextpnr's placer seeds (the fastest is kept)."""
    here = gateware_sources_digest()
    if here != sources:
        raise RuntimeError(f"this worker's gateware/tools (digest {here}) differ from the sweep's ({sources}); "
                           "run the workers from the same checkout and venv")
    with tempfile.TemporaryDirectory(prefix="sweep-point-") as scratch:
        out = Path(scratch) / f"{board}-p{lanes}"
        point = _point(board, dev, lanes, out, image=image, clock_mhz=clock_mhz, place_only=place_only,
                       build_cache=Path(build_cache) if build_cache else None, engine=engine, seeds=seeds)
        files = {f.name: f.read_bytes() for f in sorted(out.glob("*")) if f.is_file()} if out.is_dir() else {}
    return {"point": point, "files": files}


def _point(board: str, dev: str, lanes: int, out: Path, *, image, clock_mhz: float, place_only: bool,
           build_cache: Path | None, engine: str, seeds: tuple[int, ...]) -> dict:
    from sparsegate.hw.platform.ecp5_build import BuildFailed, DesignDoesNotFit
    from sparsegate.sw.flow.build import DEFAULT_CACHE, build_board

    point = {"board": board, "device": dev.upper(), "lanes": lanes, "mode": "placed" if place_only else "routed"}
    try:
        result = build_board(board, lanes, out, image=image, engine=engine, clock_mhz=clock_mhz,
                             place_only=place_only, cache=build_cache or DEFAULT_CACHE, seeds=seeds)
    except DesignDoesNotFit as err:
        point.update(status="does not fit", detail=str(err),
                     over={k: [u.used, u.available] for k, u in err.overused.items()})
        return point
    except BuildFailed as err:
        point.update(status="failed", detail=str(err).splitlines()[0])
        return point
    rep = result.report
    get = lambda kind: result.utilisation.get(kind, {}).get("used", 0)  # noqa: E731
    point.update(status="ok", lut=get("TRELLIS_COMB"), ff=get("TRELLIS_FF"), dsp=get("MULT18X18D"),
                 ebr=get("DP16KD"), fmax=result.fmax_mhz, met=result.timing_met, seconds=rep["elapsed_s"],
                 digest=result.digest, synth_opts=rep.get("synth_opts", ""), seed=rep.get("seed"),
                 seed_fmax=rep.get("seed_fmax") or {})
    critical = saved_critical_path(rep)
    if critical:
        point["critical_path"] = critical.to_dict()
    return point


def _mhz(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _seeds(p: dict) -> str:
    """A point's placer seeds: each seed's Fmax and their mean when several ran, else the one seed."""
    tried = p.get("seed_fmax") or {}
    if len(tried) < 2:
        return str(p.get("seed", "")) if p.get("seed") is not None else ""
    done = [f for f in tried.values() if f is not None]
    mean = f" (mean {sum(done) / len(done):.1f})" if done else ""
    return ", ".join(f"{s}: {_mhz(f)}" for s, f in tried.items()) + mean


def _row(p: dict) -> str:
    if p["status"] == "ok":
        fmax = _mhz(p["fmax"]) if _mode(p) == "routed" else f"{_mhz(p['fmax'])} (estimate)"
        return (f"| {p['device']} | {p['lanes']} | {p['engine']} | {_mode(p)} | {p['lut']:,} | {p['ff']:,} | "
                f"{p['dsp']} | {p['ebr']} | {fmax} | {'yes' if p['met'] else 'no'} | {_seeds(p)} | "
                f"{p['seconds']:.0f} |")
    over = ", ".join(f"{k} {u}/{a}" for k, (u, a) in p.get("over", {}).items())
    return (f"| {p['device']} | {p['lanes']} | {p['engine']} | {_mode(p)} | "
            f"{p['status']}{': needs ' + over if over else ''} | | | | | | | |")


def _folder(board: str, lanes: int, engine: str) -> str:
    """A point's output folder (and job key): ``ulx3s-DEV-pP``, with ``-ENGINE`` for other variants than v2."""
    return f"{board}-p{lanes}" + ("" if engine == DEFAULT_ENGINE else f"-{engine}")


def _label(device: str, lanes: int, engine: str) -> str:
    """A point in the log and the notes: ``85F P=16``, ``85F P=16 v1`` for other variants than v2."""
    return f"{device} P={lanes}" + ("" if engine == DEFAULT_ENGINE else f" {engine}")


def _failed_point(board: str, dev: str, lanes: int, place_only: bool, reason: str) -> dict:
    return {"board": board, "device": dev.upper(), "lanes": lanes, "mode": "placed" if place_only else "routed",
            "status": "failed", "detail": reason}


def _routed_set(routed, devices, lanes_list, image, engine: str = DEFAULT_ENGINE) -> set[tuple[str, int]]:
    """The ``(device, lanes)`` points of the grid to route with ``engine`` (see the module): only on ``devices``
    (a sweep of one device routes none of another's points)."""
    if routed == "all":
        return {(d, p) for d in devices for p in lanes_list}
    chosen = set()
    for dev, p in routed or ():
        dev = dev.lower()
        if dev in DEVICES and dev not in devices:
            continue
        if p == "largest":
            p = largest_fitting_lanes(dev, image, lanes_list, engine)
            if p is None:
                continue
        if dev not in DEVICES or p not in LANES:
            raise ValueError(f"routed point must be (one of {', '.join(DEVICES)}, one of {LANES} or 'largest'), "
                             f"got ({dev!r}, {p!r})")
        chosen.add((dev, p))
    return chosen


def run_build_sweep(out_dir, quick: bool = False, *, routed=ROUTED_POINTS, routed_v1=V1_ROUTED_POINTS, lanes=None,
                    devices=None, clock_mhz: float = 100.0, image=None, log=print, jobs: RunnerOptions | None = None,
                    build_cache: Path | None = None, seeds=ROUTED_SEEDS) -> BenchResult:
    """Build every (device, lanes) point as a job of the runner (``jobs``: which cluster, cache, workers; default
    a local cluster); write ``builds.md`` and ``builds.json`` with its figures (both rewritten as each point
    arrives, in grid order, so an interrupted sweep keeps what it built) and ``sweep.png`` under ``out_dir``.
    ``routed``: the ``(device, lanes)`` points to place and route (default :data:`ROUTED_POINTS`; the rest are
    placed only; a routed point outside ``lanes`` on one of ``devices`` is added to the grid, one on another device
    left out) or ``"all"``; ``routed_v1``: the points to place and route with the old engine too (default
    :data:`V1_ROUTED_POINTS`), each its own row;
    ``quick``: the grid only, every point placed only (Fmax = post-placement estimate). ``build_cache``: the
    workers' bitstream cache (default ``build/bitstreams`` in each worker's working folder); ``seeds``: the routed
    points' placer seeds (default :data:`ROUTED_SEEDS`; the fastest is kept)."""
    from sparsegate.sw.flow.build import default_image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lanes_list = tuple(lanes or LANES)
    devices = tuple(d.lower() for d in (devices or DEVICES))
    for d in devices:
        if d not in DEVICES:
            raise ValueError(f"sweep device must be one of {', '.join(DEVICES)}, got {d!r}")
    for p in lanes_list:
        if p not in LANES:
            raise ValueError(f"sweep lanes must be among {LANES}, got {p}")
    seeds = placer_seeds(seeds)
    image = image or default_image()
    to_route = set() if quick else (
        {(dev, p, DEFAULT_ENGINE) for dev, p in _routed_set(routed, devices, lanes_list, image)}
        | {(dev, p, OLD_ENGINE) for dev, p in _routed_set(routed_v1, devices, lanes_list, image, OLD_ENGINE)})
    sources = gateware_sources_digest()
    grid = sorted({(dev, p, DEFAULT_ENGINE) for dev in devices for p in lanes_list} | to_route,
                  key=lambda point: (DEVICES.index(point[0]), point[1], point[2] != DEFAULT_ENGINE))
    grid = [(f"ulx3s-{dev}", dev, p, (dev, p, engine) not in to_route, engine) for dev, p, engine in grid]
    order = sorted(range(len(grid)), key=lambda i: grid[i][3])   # routed points first: the longest, and the
    todo = [Job(_folder(board, p, engine), sweep_point, (board, dev, p),  # ones an interrupted sweep should have
                {"image": image, "clock_mhz": clock_mhz, "place_only": placed, "sources": sources,
                 "build_cache": str(build_cache) if build_cache else None,
                 # v2 keeps the arguments it had before the variants: the runner's cache key of its points
                 **({} if engine == DEFAULT_ENGINE else {"engine": engine}),
                 **({} if placed or seeds == (1,) else {"seeds": seeds})})
            for board, dev, p, placed, engine in (grid[i] for i in order)]
    data = {"quick": quick, "clock_mhz": clock_mhz, "seeds": list(seeds), "sources": sources, "sweep_s": 0.0,
            "points": [], "plot": None}
    settled: dict[int, dict] = {}

    def arrived(k: int, job: JobResult) -> None:
        i = order[k]
        board, dev, p, placed, engine = grid[i]
        folder = out_dir / _folder(board, p, engine)
        if job.ok:
            point, files = job.value["point"], dict(job.value["files"])
            if "report.json" in files:      # it names the bitstream where the worker built it: name it here
                report = json.loads(files["report.json"])
                if report.get("bitstream"):
                    report["bitstream"] = str(folder / "top.bit")
                files["report.json"] = (json.dumps(report, indent=2) + "\n").encode()
            for name, blob in files.items():
                write_bytes(folder / name, blob)
        else:
            point = _failed_point(board, dev, p, placed, job.error)
        settled[i] = {**point, "engine": engine, "job": {"wall_s": round(job.wall_s, 1), "worker": job.worker,
                                                         "attempts": job.attempts, "cached": job.cached}}
        log(f"[sweep] {_label(board, p, engine)}: {point['status']}" + ("" if job.ok else f" ({job.error})"))
        data["points"] = [settled[k] for k in sorted(settled)]
        write_results("builds", _markdown(data), data, out_dir)

    log(f"[sweep] {len(grid)} points ({sum(not g[3] for g in grid)} placed and routed, the rest placed only)")
    options = jobs or RunnerOptions()
    options = dataclasses.replace(options, log=options.log or log)
    sweep = run_jobs(todo, options, on_result=arrived)
    data["sweep_s"] = sweep.wall_s
    data["runner"] = {"scheduler": sweep.scheduler, "dashboard": sweep.dashboard}
    plot = _plot(data["points"], out_dir / "sweep.png")
    data["plot"] = plot.name if plot else None
    return write_results("builds", _markdown(data), data, out_dir)


def _mode(p: dict) -> str:
    return "routed" if p.get("mode", "routed") == "routed" else "placed"


def _markdown(data: dict) -> str:
    """The sweep's table and notes, from its figures alone (so ``builds.md`` and ``builds.json`` cannot disagree)."""
    clock_mhz, points = data["clock_mhz"], data["points"]
    modes = {_mode(p) for p in points}
    table = (f"| device | P | engine | mode | LUT4 | FF | MULT18X18D | DP16KD | Fmax (MHz) | met at {clock_mhz:g} MHz "
             "| placer seeds (MHz) | tool s |\n|---|---:|---|---|---:|---:|---:|---:|---:|---|---|---:|\n"
             + "\n".join(_row(p) for p in points))
    seeds = [1] if modes == {"placed"} else data.get("seeds") or [1]
    seed_note = ("seed 1" if seeds == [1] else
                 f"routed points placed and routed with seeds {', '.join(map(str, seeds))}, the fastest kept: Fmax "
                 "is that seed's, each seed's beside it; placed-only points seed 1")
    if modes == {"placed"}:
        mode = ("**quick mode: placed only, no routing; every Fmax is nextpnr's post-placement estimate, not a "
                "sign-off figure**")
    elif modes == {"routed"}:
        mode = "full mode: every point placed and routed (Fmax post-route, sign-off)"
    else:
        mode = ("**mixed: the points marked `routed` were placed and routed (Fmax post-route, sign-off, bitstream "
                "written); those marked `placed` were placed only and their Fmax is nextpnr's post-placement "
                "estimate, not a sign-off figure**")
    cached = [p for p in points if p.get("job", {}).get("cached")]
    reused = (f" ({len(cached)} of {len(points)} points from the runner's cache, built by an earlier run; their "
              f"jobs' own wall times sum to {sum(p['job']['wall_s'] for p in cached):.0f} s)") if cached else ""
    return (f"Board top level (engine + UART host link + PLL) with the pruned LeNet-5 baked in, ULX3S boards, "
            f"{clock_mhz:g} MHz target, YoWASP Yosys/nextpnr-ecp5 ({seed_note}); {mode}. "
            f"Engine `{DEFAULT_ENGINE}` is the current engine, `{OLD_ENGINE}` the old one (one-row passes, one pixel "
            "drained a cycle, 2P activation banks: `sw/flow/build.py:ENGINE_VARIANTS`), built from the same gateware sources. \"does not fit\" = the "
            f"block-RAM/DSP estimate exceeds the device by more than 10% (no tool run) or nextpnr could not "
            f"place it; the numbers are what it needs. Sweep time {data['sweep_s']:.0f} s{reused}"
            + (f" (gateware {data['sources']})" if data.get("sources") else "") + f".\n\n{table}\n"
            + ("\nCritical path of each point (nextpnr's worst register-to-register path; signal names as "
               "Yosys left them on the cells):\n\n"
               + "".join(f"- {_label(p['device'], p['lanes'], p['engine'])} ({_mode(p)}): "
                         f"{CriticalPath.from_dict(p['critical_path']).describe()}\n"
                         for p in points if p.get("critical_path"))
               if any(p.get("critical_path") for p in points) else "")
            + "".join(f"\n{_label(p['device'], p['lanes'], p['engine'])} was synthesised with "
                      f"`synth_ecp5 {p['synth_opts']}` (the workaround for Yosys 0.70's abc9 assertion, "
                      "`hw/platform/ecp5_build.py:ABC9_WORKAROUND`).\n"
                      for p in points if p.get("synth_opts"))
            + (f"\n![sweep]({data['plot']})\n" if data["plot"] else ""))


def _plot(points, path: Path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:     # pragma: no cover
        return None
    ok = [p for p in points if p["status"] == "ok" and p["fmax"] is not None]
    if not ok:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for dev in sorted({p["device"] for p in ok}):
        pts = sorted((p for p in ok if p["device"] == dev and p["engine"] == DEFAULT_ENGINE), key=lambda p: p["lanes"])
        x = [p["lanes"] for p in pts]
        lut, = ax1.plot(x, [p["lut"] for p in pts], "o-", label=f"{dev} LUT4")
        ebr, = ax1.plot(x, [p["ebr"] * 100 for p in pts], "s--", label=f"{dev} DP16KD x100")
        line, = ax2.plot(x, [p["fmax"] for p in pts], "-", label=dev)
        for p in pts:   # filled: routed (sign-off); open: placement estimate
            ax2.plot(p["lanes"], p["fmax"], "o", color=line.get_color(),
                     markerfacecolor=line.get_color() if _mode(p) == "routed" else "none")
        old = [p for p in ok if p["device"] == dev and p["engine"] != DEFAULT_ENGINE]
        if old:     # the old engine's points: crosses beside the grid's lines
            x = [p["lanes"] for p in old]
            ax1.plot(x, [p["lut"] for p in old], "x", color=lut.get_color(), label=f"{dev} LUT4, {OLD_ENGINE}")
            ax1.plot(x, [p["ebr"] * 100 for p in old], "x", color=ebr.get_color(),
                     label=f"{dev} DP16KD x100, {OLD_ENGINE}")
            ax2.plot(x, [p["fmax"] for p in old], "x", color=line.get_color(), label=f"{dev} {OLD_ENGINE}")
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("lanes P")
        ax.legend(fontsize=7)
    ax1.set_ylabel("cells")
    ax2.set_ylabel(f"Fmax (MHz)\nfilled: routed, open: placement estimate, x: {OLD_ENGINE}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
