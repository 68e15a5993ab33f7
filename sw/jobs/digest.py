"""The cache key of a job: a SHA-256 of the function's module and qualified name and of its inputs, encoded
canonically (bytes and arrays by their content, mappings in sorted order, paths as text) so equal inputs give
equal keys across processes and machines. Objects without a canonical form are digested by their pickle.

Code is an input too: a job function marked with :func:`follows_code` has the sources of the packages its
result depends on (and the versions of the libraries it names) in its key, so a cached result of other code is
never handed back (:func:`sources_digest`)."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import pickle
from pathlib import Path, PurePath

__all__ = ["follows_code", "job_digest", "sources_digest"]


def sources_digest(*modules: str, libraries: tuple[str, ...] = (), extra: str = "") -> str:
    """A digest of the Python sources of ``modules`` (a package: every ``.py`` below it; a module: its file),
    found without running them, of the installed versions of ``libraries`` (distribution names) and of
    ``extra``: the part of a result's inputs that is code."""
    h = hashlib.sha256(extra.encode())
    for library in libraries:
        h.update(f"|{library} {importlib.metadata.version(library)}".encode())
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None and not spec.submodule_search_locations:
            raise ModuleNotFoundError(f"no sources for {name}")
        h.update(f"|{name}".encode())
        if spec.submodule_search_locations:
            for root in spec.submodule_search_locations:
                for source in sorted(Path(root).rglob("*.py")):
                    h.update(source.relative_to(root).as_posix().encode() + b"|" + source.read_bytes())
        else:
            h.update(Path(spec.origin).read_bytes())
    return h.hexdigest()[:20]


def follows_code(*modules: str, libraries: tuple[str, ...] = ()):
    """Mark a job function whose result follows the code of ``modules`` and the versions of ``libraries``
    (see :func:`sources_digest`): its cache key then changes with them."""
    def mark(fn):
        fn.code_sources = (modules, libraries)
        return fn
    return mark


def _function_name(fn) -> object:
    if isinstance(fn, functools.partial):
        return ["partial", _function_name(fn.func), _canonical(list(fn.args)), _canonical(fn.keywords)]
    name = f"{fn.__module__}.{fn.__qualname__}"
    if hasattr(fn, "code_sources"):
        modules, libraries = fn.code_sources
        return [name, sources_digest(*modules, libraries=libraries)]
    return name


def _canonical(obj):
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return ["bytes", hashlib.sha256(bytes(obj)).hexdigest()]
    if isinstance(obj, PurePath):
        return ["path", str(obj)]
    if isinstance(obj, (list, tuple)):
        return [type(obj).__name__, [_canonical(x) for x in obj]]
    if isinstance(obj, dict):
        return ["dict", sorted(([_canonical(k), _canonical(v)] for k, v in obj.items()), key=json.dumps)]
    if isinstance(obj, (set, frozenset)):
        return ["set", sorted((_canonical(x) for x in obj), key=json.dumps)]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return [type(obj).__qualname__, _canonical({f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)})]
    if callable(obj) and hasattr(obj, "__qualname__"):
        return ["callable", _function_name(obj)]
    if hasattr(obj, "tobytes") and hasattr(obj, "dtype") and hasattr(obj, "shape"):   # a numpy array
        return ["array", str(obj.dtype), list(obj.shape), hashlib.sha256(obj.tobytes()).hexdigest()]
    return ["pickle", hashlib.sha256(pickle.dumps(obj, protocol=5)).hexdigest()]


def job_digest(fn, args: tuple = (), kwargs: dict | None = None) -> str:
    """The hex digest naming ``fn(*args, **kwargs)``'s result in the cache."""
    text = json.dumps([_function_name(fn), _canonical(list(args)), _canonical(kwargs or {})], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()
