"""Executing the numbered notebooks with papermill, and keeping committed notebooks clean.

Used by ``sparrow reproduce``, ``sparrow regen-expected`` and the regression harness in ``tests/test_notebooks.py``.
Notebooks see the profile and seed as injected parameters and find everything else through files under
``SPARROW_HOME``; their recorded numbers go to ``SPARROW_RESULTS``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sparrow.paths import notebooks_out_dir, repo_root, results_root
from sparrow.profiles import check_profile


@dataclass
class NotebookRun:
    notebook: str
    profile: str
    seconds: float
    executed: Path
    results: Path | None


def numbered_notebooks(folder: str | Path | None = None) -> list[Path]:
    """``notebooks/NN_*.ipynb`` in order."""
    folder = Path(folder) if folder else _notebook_folder()
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def _notebook_folder() -> Path:
    root = repo_root()
    if root is None:
        raise FileNotFoundError("the notebooks live in the kit's checkout; run from a clone of the repository")
    return root / "notebooks"


def run_notebook(
    path: str | Path,
    profile: str,
    seed: int = 0,
    out_dir: str | Path | None = None,
    results_dir: str | Path | None = None,
    extra_parameters: dict | None = None,
    kernel_name: str = "python3",
    timeout: int | None = None,
) -> NotebookRun:
    """Execute one notebook under ``profile``; raises papermill's PapermillExecutionError on a failing cell."""
    import papermill as pm

    path = Path(path).resolve()
    check_profile(profile)
    out_dir = Path(out_dir or notebooks_out_dir(profile))
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = out_dir / path.name
    results_dir = Path(results_dir or results_root())
    parameters = {"profile": profile, "seed": int(seed), **(extra_parameters or {})}
    previous = os.environ.get("SPARROW_RESULTS")
    os.environ["SPARROW_RESULTS"] = str(results_dir)
    start = time.perf_counter()
    try:
        pm.execute_notebook(
            str(path),
            str(executed),
            parameters=parameters,
            kernel_name=kernel_name,
            cwd=str(path.parent),
            progress_bar=False,
            execution_timeout=timeout,
        )
    finally:
        if previous is None:
            os.environ.pop("SPARROW_RESULTS", None)
        else:
            os.environ["SPARROW_RESULTS"] = previous
    seconds = time.perf_counter() - start
    results = results_dir / profile / f"{path.stem}.json"
    return NotebookRun(path.stem, profile, seconds, executed, results if results.is_file() else None)


TIMINGS_FILE = "timings.json"


def reproduce(profile: str = "mini", seed: int = 0, notebooks: list[Path] | None = None) -> list[NotebookRun]:
    """Run every numbered notebook in order, print the time each took and write the times beside the results
    (``<results>/<profile>/timings.json``; a run that found its work cached is faster, and says so only through
    its time)."""
    import platform

    from sparrow.storage import atomic_write_json

    runs = []
    for nb in notebooks or numbered_notebooks():
        print(f"[sparrow reproduce] {nb.name} (profile={profile}, seed={seed}) ...", flush=True)
        run = run_notebook(nb, profile, seed)
        runs.append(run)
        print(f"[sparrow reproduce] {nb.name}: {run.seconds:.1f} s; results -> {run.results}", flush=True)
    total = sum(r.seconds for r in runs)
    print(f"[sparrow reproduce] {len(runs)} notebooks in {total:.1f} s ({total / 60:.1f} min)", flush=True)
    atomic_write_json(
        results_root() / profile / TIMINGS_FILE,
        {
            "profile": profile,
            "seed": int(seed),
            "cpu_count": os.cpu_count(),
            "machine": platform.platform(),
            "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "notebooks": {r.notebook: round(r.seconds, 1) for r in runs},
            "total_s": round(total, 1),
        },
    )
    return runs


def has_outputs(path: str | Path) -> bool:
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    return any(cell.get("outputs") or cell.get("execution_count") for cell in nb.get("cells", []))


def strip_outputs(path: str | Path) -> bool:
    """Remove outputs and execution counts in place; returns True if the file changed."""
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    changed = False
    for cell in nb.cells:
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
            cell.outputs, cell.execution_count, changed = [], None, True
    if changed:
        nbformat.write(nb, path)
    return changed


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "strip":
        print("usage: python -m sparrow.notebook_tools strip NOTEBOOK...", file=sys.stderr)
        return 2
    for name in argv[1:]:
        if strip_outputs(name):
            print(f"stripped {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
