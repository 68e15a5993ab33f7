"""The demo's report: ``report.md`` plus a self-contained ``report.html`` (plots inlined as PNG), every
section filled from the stage results of one run; and, when the cross-validated pruning benchmark's figures
are at hand (``docs/results/prune_lenet5.json``, where ``make demo`` runs), its drop-vs-compression plot with
95% bands and its table, so the one-run numbers sit beside the cross-validated ones."""
from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path

from sparsegate.sw.ml.stats import sparsity_compression
from sparsegate.sw.util.atomic_io import write_text

CROSSVAL_FIGURES = Path("docs/results/prune_lenet5.json")


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def _md_table(head: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    fig.clf()
    _pyplot().close(fig)


def _rounds(history: list[dict]) -> list[tuple[float, float, bool]]:
    return [(sparsity_compression(r["sparsity"]), 100 * r["val_accuracy"], r.get("accepted", True))
            for r in history if "sparsity" in r and "val_accuracy" in r]


def _weight_compression(layers: list[dict]) -> float:
    return sum(layer["weights"] for layer in layers) / max(1, sum(layer["nonzero_weights"] for layer in layers))


def _plot_curve(results: dict, path: Path) -> None:
    """Validation accuracy against compression: SRA rounds, the torch global-L1 baseline's rounds (same
    schedule and fine-tune budget) and the final models (after NRP, after KEP)."""
    import matplotlib.ticker

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for key, label, style in (("prune", "SRA rounds", "o-"), ("baseline", "torch global L1 rounds (baseline)", "s--")):
        points = _rounds(results[key]["history"])
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], style, label=label)
            rejected = [p for p in points if not p[2]]
            if rejected:
                ax.plot([p[0] for p in rejected], [p[1] for p in rejected], "x", color="red")
    finals = [("prune", "SRA + NRP (final)", "D"), ("kep", "+ KEP (demo model)", "*"),
              ("baseline", "torch global L1 (final)", "P")]
    for key, label, marker in finals:
        r = results[key]
        if key == "kep" and not r["accepted"]:
            continue
        ax.plot([_weight_compression(r["layers"])], [100 * r["val_accuracy"]], marker, markersize=10, label=label)
    ax.set_xscale("log")
    ticks = [t for t in (1, 2, 5, 10, 20, 50, 100, 200, 500) if t <= 1.5 * ax.get_xlim()[1]]
    ax.set_xticks(ticks, [f"{t}x" for t in ticks])
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("compression (dense weights / kept weights)")
    ax.set_ylabel("validation accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def _plot_sparsity(results: dict, path: Path) -> None:
    """Kept weights per layer: dense, SRA + NRP, + KEP."""
    plt = _pyplot()
    prune, kep = results["prune"]["layers"], results["kep"]["layers"]
    names = [layer["name"] for layer in prune]
    x = range(len(names))
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    ax.bar([i - 0.27 for i in x], [layer["weights"] for layer in prune], width=0.27, label="dense")
    ax.bar(list(x), [layer["nonzero_weights"] for layer in prune], width=0.27, label="SRA + NRP")
    ax.bar([i + 0.27 for i in x], [layer["nonzero_weights"] for layer in kep], width=0.27, label="demo model")
    ax.set_xticks(list(x), names)
    ax.set_yscale("log")
    ax.set_ylabel("weights kept")
    ax.legend(fontsize=8)
    _save(fig, path)


def _plot_cycles(sim: dict, path: Path) -> None:
    plt = _pyplot()
    names = sim["layer_names"]
    x = range(len(names))
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax.bar([i - 0.2 for i in x], sim["dense_model"], width=0.4, label="dense (same engine, model)")
    ax.bar([i + 0.2 for i in x], sim["cycles"], width=0.4, label="pruned (measured)")
    ax.set_xticks(list(x), names)
    ax.set_yscale("log")
    ax.set_ylabel(f"cycles per digit, {sim['lanes']} lanes")
    ax.legend(fontsize=8)
    ax2.bar([i - 0.2 for i in x], [100 * u for u in sim["dense_utilization"]], width=0.4, label="dense (model)")
    ax2.bar([i + 0.2 for i in x], [100 * u for u in sim["utilization"]], width=0.4, label="pruned (measured)")
    ax2.set_xticks(list(x), names)
    ax2.set_ylim(0, 105)
    ax2.set_ylabel("lane utilization (%)")
    ax2.legend(fontsize=8)
    _save(fig, path)


def _layer_rows(prune: list[dict], final: list[dict]) -> list[list]:
    rows = []
    for p, f in zip(prune, final):
        rows.append([f["name"], f"{f['weights']:,}", f"{p['nonzero_weights']:,}", f"{f['nonzero_weights']:,}",
                     _pct(1 - f["nonzero_weights"] / max(1, f["weights"])), f"{f['live_in']}/{f['in_units']}",
                     f"{f['live_out']}/{f['out_units']}", f"{f['macs']:,}/{f['dense_macs']:,}"])
    w = sum(f["weights"] for f in final)
    nz_p = sum(p["nonzero_weights"] for p in prune)
    nz = sum(f["nonzero_weights"] for f in final)
    rows.append(["total", f"{w:,}", f"{nz_p:,}", f"{nz:,}", _pct(1 - nz / max(1, w)), "", "",
                 f"{sum(f['macs'] for f in final):,}/{sum(f['dense_macs'] for f in final):,}"])
    return rows


def _build_section(build: dict | None) -> list[str]:
    out = ["## FPGA resources and Fmax", ""]
    if build is None or build.get("skipped"):
        board = f" ({build['board']}, {build['lanes']} lanes)" if build else ""
        return out + [f"Not built in this run{board}: `--no-build`. Run `sparsegate demo` without it for the "
                      "bitstream, resources and Fmax.", ""]
    out += [f"Board {build['board']} ({build['description']}), device {build['device']}, {build['lanes']} lanes, "
            f"the demo's weight image baked in at power-up (`sparsegate build`'s path; digest `{build['digest']}`"
            f"{', from the build cache' if build['cache_hit'] else ''}; place and route {build['tool_time_s']:.0f} s).",
            "",
            _md_table(["resource", "used", "available", "%"],
                      [[k, f"{v['used']:,}", f"{v['available']:,}", f"{100 * v['used'] / max(1, v['available']):.1f}"]
                       for k, v in build["resources"].items()]), "",
            _md_table(["clock", "Fmax (MHz)", "constraint (MHz)", "timing met?"],
                      [[f"`{name}`", f"{c['achieved_mhz']:.1f}", c["constraint_mhz"] or "-", "yes" if c["met"] else "**NO**"]
                       for name, c in build["clocks"].items()]), "",
            f"Fmax {build['fmax_mhz']:.1f} MHz against the {build['target_mhz']:.0f} MHz engine clock: timing "
            f"{'met' if build['timing_met'] else '**NOT met**'}. Bitstream `{build['bit']}`.", ""]
    net = build.get("netlist_sim")
    if net:
        out += [f"**{net['line']}**: the bitstream's synthesized netlist (Yosys's, the one nextpnr placed; ECP5 cell "
                f"models, Verilator) classified the first {net['samples']} held-out digits through its UART pins at "
                f"{build['baud']:,} baud, driven by the host driver `sparsegate run` uses, with the image "
                f"{'loaded over the link' if net.get('loaded', True) else 'the bitstream holds (block-RAM init values)'}"
                f"; logits equal to the golden model's, every debug register equal to the RTL's. "
                f"{net['netlist_cycles_per_s']:,} cycles/s against {net['rtl_cycles_per_s']:,} for the RTL; "
                f"{net['elapsed_s']:.0f} s (Verilator builds {net['compile_s']:.0f} s)"
                + (f", alongside place and route: {net['added_s']:.0f} s added to the build stage"
                   if net.get("overlapped") else "") + ".", ""]
    return out


def _finetune_sentence(train: dict, prune: dict) -> str:
    """How the pruning stages fine-tuned (runs from before these were recorded: nothing)."""
    ft = prune.get("finetune")
    if not ft:
        return ""
    return (f" Every fine-tune ({ft['epochs']} epochs a round) peaks at learning rate {ft['lr']:g} and adds L2 weight "
            f"decay {ft['weight_decay']:g}; the dense model trained with weight decay {train.get('weight_decay', 0):g}.")


def build_markdown(results: dict, plots: dict[str, str]) -> str:
    train, prune, kep, base = results["train"], results["prune"], results["kep"], results["baseline"]
    quant, export, sim = results["quantize"], results["export"], results["simulate"]
    build = results.get("build")
    storage = export["storage"]
    agree = sim["agreement"]
    n = sim["samples"]
    kb, ka = kep["before"], kep["after"]
    sections = ["# sparsegate demo report", "",
                ("LeNet-5-Caffe on the embedded MNIST default (4,000 train / 1,000 held-out digits)"
                 if train.get("name", "lenet5") == "lenet5" else f"{train['name']} on {train['dataset']}") + ", pruned with "
                "SRA + NRP, then KEP on the conv layers, quantized to int8, exported as a sparse-index weight "
                "image, run on the cycle-accurate zero-skipping engine and built into an ECP5 bitstream. Every "
                "number below comes from this run's stages (`summary.json`).", "", "## Summary", "",
                _md_table(["stage", "result"], [
                    ["float baseline", f"{_pct(train['test_accuracy'])} ({train['params']:,} params, "
                                       f"{train['macs']:,} MACs)"],
                    ["SRA + NRP", f"{_pct(prune['test_accuracy'])}, drop {100 * prune['accuracy_drop']:.2f} points, "
                                  f"{prune['compression']:.1f}x compression, {_pct(prune['mac_reduction'])} MACs removed"],
                    ["+ KEP (conv layers)", f"conv sparsity {_pct(kb['conv_sparsity'])} → {_pct(ka['conv_sparsity'])}, "
                                            f"test {_pct(kb['test_accuracy'])} → {_pct(ka['test_accuracy'])}"
                                            + ("" if kep["accepted"] else " (over the guard: not used)")],
                    ["demo model", f"{_pct(kep['test_accuracy'])}, drop {100 * kep['accuracy_drop']:.2f} points, "
                                   f"{kep['compression']:.1f}x compression, {_pct(kep['mac_reduction'])} MACs removed"],
                    ["torch global L1 (baseline, same budget)",
                     f"{_pct(base['test_accuracy'])}, drop {100 * base['accuracy_drop']:.2f} points, "
                     f"{base['compression']:.1f}x compression, {_pct(base['mac_reduction'])} MACs removed"],
                    ["int8 (golden model)", f"{_pct(quant['quant_accuracy'])} vs float {_pct(quant['float_accuracy'])}; "
                                            f"predictions agree on {_pct(quant['agreement'])} of "
                                            f"{quant['samples']:,}"],
                    ["weight image", f"{storage['total']['image_bytes']:,} bytes = "
                                     f"{_pct(storage['total']['vs_dense_int8'])} of dense int8, "
                                     f"{_pct(storage['total']['vs_float32'])} of float32"],
                    ["engine", f"{sim['total']:,} cycles per digit at {sim['lanes']} lanes "
                               f"({sum(sim['dense_model']) / max(1, sum(sim['cycles'])):.2f}x fewer than dense); "
                               f"{n} digits bit-exact with the golden model"],
                    ["bitstream", "skipped (`--no-build`)" if build is None or build.get("skipped") else
                     f"{build['board']}: Fmax {build['fmax_mhz']:.1f} MHz, timing at {build['target_mhz']:.0f} MHz "
                     f"{'met' if build['timing_met'] else 'NOT met'}"
                     + (f"; {build['netlist_sim']['line']}" if build.get("netlist_sim") else "")],
                ]), "",
                "## Per-layer sparsity and kept weights", "",
                _md_table(["layer", "weights", "kept (SRA + NRP)", "kept (demo model)", "sparsity",
                           "live inputs", "live outputs", "MACs (zero-skipping / dense)"],
                          _layer_rows(prune["layers"], kep["layers"])), "",
                f"![kept weights per layer]({plots['sparsity']})", "",
                "## KEP on the conv layers", "",
                f"Kernel-element pruning (free choice per kernel plane) keeps {100 * kep['keep_fraction']:.0f}% of "
                "the conv weights SRA + "
                f"NRP left: elements per plane {', '.join(f'{k} ≤ {v}' for k, v in kep['keep'].items())} "
                "(allocated globally), one epoch under the prior-mask penalty, cut, fine-tune.", "",
                _md_table(["", "conv sparsity", "validation", "test"], [
                    ["before (SRA + NRP)", _pct(kb["conv_sparsity"]), _pct(kb["val_accuracy"]), _pct(kb["test_accuracy"])],
                    ["right after the cut", "", _pct(ka["val_accuracy_cut"]), ""],
                    ["after fine-tune", _pct(ka["conv_sparsity"]), _pct(ka["val_accuracy"]), _pct(ka["test_accuracy"])],
                ]), "",
                ("The KEP model is the demo model." if kep["accepted"] else
                 "The validation drop exceeded the guard, so the SRA + NRP model went on to quantization."), "",
                "## Accuracy vs compression", "", f"![accuracy vs compression]({plots['curve']})", "",
                "Validation accuracy (500 digits split off the training set) after each prune → fine-tune round. "
                "The baseline is PyTorch's global L1 magnitude pruning (`torch.nn.utils.prune.global_unstructured`) "
                "from the same trained model, with the same sparsity schedule, target and fine-tune epochs."
                + _finetune_sentence(train, prune), "",
                _md_table(["method", "compression", "MACs removed", "validation", "test", "drop (points)"], [
                    [r_name, f"{r['compression']:.1f}x", _pct(r["mac_reduction"]), _pct(r["val_accuracy"]),
                     _pct(r["test_accuracy"]), f"{100 * r['accuracy_drop']:.2f}"]
                    for r_name, r in (("SRA + NRP", prune), ("demo model (+ KEP)", kep),
                                      ("torch global L1", base))]), "",
                "## Engine cycles, sparse vs dense", "",
                f"{sim['lanes']} lanes; measured on Verilator for the pruned network (sample 0), the analytical cycle "
                "model of the same engine for the dense one. Lane utilization = nonzero MACs / (lanes x cycles).", "",
                _md_table(["layer", "measured", "model", "dense (model)", "speed-up", "utilization", "dense utilization"],
                          [[nm, f"{c:,}", f"{m:,}", f"{d:,}", f"{d / max(1, c):.2f}x", _pct(u), _pct(du)]
                           for nm, c, m, d, u, du in zip(sim["layer_names"], sim["cycles"], sim["model"],
                                                         sim["dense_model"], sim["utilization"],
                                                         sim["dense_utilization"])]),
                "", f"![cycles]({plots['cycles']})", "",
                "```", *sim["log"], "```", "",
                "## Storage", "", "```", export["storage_table"], "```", ""]
    sections += _build_section(build)
    sections += ["## Agreement", "",
                 _md_table(["check", "agree"], [
                     ["int8 golden model vs float PyTorch (all test digits)",
                      f"{round(quant['agreement'] * quant['samples'])}/{quant['samples']}"],
                     ["engine vs golden model, every layer bit-exact (simulated digits)", f"{n}/{n}"],
                     ["engine vs PyTorch integer reference, predictions", f"{agree['engine_vs_torch_int']}/{n}"],
                     ["engine vs float PyTorch, predictions", f"{agree['engine_vs_torch_float']}/{n}"],
                     ["engine correct / float PyTorch correct", f"{agree['engine_correct']}/{n} / "
                                                                f"{agree['torch_float_correct']}/{n}"],
                 ]), "",
                 "## Stage wall times", "",
                 _md_table(["stage", "seconds"], [[name, f"{r['stage_time_s']:.1f}"] for name, r in results.items()
                                                  if isinstance(r, dict) and "stage_time_s" in r]), ""]
    return "\n".join(sections)


# a table cell that is a figure (right-aligned): 1,234 / 97.10% / 12.96x / +0.50 / 20/20
_NUMBER = re.compile(r"^[-+]?[\d,.]+(%|x| ?s)?(/[\d,.]+)?$")


def _inline(text: str) -> str:
    """Escaped text with the report's inline Markdown: `code` and **bold**."""
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)


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
            cells = [_inline(c.strip()) for c in line.strip("|").split("|")]
            if all(set(c) <= {"-"} for c in cells):
                continue
            if not in_table:
                out.append("<table>")
                in_table = True
                out.append("<tr>" + "".join(f"<th>{c}</th>" for c in cells) + "</tr>")
            else:
                out.append("<tr>" + "".join(f"<td class='num'>{c}</td>" if _NUMBER.match(c) else f"<td>{c}</td>"
                                            for c in cells) + "</tr>")
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
            out.append(f"<p>{_inline(line)}</p>")
    if in_table:
        out.append("</table>")
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}td.num{text-align:right}pre{background:#f4f4f4;padding:.5em}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>sparsegate demo report</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(out) + "\n</body></html>\n")


def _ci(mean: float, ci: list[float], scale: float = 1.0, fmt: str = ".1f", unit: str = "") -> str:
    return f"{mean * scale:{fmt}}{unit} [{ci[0] * scale:{fmt}}, {ci[1] * scale:{fmt}}]"


def crossval_section(figures: Path, run: Path, plot: str) -> list[str]:
    """The cross-validated benchmark's plot (written to ``run/plot``) and table from its JSON ``figures``;
    nothing when the file is missing or from before the cross-validated benchmark."""
    from sparsegate.sw.flow.tradeoff_plot import at_drop_curve, plot_tradeoff

    if not Path(figures).is_file():
        return []
    d = json.loads(Path(figures).read_text())
    if "methods" not in d or "jobs" not in d:
        return []
    curves: dict[str, list] = {}
    for job in d["jobs"]:
        for name, r in job["results"].items():
            curves.setdefault(name, []).append(at_drop_curve(r))
    plot_tradeoff(curves, d["methods"], run / plot, "pruning benchmark: paired test drop vs compression, 95% bands")
    s = d["settings"]
    rows = [[name, _ci(m["compression_mean"], m["compression_ci95"], unit="x"),
             _ci(m["drop_mean"], m["drop_ci95"], 100, "+.2f"),
             _ci(m["compression_at_drop"]["0.3"]["compression_mean"], m["compression_at_drop"]["0.3"]["compression_ci95"],
                 unit="x"), str(m["n"])] for name, m in d["methods"].items()]
    return ["## Cross-validated pruning figures", "",
            f"From `{figures}` (`{d['command']}`): {s['folds']}-fold cross-validation x seeds {list(s['seeds'])}, "
            "each fold's own fit / validation / test digits; mean [95% CI, Student t]; drop paired on the fold's "
            f"test digits. Each method there takes the sparsest round within a {100 * s['max_drop']:.1f}-point "
            "validation budget" + (f", every training call with L2 weight decay {s['weight_decay']:g}"
                                   if s.get("weight_decay") else "")
            + "; the demo above prunes to a fixed sparsity in fewer rounds, so its one-run figures differ.", "",
            _md_table(["method", "compression", "drop (points)", "weight compression at 0.3 points", "n"], rows), "",
            f"![drop vs compression, cross-validated]({plot})", ""]


def write_report(run: Path, results: dict, crossval: Path = CROSSVAL_FIGURES) -> dict:
    """Write the plots, ``report.md`` and ``report.html`` into ``run``; return their paths."""
    run = Path(run)
    plots = {"curve": "report/accuracy_vs_compression.png", "cycles": "report/cycles.png",
             "sparsity": "report/kept_weights.png"}
    _plot_curve(results, run / plots["curve"])
    _plot_sparsity(results, run / plots["sparsity"])
    _plot_cycles(results["simulate"], run / plots["cycles"])
    markdown = build_markdown(results, plots) + "\n".join(["", *crossval_section(crossval, run,
                                                                                 "report/crossval_tradeoff.png")])
    write_text(run / "report.md", markdown)
    write_text(run / "report.html", _markdown_to_html(markdown, run))
    return {"markdown": str(run / "report.md"), "html": str(run / "report.html")}
