"""Atomic outputs: a failed write leaves the old file and no temporary behind; a new file gets the same
permissions as one made by a plain ``open`` (mkstemp alone would make it 0600, unreadable to others)."""
from __future__ import annotations

import stat

import pytest

from sparsegate.sw.util.atomic_io import atomic_path, write_json, write_text


def test_permissions_match_a_plain_new_file(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    write_text(tmp_path / "report.html", "<p>x</p>")
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "report.html") == mode(plain)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "summary.json"
    write_json(target, {"ok": 1})
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as tmp:
            tmp.write_text('{"half": ')
            raise RuntimeError("disk full")
    assert target.read_text() == '{\n  "ok": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]
