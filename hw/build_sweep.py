"""Design-space sweep: the board top level with the pruned LeNet-5 for lanes P in {1, 4, 8, 16, 32, 64} on
the ULX3S 25F / 45F / 85F -> LUT4, FF, MULT18X18D, DP16KD and Fmax per point, a Markdown table and a plot.

Every point goes through :func:`sparsegate.sw.build_command.build_board` (cached by design digest, so a
rerun only builds what changed). Points whose block-RAM / DSP estimate is clearly over the device are
reported as "does not fit" with the estimate, without running the tools. ``quick`` sweeps P in {1, 4} on
the 25F only.
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["run_build_sweep", "LANES", "DEVICES"]

LANES = (1, 4, 8, 16, 32, 64)
DEVICES = ("25f", "45f", "85f")


def run_build_sweep(out_dir, quick: bool = False, *, clock_mhz: float = 100.0, image=None, log=print) -> str:
    from sparsegate.hw.ecp5_build import BuildFailed, DesignDoesNotFit
    from sparsegate.sw.atomic_io import write_json, write_text
    from sparsegate.sw.build_command import build_board, default_image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    image = image or default_image()
    lanes_list, devices = ((1, 4), ("25f",)) if quick else (LANES, DEVICES)
    rows, points = [], []
    for dev in devices:
        for lanes in lanes_list:
            board = f"ulx3s-{dev}"
            log(f"[sweep] {board} P={lanes}")
            point = {"board": board, "device": dev.upper(), "lanes": lanes}
            try:
                info = build_board(board, lanes, out_dir / f"{board}-p{lanes}", image=image, clock_mhz=clock_mhz,
                                   log=lambda s: log("    " + s))
                rep = info["report"]
                util = rep["utilisation"]
                point.update(status="ok", lut=util["TRELLIS_COMB"]["used"], ff=util["TRELLIS_FF"]["used"],
                             dsp=util["MULT18X18D"]["used"], ebr=util["DP16KD"]["used"], fmax=rep["fmax_mhz"],
                             met=rep["timing_met"], seconds=rep["elapsed_s"])
            except DesignDoesNotFit as err:
                point.update(status="does not fit", detail=str(err))
            except BuildFailed as err:
                point.update(status="failed", detail=str(err).splitlines()[0])
            points.append(point)
            if point["status"] == "ok":
                rows.append(f"| {point['device']} | {lanes} | {point['lut']:,} | {point['ff']:,} | {point['dsp']} | "
                            f"{point['ebr']} | {point['fmax']:.1f} | {'yes' if point['met'] else 'no'} |")
            else:
                detail = point["detail"].split("needs about ")[-1].split(" [")[0] if "needs" in point["detail"] else ""
                rows.append(f"| {point['device']} | {lanes} | {point['status']}: {detail} | | | | | |")
    write_json(out_dir / "sweep.json", points)
    plot = _plot(points, out_dir / "sweep.png")
    table = ("| device | P | LUT4 | FF | MULT18X18D | DP16KD | Fmax (MHz) | timing met at "
             f"{clock_mhz:g} MHz |\n|---|---:|---:|---:|---:|---:|---:|---|\n" + "\n".join(rows))
    md = (f"Board top level (engine + UART host link + PLL) with the pruned LeNet-5 baked in, ULX3S boards, "
          f"{clock_mhz:g} MHz target, YoWASP Yosys/nextpnr (seed 1). \"does not fit\" = the block-RAM/DSP "
          f"estimate exceeds the device by more than 10% (no tool run).\n\n{table}\n"
          + (f"\n![sweep]({plot.name})\n" if plot else ""))
    write_text(out_dir / "sweep.md", md)
    return md


def _plot(points, path: Path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:     # pragma: no cover
        return None
    ok = [p for p in points if p["status"] == "ok"]
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
    ax2.set_ylabel("Fmax (MHz)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
