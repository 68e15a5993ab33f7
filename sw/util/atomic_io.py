"""Atomic output: write to a temporary file (or folder) beside the target, then rename, so no reader ever sees
a half-written file, and a folder of outputs is replaced whole."""
from __future__ import annotations

import ctypes
import glob
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(target: str | Path):
    """Yield a temporary path in the target's folder; on success it replaces ``target``, on error it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the permissions any new file would
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_text(target: str | Path, text: str) -> None:
    with atomic_path(target) as tmp:
        tmp.write_text(text)


def write_json(target: str | Path, obj) -> None:
    write_text(target, json.dumps(obj, indent=2, sort_keys=False) + "\n")


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where that is unavailable."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: the file system or kernel cannot exchange
        return False
    raise OSError(errno, os.strerror(errno), str(b))


def _remove_litter(target: Path, tag: str) -> None:
    """Remove staging folders of ``target`` left by processes that no longer run (killed mid-write)."""
    for stale in target.parent.glob(f".{glob.escape(target.name)}.{tag}-*"):
        pid = stale.name[len(f".{target.name}.{tag}-"):].split("-")[0]
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                os.kill(int(pid), 0)
                continue  # its writer is still running
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        shutil.rmtree(stale, ignore_errors=True)


@contextmanager
def atomic_dir(target: str | Path, tag: str = "staging"):
    """Yield an empty temporary folder beside ``target``; on success it replaces ``target`` whole (an atomic
    exchange where the kernel offers one, else two renames), on error it is removed. Staging folders that a
    killed earlier run left behind are removed first, so an interrupted write leaves either the old folder or
    the new one, and no litter survives the next run."""
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_litter(target, tag)
    stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.{tag}-{os.getpid()}-", dir=target.parent))
    os.chmod(stage, 0o777 & ~_UMASK)
    try:
        yield stage
        if not target.exists():
            os.rename(stage, target)
        elif _exchange(stage, target):
            shutil.rmtree(stage)
        else:
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.{tag}-{os.getpid()}-old-", dir=target.parent))
            os.rename(target, old / target.name)
            os.rename(stage, target)
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
