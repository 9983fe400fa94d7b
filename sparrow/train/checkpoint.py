"""Training checkpoints: a folder per step, written under a temporary name and renamed into place.

Layout of ``<run>/checkpoints/step-00000040/``::

    model/               the model's own ``save_pretrained`` output (safetensors + config)
    optimizer.pt         optimizer state (tensors only; read back with ``weights_only=True``)
    scheduler.pt         LR scheduler state
    rng_rank<r>.pt       torch / numpy / ``random`` states of each process at the checkpoint
    trainer_state.json   step, data position, world size and the training config (written last)

A folder counts only once it has its final name; a kill while writing leaves a ``.tmp-step-*`` folder that the
next run deletes. ``trainer_state.json`` lists every other file of the checkpoint with its size and sha256
(:func:`file_checksums`). A new checkpoint is verified against that list once it has its final name
(:func:`verify`), and only then are the oldest ones beyond ``keep`` removed, so the previous checkpoint survives
until the new one is known to be whole. Resuming takes the newest checkpoint that verifies
(:func:`latest_verified`): a damaged newest one (truncated, altered, a file missing) is reported and the previous
one is loaded instead.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sparrow.storage import DataError, read_json, sha256_file

STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^step-(\d{8})$")


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def temp_dir(root: Path, step: int) -> Path:
    """The in-progress name of the checkpoint for ``step``; the same on every process."""
    return root / f".tmp-{checkpoint_name(step)}"


def list_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints under ``root`` as (step, folder), oldest first."""
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _NAME.match(child.name)
        if match and child.is_dir() and (child / STATE_FILE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(root: Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1][1] if found else None


def remove_partial(root: Path) -> list[Path]:
    """Delete folders left by a run killed while writing a checkpoint."""
    removed = []
    if root.is_dir():
        for child in root.iterdir():
            if child.name.startswith(".tmp-") and child.is_dir():
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child)
    return removed


def commit(tmp: Path, root: Path, step: int, keep: int) -> Path:
    """Rename a fully written temporary folder into place, verify it, then prune checkpoints beyond the newest
    ``keep``. A checkpoint that fails verification raises :class:`DataError`, and nothing older is removed."""
    final = root / checkpoint_name(step)
    if final.exists():
        # Only a rerun of the same step can collide; the old folder is replaced by the fresh one.
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    try:
        verify(final)
    except DataError as exc:
        kept = [p.name for _, p in list_checkpoints(root) if p != final]
        raise DataError(f"{exc} (new checkpoint not verified; kept: {', '.join(kept) or 'none'})") from exc
    for _, old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def file_checksums(folder: Path) -> dict[str, dict[str, Any]]:
    """Size and sha256 of every file under ``folder`` but the state file, by relative path (stored in it)."""
    return {
        path.relative_to(folder).as_posix(): {"size": path.stat().st_size, "sha256": sha256_file(path)}
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != STATE_FILE
    }


def verify(ckpt: Path) -> None:
    """Raise :class:`DataError` naming the first file of ``ckpt`` that is missing or differs from what was
    written (checkpoints written before the checksums were kept are checked for their state file only)."""
    state = read_state(ckpt)
    for name, want in state.get("files", {}).items():
        path = ckpt / name
        if not path.is_file():
            raise DataError(f"{path}: unreadable checkpoint file (missing)")
        size = path.stat().st_size
        if size != want["size"]:
            raise DataError(f"{path}: unreadable checkpoint file ({size} bytes, {want['size']} written)")
        if sha256_file(path) != want["sha256"]:
            raise DataError(f"{path}: unreadable checkpoint file (its sha256 differs from the one written)")


def latest_verified(root: Path) -> tuple[Path | None, list[str]]:
    """The newest checkpoint under ``root`` that passes :func:`verify` (None if none does), and what is wrong
    with each newer one, newest first."""
    damaged = []
    for _, folder in reversed(list_checkpoints(root)):
        try:
            verify(folder)
        except DataError as exc:
            damaged.append(str(exc))
            continue
        return folder, damaged
    return None, damaged


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_tensors(obj: Any, path: Path) -> None:
    """``torch.save`` through a temporary file, fsynced before the rename."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_tensors(path: Path) -> Any:
    """Read a file written by :func:`save_tensors`; anything but plain tensors and containers is refused."""
    if not path.is_file():
        raise DataError(f"{path}: checkpoint file missing")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise DataError(f"{path}: unreadable checkpoint file ({type(exc).__name__}: {exc})") from exc


def read_state(ckpt: Path) -> dict[str, Any]:
    state = read_json(ckpt / STATE_FILE)
    for key in ("step", "data_pass", "batch_offset", "world_size", "train_config"):
        if key not in state:
            raise DataError(f"{ckpt / STATE_FILE}: missing {key!r}")
    return state


# -- random generator states --------------------------------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """Every generator's state as tensors and plain values (loadable with ``weights_only=True``)."""
    py_version, py_internal, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.random.get_rng_state(),
        "python": {"version": py_version, "internal": torch.tensor(py_internal, dtype=torch.int64), "gauss": py_gauss},
        "numpy": {
            "kind": np_kind,
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached": float(np_cached),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.random.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state(
        (npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["cached"])
    )
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
