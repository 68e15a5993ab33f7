"""A user's own model class named on the command line: ``path/to/file.py:ClassName`` or
``package.module:ClassName``.

What the class must be: an ``nn.Module`` subclass that constructs with no arguments (a ``num_classes``
keyword is passed when ``__init__`` takes one); an ``input_shape`` class attribute, ``(C, H, W)``, is read
when present (it picks the default dataset: ``(3, 32, 32)`` trains on ``mnist5k-rgb32``, anything else on
``mnist5k``). Every instance built here carries its :class:`ModelSource` as ``model.sparsegate_source``,
and checkpoints record it, so later commands rebuild the class without ``--model``; a file that moved or
changed since is refused with one line naming it.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from torch import nn

SOURCE_ATTR = "sparsegate_source"


class ModelSpecError(ValueError):
    """A ``--model`` spec that cannot be resolved, or a recorded model source that moved or changed."""


@dataclass(frozen=True)
class ModelSource:
    """Where a model class came from: ``kind`` ``file`` (``location`` an absolute path) or ``module``
    (a dotted name), the class name, and the SHA-256 of the defining file when it was loaded."""

    kind: str
    location: str
    class_name: str
    sha256: str

    @property
    def spec(self) -> str:
        return f"{self.location}:{self.class_name}"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d, where: str) -> "ModelSource":
        keys = ("kind", "location", "class_name", "sha256")
        if not isinstance(d, dict) or any(not isinstance(d.get(k), str) for k in keys) or d["kind"] not in ("file", "module"):
            raise ModelSpecError(f"{where}: malformed model source record (expected the strings {', '.join(keys)})")
        return cls(**{k: d[k] for k in keys})


def is_spec(name: str) -> bool:
    """Whether ``name`` is a ``location:ClassName`` spec rather than a built-in model name."""
    return ":" in name


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _load_file(path: Path, spec: str):
    module_name = f"sparsegate_user_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    loader_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[module_name] = module  # dataclasses and pickling look modules up by name
    try:
        loader_spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[module_name]
        raise ModelSpecError(f"--model {spec}: {path} fails to import ({type(err).__name__}: {err})") from None
    return module


def resolve(spec: str) -> tuple[type, ModelSource]:
    """The class named by ``spec`` and its source record; :class:`ModelSpecError` naming what is wrong."""
    location, sep, class_name = spec.rpartition(":")
    if not sep or not location or not class_name.isidentifier():
        raise ModelSpecError(f"--model {spec}: expected path/to/file.py:ClassName or package.module:ClassName")
    if location.endswith(".py") or "/" in location or "\\" in location:
        path = Path(location).expanduser().resolve()
        if not path.is_file():
            raise ModelSpecError(f"--model {spec}: {path}: no such file")
        module = _load_file(path, spec)
        kind, where = "file", str(path)
    else:
        try:
            module = importlib.import_module(location)
        except Exception as err:
            raise ModelSpecError(f"--model {spec}: cannot import module {location!r} "
                                 f"({type(err).__name__}: {err})") from None
        path = Path(getattr(module, "__file__", "") or "")
        kind, where = "module", location
    cls = getattr(module, class_name, None)
    if cls is None:
        found = sorted(n for n, v in vars(module).items() if inspect.isclass(v) and issubclass(v, nn.Module)
                       and v.__module__ == module.__name__)
        raise ModelSpecError(f"--model {spec}: no class {class_name!r} in {where} (nn.Module classes there: "
                             f"{', '.join(found) or 'none'})")
    if not (inspect.isclass(cls) and issubclass(cls, nn.Module)):
        raise ModelSpecError(f"--model {spec}: {class_name!r} in {where} is not an nn.Module subclass")
    sha = _sha256(path) if path.is_file() else ""
    return cls, ModelSource(kind, where, class_name, sha)


def instantiate(cls: type, source: ModelSource, num_classes: int | None = None) -> nn.Module:
    """``cls()`` (with ``num_classes=`` when its ``__init__`` takes it), tagged with its source."""
    try:
        takes = "num_classes" in inspect.signature(cls).parameters
        model = cls(num_classes=num_classes) if takes and num_classes is not None else cls()
    except Exception as err:
        raise ModelSpecError(f"--model {source.spec}: {source.class_name}() fails ({type(err).__name__}: {err}); "
                             "the class must construct with no arguments (num_classes= is passed if it takes "
                             "one)") from None
    setattr(model, SOURCE_ATTR, source)
    return model


def build_user_model(spec: str, num_classes: int | None = None) -> nn.Module:
    """Resolve ``spec`` and build the model."""
    cls, source = resolve(spec)
    return instantiate(cls, source, num_classes)


def rebuild(source: ModelSource, checkpoint: str, num_classes: int | None = None) -> nn.Module:
    """The model a checkpoint recorded: its file must still exist, unchanged."""
    if source.kind == "file" and not Path(source.location).is_file():
        raise ModelSpecError(f"{checkpoint}: its model class file {source.location} no longer exists (moved?); "
                             f"pass --model NEW/PATH.py:{source.class_name}")
    cls, now = resolve(source.spec)
    if source.sha256 and now.sha256 != source.sha256:
        raise ModelSpecError(f"{checkpoint}: its model class file {now.location} changed since the checkpoint was "
                             f"written (sha256 {now.sha256[:12]}, recorded {source.sha256[:12]}); restore it or "
                             f"pass --model {source.spec} to use it as it is now")
    return instantiate(cls, source, num_classes)


def source_of(model: nn.Module) -> ModelSource | None:
    """The source record a model built here carries (None for the built-in models)."""
    return getattr(model, SOURCE_ATTR, None)
