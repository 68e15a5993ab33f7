"""``sparsegate bench``: every benchmark is wired to a function that takes the call, and the Markdown carries
each table's command, date and machine, written after every benchmark."""
from __future__ import annotations

import re

import pytest

from sparsegate.sw import bench_command
from sparsegate.sw.cli import main


def test_every_benchmark_is_wired():
    for name in bench_command.BENCHMARKS:
        assert callable(bench_command.benchmark_function(name))
    with pytest.raises(ValueError, match="unknown benchmark"):
        bench_command.benchmark_function("nope")


def test_list_prints_every_benchmark(capsys):
    assert main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == list(bench_command.BENCHMARKS)


def test_tables_carry_command_date_machine_and_survive_a_failure(tmp_path, monkeypatch):
    calls = []

    def fake(out_dir, quick=False, size=1):
        calls.append((out_dir.name, quick, size))
        if size == 2:
            raise RuntimeError("benchmark broke")
        return "| a | b |\n|---|---|\n| 1 | 2 |\n"

    monkeypatch.setattr(bench_command, "fake_benchmark", fake, raising=False)
    monkeypatch.setattr(bench_command, "BENCHMARKS", {
        "one": ("sparsegate.sw.bench_command", "fake_benchmark", {}),
        "two": ("sparsegate.sw.bench_command", "fake_benchmark", {"size": 2}),
    })
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

    monkeypatch.setitem(bench_command.BENCHMARKS, "two", ("sparsegate.sw.bench_command", "fake_benchmark",
                                                          {"bogus": 1}))
    with pytest.raises(TypeError):  # stale wiring fails before any benchmark runs
        bench_command.run_benchmarks(["one", "two"], tmp_path / "out", log=lambda *_: None)
    assert len(calls) == 2
