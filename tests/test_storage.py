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
