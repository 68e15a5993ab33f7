"""The demo's report: ``report.md`` plus a self-contained ``report.html`` (plots inlined as PNG), every
section filled from the stage results of one run."""
from __future__ import annotations

import base64
import html
from pathlib import Path

from .atomic_io import write_text


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def _md_table(head: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _plot_curve(history: list[dict], path: Path) -> None:
    """Validation accuracy against compression over the pruning rounds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [(1.0 / max(1e-9, 1.0 - r["sparsity"]), 100 * r["val_accuracy"], r.get("accepted", True))
              for r in history if "sparsity" in r and "val_accuracy" in r]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if points:
        ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label="SRA rounds")
        rejected = [p for p in points if not p[2]]
        if rejected:
            ax.plot([p[0] for p in rejected], [p[1] for p in rejected], "x", color="red", label="rejected round")
    ax.set_xscale("log")
    ax.set_xlabel("compression (dense weights / kept weights)")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _plot_cycles(sim: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sim["layer_names"]
    x = range(len(names))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar([i - 0.2 for i in x], sim["dense_model"], width=0.4, label="dense (same engine, model)")
    ax.bar([i + 0.2 for i in x], sim["cycles"], width=0.4, label="pruned (measured)")
    ax.set_xticks(list(x), names)
    ax.set_yscale("log")
    ax.set_ylabel("cycles per digit")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def build_markdown(results: dict, plots: dict[str, str]) -> str:
    train, prune, quant = results["train"], results["prune"], results["quantize"]
    export, sim = results["export"], results["simulate"]
    storage = export["storage"]
    sections = ["# sparsegate demo report", "",
                "LeNet-5-Caffe on the embedded MNIST default (4,000 train / 1,000 held-out digits), pruned with "
                "SRA + NRP, quantized to int8, exported as a sparse-index weight image and run on the "
                "cycle-accurate zero-skipping engine.", "", "## Summary", "",
                _md_table(["stage", "result"], [
                    ["float baseline", f"{_pct(train['test_accuracy'])} ({train['params']:,} params, "
                                       f"{train['macs']:,} MACs)"],
                    ["SRA + NRP", f"{_pct(prune['test_accuracy'])}, drop {100 * prune['accuracy_drop']:.2f} points, "
                                  f"{prune['compression']:.1f}x compression, {_pct(prune['mac_reduction'])} MACs removed"],
                    ["int8 (golden model)", f"{_pct(quant['quant_accuracy'])} vs float {_pct(quant['float_accuracy'])}; "
                                            f"predictions agree on {_pct(quant['agreement'])} of "
                                            f"{quant['samples']:,}"],
                    ["weight image", f"{storage['total']['image_bytes']:,} bytes = "
                                     f"{_pct(storage['total']['vs_dense_int8'])} of dense int8, "
                                     f"{_pct(storage['total']['vs_float32'])} of float32"],
                    ["engine", f"{sim['total']:,} cycles per digit at {sim['lanes']} lanes; "
                               f"{sim['samples']} digits bit-exact with the golden model"],
                ]), "",
                "## Per-layer sparsity and kept weights", "",
                Path(prune["layers_md"]).read_text().split("\n", 2)[-1].strip(), "",
                "## Accuracy vs compression", "", f"![accuracy vs compression]({plots['curve']})", "",
                "Validation accuracy after each SRA prune → fine-tune round (the torch global-L1 and magnitude "
                "baselines at the same budget are in `BENCHMARKS.md`, `make bench`).", "",
                "## Engine cycles, sparse vs dense", "",
                _md_table(["layer", "measured", "model", "dense (model)", "speed-up"],
                          [[n, f"{c:,}", f"{m:,}", f"{d:,}", f"{d / c:.2f}x"]
                           for n, c, m, d in zip(sim["layer_names"], sim["cycles"], sim["model"], sim["dense_model"])]),
                "", f"![cycles]({plots['cycles']})", "",
                "```", *[line for line in sim["log"]], "```", "",
                "## Storage", "", "```", export["storage_table"], "```", ""]
    if "build" in results:
        build = results["build"]
        sections += ["## FPGA resources and Fmax", "",
                     _md_table(["resource", "used", "available"],
                               [[k, f"{v['used']:,}", f"{v['available']:,}"] for k, v in build["resources"].items()]),
                     "", f"Fmax {build['fmax_mhz']:.1f} MHz (constraint {build['target_mhz']:.0f} MHz, "
                         f"timing {'met' if build['timing_met'] else 'NOT met'}); bitstream `{build['bit']}`.", ""]
    sections += ["## Agreement", "",
                 _md_table(["check", "agree"], [
                     ["int8 golden model vs float PyTorch (test digits)",
                      f"{round(quant['agreement'] * quant['samples'])}/{quant['samples']}"],
                     ["engine vs golden model, every layer bit-exact", f"{sim['samples']}/{sim['samples']}"],
                 ]), ""]
    return "\n".join(sections)


def _markdown_to_html(markdown: str, run: Path) -> str:
    """A small converter for the report's own Markdown: headings, tables, code, images (inlined)."""
    out, in_code, in_table = [], False, False
    for line in markdown.split("\n"):
        if line.startswith("```"):
            out.append("</pre>" if in_code else "<pre>")
            in_code = not in_code
            continue
        if in_code:
            out.append(html.escape(line))
            continue
        if line.startswith("|"):
            cells = [html.escape(c.strip()) for c in line.strip("|").split("|")]
            if all(set(c) <= {"-"} for c in cells):
                continue
            if not in_table:
                out.append("<table>")
                in_table = True
                out.append("<tr>" + "".join(f"<th>{c}</th>" for c in cells) + "</tr>")
            else:
                out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{html.escape(line[level:].strip())}</h{level}>")
        elif line.startswith("!["):
            src = line[line.index("(") + 1:line.rindex(")")]
            data = base64.b64encode((run / src).read_bytes()).decode()
            out.append(f'<img alt="plot" src="data:image/png;base64,{data}">')
        elif line:
            out.append(f"<p>{html.escape(line)}</p>")
    if in_table:
        out.append("</table>")
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}pre{background:#f4f4f4;padding:.5em}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>sparsegate demo report</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n")


def write_report(run: Path, results: dict) -> dict:
    """Write the plots, ``report.md`` and ``report.html`` into ``run``; return their paths."""
    run = Path(run)
    plots = {"curve": "report/accuracy_vs_compression.png", "cycles": "report/cycles.png"}
    _plot_curve(results["prune"]["history"], run / plots["curve"])
    _plot_cycles(results["simulate"], run / plots["cycles"])
    markdown = build_markdown(results, plots)
    write_text(run / "report.md", markdown)
    write_text(run / "report.html", _markdown_to_html(markdown, run))
    return {"markdown": str(run / "report.md"), "html": str(run / "report.html")}
