"""The trainer on the real SparrowModel (smoke preset): resume, the stage chain, caching, the CLI, validation."""

from __future__ import annotations

import math
import shutil

import pytest
import torch

import sparrow  # noqa: F401  (torchvision shim first)
from sparrow.experiments.validation import quick_validation
from sparrow.train import TrainConfig, Trainer, train_variant
from sparrow.train.checkpoint import list_checkpoints
from sparrow.train.loss_log import read_loss_log
from sparrow.train.variants import build_model, model_config


@pytest.fixture(scope="module")
def curated():
    from sparrow.data.curate import ensure_curated

    return ensure_curated("smoke", 0)


def _host_run(curated, out, **overrides):
    from sparrow.model import SparrowDataset

    cfg = model_config("videoglamm", "smoke", False, False, curated)
    model = build_model(cfg, 0)
    model.configure_stage("host")
    train_cfg = TrainConfig.for_profile("smoke", "host", show_progress=False, **overrides)
    trainer = Trainer(model, SparrowDataset(curated, "train", cfg), train_cfg, out, collate_fn=model.collator("host"))
    return model, trainer.train()


def test_resumed_sparrow_model_matches_an_uninterrupted_run_bit_for_bit(curated, tmp_path):
    # LoRA dropout and the frame sampling make this depend on the restored RNG and data position.
    settings = dict(max_steps=4, checkpoint_every=2, keep_checkpoints=2)
    straight, result = _host_run(curated, tmp_path / "straight", **settings)
    assert [s for s, _ in list_checkpoints(tmp_path / "straight" / "checkpoints")] == [2, 4]
    # The state a kill after the step-2 checkpoint leaves behind (the loss log may run ahead; it is truncated).
    (tmp_path / "killed" / "checkpoints").mkdir(parents=True)
    shutil.copytree(
        tmp_path / "straight" / "checkpoints" / "step-00000002", tmp_path / "killed" / "checkpoints" / "step-00000002"
    )
    shutil.copy(tmp_path / "straight" / "loss_log.csv", tmp_path / "killed" / "loss_log.csv")
    resumed, again = _host_run(curated, tmp_path / "killed", **settings)
    assert again.resumed_from == 2 and result.resumed_from is None
    a, b = straight.state_dict(), resumed.state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume"
    assert read_loss_log(result.loss_log) == read_loss_log(again.loss_log)


def test_resume_through_a_frozen_sam_stage_with_cached_features_is_bit_identical(curated, tmp_path):
    # Stage 1 keeps SAM2 frozen, so its image features come from the per-sample feature cache; a resumed run starts
    # with an empty cache and must still end with the same weights as the uninterrupted run that had cache hits.
    from sparrow.model import SparrowDataset

    cfg = model_config("videoglamm", "smoke", True, False, curated)
    settings = dict(max_steps=4, checkpoint_every=2, keep_checkpoints=2)

    def run(out):
        model = build_model(cfg, 0)
        model.configure_stage("stage1")
        dataset = SparrowDataset(curated, "train", cfg, sources=["ref-davis17"])  # two videos: features repeat
        train_cfg = TrainConfig.for_profile("smoke", "stage1", show_progress=False, **settings)
        return model, Trainer(model, dataset, train_cfg, out, collate_fn=model.collator("stage1")).train()

    straight, result = run(tmp_path / "straight")
    assert straight.pixel_decoder.feature_cache.hits > 0
    (tmp_path / "killed" / "checkpoints").mkdir(parents=True)
    shutil.copytree(
        tmp_path / "straight" / "checkpoints" / "step-00000002", tmp_path / "killed" / "checkpoints" / "step-00000002"
    )
    shutil.copy(tmp_path / "straight" / "loss_log.csv", tmp_path / "killed" / "loss_log.csv")
    resumed, again = run(tmp_path / "killed")
    assert again.resumed_from == 2
    a, b = straight.state_dict(), resumed.state_dict()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume"
    assert read_loss_log(result.loss_log) == read_loss_log(again.loss_log)


def test_variant_chain_caches_and_validates(curated, tmp_path):
    quick = {
        "host": {"max_steps": 2},
        "proposer": {"max_steps": 1},
        "stage1": {"max_steps": 2},
        "stage2": {"max_steps": 1},
    }
    run = train_variant(
        "videoglamm",
        "smoke",
        0,
        tsf=True,
        box=True,
        curated_root=curated,
        show_progress=False,
        train_overrides=quick,
        runs_root=tmp_path,
    )
    assert list(run.stages) == ["host", "proposer", "stage1", "stage2"] and run.total_steps == 6
    assert run.stages["host"].out_dir.parent.name == "videoglamm-seed0"  # shared with the baseline
    logs = run.loss_logs()
    assert {"det_cls", "det_l1", "det_giou"} <= set(logs["proposer"][0])
    assert all(math.isfinite(r["loss"]) for rows in logs.values() for r in rows)
    steps, values = run.loss_curve()
    assert steps == [1, 2, 3, 4, 5] and len(values) == 5  # host 1-2, stage1 3-4, stage2 5 (proposer left out)

    model = run.load_model()
    assert model.cfg.tsf and model.cfg.box and model.proposer is not None
    host_only = build_model(model_config("videoglamm", "smoke", False, False, curated), 0)
    # Stage 1 and 2 never train the embeddings, so they still hold the host stage's weights.
    from sparrow.model.checkpoint import read_state

    host_state = read_state(run.stages["host"].final_dir / "model.safetensors")
    emb = [k for k in host_state if "embed_tokens" in k][0]
    assert torch.equal(model.state_dict()[emb], host_state[emb])
    assert not torch.equal(host_only.state_dict()[emb], host_state[emb])

    # A second call is answered from the cache: same results, nothing retrained.
    stamp = (run.run_dir / "run.json").stat().st_mtime_ns
    again = train_variant(
        "videoglamm",
        "smoke",
        0,
        tsf=True,
        box=True,
        curated_root=curated,
        show_progress=False,
        train_overrides=quick,
        runs_root=tmp_path,
    )
    assert again.final_losses == run.final_losses and (run.run_dir / "run.json").stat().st_mtime_ns == stamp

    # Changing a later stage's settings retrains that stage only.
    with pytest.warns(UserWarning, match="stage2: trained on other data or settings"):
        changed = train_variant(
            "videoglamm",
            "smoke",
            0,
            tsf=True,
            box=True,
            curated_root=curated,
            show_progress=False,
            train_overrides={**quick, "stage2": {"max_steps": 2}},
            runs_root=tmp_path,
        )
    assert changed.stages["stage2"].steps == 2
    assert changed.stages["stage1"].final_losses == run.stages["stage1"].final_losses

    val = quick_validation(changed, model=None, limit=1, curated_root=curated)
    assert val.n_expressions == 1 and 0.0 <= val.jf <= 100.0 and val.jf == pytest.approx((val.j + val.f) / 2)


def test_cli_trains_one_stage_and_the_next_from_its_weights(curated, tmp_path, capsys):
    from sparrow.model import SparrowModel
    from sparrow.train.cli import main_train

    common = ["--profile", "smoke", "--data", str(curated), "--no-progress", "--max-steps", "2"]
    assert main_train(["--stage", "host", "--out", str(tmp_path / "host"), *common]) == 0
    assert '"resumed_from": null' in capsys.readouterr().out
    host = SparrowModel.from_pretrained(tmp_path / "host" / "final")
    assert host.proposer is None
    assert (
        main_train(
            [
                "--stage",
                "stage1",
                "--tsf",
                "--box",
                "--init",
                str(tmp_path / "host" / "final"),
                "--out",
                str(tmp_path / "s1"),
                *common,
            ]
        )
        == 0
    )
    s1 = SparrowModel.from_pretrained(tmp_path / "s1" / "final")
    assert s1.cfg.tsf and s1.cfg.box and s1.proposer is not None
    emb = [k for k in host.state_dict() if "embed_tokens" in k][0]
    assert torch.equal(host.state_dict()[emb], s1.state_dict()[emb])
    assert len(read_loss_log(tmp_path / "s1" / "loss_log.csv")) == 2
    with pytest.raises(ValueError, match="--init applies to a single stage"):
        main_train(["--stage", "all", "--init", str(tmp_path / "host" / "final"), *common])


def test_dataset_frame_cache_gives_the_same_items_within_its_bound(curated):
    import numpy as np

    from sparrow.model import SparrowDataset

    cfg = model_config("videoglamm", "smoke", True, True, curated)
    cached = SparrowDataset(curated, "train", cfg)
    plain = SparrowDataset(curated, "train", cfg, frame_cache_bytes=0)
    for index in (0, 1, 0, len(plain) - 1):
        a, b = cached[index], plain[index]
        assert np.array_equal(a.frames, b.frames) and np.array_equal(a.sam_frames, b.sam_frames)
        assert np.array_equal(a.target_masks, b.target_masks)
        a.frames[:] = 0  # items own their arrays: the cache is not changed through them
    assert np.array_equal(cached[0].frames, plain[0].frames)
    assert len(plain._frames) == 0 and 0 < cached._frame_bytes <= cached.frame_cache_bytes
    small = SparrowDataset(curated, "train", cfg, frame_cache_bytes=cached[0].frames[0].nbytes * 3)
    for index in range(4):
        small[index]
    assert small._frame_bytes <= small.frame_cache_bytes and len(small._frames) <= 3


def test_control_trains_stage1_and_stage2_without_tsf_and_box_on_the_shared_host(curated, tmp_path):
    from sparrow.model.checkpoint import read_state
    from sparrow.train.variants import RunResult, variant_stages

    quick = {"host": {"max_steps": 2}, "stage1": {"max_steps": 2}, "stage2": {"max_steps": 1}}
    common = dict(curated_root=curated, show_progress=False, train_overrides=quick, runs_root=tmp_path)
    base = train_variant("videoglamm", "smoke", 0, tsf=False, box=False, **common)
    host_result = base.stages["host"].out_dir / "train_result.json"
    stamp = host_result.stat().st_mtime_ns
    control = train_variant("videoglamm", "smoke", 0, tsf=False, box=False, control=True, **common)
    assert control.name == "control" and control.run_dir == tmp_path / "videoglamm-seed0" / "control"
    assert list(control.stages) == ["host", "stage1", "stage2"] == list(variant_stages(False, False, control=True))
    assert control.stages["host"].out_dir == base.stages["host"].out_dir  # the host stage is shared
    assert host_result.stat().st_mtime_ns == stamp  # and not retrained
    assert control.total_steps == 5 and base.total_steps == 2

    model = control.load_model()
    assert not model.cfg.tsf and not model.cfg.box and model.proposer is None
    host_state = read_state(base.final_dir / "model.safetensors")
    trained = model.state_dict()
    assert set(trained) == set(host_state)
    # Stages 1 and 2 moved the LLM (folded LoRA) and never the embeddings.
    changed = [k for k in host_state if not torch.equal(trained[k], host_state[k])]
    assert any(k.startswith("llm.") for k in changed)
    assert not any("embed_tokens" in k for k in changed)

    again = RunResult.load(control.run_dir)
    assert again.name == "control" and again.control and again.final_dir == control.final_dir
    run_json = control.run_dir / "run.json"
    stamp = run_json.stat().st_mtime_ns
    cached = train_variant("videoglamm", "smoke", 0, tsf=False, box=False, control=True, **common)
    assert cached.final_losses == control.final_losses and run_json.stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="control variant trains without TSF and"):
        train_variant("videoglamm", "smoke", 0, tsf=True, box=False, control=True, **common)


def test_a_variant_of_another_seed_starts_from_the_named_host_checkpoint(curated, tmp_path):
    from sparrow.model.checkpoint import read_state
    from sparrow.train.variants import RunResult

    quick = {"host": {"max_steps": 2}, "stage1": {"max_steps": 2}, "stage2": {"max_steps": 1}}
    common = dict(curated_root=curated, show_progress=False, train_overrides=quick, runs_root=tmp_path)
    base = train_variant("videoglamm", "smoke", 0, tsf=False, box=False, **common)
    stamp = (base.stages["host"].out_dir / "train_result.json").stat().st_mtime_ns
    control = train_variant("videoglamm", "smoke", 1, tsf=False, box=False, control=True, host_seed=0, **common)
    assert control.run_dir == tmp_path / "videoglamm-seed1" / "control" and control.seed == 1
    assert control.stages["host"].out_dir == base.stages["host"].out_dir  # seed 0's host checkpoint, not retrained
    assert (base.stages["host"].out_dir / "train_result.json").stat().st_mtime_ns == stamp
    assert not (tmp_path / "videoglamm-seed1" / "host").exists()
    again = RunResult.load(control.run_dir)  # the record points into the other seed's folder
    assert again.stages["host"].out_dir.resolve() == base.stages["host"].out_dir.resolve()
    # the later stages train under seed 1: other LoRA draws than seed 0's control from the same host
    own = train_variant("videoglamm", "smoke", 0, tsf=False, box=False, control=True, **common)
    a, b = read_state(own.final_dir / "model.safetensors"), read_state(control.final_dir / "model.safetensors")
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_the_host_stage_mixes_its_own_grounded_caption_share(curated, tmp_path, monkeypatch):
    import dataclasses

    from sparrow import profiles
    from sparrow.train import variants

    smoke = profiles.get_profile("smoke")
    own = dataclasses.replace(smoke, train=dataclasses.replace(smoke.train, host_gcg_share=0.5))
    monkeypatch.setattr(variants, "get_profile", lambda name: own if name == "smoke" else profiles.get_profile(name))
    shares = {}
    train_stage = variants._train_stage

    def spy(model, stage, fold_seed, dataset, *rest):
        kinds = [kind for kind, _ in dataset.items]
        shares[stage] = kinds.count("gcg") / len(kinds)
        return train_stage(model, stage, fold_seed, dataset, *rest)

    monkeypatch.setattr(variants, "_train_stage", spy)
    quick = {"host": {"max_steps": 1}, "stage1": {"max_steps": 1}, "stage2": {"max_steps": 1}}
    common = dict(curated_root=curated, show_progress=False, train_overrides=quick, runs_root=tmp_path)
    control = train_variant("videoglamm", "smoke", 0, tsf=False, box=False, control=True, **common)
    assert shares["host"] == pytest.approx(0.5, abs=0.02)
    assert shares["stage1"] == shares["stage2"] == pytest.approx(smoke.train.gcg_share, abs=0.02)
    assert "+host-gcg-0.5" in control.data_fingerprint
    host_result = control.stages["host"].out_dir / "train_result.json"
    stamp = host_result.stat().st_mtime_ns
    base = train_variant("videoglamm", "smoke", 0, tsf=False, box=False, **common)
    assert base.stages["host"].out_dir == control.stages["host"].out_dir  # the baseline starts from the same host
    assert host_result.stat().st_mtime_ns == stamp  # matched by its fingerprint, not retrained
