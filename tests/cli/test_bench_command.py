"""``sparsegate bench``: every benchmark is wired to a function that takes the call, and the Markdown carries
each table's command, date and machine, written after every benchmark; a partial run keeps earlier tables."""
from __future__ import annotations

import re

import pytest

from sparsegate.sw.cli import bench as bench_command
from sparsegate.sw.cli.main import main


def test_every_benchmark_is_wired():
    for name in bench_command.BENCHMARKS:
        assert callable(bench_command.benchmark_function(name))
    with pytest.raises(ValueError, match="unknown benchmark"):
        bench_command.benchmark_function("nope")


def test_list_prints_every_benchmark(capsys):
    assert main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == list(bench_command.BENCHMARKS)


def _install(monkeypatch, fake, **registry):
    """Replace the registry with benchmarks ``name -> kwargs`` that all call ``fake``."""
    monkeypatch.setattr(bench_command, "fake_benchmark", fake, raising=False)
    monkeypatch.setattr(bench_command, "BENCHMARKS", {
        name: ("sparsegate.sw.cli.bench", "fake_benchmark", kwargs) for name, kwargs in registry.items()})


def test_tables_carry_command_date_machine_and_survive_a_failure(tmp_path, monkeypatch):
    calls = []

    def fake(out_dir, quick=False, size=1):
        calls.append((out_dir.name, quick, size))
        if size == 2:
            raise RuntimeError("benchmark broke")
        return f"# Title {size}\n\n| a | b |\n|---|---|\n| {size} | 2 |\n\n```\n# not a heading\n```\n"

    _install(monkeypatch, fake, one={}, two={"size": 2})
    markdown = tmp_path / "BENCHMARKS.md"
    with pytest.raises(RuntimeError, match="benchmark broke"):
        bench_command.run_benchmarks(["one", "two"], tmp_path / "out", quick=True, log=lambda *_: None,
                                     markdown=markdown)
    assert calls == [("one", True, 1), ("two", True, 2)]
    text = markdown.read_text()
    assert "## one" in text and "## two" not in text
    assert "Command: `sparsegate bench --only one --quick`" in text
    assert re.search(r"— \d{4}-\d\d-\d\d \d\d:\d\d UTC, \d+ s, on .+ CPUs", text)
    assert "| 1 | 2 |" in text

    monkeypatch.setitem(bench_command.BENCHMARKS, "two", ("sparsegate.sw.cli.bench", "fake_benchmark",
                                                          {"bogus": 1}))
    with pytest.raises(TypeError):  # stale wiring fails before any benchmark runs
        bench_command.run_benchmarks(["one", "two"], tmp_path / "out", log=lambda *_: None)
    assert len(calls) == 2


def test_a_partial_run_replaces_its_tables_and_keeps_the_others(tmp_path, monkeypatch):
    def fake(out_dir, quick=False, size=1):
        return f"# Title {size}\n\n| a |\n|---|\n| {size} |\n\n```\n# code, not a heading\n```\n"

    _install(monkeypatch, fake, one={}, two={"size": 2})
    markdown = tmp_path / "BENCHMARKS.md"
    quiet = {"log": lambda *_: None, "markdown": markdown}
    bench_command.run_benchmarks(["two"], tmp_path / "out", **quiet)
    bench_command.run_benchmarks(["one"], tmp_path / "out", quick=True, **quiet)
    text = markdown.read_text()
    assert text.index("## one") < text.index("## two")  # registry order, whatever order they ran in
    assert "Command: `sparsegate bench --only one --quick`" in text
    assert "Command: `sparsegate bench --only two`" in text
    assert "\n### Title 1\n" in text and "\n### Title 2\n" in text  # headings under the benchmark's own
    assert "\n# code, not a heading\n" in text  # code blocks untouched
    bench_command.run_benchmarks(["one"], tmp_path / "out", **quiet)
    again = markdown.read_text()
    assert again.count("## one") == 1 and "--only one --quick" not in again
    assert again[again.index("<!-- bench:two -->"):] == text[text.index("<!-- bench:two -->"):]


def test_quick_runs_write_beside_their_outputs(tmp_path, monkeypatch):
    _install(monkeypatch, lambda out_dir, quick=False: "| q |", one={})
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "--quick", "--out", "smoke"]) == 0
    assert (tmp_path / "smoke" / "BENCHMARKS.md").is_file() and not (tmp_path / "BENCHMARKS.md").exists()


def test_linked_plots_are_copied_beside_the_markdown(tmp_path, monkeypatch):
    def fake(out_dir, quick=False):
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "sweep.png").write_bytes(b"PNG")
        return "# t\n\n![sweep](sweep.png)\n![gone](missing.png)\n![web](https://example.org/x.png)\n"

    _install(monkeypatch, fake, builds={})
    (tmp_path / "docs").mkdir()
    markdown = tmp_path / "BENCHMARKS.md"
    bench_command.run_benchmarks(["builds"], tmp_path / "runs", log=lambda *_: None, markdown=markdown)
    text = markdown.read_text()
    assert "![sweep](docs/bench/builds-sweep.png)" in text
    assert (tmp_path / "docs" / "bench" / "builds-sweep.png").read_bytes() == b"PNG"
    assert "![gone](missing.png)" in text and "![web](https://example.org/x.png)" in text
    assert bench_command.plots_folder(tmp_path / "runs" / "BENCHMARKS.md") == tmp_path / "runs" / "plots"
