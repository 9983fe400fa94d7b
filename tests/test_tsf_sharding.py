"""Two CPU ranks (under torchrun and under accelerate launch) split the TSF pass and merge it into the same output
as one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from fixtures.toydata import write_toy_curated
from sparrow.tsf.cache import TSFStore
from sparrow.tsf.detection import DetectorConfig
from sparrow.tsf.encoder import PatchMeanEncoder
from sparrow.tsf.pipeline import TSFConfig, run_tsf
from sparrow.tsf.sharding import Shard

SHARDED_RUN = textwrap.dedent("""
    import json, os, sys
    import sparrow
    from sparrow.tsf.detection import DetectorConfig
    from sparrow.tsf.encoder import PatchMeanEncoder
    from sparrow.tsf.pipeline import TSFConfig, run_tsf

    root, out = sys.argv[1], sys.argv[2]
    config = TSFConfig.for_profile("smoke", detector=DetectorConfig(box_source="ground_truth"))
    done = []
    report = run_tsf(root, "valid", config, PatchMeanEncoder(config.crop_size),
                     on_entry=lambda entry, status: done.append(entry.video_id))
    rank = os.environ["RANK"]
    with open(os.path.join(out, f"rank{rank}.json"), "w") as handle:
        json.dump({"world": report.world, "videos": sorted(set(done)), "counts": report.counts,
                   "index": str(report.index_path)}, handle)
""")


def test_shard_takes_every_world_th_item():
    items = list(range(7))
    assert Shard(0, 2).take(items) == [0, 2, 4, 6] and Shard(1, 2).take(items) == [1, 3, 5]
    assert Shard().take(items) == items and Shard().is_main


# The two launches docs/runtime.md §9 found to start two CPU ranks (``accelerate launch --cpu`` starts one).
LAUNCHERS = {
    "torchrun": ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"],
    "accelerate": ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                   "--mixed_precision", "no", "--dynamo_backend", "no"],
}


@pytest.mark.parametrize("launcher", sorted(LAUNCHERS))
def test_two_ranks_split_the_work_and_merge_identically(tmp_path, launcher):
    root = write_toy_curated(tmp_path / "toy", videos=5, frames=5)
    script = tmp_path / "sharded.py"
    script.write_text(SHARDED_RUN)
    env = dict(os.environ, SPARROW_HOME=str(tmp_path / "home"), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, *LAUNCHERS[launcher], str(script), str(root), str(tmp_path)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world"] for r in ranks] == [2, 2]
    videos = [set(r["videos"]) for r in ranks]
    assert videos[0] and videos[1] and not videos[0] & videos[1]  # each rank did its own share
    assert videos[0] | videos[1] == {f"toy/valid{i:02d}" for i in range(5)}
    assert ranks[0]["counts"] == ranks[1]["counts"]  # every rank returns the merged report
    assert ranks[0]["counts"]["computed"] == 10 and ranks[0]["counts"]["videos"] == 5

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the ranks' thread count, for bit-identical features
    try:
        single = run_tsf(root, "valid", TSFConfig.for_profile("smoke", detector=DetectorConfig(box_source="ground_truth")),
                         PatchMeanEncoder(32), store=TSFStore(tmp_path / "single" / "entries"),
                         out_dir=tmp_path / "single" / "run")
    finally:
        torch.set_num_threads(threads)
    with open(ranks[0]["index"], "rb") as handle:
        assert handle.read() == single.index_path.read_bytes()
    sharded = {p.name: p.read_bytes() for p in (tmp_path / "home").rglob("*.safetensors")}
    alone = {p.name: p.read_bytes() for p in (tmp_path / "single").rglob("*.safetensors")}
    assert len(sharded) == 10 and sharded == alone
