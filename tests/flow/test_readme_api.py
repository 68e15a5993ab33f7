"""The README's Python API example runs as written: own model → prune → quantize → export → Verilator
simulation, and the board build call. The place and route itself (minutes; covered by
tests/cli/test_build_command.py and tests/hw/test_ecp5_build.py) is replaced by the steps before it: the image
compiles for the board's lanes and passes the block-RAM/DSP fit pre-check of the board's device."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"


def api_example() -> str:
    text = README.read_text()
    match = re.search(r"<!-- api-example -->\n```python\n(.*?)\n```", text, re.S)
    assert match, "README.md has no <!-- api-example --> python block"
    return match.group(1)


@pytest.mark.slow
def test_readme_api_example_runs(tmp_path, monkeypatch, capsys):
    from sparsegate.hw.engine.program import program_from_image
    from sparsegate.hw.platform.boards import BOARDS, DEVICE_RESOURCES, device_size, make_platform
    from sparsegate.hw.platform.cores import ENGINE
    from sparsegate.sw.flow import build as build_flow

    builds = []

    def checked_build(board, lanes, out, *, image, **kwargs):
        program = program_from_image(image, lanes)  # rejects a corrupt image or a bad lane count
        estimate = ENGINE.estimate(program)
        avail = DEVICE_RESOURCES[device_size(str(make_platform(board).device))]
        assert estimate.dp16kd <= avail["DP16KD"] and estimate.mult18x18d <= avail["MULT18X18D"]
        builds.append((board, lanes, Path(out)))
        return build_flow.BuildResult(
            board=board, description=BOARDS[board].description, core=ENGINE.name, lanes=lanes, units=None,
            clock_mhz=100.0, baud=115200, image="image", digest="-", tools={}, geometry={"lanes": lanes},
            estimate={}, report={"fmax_mhz": 50.0, "timing_met": False}, bitstream=str(Path(out) / "top.bit"))

    monkeypatch.setattr(build_flow, "build_board", checked_build)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(api_example(), str(README), "exec"), namespace)

    assert builds == [("ulx3s-25f", 4, Path("runs/mynet/ulx3s-25f"))]
    result = namespace["result"]
    assert result.ok and len(result.cycles) == 2 and result.samples == 4
    assert namespace["build"].fmax_mhz == 50.0
    assert (tmp_path / "runs/mynet/image.bin").is_file() and (tmp_path / "runs/mynet/manifest.json").is_file()
    masks = namespace["outcome"].masks
    kept = sum(int(m.sum()) for m in masks.values())
    total = sum(m.numel() for m in masks.values())
    assert kept / total == pytest.approx(0.1, abs=0.02)  # the 90% target
    out = capsys.readouterr().out
    accuracy = float(re.search(r"pruned: ([0-9.]+)", out).group(1))
    assert accuracy > 0.8       # 10% of the weights of a 2-epoch model (chance: 0.1)
    assert "golden model: " in out and "0 mismatches" in out
