"""The cache key of a job: a SHA-256 of the function's module and qualified name and of its inputs, encoded
canonically (bytes and arrays by their content, mappings in sorted order, paths as text) so equal inputs give
equal keys across processes and machines. Objects without a canonical form are digested by their pickle."""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import pickle
from pathlib import PurePath

__all__ = ["job_digest"]


def _function_name(fn) -> object:
    if isinstance(fn, functools.partial):
        return ["partial", _function_name(fn.func), _canonical(list(fn.args)), _canonical(fn.keywords)]
    return f"{fn.__module__}.{fn.__qualname__}"


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
