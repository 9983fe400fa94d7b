"""Atomic writes end with the permissions a plain write gives under the process umask."""

from __future__ import annotations

import os
import stat

import pytest
import torch

from sparrow.model.checkpoint import atomic_directory, save_state
from sparrow.storage import atomic_write_json, current_umask, write_jsonl


@pytest.fixture(params=[0o022, 0o002, 0o077])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_files_and_folders_get_the_umask_mode(tmp_path, umask):
    assert current_umask() == umask
    with open(tmp_path / "plain.json", "w") as handle:
        handle.write("{}")
    os.mkdir(tmp_path / "plain")
    atomic_write_json(tmp_path / "meta.json", {"a": 1})
    write_jsonl(tmp_path / "index.jsonl", [{"a": 1}])
    with atomic_directory(tmp_path / "final") as folder:
        save_state(torch.nn.Linear(2, 2), folder / "model.safetensors")
    for written in ("meta.json", "index.jsonl", "final/model.safetensors"):
        assert _mode(tmp_path / written) == _mode(tmp_path / "plain.json") == 0o666 & ~umask, written
    assert _mode(tmp_path / "final") == _mode(tmp_path / "plain") == 0o777 & ~umask


def test_nothing_in_the_package_loads_unsafely():
    """Loading never runs code from a file: torch.load only with weights_only=True, no pickle, no numpy pickles,
    no yaml.load, no trust_remote_code=True (a source scan, so that a new call site cannot slip in)."""
    import ast
    from pathlib import Path

    import sparrow

    found = []
    for path in sorted(Path(sparrow.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{path.name}:{getattr(node, 'lineno', 0)}"
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                found += [f"{where} imports {n}" for n in names if n.split(".")[0] in ("pickle", "dill", "cloudpickle")]
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
            if name.endswith("torch.load") and keywords.get("weights_only") != "True":
                found.append(f"{where} torch.load without weights_only=True")
            if name.endswith(("np.load", "numpy.load")) and keywords.get("allow_pickle", "False") != "False":
                found.append(f"{where} np.load with allow_pickle")
            if name.endswith("yaml.load") or name.endswith("yaml.unsafe_load"):
                found.append(f"{where} {name}")
            if keywords.get("trust_remote_code", "False") != "False":
                found.append(f"{where} trust_remote_code")
    assert not found, found
