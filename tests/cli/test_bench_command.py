"""``sparsegate bench``: the Markdown carries each table's command, date, machine and a link to its figures,
written after every benchmark; a partial run keeps earlier tables; ``--list`` shows the registry."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from sparsegate.sw.bench import registry
from sparsegate.sw.bench.registry import Benchmark
from sparsegate.sw.bench.report import plots_folder, results_folder
from sparsegate.sw.bench.results import write_results
from sparsegate.sw.bench.runner import run_benchmarks
from sparsegate.sw.cli.main import main

QUIET = {"log": lambda *_: None}


def test_list_prints_every_benchmark(capsys):
    assert main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == list(registry.BENCHMARKS)
    assert "prune-lenet300   sparsegate.sw.bench.prune.run_prune_benchmark(model='lenet300')" in out


def _install(monkeypatch, fake, **kwargs_by_name):
    """Replace the registry with benchmarks ``name -> kwargs`` that all call ``fake``."""
    monkeypatch.setattr(registry, "BENCHMARKS", {
        name: Benchmark(name, f"fake {name}", lambda: fake, kwargs) for name, kwargs in kwargs_by_name.items()})


def _table(out_dir, size):
    return write_results(f"t{size}", f"# Title {size}\n\n| a | b |\n|---|---|\n| {size} | 2 |\n\n```\n# code, not a "
                                     "heading\n```\n", {"a": size, "b": 2}, out_dir)


def test_tables_carry_command_date_machine_and_survive_a_failure(tmp_path, monkeypatch):
    calls = []

    def fake(out_dir, quick=False, size=1):
        calls.append((out_dir.name, quick, size))
        if size == 2:
            raise RuntimeError("benchmark broke")
        return _table(out_dir, size)

    _install(monkeypatch, fake, one={}, two={"size": 2})
    markdown = tmp_path / "BENCHMARKS.md"
    with pytest.raises(RuntimeError, match="benchmark broke"):
        run_benchmarks(["one", "two"], tmp_path / "out", markdown, quick=True, **QUIET)
    assert calls == [("one", True, 1), ("two", True, 2)]
    text = markdown.read_text()
    assert "## one" in text and "## two" not in text
    assert "Command: `sparsegate bench --only one --quick`" in text
    assert re.search(r"— \d{4}-\d\d-\d\d \d\d:\d\d UTC, \d+ s, on .+ CPUs", text)
    assert "| 1 | 2 |" in text and "| [one](#one) | fake one |" in text
    assert "Figures: [`results/t1.json`](results/t1.json)." in text
    assert json.loads((results_folder(markdown) / "t1.json").read_text()) == {"a": 1, "b": 2}

    monkeypatch.setitem(registry.BENCHMARKS, "two", Benchmark("two", "fake two", lambda: fake, {"bogus": 1}))
    with pytest.raises(TypeError):  # stale wiring fails before any benchmark runs
        run_benchmarks(["one", "two"], tmp_path / "out", markdown, **QUIET)
    assert len(calls) == 2
    with pytest.raises(ValueError, match="unknown benchmark 'nope'"):
        run_benchmarks(["nope"], tmp_path / "out", markdown, **QUIET)


def test_a_partial_run_replaces_its_tables_and_keeps_the_others(tmp_path, monkeypatch):
    _install(monkeypatch, lambda out_dir, quick=False, size=1: _table(out_dir, size), one={}, two={"size": 2})
    markdown = tmp_path / "BENCHMARKS.md"
    run_benchmarks(["two"], tmp_path / "out", markdown, **QUIET)
    run_benchmarks(["one"], tmp_path / "out", markdown, quick=True, **QUIET)
    text = markdown.read_text()
    assert text.index("## one") < text.index("## two")  # registry order, whatever order they ran in
    assert "Command: `sparsegate bench --only one --quick`" in text
    assert "Command: `sparsegate bench --only two`" in text
    assert "\n### Title 1\n" in text and "\n### Title 2\n" in text  # headings under the benchmark's own
    assert "\n# code, not a heading\n" in text  # code blocks untouched
    run_benchmarks(["one"], tmp_path / "out", markdown, **QUIET)
    again = markdown.read_text()
    assert again.count("## one") == 1 and "--only one --quick" not in again
    assert again[again.index("<!-- bench:two -->"):] == text[text.index("<!-- bench:two -->"):]


def test_quick_runs_write_beside_their_outputs(tmp_path, monkeypatch):
    _install(monkeypatch, lambda out_dir, quick=False: write_results("q", "| q |", {"q": 1}, out_dir), one={})
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--quick", "--out", "smoke"]) == 0
    assert (tmp_path / "smoke" / "BENCHMARKS.md").is_file() and not (tmp_path / "BENCHMARKS.md").exists()
    assert (tmp_path / "smoke" / "one" / "q.json").is_file() and (tmp_path / "smoke" / "results" / "q.json").is_file()


def test_linked_plots_are_copied_beside_the_markdown(tmp_path, monkeypatch):
    def fake(out_dir, quick=False):
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "sweep.png").write_bytes(b"PNG")
        return write_results("sweep", "# t\n\n![sweep](sweep.png)\n![gone](missing.png)\n"
                                      "![web](https://example.org/x.png)\n", {"points": []}, out_dir)

    _install(monkeypatch, fake, builds={})
    (tmp_path / "docs").mkdir()
    markdown = tmp_path / "BENCHMARKS.md"
    run_benchmarks(["builds"], tmp_path / "runs", markdown, **QUIET)
    text = markdown.read_text()
    assert "![sweep](docs/bench/builds-sweep.png)" in text
    assert (tmp_path / "docs" / "bench" / "builds-sweep.png").read_bytes() == b"PNG"
    assert "![gone](missing.png)" in text and "![web](https://example.org/x.png)" in text
    assert "Figures: [`docs/results/sweep.json`](docs/results/sweep.json)." in text
    assert plots_folder(tmp_path / "runs" / "BENCHMARKS.md") == tmp_path / "runs" / "plots"
    assert results_folder(tmp_path / "runs" / "BENCHMARKS.md") == tmp_path / "runs" / "results"


def test_a_bad_scheduler_address_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["bench", "--only", "builds", "--scheduler", "localhost:8786", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["sparsegate bench: error: --scheduler must be an address like tcp://HOST:8786, got 'localhost:8786'"]


def test_the_runner_options_reach_the_benchmarks_made_of_jobs(tmp_path, monkeypatch):
    """--scheduler/--workers/--cache become one RunnerOptions, handed to each benchmark that takes ``jobs``."""
    seen = {}

    def with_jobs(out_dir, quick=False, jobs=None):
        seen["jobs"] = jobs
        return _table(out_dir, 1)

    _install(monkeypatch, with_jobs, swept={})
    monkeypatch.setitem(registry.BENCHMARKS, "plain", Benchmark("plain", "no jobs", lambda: lambda out_dir, quick=False:
                                                               _table(out_dir, 2), {}))
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--quick", "--out", "o", "--scheduler", "tcp://10.0.0.1:8786", "--workers", "3"]) == 0
    jobs = seen["jobs"]
    assert (jobs.scheduler, jobs.workers, jobs.cache, jobs.progress) == ("tcp://10.0.0.1:8786", 3, Path("o/job-cache"),
                                                                          True)
    assert main(["bench", "--quick", "--out", "o", "--only", "swept", "--cache", "elsewhere"]) == 0
    assert seen["jobs"].cache == Path("elsewhere") and seen["jobs"].scheduler is None
