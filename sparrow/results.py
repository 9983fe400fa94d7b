"""Recording the numbers a notebook reports, and comparing them with expectations.

The last cell of every notebook builds a :class:`Recorder`, adds every reported number, and saves it to
``$SPARROW_HOME/results/<profile>/<notebook>.json`` (:func:`sparrow.paths.results_root`) together with what produced
it (profile, seed, git commit, package versions, device). ``reproductions/expected/<profile>/<notebook>.json`` holds
the expected value of each number with its tolerance and the reason for that tolerance; :func:`compare` checks one
against the other. :func:`promote` copies a run's results over the committed reference results
``reproductions/results/<profile>/``. An entry marked ``"info": true`` (a wall time) must be recorded, but its value
is only shown next to the stored one, never asserted.
"""

from __future__ import annotations

import math
import os
import platform
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from sparrow.paths import expected_root, reference_results_root, repo_root, results_root
from sparrow.profiles import check_profile
from sparrow.storage import atomic_write_json, read_json

_TRACKED_PACKAGES = ("torch", "transformers", "peft", "accelerate", "sam2", "numpy", "pycocotools", "sparrow-kit")


@dataclass
class Metric:
    name: str
    value: float | int | str | None
    unit: str = ""
    paper: float | None = None
    paper_source: str | None = None
    note: str | None = None


def _git_commit() -> str | None:
    root = repo_root()
    if root is None:
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    commit = out.stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout.strip()
    return commit + ("+dirty" if dirty else "")


def _versions() -> dict[str, str]:
    found = {}
    for name in _TRACKED_PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _device() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"cuda:{torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return f"cpu:{platform.machine()}"


class Recorder:
    """Collects the numbers one notebook reports and saves them as one JSON file."""

    def __init__(self, notebook: str, profile: str, seed: int):
        self.notebook = Path(notebook).stem
        self.profile = check_profile(profile)
        self.seed = int(seed)
        self.metrics: list[Metric] = []

    def add(
        self,
        name: str,
        value: Any,
        unit: str = "",
        paper: float | None = None,
        paper_source: str | None = None,
        note: str | None = None,
    ) -> None:
        """Record one number. Names are unique per notebook; NaN and inf are refused (record None with a note)."""
        if any(m.name == name for m in self.metrics):
            raise ValueError(f"{self.notebook}: metric {name!r} recorded twice")
        if hasattr(value, "item"):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{self.notebook}: metric {name!r} is {value}; record None with a note instead")
        if paper is not None and paper_source is None:
            raise ValueError(f"{self.notebook}: metric {name!r} gives a paper value without its source")
        self.metrics.append(Metric(name, value, unit, paper, paper_source, note))

    def add_all(self, values: dict[str, Any], unit: str = "", prefix: str = "") -> None:
        for key, value in values.items():
            self.add(f"{prefix}{key}", value, unit=unit)

    def to_json(self) -> dict[str, Any]:
        return {
            "notebook": self.notebook,
            "profile": self.profile,
            "seed": self.seed,
            "git_commit": _git_commit(),
            "versions": _versions(),
            "device": _device(),
            "python": platform.python_version(),
            "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "metrics": [asdict(m) for m in self.metrics],
        }

    def save(self, root: str | Path | None = None) -> Path:
        path = Path(root or results_root()) / self.profile / f"{self.notebook}.json"
        atomic_write_json(path, self.to_json())
        return path


# -- expectations -----------------------------------------------------------------------------------------------


@dataclass
class Expectation:
    value: Any
    abs_tol: float = 0.0
    rel_tol: float = 0.0
    why: str = "deterministic on CPU: exact"
    info: bool = False

    def to_json(self, value: Any) -> dict[str, Any]:
        """The stored form of this expectation with a new ``value``; ``info`` is written only when set."""
        spec = {"value": value, "abs_tol": self.abs_tol, "rel_tol": self.rel_tol, "why": self.why}
        if self.info:
            spec["info"] = True
        return spec

    def accepts(self, value: Any) -> bool:
        if isinstance(self.value, (int, float)) and isinstance(value, (int, float)) and not isinstance(value, bool):
            return math.isclose(value, self.value, rel_tol=self.rel_tol, abs_tol=self.abs_tol)
        return value == self.value


@dataclass
class Drift:
    notebook: str
    problems: list[str] = field(default_factory=list)
    info: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        if self.ok:
            text = f"{self.notebook}: every recorded number matches its expectation"
        else:
            text = f"{self.notebook}: {len(self.problems)} problem(s)\n" + "\n".join(f"  - {p}" for p in self.problems)
        if self.info:
            text += "\n  not compared (info):\n" + "\n".join(f"  - {i}" for i in self.info)
        return text


def expected_path(notebook: str, profile: str) -> Path:
    return expected_root() / check_profile(profile) / f"{Path(notebook).stem}.json"


def load_expected(path: str | Path) -> dict[str, Expectation]:
    data = read_json(path)
    return {name: Expectation(**spec) for name, spec in data["metrics"].items()}


def compare(results_file: str | Path, expected_file: str | Path) -> Drift:
    """Compare every recorded number with its expectation; missing and unexpected numbers are problems too.

    Numbers whose expectation is ``info`` must be recorded; their values go to ``Drift.info``, not compared."""
    results = read_json(results_file)
    expected = load_expected(expected_file)
    drift = Drift(results["notebook"])
    recorded = {m["name"]: m["value"] for m in results["metrics"]}
    for name in sorted(set(recorded) | set(expected)):
        if name not in expected:
            drift.problems.append(
                f"{name}: recorded {recorded[name]!r} but has no expectation "
                f"(add it with `make regen-expected PROFILE={results['profile']}`)"
            )
        elif name not in recorded:
            drift.problems.append(f"{name}: expected {expected[name].value!r} but was not recorded")
        elif expected[name].info:
            drift.info.append(
                f"{name}: recorded {recorded[name]!r} (stored {expected[name].value!r}) [{expected[name].why}]"
            )
        elif not expected[name].accepts(recorded[name]):
            exp = expected[name]
            delta = ""
            if isinstance(exp.value, (int, float)) and isinstance(recorded[name], (int, float)):
                delta = f" (delta {recorded[name] - exp.value:+.6g})"
            drift.problems.append(
                f"{name}: recorded {recorded[name]!r}, expected {exp.value!r}{delta} "
                f"within abs {exp.abs_tol:g} / rel {exp.rel_tol:g} [{exp.why}]"
            )
    return drift


def default_tolerance(value: Any) -> tuple[float, float, str]:
    """Tolerance for a number that has none yet: exact for ints and strings, 1e-6 relative for floats."""
    if isinstance(value, float):
        return 1e-9, 1e-6, "float computed deterministically on CPU; allows last-digit noise across BLAS builds"
    return 0.0, 0.0, "count or label: exact"


def write_expected(results_file: str | Path, expected_file: str | Path) -> Path:
    """Rewrite an expectation file from a results file, keeping existing tolerances, reasons and info flags."""
    results = read_json(results_file)
    expected_file = Path(expected_file)
    old = load_expected(expected_file) if expected_file.is_file() else {}
    metrics = {}
    for m in results["metrics"]:
        if m["name"] in old:
            metrics[m["name"]] = old[m["name"]].to_json(m["value"])
        else:
            abs_tol, rel_tol, why = default_tolerance(m["value"])
            metrics[m["name"]] = Expectation(m["value"], abs_tol, rel_tol, why).to_json(m["value"])
    atomic_write_json(
        expected_file,
        {"notebook": results["notebook"], "profile": results["profile"], "seed": results["seed"], "metrics": metrics},
    )
    return expected_file


# -- reference results ------------------------------------------------------------------------------------------


def promote(profile: str, source: str | Path | None = None, target: str | Path | None = None) -> list[Path]:
    """Replace the reference results of ``profile`` (``target``, default ``reproductions/results``) with one run's:
    its notebooks' results JSON and the ``timings.json`` of ``sparrow reproduce`` under ``source`` (default
    :func:`sparrow.paths.results_root`). All or nothing: the run must hold a results file for every notebook its
    timings list and nothing else, and the folder is swapped whole, so the reference never mixes two runs."""
    from sparrow.notebook_tools import TIMINGS_FILE

    check_profile(profile)
    src = Path(source or results_root()) / profile
    dst = Path(target or reference_results_root()) / profile
    timings_file = src / TIMINGS_FILE
    if not timings_file.is_file():
        raise FileNotFoundError(
            f"{timings_file} does not exist: promote what `sparrow reproduce --profile {profile}` recorded"
        )
    listed = set(read_json(timings_file).get("notebooks", {}))
    results = sorted(p for p in src.glob("*.json") if p.name != TIMINGS_FILE)
    found = {p.stem for p in results}
    if not listed or found != listed:
        raise ValueError(f"{src}: results of {sorted(found)} but timings of {sorted(listed)}; promote one whole run")
    for p in results:
        recorded = read_json(p).get("profile")
        if recorded != profile:
            raise ValueError(f"{p} records profile {recorded!r}, not {profile!r}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{profile}-new-", dir=dst.parent))
    staged.chmod(0o755)  # mkdtemp's 0700 would become the reference folder's mode
    try:
        for p in [*results, timings_file]:
            shutil.copyfile(p, staged / p.name)
        old = None
        if dst.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{profile}-old-", dir=dst.parent))
            os.replace(dst, old / profile)
        try:
            os.replace(staged, dst)
        except OSError:
            if old is not None:
                os.replace(old / profile, dst)
            raise
        if old is not None:
            shutil.rmtree(old)
    finally:
        if staged.exists():
            shutil.rmtree(staged)
    return sorted(dst.iterdir())
