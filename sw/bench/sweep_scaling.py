"""The build sweep on 1 local worker and on every local core, side by side in one run: the same placement-only
points (fresh bitstream caches, so every point really runs nextpnr), the wall time of each sweep and the ratio,
and whether both sweeps produced the same figures (they must: same inputs, same seed). The machine's load
average before and after each sweep is recorded with it: on a shared machine the ratio is only what that load
allowed. ``quick`` halves the points. Writes ``scaling.md`` and ``scaling.json``."""
from __future__ import annotations

import os
from pathlib import Path

from sparsegate.sw.bench.builds import run_build_sweep
from sparsegate.sw.bench.results import BenchResult, write_results
from sparsegate.sw.jobs import RunnerOptions
from sparsegate.sw.jobs.cluster import local_cores

__all__ = ["run_sweep_scaling"]

_FIGURES = ("device", "lanes", "status", "lut", "ff", "dsp", "ebr", "fmax", "met")


def run_sweep_scaling(out_dir, quick: bool = False, *, lanes=(1, 4), devices=("25f", "45f"), log=print) -> BenchResult:
    """Run the quick build sweep of ``lanes`` x ``devices`` on 1 worker, then on one worker per local core."""
    from sparsegate.sw.flow.build import default_image

    out_dir = Path(out_dir)
    lanes = tuple(lanes)[:1] if quick else tuple(lanes)
    image = default_image()
    cores = local_cores()
    runs = []
    for workers in sorted({1, cores}):
        where = out_dir / f"workers-{workers}"
        log(f"[scaling] {len(lanes) * len(devices)} placement-only points on {workers} local worker(s)")
        load_before = os.getloadavg()[0]
        sweep = run_build_sweep(where, quick=True, lanes=lanes, devices=devices, image=image, log=log,
                                jobs=RunnerOptions(workers=workers), build_cache=where / "bitstreams")
        runs.append({"workers": workers, "sweep_s": round(sweep.data["sweep_s"], 1),
                     "job_s": round(sum(p["job"]["wall_s"] for p in sweep.data["points"]), 1),
                     "load": [round(load_before, 1), round(os.getloadavg()[0], 1)], "points": sweep.data["points"]})
    figures = [[{k: p.get(k) for k in _FIGURES} for p in run["points"]] for run in runs]
    data = {"cores": cores, "lanes": list(lanes), "devices": [d.upper() for d in devices], "runs": runs,
            "speedup": round(runs[0]["sweep_s"] / runs[-1]["sweep_s"], 2),
            "same_figures": all(f == figures[0] for f in figures)}
    return write_results("scaling", _markdown(data), data, out_dir)


def _markdown(data: dict) -> str:
    rows = "\n".join(f"| {r['workers']} | {len(r['points'])} | {r['sweep_s']:.0f} | {r['job_s']:.0f} | "
                     f"{data['runs'][0]['sweep_s'] / r['sweep_s']:.2f}x | {r['load'][0]:.1f} → {r['load'][1]:.1f} |"
                     for r in data["runs"])
    return (f"The quick (placement-only) build sweep of the pruned LeNet-5 board top, P in "
            f"{{{', '.join(map(str, data['lanes']))}}} x {', '.join(data['devices'])}, through the job runner "
            f"(`sparsegate.sw.jobs`) on a local Dask cluster of 1 worker, then of {data['cores']} (one per core), one "
            f"after the other in one run, each with a fresh bitstream cache. Speedup **{data['speedup']:.2f}x**; both "
            f"sweeps gave {'the same' if data['same_figures'] else '**different**'} figures (LUT4, FF, DSP, EBR, "
            f"Fmax estimate per point). The 1-minute load average before → after each sweep is in the last column: "
            f"with other work on the {data['cores']} cores, the speedup is what that load left, not an idle-machine "
            "figure.\n\n"
            "| workers | points | sweep wall s | sum of job wall s | speedup | load average |\n"
            "|---:|---:|---:|---:|---:|---|\n"
            f"{rows}\n")
