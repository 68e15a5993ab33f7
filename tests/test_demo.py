"""The demo pipeline: stages run in order, write their markers, and a re-run resumes."""
from __future__ import annotations

import json

from sparsegate.sw import demo


def test_demo_resumes_from_finished_stages(tmp_path, monkeypatch):
    calls = []

    def first(run, results, progress):
        calls.append("first")
        return {"value": 1}

    def second(run, results, progress):
        calls.append("second")
        if len(calls) == 2:
            raise RuntimeError("interrupted")
        return {"value": results["first"]["value"] + 1}

    monkeypatch.setattr(demo, "STAGES", [("first", first, str), ("second", second, str)])
    logs = []
    try:
        demo.run_demo(tmp_path, log=logs.append)
    except RuntimeError:
        pass
    assert (tmp_path / "first" / "stage.json").is_file()
    assert not (tmp_path / "second" / "stage.json").exists()

    results = demo.run_demo(tmp_path, log=logs.append)
    assert calls == ["first", "second", "second"]
    assert results["second"]["value"] == 2
    assert "[first] reused" in "\n".join(logs)
    assert json.loads((tmp_path / "summary.json").read_text())["second"]["value"] == 2

    demo.run_demo(tmp_path, fresh=True, log=logs.append)
    assert calls[-2:] == ["first", "second"]
