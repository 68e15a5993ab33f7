"""Method-parameter fields: a dataclass field that carries its command-line help, type, choices and flag, so
``sparsegate prune`` builds each method's arguments from its parameters dataclass."""
from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import Any


def param(default: Any = None, help: str = "", *, type: type | None = None, choices: tuple | None = None,
          flag: str | None = None) -> Any:
    """A method-parameter field: its default plus what the command line needs (``flag`` defaults to the field
    name with dashes; ``type`` to the default's type)."""
    return field(default=default, metadata={"help": help, "type": type, "choices": choices, "flag": flag})


def param_flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")
