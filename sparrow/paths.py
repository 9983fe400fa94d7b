"""The kit's one artifact root and the fixed places under it.

Everything the kit generates (SPARROW-Mini, curated sets, caches, checkpoints, executed notebooks) lives under
``SPARROW_HOME`` (default ``./artifacts`` at the repository root, git-ignored). Recorded results go to
``reproductions/results`` (override with ``SPARROW_RESULTS``) because they are small and committed for ``mini``.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def repo_root() -> Path | None:
    """The kit's checkout when the package is installed from one (editable install), else None."""
    candidate = _PACKAGE_DIR.parent
    if (candidate / "pyproject.toml").is_file() and (candidate / "notebooks").is_dir():
        return candidate
    return None


def home() -> Path:
    """The artifact root: ``$SPARROW_HOME`` or ``<repo>/artifacts`` (``./artifacts`` outside a checkout)."""
    env = os.environ.get("SPARROW_HOME")
    if env:
        return Path(env).expanduser().resolve()
    root = repo_root()
    return (root if root is not None else Path.cwd()) / "artifacts"


def results_root() -> Path:
    """Where notebooks record their numbers: ``$SPARROW_RESULTS`` or ``<repo>/reproductions/results``."""
    env = os.environ.get("SPARROW_RESULTS")
    if env:
        return Path(env).expanduser().resolve()
    root = repo_root()
    return (root if root is not None else Path.cwd()) / "reproductions" / "results"


def expected_root() -> Path:
    root = repo_root()
    return (root if root is not None else Path.cwd()) / "reproductions" / "expected"


def data_dir(profile: str, seed: int) -> Path:
    """Generated SPARROW-Mini sources for one profile and seed."""
    return home() / "data" / f"sparrow-mini-{profile}-seed{seed}"


def curated_dir(profile: str, seed: int) -> Path:
    """The curated (harmonised) dataset built from :func:`data_dir`."""
    return home() / "curated" / f"{profile}-seed{seed}"


def cache_dir(name: str) -> Path:
    return home() / "cache" / name


def runs_dir(profile: str) -> Path:
    """Training runs (checkpoints, loss logs) for one profile."""
    return home() / "runs" / profile


def notebooks_out_dir(profile: str) -> Path:
    """Executed copies of the notebooks (never committed)."""
    return home() / "notebooks" / profile
