"""Digest of the gateware a top level elaborates, for the bitstream cache.

Hashing every ``hw/**/*.py`` would make an edit of a model that never reaches the netlist (the cycle or energy
model, the compiler, whose output is hashed as memory words) invalidate every cached bitstream. Instead the
top is elaborated (``Fragment.get``), the fragment tree's ``origins`` name the classes that produced gateware,
and the digest covers the source files of their ``sparsegate.hw`` modules, of the ``sparsegate.hw`` modules
those import at module level that hold no gateware classes themselves (layouts, the wire protocol: a module with
gateware counts only when its gateware is elaborated), and of the build flow's own modules (board definitions,
the ECP5 flow).
"""
from __future__ import annotations

import hashlib
import importlib
import sys
from pathlib import Path

from amaranth.hdl import Elaboratable, Fragment

__all__ = ["elaborated_modules", "gateware_sources", "gateware_digest", "BUILD_FLOW_MODULES"]

_HW = "sparsegate.hw"
#: Modules that shape every bitstream without being elaborated: board pinouts and the Yosys/nextpnr flow.
BUILD_FLOW_MODULES = ("sparsegate.hw.platform.boards", "sparsegate.hw.platform.ecp5_build")


def _in_hw(module: str) -> bool:
    return module == _HW or module.startswith(_HW + ".")


def elaborated_modules(top) -> set[str]:
    """The ``sparsegate.hw`` modules defining a class (or a base class) that elaborated part of ``top``."""
    found: set[str] = set()
    stack = [Fragment.get(top, platform=None)]
    while stack:
        fragment = stack.pop()
        for origin in fragment.origins or ():
            found.update(cls.__module__ for cls in type(origin).__mro__ if _in_hw(cls.__module__))
        stack.extend(sub for sub, *_ in fragment.subfragments)
    return found


def _holds_gateware(name: str) -> bool:
    """Whether module ``name`` defines an elaboratable class."""
    return any(isinstance(v, type) and issubclass(v, Elaboratable) and v.__module__ == name
               for v in vars(sys.modules[name]).values())


def _imported_hw_modules(name: str) -> set[str]:
    """``sparsegate.hw`` modules without gateware of their own that module ``name`` imports at module level
    (modules or names from them)."""
    out = set()
    for value in vars(sys.modules[name]).values():
        module = value.__name__ if type(value) is type(sys) else getattr(value, "__module__", None)
        if isinstance(module, str) and _in_hw(module) and module != name and not _holds_gateware(module):
            out.add(module)
    return out


def gateware_sources(top) -> list[Path]:
    """The source files a bitstream of ``top`` depends on, sorted (see the module docstring)."""
    elaborated = elaborated_modules(top)
    names = set(elaborated) | set(BUILD_FLOW_MODULES)
    for name in elaborated:
        names |= _imported_hw_modules(name)
    return sorted(Path(importlib.import_module(n).__file__).resolve() for n in names)


def _read_source(path: Path) -> bytes:
    return path.read_bytes()


def gateware_digest(top) -> str:
    """SHA-256 (hex) over the names and bytes of :func:`gateware_sources` of ``top``."""
    root = Path(importlib.import_module(_HW).__file__).resolve().parent
    h = hashlib.sha256()
    for path in gateware_sources(top):
        h.update(str(path.relative_to(root)).encode() + b"\0" + _read_source(path) + b"\0")
    return h.hexdigest()
