"""The layers import one way: data → TSF steps → model → convert / tsf / train → eval → experiments → notebooks and
the CLI.

Every ``import`` of every module under ``sparrow/`` is read with ``ast``, those inside functions included, so a
function-local import cannot hide an edge that goes the wrong way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "sparrow"

# The TSF box's tensor steps (target crops, K-means) are shared by the offline pass and by the model, which builds
# TSF tokens from them in training and at test: they form a layer of their own between data and model.
TSF_STEPS = {"sparrow.tsf.crops", "sparrow.tsf.kmeans"}

# layer -> the layers it must not import
FORBIDDEN = {
    "data": {"tsf_steps", "model", "convert", "tsf", "train", "eval", "experiments", "viz"},
    "tsf_steps": {"model", "convert", "tsf", "train", "eval", "experiments", "viz"},
    "model": {"convert", "tsf", "train", "eval", "experiments", "viz"},
    # released checkpoints -> kit models: beside the model layer, under everything that uses models
    "convert": {"tsf", "train", "eval", "experiments", "viz"},
    "tsf": {"eval", "experiments", "viz"},
    "train": {"eval", "experiments", "viz"},
    "eval": {"train", "experiments", "viz"},
}
# the only importers of the experiments layer (besides itself): the entry points above it
EXPERIMENTS_IMPORTERS = {"experiments", "cli", "notebook_tools"}


def _layer(path: Path) -> str:
    """The subpackage a module belongs to, or the top-level module's name (``cli``, ``storage``, ...)."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return "tsf_steps" if "sparrow." + ".".join(parts) in TSF_STEPS else parts[0]


def _imported_layers(path: Path) -> list[tuple[int, str, str]]:
    """(line, imported module, its layer) for every ``sparrow`` import in the file, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
            if node.module == "sparrow":  # `from sparrow import viz`
                modules = [f"sparrow.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[0] == "sparrow" and len(parts) > 1:
                out.append((node.lineno, module, "tsf_steps" if module in TSF_STEPS else parts[1]))
    return out


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_layer_is_found():
    layers = {_layer(p) for p in MODULES}
    assert set(FORBIDDEN) | {"experiments", "viz", "cli"} <= layers


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_go_one_way(path: Path):
    layer = _layer(path)
    wrong = []
    for line, module, target in _imported_layers(path):
        if target in FORBIDDEN.get(layer, ()):
            wrong.append(f"{path.name}:{line} imports {module} ({layer} must not import {target})")
        if target == "experiments" and layer not in EXPERIMENTS_IMPORTERS:
            wrong.append(f"{path.name}:{line} imports {module} (only {sorted(EXPERIMENTS_IMPORTERS)} may)")
    assert not wrong, "\n".join(wrong)
