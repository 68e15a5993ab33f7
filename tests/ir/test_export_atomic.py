"""Exports are swapped in whole (issue #18): a repeated export leaves no file of the earlier one, a folder
holding other files is refused untouched, and an export killed at any moment leaves the old export or the
new one, never a mix, with no staging litter once the next export has run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zlib

import numpy as np
import pytest

from sparsegate.sw.ir.weight_image import ExportError, export_image
from support.int_networks import random_network


def listing(folder) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def consistent(folder) -> str:
    """The export in ``folder`` is whole: its image matches the manifest, its hex files are the manifest's."""
    doc = json.loads((folder / "manifest.json").read_text())
    image = (folder / "image.bin").read_bytes()
    assert doc["image"]["crc32"] == f"0x{zlib.crc32(image[:-4]):08x}"
    files = {f["path"] for layer in doc["layers"] for f in layer["files"].values()}
    assert listing(folder) == {"image.bin", "manifest.json", "hex"} | files
    return doc["network"]


def renamed(seed: int, prefix: str):
    qnet = random_network(seed)
    qnet.name = prefix
    for layer in qnet.layers:
        layer.name = f"{prefix}_{layer.name}"
    return qnet


def test_a_repeated_export_replaces_the_whole_folder(tmp_path):
    out = tmp_path / "out"
    export_image(renamed(1, "a"), out)
    assert consistent(out) == "a"
    export_image(renamed(2, "b"), out)
    assert consistent(out) == "b" and not any("a_" in p for p in listing(out))
    export_image(renamed(2, "b"), out, ("json",))  # only the manifest: nothing of the earlier export is left
    assert listing(out) == {"manifest.json"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_folder_holding_other_files_is_refused_untouched(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"weights")
    with pytest.raises(ExportError, match="holds files that are not an export \\('model.pt'\\)"):
        export_image(random_network(1), tmp_path)
    assert listing(tmp_path) == {"model.pt"}
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(ExportError, match="not a folder"):
        export_image(random_network(1), tmp_path / "file")


_EXPORT_LOOP = r"""
import sys
sys.path.insert(0, sys.argv[2])
from sparsegate.sw.ir.weight_image import export_image
from support.int_networks import random_network
nets = []
for prefix in ("a", "b"):
    q = random_network(1 if prefix == "a" else 2)
    q.name = prefix
    for layer in q.layers:
        layer.name = f"{prefix}_{layer.name}"
    nets.append(q)
print("ready", flush=True)
k = 0
while True:
    export_image(nets[k % 2], sys.argv[1])
    k += 1
"""


def test_an_export_killed_at_any_moment_leaves_old_or_new(tmp_path):
    out = tmp_path / "out"
    support = os.path.join(os.path.dirname(os.path.dirname(__file__)))
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, "-c", _EXPORT_LOOP, str(out), support], stdout=subprocess.PIPE)
        assert proc.stdout.readline() == b"ready\n"
        time.sleep(float(rng.uniform(0.0, 0.3)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        if out.exists():
            seen.add(consistent(out))
    assert seen == {"a", "b"}
    export_image(renamed(3, "c"), out)
    assert consistent(out) == "c"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging litter survives
