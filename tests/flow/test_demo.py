"""The demo pipeline: stages run in order, write their markers, a re-run resumes (and redoes what changed);
a tiny end-to-end run fills every report section from real stage results."""
from __future__ import annotations

import json
import re

import pytest

from sparsegate.sw.flow import demo
from sparsegate.sw.flow import report as demo_report
from sparsegate.sw.cli.main import main
from sparsegate.sw.ml.train import load_checkpoint
from sparsegate.sw.prune.iterative import VAL_SIZE


def test_demo_resumes_from_finished_stages(tmp_path, monkeypatch):
    calls = []

    def first(run, results, options):
        calls.append("first")
        return {"value": 1}

    def second(run, results, options):
        calls.append("second")
        if len(calls) == 2:
            raise RuntimeError("interrupted")
        return {"value": results["first"]["value"] + options.lanes}

    monkeypatch.setattr(demo, "STAGES", [("first", first, str), ("second", second, str)])
    monkeypatch.setattr(demo, "STAGE_OPTIONS", {"second": ("lanes",)})
    logs = []
    with pytest.raises(RuntimeError, match="interrupted"):
        demo.run_demo(tmp_path, log=logs.append)
    assert (tmp_path / "first" / "stage.json").is_file()
    assert not (tmp_path / "second" / "stage.json").exists()

    results = demo.run_demo(tmp_path, log=logs.append)
    assert calls == ["first", "second", "second"]
    assert results["second"]["value"] == 1 + demo.DEMO_LANES
    assert "[first] reused" in "\n".join(logs)
    assert json.loads((tmp_path / "summary.json").read_text())["second"]["value"] == 1 + demo.DEMO_LANES

    demo.run_demo(tmp_path, log=logs.append)  # nothing changed: nothing runs
    assert calls == ["first", "second", "second"]
    results = demo.run_demo(tmp_path, demo.DemoOptions(lanes=8), log=logs.append)  # only `second` depends on lanes
    assert calls[-1:] == ["second"] and len(calls) == 4 and results["second"]["value"] == 9
    assert "[second] options changed" in "\n".join(logs)

    demo.run_demo(tmp_path, demo.DemoOptions(lanes=8), fresh=True, log=logs.append)
    assert calls[-2:] == ["first", "second"]


def test_demo_rejects_bad_options(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--lanes", "3", "--no-build"]) == 2
    assert "--lanes must be a power of two" in capsys.readouterr().err
    with pytest.raises(demo.DemoError, match="unknown board"):
        demo.run_demo(tmp_path, demo.DemoOptions(board="no-such-board"))
    with pytest.raises(demo.DemoError, match="KEP keep fraction"):
        demo.run_demo(tmp_path, demo.DemoOptions(kep_keep=0.0))
    with pytest.raises(demo.DemoError, match="--baud: 40000000 baud needs at least 4 clock cycles per bit"):
        demo.run_demo(tmp_path, demo.DemoOptions(baud=40_000_000))
    with pytest.raises(demo.DemoError, match="--netlist-sim must be at least 0"):
        demo.run_demo(tmp_path, demo.DemoOptions(netlist_samples=-1))
    with pytest.raises(demo.DemoError, match="fine-tune learning rate must be > 0"):
        demo.run_demo(tmp_path, demo.DemoOptions(finetune_lr=0.0))
    with pytest.raises(demo.DemoError, match="validation split must hold at least 1 digit, got 0"):
        demo.run_demo(tmp_path, demo.DemoOptions(val_size=0))
    assert not any(tmp_path.iterdir())  # checked before any stage ran


class _Captured(Exception):
    pass


@pytest.mark.parametrize("stage", ["prune", "baseline"])
def test_pruning_stages_rewind_and_decay_by_default(tmp_path, monkeypatch, stage):
    """SRA + NRP and the baseline fine-tune at the training's peak learning rate with L2 weight decay (learning-rate
    rewinding and weight decay, the recoveries #19 measured best) unless the demo is given others, and a changed
    rate or strength re-runs the stage."""
    import sparsegate.sw.prune as prune
    from sparsegate.sw.ml.models import build_model
    from sparsegate.sw.ml.train import RECIPES, WEIGHT_DECAY, save_checkpoint

    save_checkpoint(tmp_path / "model.pt", build_model("lenet5"), "lenet5")
    results = {"train": {"checkpoint": str(tmp_path / "model.pt"), "held_out": VAL_SIZE}}
    seen = []

    def capture(model, options, *args):
        seen.append(options)
        raise _Captured

    monkeypatch.setattr(prune, "prune_model", capture)
    function = dict((name, f) for name, f, _ in demo.STAGES)[stage]
    for options in (demo.DemoOptions(), demo.DemoOptions(finetune_lr=5e-4, weight_decay=0.0)):
        with pytest.raises(_Captured):
            function(tmp_path, results, options)
    assert seen[0].lr == RECIPES["lenet5"][1].lr == 2e-3 and seen[1].lr == 5e-4
    assert seen[0].weight_decay == RECIPES["lenet5"][1].weight_decay == WEIGHT_DECAY > 0 and seen[1].weight_decay == 0
    assert seen[0].method == ("sra" if stage == "prune" else "torch-l1") and seen[0].nrp == (stage == "prune")
    changed = demo._stage_settings(stage, demo.DemoOptions(finetune_lr=5e-4, weight_decay=0.0))
    assert (changed["finetune_lr"], changed["weight_decay"]) == (5e-4, 0.0)


def test_train_stage_takes_the_recipes_weight_decay_unless_given_one(tmp_path, monkeypatch):
    """The demo's dense model trains with its recipe's weight decay (the LeNets: L2 5e-4), ``--weight-decay``
    overrides it, and a bad strength is refused before any stage runs. It holds out the validation digits the
    pruning stages decide on."""
    import sparsegate.sw.flow.train as train_flow

    seen = []

    def capture(model, out, **kwargs):
        seen.append(kwargs["weight_decay"])
        assert kwargs["val_size"] == VAL_SIZE
        raise _Captured

    monkeypatch.setattr(train_flow, "train_job", capture)
    function = dict((name, f) for name, f, _ in demo.STAGES)["train"]
    for options in (demo.DemoOptions(), demo.DemoOptions(weight_decay=1e-3)):
        with pytest.raises(_Captured):
            function(tmp_path, {}, options)
    assert seen == [None, 1e-3]  # None: train_job takes the recipe's
    with pytest.raises(demo.DemoError, match="--weight-decay: weight decay: expected a finite strength >= 0"):
        demo.run_demo(tmp_path, demo.DemoOptions(weight_decay=-1e-4))
    assert not any(tmp_path.iterdir())


def test_build_stage_reports_the_board_build(tmp_path, monkeypatch):
    """The bitstream stage calls the build library with the demo's board, lanes and image, at the board's fastest
    UART rate (the ULX3S's FT231X: 3 Mbaud) and with the netlist simulation on 20 digits of the built-in image, and
    keeps resources, Fmax, timing and the netlist line from its BuildResult; ``--no-build`` skips it; a refused
    build or a netlist that differs is a DemoError."""
    from sparsegate.hw.platform.ecp5_build import DesignDoesNotFit
    from sparsegate.sw.flow import build as build_flow

    image = tmp_path / "image.bin"
    image.write_bytes(b"IMG")
    seen = {}

    netlist = {"samples": 20, "ok": True, "line": "netlist simulated: 20 digits bit-exact", "loaded": False,
               "netlist_cycles_per_s": 41_000, "rtl_cycles_per_s": 900_000, "elapsed_s": 300.0, "compile_s": 200.0,
               "overlapped": True, "added_s": 150.0}

    def fake_build(board, lanes, out, *, image, image_name, clock_mhz, baud, cache, netlist_sim, netlist_load, log):
        seen.update(board=board, lanes=lanes, image=image, clock_mhz=clock_mhz, baud=baud, netlist_sim=netlist_sim,
                    netlist_load=netlist_load)
        log("[3/4] cache hit: somewhere")
        util = {"TRELLIS_COMB": {"used": 8325, "available": 24288}, "TRELLIS_FF": {"used": 3413, "available": 24288},
                "MULT18X18D": {"used": 7, "available": 28}, "DP16KD": {"used": 46, "available": 56}}
        return build_flow.BuildResult(
            board=board, description="ULX3S", core="sparse", lanes=lanes, units=None, clock_mhz=clock_mhz,
            baud=115200, image=image_name, digest="abc", tools={}, geometry={"lanes": lanes}, estimate={},
            report={"device": "LFE5U-25F", "package": "CABGA381", "speed": "6", "utilisation": util,
                    "clocks": {"sync": {"achieved_mhz": 51.5, "constraint_mhz": 100.0, "met": False}},
                    "fmax_mhz": 51.5, "timing_met": False, "elapsed_s": 841.0,
                    "late_registers": [{"signal": "top.seq.y_left", "clock": "sync", "endpoints": 10,
                                        "worst_ns": 19.42, "period_ns": 10.0}]},
            bitstream=str(out / "top.bit"), cache_hit=True, out=out, netlist_sim=dict(netlist))

    monkeypatch.setattr(build_flow, "build_board", fake_build)
    results = {"export": {"image": str(image)}}
    r = demo._stage_build(tmp_path, results, demo.DemoOptions())
    assert seen == {"board": "ulx3s-25f", "lanes": 4, "image": b"IMG", "clock_mhz": 100.0, "baud": 3_000_000,
                    "netlist_sim": 20, "netlist_load": False}
    assert r["resources"]["DP16KD"] == {"used": 46, "available": 56} and r["resources"]["LUT4"]["used"] == 8325
    assert r["fmax_mhz"] == 51.5 and r["timing_met"] is False and r["cache_hit"]
    assert "4 lanes" in r["report_md"] and r["log"] == ["[3/4] cache hit: somewhere"]
    assert "missing the 100.0 MHz target" in r["report_md"] and "| `top.seq.y_left` | 10 | 19.42 | +9.42 |" in r["report_md"]
    section = "\n".join(demo_report._build_section(r))
    assert "| DP16KD | 46 | 56 | 82.1 |" in section and "| `sync` | 51.5 | 100.0 | **NO** |" in section
    assert "timing **NOT met**" in section
    assert "**netlist simulated: 20 digits bit-exact**" in section and "at 3,000,000 baud" in section
    assert "the bitstream holds (block-RAM init values)" in section and "150 s added to the build stage" in section
    assert "netlist simulated: 20 digits bit-exact" in demo._describe_build(r)
    assert demo._stage_build(tmp_path, results, demo.DemoOptions(baud=115200, netlist_samples=0))["baud"] == 115200
    assert seen["baud"] == 115200 and seen["netlist_sim"] == 0
    assert demo._stage_build(tmp_path, results, demo.DemoOptions(build=False))["skipped"]

    def too_big(*args, **kwargs):
        raise DesignDoesNotFit("engine does not fit LFE5U-25F", {})

    monkeypatch.setattr(build_flow, "build_board", too_big)
    with pytest.raises(demo.DemoError, match="^build stage: engine does not fit"):
        demo._stage_build(tmp_path, results, demo.DemoOptions())

    netlist.update(ok=False, line="netlist simulated: 19/20 digits bit-exact with the golden model, 19/20 with the "
                                  "RTL; first difference: digit 3: layer1 output signature 0x00000001 (RTL 0x00000002)")
    monkeypatch.setattr(build_flow, "build_board", fake_build)
    with pytest.raises(demo.DemoError, match="^build stage: netlist simulated: 19/20 .* digit 3: layer1"):
        demo._stage_build(tmp_path, results, demo.DemoOptions())


@pytest.mark.slow
def test_tiny_demo_end_to_end(tmp_path):
    """Every real stage on a tiny budget (1 training epoch, 2 rounds, 2 digits on Verilator, no bitstream)."""
    options = demo.DemoOptions(lanes=4, build=False, samples=2, epochs=1, rounds=2, finetune_epochs=1,
                               kep_finetune_epochs=1, progress=False)
    logs = []
    results = demo.run_demo(tmp_path, options, log=logs.append)
    assert [name for name, *_ in demo.STAGES] == list(results)
    for name in results:
        assert (tmp_path / name / "stage.json").is_file()

    kep = results["kep"]
    assert kep["after"]["conv_sparsity"] > kep["before"]["conv_sparsity"]
    assert kep["checkpoint"] == (kep["kep_checkpoint"] if kep["accepted"] else results["prune"]["checkpoint"])
    base = results["baseline"]
    assert len(base["history"]) == 2 and base["method"] == "torch-l1"
    sim = results["simulate"]
    assert sim["ok"] and sim["lanes"] == 4 and sim["samples"] == 2
    assert len(sim["cycles"]) == len(sim["dense_model"]) == len(sim["utilization"]) == 4
    assert all(0 < u <= 1 for u in sim["utilization"]) and sum(sim["dense_model"]) > sum(sim["cycles"])
    assert sim["agreement"]["engine_vs_torch_int"] == 2
    assert results["build"]["skipped"]

    md = (tmp_path / "report.md").read_text()
    for heading in ("Per-layer sparsity and kept weights", "KEP on the conv layers", "Accuracy vs compression",
                    "Engine cycles, sparse vs dense", "Storage", "FPGA resources and Fmax", "Agreement"):
        assert f"## {heading}" in md
    assert "torch global L1" in md and "utilization" in md and "--no-build" in md
    assert results["train"]["weight_decay"] == results["prune"]["finetune"]["weight_decay"] == 5e-4
    assert results["train"]["held_out"] == VAL_SIZE  # the pruning stages validate on unseen digits
    assert load_checkpoint(results["prune"]["checkpoint"])[2]["held_out"] == VAL_SIZE
    assert "peaks at learning rate 0.002 and adds L2 weight decay 0.0005; the dense model trained with weight " \
           "decay 0.0005." in md
    assert not re.search(r"\b(nan|None)\b", md)
    page = (tmp_path / "report.html").read_text()
    images = re.findall(r'<img [^>]*src="([^"]*)"', page)
    crossval = demo_report.CROSSVAL_FIGURES.exists()   # the benchmark's figures, where the run starts
    assert ("## Cross-validated pruning figures" in md) == crossval
    assert len(images) == 3 + crossval and all(src.startswith("data:image/png;base64,") for src in images)
    assert "<td>conv1</td>" in page and re.search(r"<td class='num'>\d+\.\d\d%</td>", page)  # figures right-aligned

    recap = demo.format_recap(results, 1.0).splitlines()
    assert [line.split()[0] for line in recap[2:-1]] == [name for name, *_ in demo.STAGES]
    assert "(reused)" not in "\n".join(recap) and "bitstream skipped (--no-build)" in recap[-3]

    logs.clear()
    again = demo.run_demo(tmp_path, options, log=logs.append)  # resumes: every stage reused
    assert sum("reused" in line for line in logs) == len(demo.STAGES)
    assert all(line.split()[3] == "(reused)" for line in demo.format_recap(again, 1.0).splitlines()[2:-1])
