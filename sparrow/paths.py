"""The kit's one artifact root and the fixed places under it.

Everything the kit generates (SPARROW-Mini, curated sets, caches, checkpoints, executed notebooks, the numbers a
run records) lives under ``SPARROW_HOME`` (default ``./artifacts`` at the repository root, git-ignored). A run's
recorded numbers go to ``$SPARROW_HOME/results`` (override with ``SPARROW_RESULTS``); the committed reference
results in ``reproductions/results/<profile>/`` change only through ``sparrow promote-results``.

Paper-size components (the names in the ``paper`` profile's model section, e.g. ``Phi-3-mini-4k-instruct``) are
found by :func:`component_path`, in this order:

1. an absolute path, as given (a config built with an explicit path);
2. the entry for the name in the weights paths file: ``$SPARROW_WEIGHT_PATHS`` (what ``sparrow --paths FILE``
   sets), else ``<weights root>/paths.json``; a JSON object from component name to path, relative paths taken
   from the file's folder;
3. the default layout ``<weights root>/<name>``.

The weights root is the config's explicit ``weights_root`` (e.g. ``--weights-root``), else
``$SPARROW_HOME/weights``. A component found nowhere is a one-line FileNotFoundError naming it and where it looked.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
WEIGHT_PATHS_ENV = "SPARROW_WEIGHT_PATHS"
WEIGHT_PATHS_FILE = "paths.json"


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
    """Where a run records its numbers: ``$SPARROW_RESULTS`` or ``$SPARROW_HOME/results``."""
    env = os.environ.get("SPARROW_RESULTS")
    if env:
        return Path(env).expanduser().resolve()
    return home() / "results"


def reference_results_root() -> Path:
    """The committed reference results, ``<repo>/reproductions/results``."""
    root = repo_root()
    return (root if root is not None else Path.cwd()) / "reproductions" / "results"


def expected_root() -> Path:
    root = repo_root()
    return (root if root is not None else Path.cwd()) / "reproductions" / "expected"


def committed_weights_root() -> Path:
    """Foundation weights committed with the kit, ``<repo>/reproductions/weights`` (``make pretrain-mini`` writes
    them; a run uses them only when their recorded fingerprint is the one it needs)."""
    root = repo_root()
    return (root if root is not None else Path.cwd()) / "reproductions" / "weights"


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


def weights_root(explicit: str | os.PathLike | None = None) -> Path:
    """Where paper-size components are: ``explicit``, else ``$SPARROW_HOME/weights``."""
    return Path(explicit).expanduser() if explicit is not None else home() / "weights"


def weight_paths_file(root: str | os.PathLike | None = None) -> Path:
    """The weights paths file: ``$SPARROW_WEIGHT_PATHS``, else ``paths.json`` in :func:`weights_root`."""
    env = os.environ.get(WEIGHT_PATHS_ENV)
    return Path(env).expanduser() if env else weights_root(root) / WEIGHT_PATHS_FILE


def _configured(file: Path) -> dict[str, str]:
    if not file.is_file():
        if os.environ.get(WEIGHT_PATHS_ENV):
            raise FileNotFoundError(f"weights paths file {file} (${WEIGHT_PATHS_ENV}) does not exist")
        return {}
    data = json.loads(file.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ValueError(f"{file}: expected a JSON object from component name to path")
    return data


def component_path(name: str, root: str | os.PathLike | None = None) -> Path:
    """Where component ``name`` is (see the module docstring for the order); raises FileNotFoundError if absent.

    ``root``: an explicit weights root (a config's ``weights_root``)."""
    given = Path(name).expanduser()
    if given.is_absolute():
        where, source = given, "given as an absolute path"
    else:
        file = weight_paths_file(root)
        configured = _configured(file)
        if name in configured:
            where, source = (file.parent / Path(configured[name]).expanduser()), f"entry in {file}"
        else:
            where, source = weights_root(root) / given, f"default layout; no entry in {file}"
    if not where.exists():
        raise FileNotFoundError(f"component {name!r} not found at {where} ({source})")
    return where


@contextmanager
def weight_paths(file: str | os.PathLike | None) -> Iterator[None]:
    """Use ``file`` as the weights paths file while the block runs (None: leave the setting as it is)."""
    if file is None:
        yield
        return
    path = Path(file).expanduser().resolve()
    if not path.is_file():
        raise FileNotFoundError(f"weights paths file {path} does not exist")
    previous = os.environ.get(WEIGHT_PATHS_ENV)
    os.environ[WEIGHT_PATHS_ENV] = str(path)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(WEIGHT_PATHS_ENV, None)
        else:
            os.environ[WEIGHT_PATHS_ENV] = previous
