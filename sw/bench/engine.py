"""The engine benchmark (one run), old engine vs new side by side on two pruned LeNet-5s: the magnitude-pruned
reference workload (:func:`~sparsegate.sw.flow.lenet.pruned_lenet5`) and SRA + NRP through the prune registry
(:func:`~sparsegate.sw.flow.lenet.sra_nrp_lenet5`).

Per network, per engine variant (:data:`ENGINES`, the build's ``ENGINE_VARIANTS``) and per lane count P in
:data:`LANE_COUNTS`: cycles —
measured on Verilator (free-running whole-network runs, bit for bit against the golden model through the
per-layer signatures) at :data:`MEASURED_LANES`, the analytical cycle model elsewhere —, ideal cycles (nonzero
MACs / P), lane utilisation, dense cycles (the unpruned network on the same engine, cycle model), speed-up vs
dense and the MAC reduction; the goals of issue #16 checked against those figures; effective throughput at the
routed Fmax of the build sweep (:mod:`~sparsegate.sw.bench.routed_builds`) per MULT18X18D and per 1k LUT4, each
variant at its own routed build, new over old side by side. Also,
on the new engine at the most measured lanes: cycles per layer, the energy estimate per inference, sparse vs
dense (:mod:`sparsegate.hw.engine.energy_model`, its command counts checked against the hardware's counters), and
the simulation speed of Verilator vs Icarus vs Amaranth's simulator on the same design, measured here.
"""
from __future__ import annotations

import platform
import time
from pathlib import Path

from sparsegate.sw.bench.results import BenchResult, write_results
from sparsegate.sw.flow.build import DEFAULT_ENGINE as NEW, ENGINE_VARIANTS as ENGINES, OLD_ENGINE as OLD

__all__ = ["ENGINES", "LANE_COUNTS", "MEASURED_LANES", "NETWORKS", "NEW", "OLD", "energy_figures", "energy_section",
           "run_engine_benchmark"]

LANE_COUNTS = (1, 2, 4, 8, 16, 32)
MEASURED_LANES = (4, 16)       # on Verilator; the cycle model for the other lane counts
QUICK_MEASURED_LANES = (4,)
NETWORKS = {"magnitude": "magnitude-pruned LeNet-5", "sra-nrp": "SRA + NRP LeNet-5"}
#: SRA + NRP budget: the demo's target sparsity and NRP guard (sw/flow/demo.py), with bigger steps and one
#: fine-tune epoch per round instead of its 30%/15% steps and two epochs (7 rounds, not 14: minutes, not ten)
SRA_NRP_BUDGET = dict(rounds=16, step=0.5, late_step=0.3, finetune_epochs=1)
SRA_NRP_QUICK = dict(target_sparsity=0.6, rounds=1, step=0.6, late_step=0.6, finetune_epochs=0)
#: Routed points the issue asks for: (device, lanes); the sweep's other routed points are added.
THROUGHPUT_POINTS = (("85F", 16), ("85F", 32), ("25F", 4), ("25F", 16))

SIM_LABELS = {"verilator": "Verilator (C++ main loop)", "verilator-cocotb": "Verilator (cocotb)",
              "icarus": "Icarus (cocotb)", "amaranth": "Amaranth simulator (Python)"}


def run_engine_benchmark(out_dir, quick: bool = False, log=print, model=None, sweep=None) -> BenchResult:
    """Run the benchmark in ``out_dir``; the report goes to ``engine.md``, its figures to ``engine.json``.
    ``model``: a trained LeNet-5 (not changed) both networks are pruned from (default: trained here, 3 epochs,
    outside the validation digits SRA + NRP decides on, cached); ``sweep``: the build sweep's ``builds.json``
    (default: ``builds/builds.json`` beside ``out_dir``, from ``sparsegate bench --only builds`` into the same
    folder, else ``docs/results/builds.json``). ``quick``: no fine-tunes, a one-round SRA, Verilator at 4 lanes
    only, and no cocotb / Icarus / Amaranth runs."""
    from sparsegate.sw.bench.builds import gateware_sources_digest
    from sparsegate.sw.bench.routed_builds import find_sweep, read_sweep
    from sparsegate.sw.flow.demo import DEMO_NRP_DROP, DEMO_SPARSITY
    from sparsegate.sw.flow.lenet import MAGNITUDE_FINETUNE, PRUNE_RATIOS, pruned_lenet5, sra_nrp_lenet5
    from sparsegate.sw.ir.weight_image import decode_image
    from sparsegate.sw.ml.threads import pinned_threads
    from sparsegate.sw.prune.iterative import VAL_SIZE

    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    cache = out_dir / ("networks-quick" if quick else "networks")
    budget = SRA_NRP_QUICK if quick else dict(target_sparsity=DEMO_SPARSITY, **SRA_NRP_BUDGET)
    with pinned_threads():      # the same networks from the same seeds on any machine
        magnitude_img, dense_img = pruned_lenet5(cache, model, finetune_epochs=0 if quick else 1)
        sra = sra_nrp_lenet5(cache, model, nrp_drop=DEMO_NRP_DROP, val_size=VAL_SIZE, **budget)
    log(f"[bench] networks ready ({time.perf_counter() - t0:.0f} s)")
    pruning = {"magnitude": {"method": "magnitude", "prune_ratios": dict(PRUNE_RATIOS),
                             "finetune_epochs": 0 if quick else 1,
                             **{f"finetune_{k}": v for k, v in MAGNITUDE_FINETUNE.items()}},
               "sra-nrp": {"method": "sra+nrp", **sra.settings, "compression": sra.compression,
                           "mac_reduction": sra.mac_reduction, "base_test_accuracy": sra.base_test_accuracy,
                           "test_accuracy": sra.test_accuracy, "rounds_run": sra.rounds, "wall_s": sra.wall_s}}
    qnets = {"magnitude": decode_image(magnitude_img), "sra-nrp": decode_image(sra.image)}
    dense = decode_image(dense_img)

    measured = QUICK_MEASURED_LANES if quick else MEASURED_LANES
    n = 4 if quick else 20
    runner = _Runner(out_dir, dense, n, log)
    networks = {}
    for name, qnet in qnets.items():
        networks[name] = runner.network(name, qnet, measured, pruning[name])
        log(f"[bench] {name}: done ({time.perf_counter() - t0:.0f} s)")

    candidates = [sweep] if sweep is not None else [out_dir.parent / "builds" / "builds.json",
                                                    Path("docs/results/builds.json")]
    found = find_sweep(candidates)
    if sweep is not None and found is None:
        raise FileNotFoundError(f"sweep: {sweep} does not exist; expected the build sweep's builds.json")
    figures = read_sweep(found) if found else None
    data = {
        "generated": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.machine(),
        "python": platform.python_version(), "quick": quick, "samples": n, "lane_counts": list(LANE_COUNTS),
        "measured_lanes": list(measured), "detail_lanes": max(measured), "engines": ENGINES, "old": OLD, "new": NEW,
        "networks": networks,
        "throughput": throughput_figures(networks, figures, gateware_sources_digest()),
        "simulators": runner.simulator_speeds(qnets["magnitude"], full=not quick),
    }
    data["goals"] = goals(data)
    return write_results("engine", _markdown(data), data, out_dir)


class _Runner:
    """Compiles, models and runs the programs of one benchmark run; programs that come out the same (two
    variants with the same arguments, the dense network shared by both pruned ones) are modelled and built
    once."""

    def __init__(self, out_dir: Path, dense, n: int, log):
        self.out_dir, self.dense, self.n, self.log = out_dir, dense, n, log
        self._dense_cycles: dict = {}
        self._points: dict = {}
        self.detail_program = self.detail_run = None   # new engine, most measured lanes, magnitude network

    def dense_cycles(self, variant: str, lanes: int) -> tuple[list[int], int, object]:
        """Per-layer cycles, dense MACs and the program of the unpruned network (cycle model)."""
        from sparsegate.hw.engine.cycle_model import program_cycles
        from sparsegate.hw.engine.program import compile_program

        key = (repr(sorted(ENGINES[variant].items())), lanes)
        if key not in self._dense_cycles:
            prog = compile_program(self.dense, lanes, **ENGINES[variant])
            self._dense_cycles[key] = (program_cycles(prog), sum(p.dense_macs for p in prog.layers), prog)
        return self._dense_cycles[key]

    def network(self, name: str, qnet, measured, pruning: dict) -> dict:
        """Every figure of one network: per variant the points, P = 1 .. 32; its per-layer table and energy at
        the most measured lanes on the new engine."""
        from sparsegate.sw.flow.lenet import test_digits, torch_int_reference

        x, labels = test_digits(qnet, self.n)
        reference = torch_int_reference(qnet, x).argmax(axis=1).tolist()
        weights = sum(int(layer.weight.size) for layer in qnet.layers)
        nonzero_weights = sum(int((layer.weight != 0).sum()) for layer in qnet.layers)
        dense_weights = sum(int(layer.weight.size) for layer in self.dense.layers)
        out = {"title": NETWORKS[name], "pruning": pruning, "weights": weights, "dense_weights": dense_weights,
               "nonzero_weights": nonzero_weights, "weight_compression": dense_weights / nonzero_weights,
               "engines": {}}
        for variant in ENGINES:
            points = []
            for p in LANE_COUNTS:
                points.append(self.point(name, qnet, variant, p, x if p in measured else None, labels, reference))
            by_lanes = {pt["lanes"]: pt for pt in points}
            out["engines"][variant] = {"points": points,
                                       "cycles_1_over_16": by_lanes[1]["cycles"] / by_lanes[16]["cycles"]}
        detail = self._points[(name, repr(sorted(ENGINES[NEW].items())), max(measured))]
        out["dense_macs"], out["nonzero_macs"] = detail["point"]["dense_macs"], detail["point"]["nonzero_macs"]
        out["mac_reduction"] = out["dense_macs"] / out["nonzero_macs"]
        out["layers"] = detail["layers"]
        out["energy"] = energy_figures(detail["program"], detail["dense_program"], detail["regs"])
        if name == "magnitude":
            self.detail_program = detail["program"]
            self.detail_run = detail
        return out

    def point(self, name: str, qnet, variant: str, lanes: int, x, labels, reference) -> dict:
        """One (network, variant, P) point; ``x``: the digits to run on Verilator, None for the cycle model only."""
        from sparsegate.hw.engine.cycle_model import program_cycles
        from sparsegate.hw.engine.program import compile_program
        from sparsegate.sim.engine.amaranth_sim import check_run
        from sparsegate.sim.engine.hdl import build_engine, run_engine_hdl

        key = (name, repr(sorted(ENGINES[variant].items())), lanes)
        if key in self._points:
            return dict(self._points[key]["point"])
        prog = compile_program(qnet, lanes, x, **ENGINES[variant])
        model = program_cycles(prog)
        dense_layers, dense_macs, dense_prog = self.dense_cycles(variant, lanes)
        nonzero = sum(plan.nonzero_macs for plan in prog.layers)
        pt = {"lanes": lanes, "source": "model", "model_cycles": sum(model), "cycles": sum(model),
              "ideal_cycles": nonzero / lanes, "nonzero_macs": nonzero, "dense_macs": dense_macs,
              "dense_cycles": sum(dense_layers)}
        record = {"program": prog, "dense_program": dense_prog, "regs": None, "layers": None}
        if x is not None:
            built, build_s = build_engine(prog, "verilator", self.out_dir / "verilator")
            runs, total, wall = run_engine_hdl(prog, built)
            report = check_run(prog, runs)
            per_digit = [[r[f"layer{i}.cycles"] for i in range(len(prog.layers))] for r in runs]
            r0 = runs[0]
            pt.update(source="verilator", cycles=sum(per_digit[0]), load_cycles=int(r0["total.load_cycles"]),
                      bit_exact={"digits": len(runs), "layers_checked": report.layers_checked,
                                 "outputs_checked": report.outputs_checked, "mismatches": len(report.mismatches),
                                 "predictions_equal_reference": sum(a == b for a, b in zip(report.predictions_hw,
                                                                                           reference)),
                                 "labels_correct": sum(int(a == b) for a, b in zip(report.predictions_hw, labels)),
                                 "identical_cycles": all(c == per_digit[0] for c in per_digit),
                                 "model_exact": per_digit[0] == model})
            record.update(regs=r0, run=(total, wall, build_s, len(runs)), layers=[
                {"name": plan.name, "kind": plan.kind, "nonzero_macs": int(plan.nonzero_macs),
                 "measured_cycles": int(per_digit[0][i]), "model_cycles": int(model[i]),
                 "stalls": int(r0[f"layer{i}.stalls"]), "dense_model_cycles": int(dense_layers[i])}
                for i, plan in enumerate(prog.layers)])
            self.log(f"[bench] {name} {variant} P={lanes}: {report} (build {build_s:.0f} s)")
        pt["utilisation"] = pt["ideal_cycles"] / pt["cycles"]
        pt["speedup"] = pt["dense_cycles"] / pt["cycles"]
        pt["mac_reduction"] = dense_macs / nonzero
        pt["speedup_over_mac_reduction"] = pt["speedup"] / pt["mac_reduction"]
        record["point"] = pt
        self._points[key] = record
        return dict(pt)

    def simulator_speeds(self, qnet, full: bool) -> list[dict]:
        """The same design (magnitude network, new engine, most measured lanes) on each simulator: the Verilator
        C++ loop from the measured run; with ``full``, one digit through cocotb on Verilator and Icarus and on
        Amaranth's simulator, each checked bit for bit."""
        from sparsegate.sim.engine.amaranth_sim import check_run, run_amaranth
        from sparsegate.sim.engine.hdl import build_engine, run_engine_hdl
        from sparsegate.sw.util.toolchain import icarus_available

        prog, (cycles, wall, build_s, digits) = self.detail_program, self.detail_run["run"]
        speeds = {"verilator": (cycles, wall, build_s, digits)}
        if full:
            lanes = prog.lanes
            cb, cb_s = build_engine(prog, "verilator-cocotb", self.out_dir / f"verilator-cocotb-p{lanes}")
            cruns, ccycles, cwall = run_engine_hdl(prog, cb, samples=[0])
            speeds["verilator-cocotb"] = (ccycles, cwall, cb_s, 1)
            assert check_run(prog, cruns, samples=[0]).ok and cruns[0] == self.detail_run["regs"]
            if icarus_available():
                ib, ib_s = build_engine(prog, "icarus", self.out_dir / f"icarus-p{lanes}")
                iruns, icycles, iwall = run_engine_hdl(prog, ib, samples=[0])
                speeds["icarus"] = (icycles, iwall, ib_s, 1)
                assert check_run(prog, iruns, samples=[0]).ok
            aruns, acycles, awall = run_amaranth(prog, samples=[0], timeout_s=3600)
            speeds["amaranth"] = (acycles, awall, 0.0, 1)
            assert check_run(prog, aruns, samples=[0]).ok
            self.log(f"[bench] simulators: {', '.join(f'{k} {v[1]:.1f} s' for k, v in speeds.items())}")
        return [{"simulator": sim, "build_s": bs, "digits": d, "cycles": int(cyc), "wall_s": w}
                for sim, (cyc, w, bs, d) in speeds.items()]


#: The throughput figures compared new over old (:func:`throughput_figures`' ``comparison``).
COMPARED = ("dense_macs_per_s", "per_dsp", "per_klut4")


def throughput_figures(networks: dict, figures, sources: str) -> dict:
    """Dense-equivalent MACs per second at the routed Fmax, per MULT18X18D and per 1k LUT4, per network,
    variant and routed point (the issue's and every routed point of the sweep at a benchmarked P), each variant
    at the sweep's routed build of that variant; and per network and point the new engine's figures over the old
    engine's (:data:`COMPARED`; ``ratio`` None where either has no routed build)."""
    points = set(THROUGHPUT_POINTS)
    if figures is not None:
        points |= {(device, lanes) for device, lanes, _ in figures.routed if lanes in LANE_COUNTS}
    points = sorted(points, key=lambda k: (k[0], k[1]))
    rows, comparison = [], []
    for name, net in networks.items():
        for device, lanes in points:
            by_variant = {}
            for variant in ENGINES:
                pt = next(p for p in net["engines"][variant]["points"] if p["lanes"] == lanes) \
                    if lanes in LANE_COUNTS else None
                row = {"network": name, "variant": variant, "device": device, "lanes": lanes,
                       "cycles": pt["cycles"] if pt else None, "dense_macs": net["dense_macs"]}
                if figures is None:
                    row["missing"] = "no build sweep JSON"
                else:
                    build = figures.lookup(device, lanes, variant)
                    if isinstance(build, str):
                        row["missing"] = build
                    else:
                        per_s = build.fmax_mhz * 1e6 / pt["cycles"]
                        row.update(fmax_mhz=build.fmax_mhz, lut4=build.lut4, dsp=build.dsp, ebr=build.ebr,
                                   inferences_per_s=per_s, dense_macs_per_s=per_s * net["dense_macs"],
                                   per_dsp=per_s * net["dense_macs"] / build.dsp,
                                   per_klut4=per_s * net["dense_macs"] / (build.lut4 / 1000))
                rows.append(row)
                by_variant[variant] = row
            old, new = by_variant[OLD], by_variant[NEW]
            comparison.append({"network": name, "device": device, "lanes": lanes, **{
                key: {"old": old.get(key), "new": new.get(key),
                      "ratio": new[key] / old[key] if key in old and key in new else None} for key in COMPARED}})
    sweep = None if figures is None else {"path": str(figures.path), "sources": figures.sources,
                                          "clock_mhz": figures.clock_mhz, "current_gateware": sources,
                                          "same_gateware": figures.sources == sources}
    return {"sweep": sweep, "rows": rows, "comparison": comparison}


def goals(data: dict) -> list[dict]:
    """Issue #16's goals, each with the figure of this run (on the new engine) and whether it is met; a goal
    without a figure (no routed build) is ``met: None``."""
    def point(name, lanes):
        return next(p for p in data["networks"][name]["engines"][NEW]["points"] if p["lanes"] == lanes)

    out = []
    for name in data["networks"]:
        for lanes, floor in ((16, 0.9), (32, 0.8)):
            value = point(name, lanes)["utilisation"]
            out.append({"goal": f"utilisation at P={lanes} >= {floor:.0%}", "network": name, "value": value,
                        "threshold": floor, "met": value >= floor, "text": f"{100 * value:.1f}%"})
        value = data["networks"][name]["engines"][NEW]["cycles_1_over_16"]
        out.append({"goal": "cycles(P=1) / cycles(P=16) >= 14", "network": name, "value": value, "threshold": 14,
                    "met": value >= 14, "text": f"{value:.2f}"})
    pt = point("sra-nrp", 16)
    out.append({"goal": "speed-up vs dense >= 0.9x the MAC reduction at P=16", "network": "sra-nrp",
                "value": pt["speedup_over_mac_reduction"], "threshold": 0.9,
                "met": pt["speedup_over_mac_reduction"] >= 0.9,
                "text": f"{pt['speedup']:.2f}x of {pt['mac_reduction']:.2f}x = {pt['speedup_over_mac_reduction']:.2f}"})
    sweep = data["throughput"]["sweep"]
    for lanes, floor in ((16, 125.0), (32, 110.0)):
        row = next((r for r in data["throughput"]["rows"] if r["variant"] == NEW and r["device"] == "85F"
                    and r["lanes"] == lanes and "fmax_mhz" in r), None)
        goal = {"goal": f"routed Fmax on the 85F at P={lanes} >= {floor:g} MHz", "network": None, "threshold": floor}
        if row is None:
            goal.update(value=None, met=None, text="no routed build in the sweep")
        else:
            older = "" if sweep["same_gateware"] else " (built from other gateware than this run's)"
            goal.update(value=row["fmax_mhz"], met=row["fmax_mhz"] >= floor, text=f"{row['fmax_mhz']:.1f} MHz{older}")
        out.append(goal)
    runs = [p for net in data["networks"].values() for v in net["engines"].values() for p in v["points"]
            if p["source"] == "verilator"]
    exact = all(p["bit_exact"]["mismatches"] == 0 for p in runs)
    out.append({"goal": "every run bit-exact", "network": None, "value": len(runs), "threshold": None, "met": exact,
                "text": f"{sum(p['bit_exact']['mismatches'] == 0 for p in runs)} of {len(runs)} Verilator runs "
                        f"({sum(p['bit_exact']['digits'] for p in runs)} digits) with 0 mismatches"})
    return out


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _markdown(data: dict) -> str:
    """The report, from the figures alone (so ``engine.md`` and ``engine.json`` cannot disagree)."""
    nets, n, measured = data["networks"], data["samples"], data["measured_lanes"]
    engines = ", ".join(f"`{v}` = `compile_program(..., {', '.join(f'{k}={a!r}' for k, a in kw.items()) or 'defaults'})`"
                        for v, kw in data["engines"].items())
    mag, sra = nets["magnitude"]["pruning"], nets["sra-nrp"]["pruning"]
    lines = [
        "# Sparse engine benchmark: old vs new engine on two pruned LeNet-5s",
        "",
        f"Generated by `sparsegate bench --only engine{' --quick' if data['quick'] else ''}` (`sw/bench/engine.py`), "
        f"{data['generated']}, on {data['machine']} / Python {data['python']}. Engines: {engines} "
        f"(`{data['old']}` old, `{data['new']}` new). Both networks are pruned from one LeNet-5-Caffe trained on "
        "the embedded MNIST split, quantized to int8, written as weight images and decoded from them:",
        "",
        f"* **magnitude**: pruned per layer by magnitude "
        f"({', '.join(f'{k} {int(100 * v)}%' for k, v in mag['prune_ratios'].items())} removed), fine-tuned "
        f"{mag['finetune_epochs']} epoch(s) at learning rate {mag['finetune_lr']:g}, weight decay "
        f"{mag['finetune_weight_decay']:g};",
        f"* **sra-nrp**: SRA to {100 * sra['target_sparsity']:g}% sparsity ({sra['rounds_run']} round(s) of "
        f"{100 * sra['step']:g}% / {100 * sra['late_step']:g}% steps, {sra['finetune_epochs']} fine-tune epoch(s) "
        f"each at learning rate {sra['finetune_lr']:g}, weight decay {sra['finetune_weight_decay']:g}) "
        f"then NRP (guard {100 * sra['nrp_drop']:g} points), decisions on {sra['val_size']} validation digits: "
        f"**{sra['compression']:.1f}x** compression (params), {100 * sra['mac_reduction']:.1f}% of the MACs removed, "
        f"float test accuracy {100 * sra['test_accuracy']:.2f}% (dense {100 * sra['base_test_accuracy']:.2f}%).",
        "",
        "| network | dense weights | nonzero weights | weight compression | dense MACs | nonzero MACs | MAC reduction |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, net in nets.items():
        lines.append(f"| {name} | {net['dense_weights']:,} | {net['nonzero_weights']:,} | "
                     f"{net['weight_compression']:.2f}x | {net['dense_macs']:,} | {net['nonzero_macs']:,} | "
                     f"{net['mac_reduction']:.2f}x |")
    lines += [
        "",
        "Nonzero MACs are those the engine runs (dead channels dropped); dense MACs and dense cycles are the "
        "unpruned network's, on the same engine (cycle model).",
        "",
        "## Goals (issue #16, new engine)",
        "",
    ]
    for g in data["goals"]:
        state = {True: "met", False: "**not met**", None: "not measured"}[g["met"]]
        lines.append(f"- [{'x' if g['met'] else ' '}] {g['goal']}{' — ' + g['network'] if g['network'] else ''}: "
                     f"{g['text']} ({state})")
    lines += [
        "",
        "## Cycles per lane count",
        "",
        f"Cycles of the whole network (the layers, one digit; the input copy not included): measured on Verilator "
        f"at P = {', '.join(map(str, measured))} ({n} held-out digits each, free-running, every layer's output "
        "compared with the golden model through its signature and the logits directly), from the cycle model "
        "elsewhere. Ideal = nonzero MACs / P; utilisation = ideal / cycles; speed-up = dense cycles / cycles; "
        "MAC reduction = dense MACs / nonzero MACs.",
        "",
    ]
    for name, net in nets.items():
        lines += [f"### {name}: {net['title']}", "",
                  "| engine | P | cycles | source | ideal | utilisation | dense cycles | speed-up | MAC reduction "
                  "| speed-up / MAC reduction |",
                  "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
        for variant, res in net["engines"].items():
            for p in res["points"]:
                lines.append(f"| {variant} | {p['lanes']} | {p['cycles']:,} | {p['source']} | {p['ideal_cycles']:,.0f} | "
                             f"{_pct(p['utilisation'])} | {p['dense_cycles']:,} | {p['speedup']:.2f}x | "
                             f"{p['mac_reduction']:.2f}x | {p['speedup_over_mac_reduction']:.2f} |")
        lines += ["", "cycles(P=1) / cycles(P=16): " + ", ".join(
            f"{variant} **{res['cycles_1_over_16']:.2f}**" for variant, res in net["engines"].items()), ""]
    runs = [(name, variant, p) for name, net in nets.items() for variant, res in net["engines"].items()
            for p in res["points"] if p["source"] == "verilator"]
    lines += ["**Bit-exactness of the Verilator runs:**", "",
              "| network | engine | P | digits | layer signatures | logits | mismatches | = PyTorch integer reference "
              "| labels correct | same cycles every digit | = cycle model | input copy (cycles) |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|"]
    for name, variant, p in runs:
        b = p["bit_exact"]
        lines.append(f"| {name} | {variant} | {p['lanes']} | {b['digits']} | {b['layers_checked']} | "
                     f"{b['outputs_checked']} | {b['mismatches']} | {b['predictions_equal_reference']}/{b['digits']} | "
                     f"{b['labels_correct']}/{b['digits']} | {b['identical_cycles']} | {b['model_exact']} | "
                     f"{p['load_cycles']} |")
    lines += ["", *_throughput_section(data["throughput"], data["old"], data["new"])]
    detail = data["detail_lanes"]
    for name, net in nets.items():
        lines += ["", *_layer_section(name, net, detail, data["new"])]
    for name, net in nets.items():
        lines += ["", *energy_section(net["energy"], title=f"Energy estimate per inference: {name} "
                                                           f"(pruned vs dense, {data['new']}, P = {detail})")]
    lines += ["", *_simulator_section(data["simulators"], data["quick"])]
    return "\n".join(lines) + "\n"


def _scaled(value: float | None, scale: float, digits: int = 1) -> str:
    return "—" if value is None else f"{value / scale:,.{digits}f}"


def _throughput_section(tp: dict, old: str, new: str) -> list[str]:
    sweep = tp["sweep"]
    if sweep is None:
        source = ("No build sweep JSON was found (`builds/builds.json` beside this run's folder, or "
                  "`docs/results/builds.json`): no routed figures, so no throughput.")
    else:
        same = ("the same gateware as this run" if sweep["same_gateware"] else
                f"**other gateware than this run's** (sweep sources `{sweep['sources']}`, this checkout "
                f"`{sweep['current_gateware']}`): its Fmax and resources are from that design")
        source = (f"Routed Fmax (nextpnr, post-route) and resources from `{sweep['path']}` (clock target "
                  f"{sweep['clock_mhz']:g} MHz), built from {same}, with the magnitude-pruned image; never a "
                  "placement estimate.")
    lines = ["## Effective throughput at the routed Fmax", "",
             source + " Dense-equivalent MAC/s = dense MACs x Fmax / cycles (the work of the unpruned network "
             "per second); per MULT18X18D and per 1k LUT4 divide it by the build's resources.", "",
             "| network | device | P | engine | Fmax (MHz) | LUT4 | MULT18X18D | cycles | inferences/s "
             "| dense-eq. GMAC/s | MMAC/s per MULT18X18D | MMAC/s per 1k LUT4 |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in tp["rows"]:
        cycles = "—" if r["cycles"] is None else f"{r['cycles']:,}"
        if "missing" in r:
            lines.append(f"| {r['network']} | {r['device']} | {r['lanes']} | {r['variant']} | {r['missing']} | | | "
                         f"{cycles} | | | | |")
        else:
            lines.append(f"| {r['network']} | {r['device']} | {r['lanes']} | {r['variant']} | {r['fmax_mhz']:.1f} | "
                         f"{r['lut4']:,} | {r['dsp']} | {cycles} | {_scaled(r['inferences_per_s'], 1, 0)} | "
                         f"{_scaled(r['dense_macs_per_s'], 1e9, 2)} | {_scaled(r['per_dsp'], 1e6)} | "
                         f"{_scaled(r['per_klut4'], 1e6)} |")
    lines += ["", f"New vs old engine side by side (`{new}` / `{old}`, each at its own routed build of the same "
              "gateware; — where either has none):", "",
              f"| network | device | P | dense-eq. GMAC/s {old} | {new} | {new}/{old} "
              f"| MMAC/s per MULT18X18D {old} | {new} | {new}/{old} | MMAC/s per 1k LUT4 {old} | {new} | {new}/{old} |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for c in tp["comparison"]:
        cells = [f"{_scaled(c[key]['old'], scale, digits)} | {_scaled(c[key]['new'], scale, digits)} | "
                 + ("—" if c[key]["ratio"] is None else f"{c[key]['ratio']:.2f}x")
                 for key, scale, digits in (("dense_macs_per_s", 1e9, 2), ("per_dsp", 1e6, 1), ("per_klut4", 1e6, 1))]
        lines.append(f"| {c['network']} | {c['device']} | {c['lanes']} | {' | '.join(cells)} |")
    return lines


def _layer_section(name: str, net: dict, lanes: int, variant: str) -> list[str]:
    layers = net["layers"]
    lines = [f"## Cycles per layer: {name}, {variant}, P = {lanes} (one digit; Verilator)", "",
             "| layer | kind | nonzero MACs | measured | model | ideal (nnz MACs / P) | lane util. | stalls "
             "| dense (model) | speed-up vs dense |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for layer in layers:
        meas = layer["measured_cycles"]
        lines.append(f"| {layer['name']} | {layer['kind']} | {layer['nonzero_macs']:,} | {meas:,} | "
                     f"{layer['model_cycles']:,} | {layer['nonzero_macs'] / lanes:,.0f} | "
                     f"{_pct(layer['nonzero_macs'] / (lanes * meas))} | {layer['stalls']:,} | "
                     f"{layer['dense_model_cycles']:,} | {layer['dense_model_cycles'] / meas:.2f}x |")
    total = {key: sum(layer[key] for layer in layers)
             for key in ("nonzero_macs", "measured_cycles", "model_cycles", "stalls", "dense_model_cycles")}
    ideal = total["nonzero_macs"] / lanes
    lines.append(f"| **total** | | {total['nonzero_macs']:,} | {total['measured_cycles']:,} | {total['model_cycles']:,} | "
                 f"{ideal:,.0f} | {_pct(ideal / total['measured_cycles'])} | {total['stalls']:,} | "
                 f"{total['dense_model_cycles']:,} | {total['dense_model_cycles'] / total['measured_cycles']:.2f}x |")
    return lines


def _simulator_section(sims: list[dict], quick: bool) -> list[str]:
    lines = ["## Simulation speed (same design, this run)", "",
             "| simulator | build (s) | digits | cycles | wall (s) | cycles/s | vs Verilator C++ loop |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    by_name = {s["simulator"]: s for s in sims}
    fastest = by_name["verilator"]["cycles"] / max(by_name["verilator"]["wall_s"], 1e-9)
    for sim in sims:
        rate = sim["cycles"] / max(sim["wall_s"], 1e-9)
        lines.append(f"| {SIM_LABELS[sim['simulator']]} | {sim['build_s']:.1f} | {sim['digits']} | "
                     f"{sim['cycles']:,} | {sim['wall_s']:.2f} | {rate:,.0f} | {rate / fastest:.3g}x |")
    for name, label in SIM_LABELS.items():
        if name not in by_name:
            lines.append(f"| {label} | — | — | — | — | {'not run (--quick)' if quick else 'not installed'} | |")
    lines += [
        "",
        "The magnitude network on the new engine at the most measured lanes. Wall time counts only the free-running "
        "part (start to `done`); reading the counters back is excluded. The C++ loop toggles the clock and evaluates "
        "the model with no Python per cycle; the cocotb runs are the same Verilog with the clock from cocotb's "
        "`Clock`. The debug registers of the cocotb Verilator run equal the C++ loop's (checked). The machine is "
        "shared (2 cores), so speeds are indicative; compare the ratios, measured in this one run.",
    ]
    return lines


def energy_figures(prog, dense_prog, regs: dict) -> dict:
    """Per-layer and total energy per inference, pruned (``prog``) vs dense on the same engine, and whether
    the commands counted equal those the hardware issued (``regs``: its debug registers after a run)."""
    from sparsegate.hw.engine.energy_model import ENERGY_SOURCE, energy_totals, program_energy

    sparse, dense = program_energy(prog), program_energy(dense_prog)
    measured = [regs[f"layer{i}.issued"] for i in range(len(prog.layers))]
    return {
        "source": ENERGY_SOURCE, "lanes": prog.lanes, "slot_bits": prog.geometry.slot_bits,
        "commands_match_hardware": [e.commands for e in sparse] == measured,
        "layers": [{"name": s.name, "commands": s.commands, "lane_macs": s.lane_macs, "memory_bits": s.memory_bits,
                    "compute_pj": s.compute_pj, "memory_pj": s.memory_pj, "dense_compute_pj": d.compute_pj,
                    "dense_memory_pj": d.memory_pj} for s, d in zip(sparse, dense)],
        "totals": energy_totals(sparse), "dense_totals": energy_totals(dense),
    }


def energy_section(energy: dict, title: str = "Energy estimate per inference (pruned vs dense, same engine)") \
        -> list[str]:
    """The energy table and savings of :func:`energy_figures`, as Markdown lines under ``title``."""
    lanes = energy["lanes"]
    lines = [
        f"## {title}",
        "",
        f"Counted from the program: per element command one weight-word read ({lanes} slots of "
        f"{energy['slot_bits']} bits), the activation banks' reads and {lanes} lane MACs (idle lanes "
        "included); per drained accumulator a parameter read and the requantization; each output element "
        f"written once (to every bank when the next layer is fc). Priced with {energy['source']}. An ASIC-style "
        "estimate for the sparse/dense ratio, not a measured FPGA power. Commands counted = commands the hardware "
        f"issued on Verilator (`layer.issued` counters): **{energy['commands_match_hardware']}**.",
        "",
        "| layer | commands | lane MACs | memory (kbit) | compute (nJ) | memory (nJ) | dense compute (nJ) "
        "| dense memory (nJ) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in energy["layers"]:
        lines.append(f"| {e['name']} | {e['commands']:,} | {e['lane_macs']:,} | {e['memory_bits'] / 1e3:,.1f} | "
                     f"{e['compute_pj'] / 1e3:,.2f} | {e['memory_pj'] / 1e3:,.2f} | {e['dense_compute_pj'] / 1e3:,.2f} | "
                     f"{e['dense_memory_pj'] / 1e3:,.2f} |")
    ts, td = energy["totals"], energy["dense_totals"]
    lines += [
        f"| **total** | {sum(e['commands'] for e in energy['layers']):,} | {ts['lane_macs']:,} | "
        f"{ts['memory_bits'] / 1e3:,.1f} | {ts['compute_nj']:,.2f} | {ts['memory_nj']:,.2f} | {td['compute_nj']:,.2f} | "
        f"{td['memory_nj']:,.2f} |",
        "",
        f"Saved by pruning: compute energy **{100 * (1 - ts['compute_nj'] / td['compute_nj']):.1f}%**, "
        f"memory-traffic energy **{100 * (1 - ts['memory_nj'] / td['memory_nj']):.1f}%**, total "
        f"{100 * (1 - ts['total_nj'] / td['total_nj']):.1f}% ({td['total_nj'] / ts['total_nj']:.2f}x less). "
        "Reported by Guo et al. (ISCAS 2018, SRA + NRP) for their networks and accounting: 8–45.2% compute and "
        "11.5–48.2% memory-traffic energy saved. Here the dense weights are priced as on-chip reads too; "
        "the dense fc1 does not fit on chip, so off-chip reads would make its memory energy far larger.",
    ]
    return lines
