"""The engine benchmark's quick mode (`sparsegate bench --only engine --quick`) on the session's trained LeNet-5:
both networks, both engine variants, every lane count; the JSON has the issue's figures per network and per P,
the Verilator points are bit-exact, the tables show the JSON's figures cell by cell, and throughput is priced
only where the build sweep has a routed figure."""
from __future__ import annotations

import json
import re

import pytest

from sparsegate.sw.bench import engine
from sparsegate.sw.bench.routed_builds import SweepFormatError, read_sweep
from sparsegate.sw.prune import PruneOptions
from sparsegate.sw.util.atomic_io import write_json

FIELDS = {"lanes", "cycles", "source", "model_cycles", "ideal_cycles", "utilisation", "dense_cycles", "speedup",
          "mac_reduction", "speedup_over_mac_reduction", "nonzero_macs", "dense_macs"}


def _sweep_point(device, lanes, mode, status="ok", fmax=None):
    point = {"board": f"ulx3s-{device.lower()}", "device": device, "lanes": lanes, "mode": mode, "status": status}
    if status == "ok":
        point.update(lut=8263 * lanes // 4, ff=6026, dsp=lanes + 3, ebr=41, fmax=fmax, met=fmax >= 100, seconds=1.0,
                     digest="d")
    return point


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, trained_lenet5):
    """One quick run, with a sweep JSON in the build sweep's format where the benchmark looks for it (``builds/``
    beside its folder): a routed 85F P=16 and 25F P=4, a placed-only 85F P=32 and a 25F P=16 that does not fit."""
    root = tmp_path_factory.mktemp("engine-bench")
    sweep = root / "builds" / "builds.json"
    write_json(sweep, {"quick": False, "clock_mhz": 100.0, "sources": "older", "points": [
        _sweep_point("25F", 4, "routed", fmax=107.9), _sweep_point("25F", 16, "placed", status="does not fit"),
        _sweep_point("85F", 16, "routed", fmax=97.8), _sweep_point("85F", 32, "placed", fmax=80.0)]})
    result = engine.run_engine_benchmark(root / "engine", quick=True, log=lambda _: None, model=trained_lenet5)
    return result, json.loads(result.json_path.read_text())


def _table(markdown: str, heading: str) -> list[list[str]]:
    """The body rows (cells stripped) of the first table after ``heading``."""
    lines = markdown.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip()[1:-1].split("|")])
    return rows


def _num(cell: str) -> float:
    return float(re.sub(r"[,x%*]", "", cell))


@pytest.mark.slow
def test_quick_run_has_every_figure_per_network_variant_and_lane_count(quick_run):
    result, data = quick_run
    assert data == result.data and data["quick"] is True and data["measured_lanes"] == [4]
    assert set(data["networks"]) == {"magnitude", "sra-nrp"} and set(data["engines"]) == set(engine.ENGINES)
    for name, net in data["networks"].items():
        assert net["mac_reduction"] > 1.5 and net["nonzero_weights"] < net["dense_weights"]
        for variant, res in net["engines"].items():
            points = res["points"]
            assert [p["lanes"] for p in points] == [1, 2, 4, 8, 16, 32]
            for p in points:
                assert FIELDS <= set(p), (name, variant, p["lanes"])
                assert p["source"] == ("verilator" if p["lanes"] == 4 else "model")
                assert p["ideal_cycles"] == pytest.approx(p["nonzero_macs"] / p["lanes"])
                assert p["utilisation"] == pytest.approx(p["ideal_cycles"] / p["cycles"]) and 0 < p["utilisation"] <= 1
                assert p["speedup"] == pytest.approx(p["dense_cycles"] / p["cycles"])
                assert p["mac_reduction"] == pytest.approx(net["mac_reduction"])
                if p["source"] == "verilator":
                    b = p["bit_exact"]
                    assert b["mismatches"] == 0 and b["layers_checked"] == 4 * data["samples"]
                    assert b["model_exact"] and b["identical_cycles"] and p["cycles"] == p["model_cycles"]
                    assert b["predictions_equal_reference"] == data["samples"]
            assert res["cycles_1_over_16"] == pytest.approx(points[0]["cycles"] / points[4]["cycles"])
            assert points[0]["cycles"] > points[-1]["cycles"]
        assert net["energy"]["commands_match_hardware"] is True
    sra = data["networks"]["sra-nrp"]["pruning"]
    assert sra["method"] == "sra+nrp" and sra["compression"] > 1.5
    defaults = PruneOptions("sra")  # the fine-tune the network ran with is part of what the report states
    assert (sra["finetune_lr"], sra["finetune_weight_decay"]) == (defaults.lr, defaults.weight_decay)
    assert {g["goal"] for g in data["goals"]} >= {"utilisation at P=16 >= 90%", "utilisation at P=32 >= 80%",
                                                  "cycles(P=1) / cycles(P=16) >= 14", "every run bit-exact",
                                                  "speed-up vs dense >= 0.9x the MAC reduction at P=16"}
    assert next(g for g in data["goals"] if g["goal"] == "every run bit-exact")["met"] is True


@pytest.mark.slow
def test_tables_show_the_json_figures(quick_run):
    result, data = quick_run
    md = result.markdown
    assert engine._markdown(json.loads(json.dumps(result.data))) == md == result.markdown_path.read_text()
    for name, net in data["networks"].items():
        rows = _table(md, f"### {name}:")
        want = [(v, p) for v, res in net["engines"].items() for p in res["points"]]
        assert len(rows) == len(want)
        for row, (variant, p) in zip(rows, want):
            assert row[0] == variant and row[3] == p["source"]
            assert [int(_num(c)) for c in (row[1], row[2], row[6])] == [p["lanes"], p["cycles"], p["dense_cycles"]]
            assert _num(row[4]) == pytest.approx(p["ideal_cycles"], abs=0.5)
            assert _num(row[5]) == pytest.approx(100 * p["utilisation"], abs=0.05)
            for cell, key in ((row[7], "speedup"), (row[8], "mac_reduction"), (row[9], "speedup_over_mac_reduction")):
                assert _num(cell) == pytest.approx(p[key], abs=0.005)
        for variant, res in net["engines"].items():
            assert f"{variant} **{res['cycles_1_over_16']:.2f}**" in md
    sra = data["networks"]["sra-nrp"]["pruning"]
    assert f"learning rate {sra['finetune_lr']:g}, weight decay {sra['finetune_weight_decay']:g})" in md
    mag = data["networks"]["magnitude"]["pruning"]
    assert f"learning rate {mag['finetune_lr']:g}, weight decay {mag['finetune_weight_decay']:g};" in md
    for goal in data["goals"]:
        assert goal["text"] in md
    measured = _table(md, "**Bit-exactness of the Verilator runs:**")
    assert len(measured) == 2 * len(engine.ENGINES) and all(row[6] == "0" for row in measured)


@pytest.mark.slow
def test_throughput_only_where_the_sweep_has_a_routed_figure(quick_run):
    result, data = quick_run
    tp = data["throughput"]
    assert tp["sweep"]["sources"] == "older" and tp["sweep"]["same_gateware"] is False
    rows = {(r["network"], r["device"], r["lanes"], r["variant"]): r for r in tp["rows"]}
    net = data["networks"]["sra-nrp"]
    p16 = next(p for p in net["engines"][engine.NEW]["points"] if p["lanes"] == 16)
    r = rows[("sra-nrp", "85F", 16, engine.NEW)]
    assert r["fmax_mhz"] == 97.8 and r["dsp"] == 19
    assert r["dense_macs_per_s"] == pytest.approx(97.8e6 / p16["cycles"] * net["dense_macs"])
    assert r["per_dsp"] == pytest.approx(r["dense_macs_per_s"] / 19)
    assert r["per_klut4"] == pytest.approx(r["dense_macs_per_s"] / (8263 * 4 / 1000))
    assert rows[("sra-nrp", "85F", 32, engine.NEW)]["missing"] == "placed only (no routed Fmax)"
    assert rows[("magnitude", "25F", 16, engine.NEW)]["missing"] == "does not fit"
    table = _table(result.markdown, "## Effective throughput at the routed Fmax")
    assert len(table) == len(tp["rows"])
    shown = {(c[0], c[1], int(c[2]), c[3]): c for c in table}
    cells = shown[("sra-nrp", "85F", 16, engine.NEW)]
    assert cells[4] == "97.8" and _num(cells[10]) == pytest.approx(r["per_dsp"] / 1e6, abs=0.05)
    assert shown[("sra-nrp", "85F", 32, engine.NEW)][4] == "placed only (no routed Fmax)"
    fmax_goal = next(g for g in data["goals"] if g["goal"].startswith("routed Fmax on the 85F at P=16"))
    assert fmax_goal["met"] is False and fmax_goal["value"] == 97.8


def test_a_file_that_is_not_a_sweep_is_refused_naming_it(tmp_path):
    bad = tmp_path / "sweep.json"
    bad.write_text('{"points": [{"device": "85F"}]}')
    with pytest.raises(SweepFormatError, match=r"sweep.json: points\[0\]: expected device, lanes"):
        read_sweep(bad)
    bad.write_text("not json")
    with pytest.raises(SweepFormatError, match="sweep.json: not a readable JSON file"):
        read_sweep(bad)


def test_read_sweep_keys_points_by_engine_and_takes_a_point_without_one_for_v2(tmp_path):
    path = tmp_path / "builds.json"
    write_json(path, {"clock_mhz": 100.0, "sources": "s", "points": [
        _sweep_point("85F", 16, "routed", fmax=100.0), {**_sweep_point("85F", 16, "routed", fmax=90.0), "engine": "v1"},
        {**_sweep_point("85F", 32, "placed", fmax=80.0), "engine": "v1"}]})
    figures = read_sweep(path)
    assert figures.lookup("85f", 16).fmax_mhz == 100.0 and figures.lookup("85F", 16, "v2").engine == "v2"
    assert figures.lookup("85F", 16, "v1").fmax_mhz == 90.0
    assert figures.lookup("85F", 32, "v1") == "placed only (no routed Fmax)"
    assert figures.lookup("85F", 32) == "not in the sweep"


def _fake_networks(cycles: dict) -> dict:
    """The part of the benchmark's ``networks`` that :func:`engine.throughput_figures` reads: per variant the
    cycles at every benchmarked P (``cycles[variant](lanes)``)."""
    return {"magnitude": {"dense_macs": 2_000_000, "engines": {
        variant: {"points": [{"lanes": p, "cycles": cycles[variant](p)} for p in engine.LANE_COUNTS]}
        for variant in engine.ENGINES}}}


def test_throughput_prices_each_variant_at_its_own_routed_build_and_compares_them(tmp_path):
    """Issue #16, new vs old: each variant's row comes from the sweep's routed build of that variant; the
    comparison is new over old where both have one, and the Markdown shows both and the ratio."""
    path = tmp_path / "builds.json"
    write_json(path, {"clock_mhz": 100.0, "sources": "s", "points": [
        _sweep_point("85F", 16, "routed", fmax=100.0), {**_sweep_point("85F", 16, "routed", fmax=90.0), "engine": "v1"},
        _sweep_point("85F", 32, "routed", fmax=95.0), _sweep_point("25F", 4, "routed", fmax=110.0),
        {**_sweep_point("25F", 4, "placed", fmax=80.0), "engine": "v1"}]})
    networks = _fake_networks({engine.OLD: lambda p: 60_000 // p, engine.NEW: lambda p: 40_000 // p})
    tp = engine.throughput_figures(networks, read_sweep(path), "s")
    rows = {(r["device"], r["lanes"], r["variant"]): r for r in tp["rows"]}
    old, new = rows[("85F", 16, engine.OLD)], rows[("85F", 16, engine.NEW)]
    assert old["fmax_mhz"] == 90.0 and new["fmax_mhz"] == 100.0
    assert old["per_dsp"] == pytest.approx(90e6 / (60_000 // 16) * 2_000_000 / 19)
    assert rows[("85F", 32, engine.OLD)]["missing"] == "not in the sweep"
    assert rows[("25F", 4, engine.OLD)]["missing"] == "placed only (no routed Fmax)"
    compared = {(c["device"], c["lanes"]): c for c in tp["comparison"]}
    for key in engine.COMPARED:
        assert compared[("85F", 16)][key] == {"old": old[key], "new": new[key],
                                              "ratio": pytest.approx(new[key] / old[key])}
        assert compared[("85F", 32)][key]["ratio"] is None and compared[("25F", 4)][key]["old"] is None
    md = "\n".join(engine._throughput_section(tp, engine.OLD, engine.NEW))
    side = {(c[1], int(c[2])): c for c in _table(md, "New vs old engine side by side")}
    cells = side[("85F", 16)]
    assert _num(cells[6]) == pytest.approx(old["per_dsp"] / 1e6, abs=0.05)
    assert _num(cells[7]) == pytest.approx(new["per_dsp"] / 1e6, abs=0.05)
    assert _num(cells[8]) == pytest.approx(new["per_dsp"] / old["per_dsp"], abs=0.005)
    assert _num(cells[11]) == pytest.approx(new["per_klut4"] / old["per_klut4"], abs=0.005)
    assert side[("85F", 32)][8] == "—" and side[("85F", 32)][6] == "—"
