"""Design-space sweep: the board top level with the pruned LeNet-5 for lanes P in {1, 4, 8, 16, 32, 64} on
the ULX3S 25F / 45F / 85F -> LUT4, FF, MULT18X18D, DP16KD and Fmax per point, a Markdown table, a JSON
file and a plot (``sweep.md``, ``sweep.json``, ``sweep.png`` in the output folder).

Every point goes through :func:`sparsegate.sw.flow.build.build_board` (cached by design digest, so a
rerun only builds what changed). Points whose block-RAM / DSP estimate is clearly over the device are
reported as "does not fit" with the estimate, without running the tools; points nextpnr cannot place are
reported with nextpnr's numbers. Two modes:

* full (default): placed and routed, Fmax is nextpnr's post-route figure (hours for the whole grid on a
  small machine);
* ``quick``: placed only (nextpnr ``--no-route``, no bitstream), Fmax is the **post-placement estimate**,
  labelled as such in every output.

``lanes`` / ``devices`` pick a slice of the grid.

The points are jobs of :mod:`sparsegate.sw.jobs` (a local Dask cluster by default, or the one ``jobs`` names):
each one builds in a scratch folder of its worker and sends back its figures and files (``report.json``,
``report.md``, ``top.bit``), which land in ``OUT/ulx3s-DEV-pP`` here; the table and JSON are the same rows in
the same order whatever ran where, and the JSON adds each job's wall time, worker, attempts and whether it
came from the runner's cache. A worker whose gateware sources differ from this checkout's refuses the point.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
from pathlib import Path

from sparsegate.sw.bench.results import BenchResult, write_results
from sparsegate.sw.jobs import Job, JobResult, RunnerOptions, run_jobs
from sparsegate.sw.util.atomic_io import write_bytes

__all__ = ["run_build_sweep", "sweep_point", "gateware_sources_digest", "LANES", "DEVICES"]

LANES = (1, 4, 8, 16, 32, 64)
DEVICES = ("25f", "45f", "85f")


def gateware_sources_digest() -> str:
    """A digest of this installation's gateware sources and tool versions: the part of a point's inputs that is
    code, so the runner's cache and a remote worker's checkout are tied to the gateware that was built."""
    import sparsegate.hw
    from sparsegate.sw.flow.build import toolchain_versions

    h = hashlib.sha256(repr(sorted(toolchain_versions().items())).encode())
    for root in sparsegate.hw.__path__:
        for source in sorted(Path(root).rglob("*.py")):
            h.update(source.relative_to(root).as_posix().encode() + b"|" + source.read_bytes())
    return h.hexdigest()[:20]


def sweep_point(board: str, dev: str, lanes: int, *, image, clock_mhz: float, quick: bool, sources: str,
                build_cache: str | None = None) -> dict:
    """One sweep point as a pure job: build in a scratch folder, return ``{"point": figures, "files": {name:
    bytes}}``. ``sources`` is :func:`gateware_sources_digest` where the sweep was started; a worker with other
    gateware raises rather than report numbers of a different design. ``build_cache``: the bitstream cache
    folder on the worker (default ``build/bitstreams`` under its working folder)."""
    here = gateware_sources_digest()
    if here != sources:
        raise RuntimeError(f"this worker's gateware/tools (digest {here}) differ from the sweep's ({sources}); "
                           "run the workers from the same checkout and venv")
    with tempfile.TemporaryDirectory(prefix="sweep-point-") as scratch:
        out = Path(scratch) / f"{board}-p{lanes}"
        point = _point(board, dev, lanes, out, image=image, clock_mhz=clock_mhz, quick=quick,
                       build_cache=Path(build_cache) if build_cache else None)
        files = {f.name: f.read_bytes() for f in sorted(out.glob("*")) if f.is_file()} if out.is_dir() else {}
    return {"point": point, "files": files}


def _point(board: str, dev: str, lanes: int, out: Path, *, image, clock_mhz: float, quick: bool,
           build_cache: Path | None) -> dict:
    from sparsegate.hw.platform.ecp5_build import BuildFailed, DesignDoesNotFit
    from sparsegate.sw.flow.build import DEFAULT_CACHE, build_board

    point = {"board": board, "device": dev.upper(), "lanes": lanes, "mode": "placed" if quick else "routed"}
    try:
        result = build_board(board, lanes, out, image=image, clock_mhz=clock_mhz, place_only=quick,
                             cache=build_cache or DEFAULT_CACHE)
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
                 digest=result.digest, synth_opts=rep.get("synth_opts", ""))
    return point


def _mhz(value) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def _row(p: dict) -> str:
    if p["status"] == "ok":
        return (f"| {p['device']} | {p['lanes']} | {p['lut']:,} | {p['ff']:,} | {p['dsp']} | {p['ebr']} | "
                f"{_mhz(p['fmax'])} | {'yes' if p['met'] else 'no'} | {p['seconds']:.0f} |")
    over = ", ".join(f"{k} {u}/{a}" for k, (u, a) in p.get("over", {}).items())
    return f"| {p['device']} | {p['lanes']} | {p['status']}{': needs ' + over if over else ''} | | | | | | |"


def _failed_point(board: str, dev: str, lanes: int, quick: bool, reason: str) -> dict:
    return {"board": board, "device": dev.upper(), "lanes": lanes, "mode": "placed" if quick else "routed",
            "status": "failed", "detail": reason}


def run_build_sweep(out_dir, quick: bool = False, *, lanes=None, devices=None, clock_mhz: float = 100.0,
                    image=None, log=print, jobs: RunnerOptions | None = None,
                    build_cache: Path | None = None) -> BenchResult:
    """Build every (device, lanes) point as a job of the runner (``jobs``: which cluster, cache, workers; default
    a local cluster); write ``sweep.md`` and ``sweep.json`` with its figures (both rewritten as each point
    arrives, in grid order, so an interrupted sweep keeps what it built) and ``sweep.png`` under ``out_dir``.
    ``quick``: placement only (Fmax = post-placement estimate). ``build_cache``: the workers' bitstream cache
    (default ``build/bitstreams`` in each worker's working folder)."""
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
    image = image or default_image()
    sources = gateware_sources_digest()
    grid = [(f"ulx3s-{dev}", dev, p) for dev in devices for p in lanes_list]
    todo = [Job(f"{board}-p{p}", sweep_point, (board, dev, p),
                {"image": image, "clock_mhz": clock_mhz, "quick": quick, "sources": sources,
                 "build_cache": str(build_cache) if build_cache else None})
            for board, dev, p in grid]
    data = {"quick": quick, "clock_mhz": clock_mhz, "sweep_s": 0.0, "points": [], "plot": None}
    settled: dict[int, dict] = {}

    def arrived(i: int, job: JobResult) -> None:
        board, dev, p = grid[i]
        if job.ok:
            point, files = job.value["point"], dict(job.value["files"])
            if "report.json" in files:      # it names the bitstream where the worker built it: name it here
                report = json.loads(files["report.json"])
                if report.get("bitstream"):
                    report["bitstream"] = str(out_dir / f"{board}-p{p}" / "top.bit")
                files["report.json"] = (json.dumps(report, indent=2) + "\n").encode()
            for name, blob in files.items():
                write_bytes(out_dir / f"{board}-p{p}" / name, blob)
        else:
            point = _failed_point(board, dev, p, quick, job.error)
        settled[i] = {**point, "job": {"wall_s": round(job.wall_s, 1), "worker": job.worker,
                                       "attempts": job.attempts, "cached": job.cached}}
        log(f"[sweep] {board} P={p}: {point['status']}" + ("" if job.ok else f" ({job.error})"))
        data["points"] = [settled[k] for k in sorted(settled)]
        write_results("sweep", _markdown(data), data, out_dir)

    log(f"[sweep] {len(grid)} points ({'placement only' if quick else 'place and route'})")
    options = jobs or RunnerOptions()
    options = dataclasses.replace(options, log=options.log or log)
    sweep = run_jobs(todo, options, on_result=arrived)
    data["sweep_s"] = sweep.wall_s
    data["runner"] = {"scheduler": sweep.scheduler, "dashboard": sweep.dashboard}
    plot = _plot(data["points"], out_dir / "sweep.png", quick)
    data["plot"] = plot.name if plot else None
    return write_results("sweep", _markdown(data), data, out_dir)


def _markdown(data: dict) -> str:
    """The sweep's table and notes, from its figures alone (so ``sweep.md`` and ``sweep.json`` cannot disagree)."""
    quick, clock_mhz, points = data["quick"], data["clock_mhz"], data["points"]
    fmax = "Fmax (MHz, placement estimate)" if quick else "Fmax (MHz, routed)"
    table = (f"| device | P | LUT4 | FF | MULT18X18D | DP16KD | {fmax} | met at {clock_mhz:g} MHz | tool s |\n"
             "|---|---:|---:|---:|---:|---:|---:|---|---:|\n" + "\n".join(_row(p) for p in points))
    mode = ("**quick mode: placed only, no routing; Fmax is nextpnr's post-placement estimate, not a "
            "sign-off figure**" if quick else "full mode: placed and routed (Fmax post-route)")
    return (f"Board top level (engine + UART host link + PLL) with the pruned LeNet-5 baked in, ULX3S boards, "
            f"{clock_mhz:g} MHz target, YoWASP Yosys/nextpnr-ecp5 (seed 1); {mode}. \"does not fit\" = the "
            f"block-RAM/DSP estimate exceeds the device by more than 10% (no tool run) or nextpnr could not "
            f"place it; the numbers are what it needs. Sweep time {data['sweep_s']:.0f} s.\n\n{table}\n"
            + "".join(f"\n{p['device']} P={p['lanes']} was synthesised with `synth_ecp5 {p['synth_opts']}` (the "
                      "workaround for Yosys 0.70's abc9 assertion, `hw/platform/ecp5_build.py:ABC9_WORKAROUND`).\n"
                      for p in points if p.get("synth_opts"))
            + (f"\n![sweep]({data['plot']})\n" if data["plot"] else ""))


def _plot(points, path: Path, quick: bool):
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
        pts = sorted((p for p in ok if p["device"] == dev), key=lambda p: p["lanes"])
        x = [p["lanes"] for p in pts]
        ax1.plot(x, [p["lut"] for p in pts], "o-", label=f"{dev} LUT4")
        ax1.plot(x, [p["ebr"] * 100 for p in pts], "s--", label=f"{dev} DP16KD x100")
        ax2.plot(x, [p["fmax"] for p in pts], "o-", label=dev)
    for ax in (ax1, ax2):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("lanes P")
        ax.legend(fontsize=7)
    ax1.set_ylabel("cells")
    ax2.set_ylabel("Fmax (MHz, post-placement estimate)" if quick else "Fmax (MHz, routed)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
