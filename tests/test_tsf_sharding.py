"""Two CPU ranks (``sparrow tsf`` under torchrun and under accelerate launch) split the TSF pass and merge it into
the same output as one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from fixtures.toydata import write_toy_curated
from sparrow.tsf.cache import TSFStore
from sparrow.tsf.encoder import PatchMeanEncoder
from sparrow.tsf.pipeline import profile_config, run_tsf
from sparrow.tsf.sharding import Shard


def test_shard_takes_every_world_th_item():
    items = list(range(7))
    assert Shard(0, 2).take(items) == [0, 2, 4, 6] and Shard(1, 2).take(items) == [1, 3, 5]
    assert Shard().take(items) == items and Shard().is_main


# The two launches docs/runtime.md §9 found to start two CPU ranks (``accelerate launch --cpu`` starts one).
LAUNCHERS = {
    "torchrun": ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
    "accelerate": [
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ],
}


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_two_ranks_split_the_work_and_merge_identically(tmp_path, launcher):
    root = write_toy_curated(tmp_path / "toy", videos=5, frames=5)
    env = dict(os.environ, SPARROW_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1")
    command = [
        "-m",
        "sparrow.cli",
        "tsf",
        "--profile",
        "smoke",
        "--split",
        "valid",
        "--curated",
        str(root),
        "--box-source",
        "ground_truth",
    ]
    proc = subprocess.run(
        [sys.executable, *LAUNCHERS[launcher], *command], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    printed = [line for line in proc.stdout.splitlines() if line.startswith("TSF of ")]
    assert len(printed) == 1  # rank 0 reports, once
    folder = printed[0].rsplit(": ", 1)[1]
    with open(os.path.join(folder, "report.json")) as handle:
        report = json.load(handle)
    assert report["world"] == 2
    # every expression computed exactly once over the two ranks
    assert report["counts"]["computed"] == 10 and report["counts"]["cache_hits"] == 0
    assert report["counts"]["videos"] == 5

    _assert_same_as_one_process(root, folder, tmp_path, entries=10)


@pytest.mark.slow  # three processes started one after another on 2 CPU cores: 20-30 s
def test_two_passes_writing_one_cache_at_once_agree_with_one_alone(tmp_path):
    # Two independent `sparrow tsf` jobs on the same artifact root compute the same entries at the same time: each
    # entry lands whole (written under a temporary name, then renamed) and both jobs report the same run.
    root = write_toy_curated(tmp_path / "toy", videos=3, frames=5)
    env = dict(os.environ, SPARROW_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "sparrow.cli", "tsf", "--profile", "smoke", "--split", "valid"]
    command += ["--curated", str(root), "--box-source", "ground_truth"]
    jobs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in "ab"]
    outputs = [job.communicate(timeout=300) for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], [err[-2000:] for _, err in outputs]
    folders = {out.splitlines()[0].rsplit(": ", 1)[1] for out, _ in outputs}
    assert len(folders) == 1
    folder = folders.pop()

    _assert_same_as_one_process(root, folder, tmp_path, entries=6)
    assert not [p for p in (tmp_path / "home").rglob("*.tmp")]


def _assert_same_as_one_process(root, folder, tmp_path, entries: int) -> None:
    """The run folder and cache entries under ``tmp_path / "home"`` equal one single-process pass's, byte for byte."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the ranks' thread count, for bit-identical features
    try:
        single = run_tsf(
            root,
            "valid",
            profile_config("smoke", root, box_source="ground_truth"),
            PatchMeanEncoder(32),
            store=TSFStore(tmp_path / "single" / "entries"),
            out_dir=tmp_path / "single" / "run",
        )
    finally:
        torch.set_num_threads(threads)
    with open(os.path.join(folder, "index.jsonl"), "rb") as handle:
        assert handle.read() == single.index_path.read_bytes()
    written = {p.name: p.read_bytes() for p in (tmp_path / "home").rglob("*.safetensors")}
    alone = {p.name: p.read_bytes() for p in (tmp_path / "single").rglob("*.safetensors")}
    assert len(written) == entries and written == alone
