"""The benchmark registry and the results writer: every benchmark is wired to a function that accepts its
call, each writes its Markdown and a JSON file with the same figures, and the reports of the benchmarks that
render from their figures read the same from the JSON as from the run."""
from __future__ import annotations

import json

import pytest

from sparsegate.sw.bench import builds, snn
from sparsegate.sw.bench.registry import BENCHMARKS, Benchmark, UnknownBenchmarkError, benchmark
from sparsegate.sw.bench.results import write_results


def test_every_benchmark_is_wired_and_the_long_one_runs_last():
    for name, bench in BENCHMARKS.items():
        assert bench.name == name and bench.title and callable(bench.function())
    assert [b.name for b in BENCHMARKS.values() if b.long] == [list(BENCHMARKS)[-1]] == ["builds"]
    with pytest.raises(UnknownBenchmarkError, match="unknown benchmark 'nope'"):
        benchmark("nope")


def test_a_benchmark_through_the_registry_writes_markdown_and_json_with_equal_figures(tmp_path):
    def fake(out_dir, quick=False, size=3):
        data = {"rows": [{"n": n, "square": n * n} for n in range(size)], "quick": quick}
        table = "\n".join(f"| {r['n']} | {r['square']} |" for r in data["rows"])
        return write_results("fake", f"# Fake\n\n| n | n² |\n|---|---|\n{table}\n", data, out_dir)

    result = Benchmark("fake", "squares", lambda: fake, {"size": 4}).run(tmp_path / "fake", quick=True)
    assert result.markdown_path == tmp_path / "fake" / "fake.md" and result.markdown_path.read_text() == result.markdown
    data = json.loads(result.json_path.read_text())
    assert data == result.data and data["quick"] is True
    shown = [tuple(int(c) for c in line.strip("|").split("|")) for line in result.markdown.splitlines()[4:]]
    assert shown == [(r["n"], r["square"]) for r in data["rows"]]


def test_snn_and_sweep_reports_read_the_same_from_their_json():
    row = {"alive": 400, "float_accuracy": 0.95, "int_accuracy": 0.949, "weight_bytes": 400 * 794, "synops": 4e5,
           "hidden_spikes": 1.0, "cycles_per_step": 500.0, "threshold": 400}
    snn_data = {"rows": {"dense": {**row, "alive": 800, "weight_bytes": 800 * 794}, "pruned 400": row},
                "verilator": None, "quick": True}
    sweep = {"quick": True, "clock_mhz": 100.0, "sweep_s": 12.0, "plot": None, "points": [
        {"board": "ulx3s-25f", "device": "25F", "lanes": 1, "mode": "placed", "status": "ok", "lut": 1000, "ff": 500,
         "dsp": 1, "ebr": 10, "fmax": 51.0, "met": False, "seconds": 12.0, "digest": "d", "synth_opts": "",
         "engine": "v2", "seed": 1}]}
    for render, data in ((snn._markdown, snn_data), (builds._markdown, sweep)):
        assert render(json.loads(json.dumps(data))) == render(data)
    assert "| pruned 400 | 400 of 800 | 310 KiB | 2.00x |" in snn._markdown(snn_data)
    assert "| 25F | 1 | v2 | placed | 1,000 | 500 | 1 | 10 | 51.0 (estimate) | no | 1 | 12 |" in builds._markdown(sweep)


def test_scaling_report_reads_the_same_from_its_json():
    from sparsegate.sw.bench import sweep_scaling

    data = {"cores": 2, "lanes": [1, 4], "devices": ["25F"], "speedup": 1.6, "same_figures": False, "runs": [
        {"workers": 1, "sweep_s": 200.0, "job_s": 190.0, "load": [1.0, 2.0], "points": [{}, {}]},
        {"workers": 2, "sweep_s": 125.0, "job_s": 230.0, "load": [2.0, 2.5], "points": [{}, {}]}]}
    md = sweep_scaling._markdown(data)
    assert sweep_scaling._markdown(json.loads(json.dumps(data))) == md
    assert "| 2 | 2 | 125 | 230 | 1.60x | 2.0 → 2.5 |" in md and "Speedup **1.60x**" in md
    assert "gave **different** figures" in md
