"""The tiny profiles' SAM2 pretraining: its data, what trains, reuse by fingerprint, and the host stage starting from it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sparrow  # noqa: F401  (torchvision shim first)
from sparrow.data.curated import records_fingerprint
from sparrow.model.checkpoint import read_state
from sparrow.model.presets import preset
from sparrow.train import TrainConfig, train_variant
from sparrow.train.sam_pretrain import (
    BoxPromptDataset,
    SamPretrainer,
    ensure_pretrained_sam,
    load_pretrained_sam,
)
from sparrow.train.variants import pretrained_sam


@pytest.fixture(scope="module")
def curated():
    from sparrow.data.curate import ensure_curated

    return ensure_curated("smoke", 0)


def test_box_prompts_name_the_visible_mask(curated):
    data = BoxPromptDataset(curated, "train", 64)
    assert len(data) > 0 and len({(v, o) for v, o, _ in data.items}) * 3 >= len(data)
    for i in range(0, len(data), max(1, len(data) // 10)):
        item = data[i]
        assert item["frame"].shape == (3, 64, 64) and item["mask"].shape == (64, 64)
        ys, xs = np.nonzero(item["mask"].numpy())
        if len(ys) == 0:
            assert item["box"].tolist() == [0.0, 0.0, 1.0, 1.0]  # a sliver: whole-frame box, empty target
            continue
        expected = [xs.min() / 64, ys.min() / 64, (xs.max() + 1) / 64, (ys.max() + 1) / 64]
        assert item["box"].tolist() == pytest.approx(expected)


def test_only_prompt_encoder_and_mask_decoder_train():
    model = SamPretrainer(preset("videoglamm", "smoke").sam)
    trainable = {n.split(".")[0] for n, p in model.decoder.sam.named_parameters() if p.requires_grad}
    assert trainable == {"sam_prompt_encoder", "sam_mask_decoder"}
    with pytest.raises(ValueError, match="released checkpoint"):
        SamPretrainer(preset("videoglamm", "paper").sam)
    with pytest.raises(ValueError, match="tiny profiles only"):
        TrainConfig.for_profile("paper", "sam")


def test_pretraining_is_reused_by_fingerprint_and_starts_the_host_stage(curated, tmp_path):
    spec = preset("videoglamm", "smoke").sam
    fingerprint = records_fingerprint(curated)
    weights, fp = ensure_pretrained_sam("smoke", curated, spec, fingerprint, runs_root=tmp_path, show_progress=False)
    assert weights.is_file() and weights.parent.parent.name == fp
    stamp = weights.stat().st_mtime_ns
    again, fp2 = ensure_pretrained_sam("smoke", curated, spec, fingerprint, runs_root=tmp_path, show_progress=False)
    assert (again, fp2) == (weights, fp) and weights.stat().st_mtime_ns == stamp  # reused, not retrained
    quiet, fp_quiet = ensure_pretrained_sam("smoke", curated, spec, fingerprint, runs_root=tmp_path, show_progress=True)
    assert (quiet, fp_quiet) == (weights, fp)  # a progress bar is no reason to pretrain again
    other, fp3 = ensure_pretrained_sam("smoke", curated, spec, "other data", runs_root=tmp_path, show_progress=False)
    assert fp3 != fp and other != weights

    pretrained = read_state(weights)
    fresh = SamPretrainer(spec)
    moved = [
        k
        for k in pretrained
        if k.startswith("sam_mask_decoder.") and not torch.equal(pretrained[k], fresh.decoder.sam.state_dict()[k])
    ]
    assert moved, "two pretraining steps changed no mask-decoder weight"
    load_pretrained_sam(fresh.decoder.sam, weights)
    assert all(torch.equal(v, fresh.decoder.sam.state_dict()[k]) for k, v in pretrained.items())

    # The host stage starts from those weights and trains the mask decoder only: the prompt encoder and image
    # encoder it exports are the pretrained ones. Every host (and seed) shares the one pretraining.
    run = train_variant(
        "videoglamm",
        "smoke",
        1,
        tsf=False,
        box=False,
        curated_root=curated,
        show_progress=False,
        train_overrides={"host": {"max_steps": 1}},
        runs_root=tmp_path,
    )
    host = read_state(run.final_dir / "model.safetensors")
    for key in ("sam_prompt_encoder.point_embeddings.0.weight", "image_encoder.trunk.patch_embed.proj.weight"):
        assert torch.equal(host["pixel_decoder.sam." + key], pretrained[key])
    glus_weights, _ = pretrained_sam(preset("glus", "smoke"), curated, runs_root=tmp_path)
    assert glus_weights == weights


def test_a_sam_checkpoint_or_whole_sam_training_skips_the_pretraining(curated):
    cfg = preset("videoglamm", "smoke")
    assert pretrained_sam(cfg.replace(host_trainable_sam="all"), curated) == (None, "")
    assert pretrained_sam(preset("videoglamm", "paper"), curated) == (None, "")


def test_two_ddp_ranks_pretrain_sam2_together_then_train_the_variant(curated, tmp_path):
    # `sparrow train --stage all` under torchrun: both ranks join the SAM2 pretraining (no lock wait between ranks,
    # which would deadlock the trainer's collectives), then the host stage.
    import json
    import subprocess
    import sys

    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "sparrow.cli",
        "train",
        "--host",
        "videoglamm",
        "--profile",
        "smoke",
        "--stage",
        "all",
        "--data",
        str(curated),
        "--out",
        str(tmp_path),
        "--max-steps",
        "1",
        "--no-progress",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "sam2-pretrain").glob("*/train_result.json"))
    assert len(runs) == 1 and json.loads(runs[0].read_text())["world_size"] == 2
    assert (tmp_path / "videoglamm-seed0" / "baseline" / "run.json").is_file()


def test_a_committed_sam2_serves_its_own_fingerprint_rebuilt_bit_for_bit(curated, tmp_path, monkeypatch, capsys):
    from sparrow.storage import DataError
    from sparrow.train import sam_pretrain

    monkeypatch.setattr(sam_pretrain, "committed_weights_root", lambda: tmp_path / "committed")
    spec = preset("videoglamm", "smoke").sam
    data = records_fingerprint(curated)
    trained, fp = ensure_pretrained_sam("smoke", curated, spec, data, runs_root=tmp_path / "a", show_progress=False)
    folder = sam_pretrain.write_committed_sam("smoke", trained, fp, spec)
    kept = read_state(folder / sam_pretrain.COMMITTED_WEIGHTS)
    assert kept and all(k.startswith(sam_pretrain.TRAINED_PREFIXES) for k in kept)

    used, same = ensure_pretrained_sam("smoke", curated, spec, data, runs_root=tmp_path / "b", show_progress=False)
    assert same == fp and used.parent.name == "committed" and "using the committed" in capsys.readouterr().out
    full, rebuilt = read_state(trained), read_state(used)
    assert sorted(full) == sorted(rebuilt)
    assert all(torch.equal(full[k], rebuilt[k]) for k in full)  # the untrained tensors from the seeded init

    other, fp2 = ensure_pretrained_sam(
        "smoke", curated, spec, data + "x", runs_root=tmp_path / "c", show_progress=False
    )
    assert fp2 != fp and other.parent.name == "final"
    assert f"were pretrained for fingerprint {fp}" in capsys.readouterr().out
    never, _ = ensure_pretrained_sam(
        "smoke", curated, spec, data, runs_root=tmp_path / "d", show_progress=False, use_committed=False
    )
    assert never.parent.name == "final"
    # a committed file with other tensors is refused by name, not loaded half-way
    sam_pretrain.write_committed_sam("smoke", trained, fp, spec)
    from safetensors.torch import save

    (folder / sam_pretrain.COMMITTED_WEIGHTS).write_bytes(save({"image_encoder.x": torch.zeros(1)}))
    with pytest.raises(DataError, match="not this SAM2's trained tensors"):
        ensure_pretrained_sam("smoke", curated, spec, data, runs_root=tmp_path / "e", show_progress=False)


def test_both_pretrainings_run_under_their_fixed_thread_count(curated, tmp_path, monkeypatch):
    """The committed weights are retrained bit for bit only under the thread count they were trained with, so the
    pretraining stages set it themselves whatever the machine's default, and give the default back."""
    from sparrow.train import grounding_pretrain, sam_pretrain
    from sparrow.train.trainer import Trainer

    seen = []
    monkeypatch.setattr(Trainer, "train", lambda self, resume=True: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    spec = preset("videoglamm", "smoke").sam
    cfg = TrainConfig.for_profile("smoke", "sam", seed=0, show_progress=False)
    sam_pretrain._train(spec, curated, cfg, tmp_path / "sam")
    grounding_spec = preset("videoglamm", "smoke").grounding
    cfg = TrainConfig.for_profile("smoke", "grounding", seed=0, show_progress=False)
    grounding_pretrain._train(grounding_spec, curated, cfg, tmp_path / "grounding", "fp")
    assert seen == [sam_pretrain.PRETRAIN_THREADS, grounding_pretrain.PRETRAIN_THREADS] == [2, 1]
    assert torch.get_num_threads() == before
