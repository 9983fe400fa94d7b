"""Atomic writes, streaming JSON Lines and content fingerprints.

Every cache, checkpoint and results file is written to a temporary file in the destination folder and renamed
into place, so a killed run never leaves a half-written file where a reader expects a whole one. The temporary
names are created owner-only (``mkstemp``, ``mkdtemp``); before the rename they get the mode a plain ``open`` or
``mkdir`` would have given under the process umask (:func:`plain_mode`), so a dataset or checkpoint written on a
shared machine is as readable as any other file there.

A folder that one writer fills over time (a prediction folder) is held with :func:`folder_lock`: a second writer is
refused at once, naming the process that holds it, instead of mixing its files into the first one's.

Every cache key of the kit is one of two content fingerprints: :func:`digest_json` of what a result depends on
(settings, the fingerprints of its inputs) and :func:`sha256_file` of a file's bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


class DataError(ValueError):
    """Malformed input; the message names the file (and line or item) and the problem."""


class FolderLocked(DataError):
    """Another live process is writing the folder; the message names it and the lock file."""


LOCK_NAME = ".lock"


@contextmanager
def folder_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold ``folder`` for writing (created if absent) while the block runs.

    The lock is an ``flock`` on ``<folder>/.lock``, which holds the owner's pid, host and start time. The kernel
    drops an ``flock`` when its process dies, so a lock file with an owner whose ``flock`` is free was left by a
    dead process: it is reclaimed with a warning naming that process. A held lock raises :class:`FolderLocked`.
    The file stays (emptied) after the block: removing it would let a process that opened it just before lock an
    orphaned file while a third creates a new one."""
    import fcntl
    import socket
    import time
    import warnings

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, plain_mode())
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _lock_owner(fd)
            raise FolderLocked(
                f"{folder}: another process is writing here ({owner}; lock {path}); wait for it to finish, or "
                "write elsewhere"
            ) from None
        previous = _lock_owner(fd)
        if previous:
            warnings.warn(f"{folder}: reclaimed a lock left by a process that is gone ({previous})", stacklevel=3)
        os.ftruncate(fd, 0)
        owner = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        os.pwrite(fd, json.dumps(owner).encode(), 0)
        os.fsync(fd)
        try:
            yield folder
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the flock


def _lock_owner(fd: int) -> str:
    raw = os.pread(fd, 4096, 0)
    if not raw.strip():
        return ""
    try:
        owner = json.loads(raw)
        return f"process {owner['pid']} on {owner['host']} since {owner['since']}"
    except (ValueError, KeyError, TypeError):
        return f"unreadable owner {raw[:60]!r}"


def current_umask() -> int:
    """The process umask, read without changing it where the system says it (Linux ``/proc``): setting it to
    read it back would race with files other threads create meanwhile."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def plain_mode(folder: bool = False) -> int:
    """The permission bits ``open(path, "w")`` (``folder=False``) or ``mkdir`` gives under the current umask."""
    return (0o777 if folder else 0o666) & ~current_umask()


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    binary = "b" in mode
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, plain_mode())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False, ensure_ascii=False) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Write rows atomically, one compact JSON object per line; returns the number of rows."""
    count = 0
    with atomic_open(path, "w") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
            handle.write("\n")
            count += 1
    return count


def read_json(path: str | os.PathLike, encoding: str = "utf-8", object_pairs_hook: Any = None) -> Any:
    """Parse a JSON file; malformed or undecodable content raises :class:`DataError` naming the file.
    ``object_pairs_hook`` is :func:`json.load`'s (e.g. to refuse duplicate keys)."""
    path = Path(path)
    try:
        with open(path, encoding=encoding) as handle:
            return json.load(handle, object_pairs_hook=object_pairs_hook)
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid {encoding} text ({exc.reason} at byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc


def iter_jsonl(path: str | os.PathLike) -> Iterator[dict]:
    """Stream the rows of a JSON Lines file; a bad line raises :class:`DataError` with its line number."""
    path = Path(path)
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg})") from exc


def digest_json(obj: Any, length: int | None = None) -> str:
    """SHA-256 (hex) of ``obj`` as canonical JSON (sorted keys; non-JSON values by ``str``), cut to ``length``."""
    digest = hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()
    return digest if length is None else digest[:length]


def sha256_file(*paths: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes (of several files' bytes one after the other), read in blocks."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
