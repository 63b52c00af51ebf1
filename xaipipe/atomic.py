"""Write files so that an interrupted run never leaves one that looks finished."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    On any exception (including KeyboardInterrupt) the temporary file is removed
    and ``target`` is left exactly as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from a shared group
        os.replace(tmp, target)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def remove_leftovers(target: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that writers of ``target`` killed mid-write left beside it (and return them).

    A killed job (kill -9, a node lost) cannot clean up after itself; the next writer of the
    same target does. Only this target's names are matched (``.{name}.XXXXXXXX.part``, as
    :func:`tempfile.mkstemp` makes them, or ``.keras`` where Keras needed that extension),
    never another target's. Snakemake runs one job per output at a time, so no live
    writer's file is removed. Each folder is listed once per process (a job that writes a
    thousand overlays into one folder lists it once).
    """
    target = Path(target)
    folder = os.path.abspath(target.parent)
    if folder not in _LEFTOVERS:
        try:
            _LEFTOVERS[folder] = [e.name for e in os.scandir(folder) if e.name.startswith(".") and _TEMP.search(e.name)]
        except FileNotFoundError:
            _LEFTOVERS[folder] = []
    removed: list[Path] = []
    if not _LEFTOVERS[folder]:  # the usual case: nothing to match (compiling the pattern costs 0.5 ms a file)
        return removed
    pattern = re.compile(rf"\.{re.escape(target.name)}{_TEMP.pattern}")
    for name in [n for n in _LEFTOVERS[folder] if pattern.fullmatch(n)]:
        _LEFTOVERS[folder].remove(name)
        with suppress(FileNotFoundError):
            os.unlink(os.path.join(folder, name))
            removed.append(target.parent / name)
    return removed


_TEMP = re.compile(r"\.[a-z0-9_]{8}\.(?:part|keras)$")  # what mkstemp adds to ".{name}"
_LEFTOVERS: dict[str, list[str]] = {}  # folder -> the temporary files found in it, listed once per process


def write_bytes_atomic(target: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
