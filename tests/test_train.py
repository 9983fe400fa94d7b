"""The staged trainer on a small stand-in model: schedule, sampling, checkpoints, resume after SIGKILL, NaN stop, DDP.

The stand-in model, its data and the training script that the subprocess tests run are in
``tests/fixtures/toy_trainer.py``.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import sparrow  # noqa: F401  (torchvision shim first)
from fixtures import toy_trainer
from fixtures.toy_trainer import ToyData, ToyModel, build_toy, collate, toy_config
from sparrow.storage import DataError, read_json
from sparrow.train import NonFiniteLossError, TrainConfig, Trainer, TrainResult
from sparrow.train.checkpoint import list_checkpoints, load_tensors, save_tensors
from sparrow.train.loss_log import LossLog, read_loss_log
from sparrow.train.sampling import PassSampler, SeededSamples, derive_seed
from sparrow.train.schedule import lr_factor

REPO = Path(__file__).resolve().parents[1]
SCRIPT = Path(toy_trainer.__file__).resolve()


def _run_script(out: Path, *args: str, launcher: list[str] | None = None, wait: bool = True, timeout: float = 120):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = (launcher or [sys.executable]) + [str(SCRIPT), "--out", str(out), *args]
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return proc


# -- schedule, config, sampling ----------------------------------------------------------------------------------


def test_warmup_decay_matches_deepspeed_linear_schedule():
    # DeepSpeed WarmupDecayLR (linear, min 0): step i gets i/warmup, then (total - i) / (total - warmup).
    assert lr_factor(0, 100, 15000) == 0.0
    assert lr_factor(50, 100, 15000) == 0.5
    assert lr_factor(100, 100, 15000) == 1.0
    assert lr_factor(7550, 100, 15000) == pytest.approx(0.5)
    assert lr_factor(15000, 100, 15000) == 0.0
    assert lr_factor(20000, 100, 15000) == 0.0
    assert lr_factor(100, 100, 1100, "cosine") == 1.0
    assert lr_factor(600, 100, 1100, "cosine") == pytest.approx(0.5)
    assert lr_factor(1100, 100, 1100, "cosine") == pytest.approx(0.0)


def test_train_config_paper_values_and_validation():
    s1 = TrainConfig.for_profile("paper", "stage1")
    assert (s1.lr, s1.betas, s1.weight_decay, s1.warmup_steps, s1.grad_clip) == (3e-4, (0.9, 0.95), 0.0, 100, 1.0)
    assert (s1.max_steps, s1.batch_size, s1.grad_accum, s1.schedule) == (15000, 1, 1, "linear")
    assert TrainConfig.for_profile("paper", "stage2").max_steps == 4000
    prop = TrainConfig.for_profile("paper", "proposer")
    assert (prop.lr, prop.weight_decay, prop.schedule, prop.batch_size) == (2e-4, 1e-4, "cosine", 64)
    assert s1.resolved_precision(cuda_available=True) == "bf16"
    assert s1.resolved_precision(cuda_available=False) == "no"
    for stage in ("proposer", "stage1", "stage2"):
        assert TrainConfig.for_profile("smoke", stage).max_steps < TrainConfig.for_profile("mini", stage).max_steps
    with pytest.raises(ValueError, match="unknown profile"):
        TrainConfig.for_profile("huge", "stage1")
    with pytest.raises(ValueError, match="unknown training stage"):
        TrainConfig.for_profile("mini", "stage3")
    with pytest.raises(ValueError, match="warmup_steps"):
        TrainConfig.for_profile("smoke", "stage1", warmup_steps=99)
    assert TrainConfig.from_json(s1.to_json()) == s1
    diffs = s1.trajectory_differences(s1.replace(lr=1e-3, checkpoint_every=7))
    assert len(diffs) == 1 and diffs[0].startswith("lr:")


def test_sample_order_and_noise_depend_only_on_seed_and_pass():
    sampler = PassSampler(10, seed=3)
    first = list(sampler)
    assert sorted(i for i, _ in first) == list(range(10))
    assert list(PassSampler(10, seed=3)) == first
    sampler.set_epoch(1)
    assert [i for i, _ in sampler] != [i for i, _ in first]
    data = SeededSamples(ToyData())
    key = first[4]
    torch.manual_seed(0)
    a = data[key]["x"]
    torch.randn(100)  # whatever ran before must not matter
    b = data[key]["x"]
    assert torch.equal(a, b)
    state = torch.random.get_rng_state()
    data[key]
    assert torch.equal(state, torch.random.get_rng_state()), "building a sample must not disturb the global RNG"
    assert derive_seed(1, 2) != derive_seed(2, 1)


def test_loss_log_truncates_and_drops_a_half_written_line(tmp_path):
    log = LossLog(tmp_path / "loss_log.csv")
    for step in range(1, 5):
        log.append(step, 0.1 * step, 1.0 / step, 0.5, {"ce": 0.2, "bce": 0.3})
    with open(log.path, "a") as handle:
        handle.write("5,0.5,0.2")  # a kill in the middle of a row
    rows = read_loss_log(log.path)
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    log.truncate_after(2)
    assert [r["step"] for r in read_loss_log(log.path)] == [1, 2]
    log.append(3, 0.3, 0.33, 0.5, {"ce": 0.1, "bce": 0.2, "prop": 0.7})  # a new term widens the header
    rows = read_loss_log(log.path)
    assert list(rows[0]) == ["step", "lr", "loss", "grad_norm", "bce", "ce", "prop"]
    assert math.isnan(rows[0]["prop"]) and rows[2]["prop"] == 0.7


def test_checkpoint_tensor_files_round_trip_and_reject_garbage(tmp_path):
    state = {"a": torch.arange(5), "nested": {"b": [torch.ones(2)], "step": 3}}
    save_tensors(state, tmp_path / "opt.pt")
    back = load_tensors(tmp_path / "opt.pt")
    assert torch.equal(back["a"], state["a"]) and back["nested"]["step"] == 3
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="bad.pt: unreadable"):
        load_tensors(tmp_path / "bad.pt")
    with pytest.raises(DataError, match="missing"):
        load_tensors(tmp_path / "absent.pt")


# -- the trainer in this process ---------------------------------------------------------------------------------


def test_trainer_trains_logs_and_keeps_only_the_last_checkpoint(tmp_path):
    model = build_toy(0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = toy_config(max_steps=12, checkpoint_every=4, grad_accum=2)
    result = Trainer(model, ToyData(), cfg, tmp_path / "run", collate_fn=collate).train()
    rows = read_loss_log(result.loss_log)
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert set(rows[0]) == {"step", "lr", "loss", "grad_norm", "ce", "bce", "dice"}
    assert rows[0]["lr"] == 0.0 and rows[1]["lr"] == pytest.approx(5e-2)  # warmup 1: lr 0 on the first step
    assert all(r["grad_norm"] > 0 for r in rows)
    assert sum(r["loss"] for r in rows[-3:]) < sum(r["loss"] for r in rows[:3])
    # weighted total = 1.0 ce + 2.0 bce + 0.5 dice, logged per term
    assert rows[-1]["loss"] == pytest.approx(rows[-1]["ce"] + 2 * rows[-1]["bce"] + 0.5 * rows[-1]["dice"], rel=1e-5)
    assert [step for step, _ in list_checkpoints(tmp_path / "run" / "checkpoints")] == [12]
    after = model.state_dict()
    assert not torch.equal(before["encoder.0.weight"], after["encoder.0.weight"])
    assert torch.equal(before["proposer.weight"], after["proposer.weight"]), "stage1 must not train the proposer"
    reloaded = ToyModel.from_pretrained(result.final_dir)
    assert all(torch.equal(reloaded.state_dict()[k], v) for k, v in after.items())
    again = Trainer(build_toy(0), ToyData(), cfg, tmp_path / "run", collate_fn=collate).train()
    assert again.final_losses == result.final_losses and TrainResult.load(tmp_path / "run").steps == 12
    with pytest.raises(ValueError, match="different settings"):
        Trainer(build_toy(0), ToyData(), cfg.replace(lr=1e-3), tmp_path / "run", collate_fn=collate).train()


def test_nan_loss_stops_with_step_and_terms_and_keeps_last_good_checkpoint(tmp_path):
    # Two forward passes per step (grad_accum 2): the 9th call is the first of step 5.
    model = build_toy(0, nan_after_calls=8)
    cfg = toy_config(max_steps=10, checkpoint_every=2, grad_accum=2)
    with pytest.raises(NonFiniteLossError) as info:
        Trainer(model, ToyData(), cfg, tmp_path / "run", collate_fn=collate).train()
    err = info.value
    assert err.step == 5 and set(err.bad) == {"loss", "bce"}
    assert "step 5" in str(err) and "bce=nan" in str(err) and "step-00000004" in str(err)
    assert [s for s, _ in list_checkpoints(tmp_path / "run" / "checkpoints")] == [4]
    assert [r["step"] for r in read_loss_log(tmp_path / "run" / "loss_log.csv")] == [1, 2, 3, 4]
    assert not (tmp_path / "run" / "final").exists()
    saved = load_file(str(tmp_path / "run" / "checkpoints" / "step-00000004" / "model" / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in saved.values())


def test_resume_refuses_a_changed_config_and_a_corrupt_checkpoint(tmp_path):
    Trainer(
        build_toy(0), ToyData(), toy_config(max_steps=4, checkpoint_every=2), tmp_path / "run", collate_fn=collate
    ).train()
    (tmp_path / "run" / "train_result.json").unlink()  # pretend it was killed after its last checkpoint
    with pytest.raises(ValueError, match=r"cannot resume.*max_steps: 4 \(checkpoint\) vs 8"):
        Trainer(
            build_toy(0), ToyData(), toy_config(max_steps=8, checkpoint_every=2), tmp_path / "run", collate_fn=collate
        ).train()
    (tmp_path / "run" / "checkpoints" / "step-00000004" / "optimizer.pt").write_bytes(b"")
    with pytest.raises(DataError, match="optimizer.pt: unreadable"):
        Trainer(
            build_toy(0), ToyData(), toy_config(max_steps=4, checkpoint_every=2), tmp_path / "run", collate_fn=collate
        ).train()
    fresh = Trainer(
        build_toy(0), ToyData(), toy_config(max_steps=4, checkpoint_every=2), tmp_path / "run", collate_fn=collate
    ).train(resume=False)
    assert fresh.resumed_from is None and fresh.steps == 4


def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one_and_says_so(tmp_path):
    cfg = toy_config(max_steps=6, checkpoint_every=2, keep_checkpoints=2)
    Trainer(build_toy(0), ToyData(), cfg, tmp_path / "run", collate_fn=collate).train()
    straight = _weights(tmp_path / "run" / "final" / "model.safetensors")
    root = tmp_path / "run" / "checkpoints"
    assert [s for s, _ in list_checkpoints(root)] == [4, 6]
    (tmp_path / "run" / "train_result.json").unlink()  # as if killed right after its last checkpoint
    weights = root / "step-00000006" / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])  # truncated, still a readable size for a careless reader
    with pytest.warns(UserWarning, match=r"resumed from step-00000004.*step-00000006/model/model.safetensors"):
        result = Trainer(build_toy(0), ToyData(), cfg, tmp_path / "run", collate_fn=collate).train()
    assert result.resumed_from == 4
    resumed = _weights(tmp_path / "run" / "final" / "model.safetensors")
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    step6 = root / "step-00000006" / "optimizer.pt"
    step6.write_bytes(bytes(b ^ 0xFF if i == 100 else b for i, b in enumerate(step6.read_bytes())))  # one flipped byte
    (tmp_path / "run" / "train_result.json").unlink()
    with pytest.warns(UserWarning, match=r"resumed from step-00000004.*optimizer.pt.*sha256 differs"):
        assert Trainer(build_toy(0), ToyData(), cfg, tmp_path / "run", collate_fn=collate).train().resumed_from == 4


def test_the_previous_checkpoint_is_kept_until_the_new_one_is_verified(tmp_path, monkeypatch):
    import sparrow.train.checkpoint as ckpt

    real = ckpt.verify

    def fails_at_step_4(folder):
        if folder.name == "step-00000004":
            raise DataError(f"{folder}/model/model.safetensors: unreadable checkpoint file (simulated)")
        real(folder)

    monkeypatch.setattr(ckpt, "verify", fails_at_step_4, raising=False)
    cfg = toy_config(max_steps=6, checkpoint_every=2, keep_checkpoints=1)
    with pytest.raises(DataError, match="new checkpoint not verified; kept: step-00000002"):
        Trainer(build_toy(0), ToyData(), cfg, tmp_path / "run", collate_fn=collate).train()
    assert [s for s, _ in list_checkpoints(tmp_path / "run" / "checkpoints")] == [2, 4]


def test_too_small_dataset_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="3 training samples are fewer than batch_size 4"):
        Trainer(build_toy(0), ToyData(n=3), toy_config(batch_size=4), tmp_path / "run", collate_fn=collate).train()


# -- subprocesses: SIGKILL + resume, two-rank DDP ----------------------------------------------------------------


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def test_resume_after_sigkill_gives_bit_identical_weights(tmp_path):
    # 10 samples, batch 2, accumulation 2: a data pass is 2.5 steps, so the kill lands mid-pass.
    common = ("--steps", "14", "--accum", "2", "--every", "3")
    _run_script(tmp_path / "straight", *common)
    proc = _run_script(tmp_path / "killed", *common, "--sleep", "0.1", wait=False)
    root = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 90
    try:
        while time.time() < deadline and not any(step >= 6 for step, _ in list_checkpoints(root)):
            assert proc.poll() is None, f"training ended before it could be killed:\n{proc.communicate()[1][-3000:]}"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    steps = [step for step, _ in list_checkpoints(root)]
    assert steps and max(steps) < 14 and not (tmp_path / "killed" / "final").exists(), steps
    resumed = _run_script(tmp_path / "killed", *common)
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["resumed_from"] == max(steps)
    a = _weights(tmp_path / "straight" / "final" / "model.safetensors")
    b = _weights(tmp_path / "killed" / "final" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs after resume"
    log_a = read_loss_log(tmp_path / "straight" / "loss_log.csv")
    log_b = read_loss_log(tmp_path / "killed" / "loss_log.csv")
    assert log_a == log_b and len(log_a) == 14


def test_two_process_ddp_keeps_ranks_in_sync_resumes_and_matches_one_process_with_the_global_batch(tmp_path):
    # No dropout, so that two ranks with batch 2 and one process with batch 4 take the same optimisation path.
    # After the run, both ranks resume a copy from its step-3 checkpoint (mid data pass), as after a kill.
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    proc = _run_script(
        tmp_path / "ddp",
        "--steps",
        "6",
        "--every",
        "3",
        "--dropout",
        "0",
        "--keep",
        "2",
        "--batch",
        "2",
        "--then-resume-from",
        "3",
        launcher=torchrun,
    )
    first, again = (json.loads(line) for line in proc.stdout.strip().splitlines()[-2:])
    assert first == {"resumed_from": None, "world_size": 2} and again == {"resumed_from": 3, "world_size": 2}
    rank0 = _weights(tmp_path / "ddp" / "weights_rank0.safetensors")
    rank1 = _weights(tmp_path / "ddp" / "weights_rank1.safetensors")
    start = build_toy(0, dropout=0.0).state_dict()
    assert not torch.equal(rank0["head.weight"], start["head.weight"])
    for key in rank0:
        assert torch.isfinite(rank0[key]).all()
        assert torch.equal(rank0[key], rank1[key]), f"{key} differs between ranks"
    state = read_json(tmp_path / "ddp" / "checkpoints" / "step-00000006" / "trainer_state.json")
    assert state["world_size"] == 2 and state["batches_per_pass"] == 2  # 10 samples / (batch 2 x 2 ranks)
    for rank in (0, 1):
        resumed = _weights(tmp_path / "ddp" / "resumed" / f"weights_rank{rank}.safetensors")
        assert all(torch.equal(resumed[k], rank0[k]) for k in rank0), f"rank {rank} differs after resume"

    single_model = build_toy(0, dropout=0.0)
    Trainer(
        single_model,
        ToyData(),
        toy_config(max_steps=6, checkpoint_every=3, batch_size=4),
        tmp_path / "single",
        collate_fn=collate,
    ).train()
    for key, value in single_model.state_dict().items():
        torch.testing.assert_close(rank0[key], value, rtol=1e-5, atol=1e-6)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (read from /proc before any of them is killed)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


@pytest.mark.slow  # three two-process launches: about a minute on 2 CPU cores
def test_two_process_run_killed_mid_step_resumes_identically(tmp_path):
    # Both ranks and their launcher are killed at once while a step runs, as a crash or an out-of-memory kill of
    # the job would; the relaunched job resumes from the last checkpoint.
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    common = ("--steps", "8", "--every", "2", "--dropout", "0.1", "--batch", "2")
    _run_script(tmp_path / "straight", *common, launcher=torchrun)
    proc = _run_script(tmp_path / "killed", *common, "--sleep", "0.2", launcher=torchrun, wait=False)
    root = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 120
    try:
        while time.time() < deadline and not any(step >= 2 for step, _ in list_checkpoints(root)):
            assert proc.poll() is None, f"training ended before it could be killed:\n{proc.communicate()[1][-3000:]}"
            time.sleep(0.02)
        time.sleep(0.3)  # into the forward pass of a later step (0.2 s each)
    finally:
        for pid in [proc.pid, *_descendants(proc.pid)]:  # the launcher starts its ranks in their own sessions
            os.kill(pid, signal.SIGKILL)
        proc.communicate()
    steps = [step for step, _ in list_checkpoints(root)]
    assert steps and max(steps) < 8 and not (tmp_path / "killed" / "final").exists(), steps
    resumed = _run_script(tmp_path / "killed", *common, launcher=torchrun)
    assert json.loads(resumed.stdout.strip().splitlines()[-1]) == {"resumed_from": max(steps), "world_size": 2}
    for rank in (0, 1):
        a = _weights(tmp_path / "straight" / f"weights_rank{rank}.safetensors")
        b = _weights(tmp_path / "killed" / f"weights_rank{rank}.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a), f"rank {rank} differs after the resumed run"
    assert read_loss_log(tmp_path / "straight" / "loss_log.csv") == read_loss_log(tmp_path / "killed" / "loss_log.csv")
