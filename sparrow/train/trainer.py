"""The training loop of every stage, on :class:`accelerate.Accelerator`.

One :class:`Trainer` runs one stage (proposer pretraining, stage 1 or stage 2) of one model into one run folder::

    <out>/loss_log.csv            step, lr, loss, grad_norm and every loss term (rank-averaged)
    <out>/checkpoints/step-N/     the last good checkpoint(s) (see :mod:`sparrow.train.checkpoint`)
    <out>/final/                  the trained weights (``save_pretrained``)
    <out>/train_result.json       written last: the run is complete

accelerate supplies the process group (DDP over gloo on CPU, NCCL on GPU; DeepSpeed or FSDP from a launch config),
mixed precision, gradient accumulation and the per-rank shard of every batch. Each optimizer step consumes exactly
``grad_accum`` micro-batches per process, whatever the position in the data pass. Every random draw depends only on (seed, step) (see :mod:`sparrow.train.sampling`), which makes
a run resumed from a checkpoint bit-identical to one that was never interrupted.

A non-finite loss or loss term, on any process, stops every process before the backward pass with
:class:`NonFiniteLossError`; nothing is written after the last good checkpoint.

AdamW runs torch's fused kernel where it exists (CPU and CUDA): the same update in one pass over all tensors.
"""

from __future__ import annotations

import math
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset

from sparrow.distributed import process_state
from sparrow.storage import DataError, atomic_write_json, read_json
from sparrow.train import checkpoint as ckpt
from sparrow.train.config import TrainConfig
from sparrow.train.loss_log import LossLog
from sparrow.train.sampling import PassSampler, SeededSamples, seed_step
from sparrow.train.schedule import build_scheduler

RESULT_FILE = "train_result.json"


class NonFiniteLossError(FloatingPointError):
    """A loss (or the gradient norm) became NaN or infinite; training stopped before updating the weights."""

    def __init__(self, step: int, bad: dict[str, float], checkpoint: Path | None, stage: str):
        self.step, self.bad, self.checkpoint, self.stage = step, bad, checkpoint, stage
        terms = ", ".join(f"{name}={value}" for name, value in bad.items())
        kept = (
            f"last good checkpoint kept: {checkpoint}"
            if checkpoint is not None
            else "no checkpoint had been written yet"
        )
        super().__init__(
            f"{stage}: non-finite value at step {step} ({terms}); training stopped before that step's update; {kept}"
        )


@dataclass
class TrainResult:
    """What one finished stage left behind."""

    out_dir: Path
    stage: str
    steps: int
    final_dir: Path
    loss_log: Path
    final_losses: dict[str, float]
    train_config: dict[str, Any]
    world_size: int
    resumed_from: int | None = None
    wall_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("out_dir", "final_dir", "loss_log"):
            out[key] = str(Path(out[key]).relative_to(self.out_dir)) if key != "out_dir" else "."
        return out

    @classmethod
    def load(cls, out_dir: str | Path) -> TrainResult:
        out_dir = Path(out_dir)
        row = read_json(out_dir / RESULT_FILE)
        try:
            return cls(
                out_dir=out_dir,
                stage=row["stage"],
                steps=int(row["steps"]),
                final_dir=out_dir / row["final_dir"],
                loss_log=out_dir / row["loss_log"],
                final_losses=dict(row["final_losses"]),
                train_config=dict(row["train_config"]),
                world_size=int(row["world_size"]),
                resumed_from=row.get("resumed_from"),
                wall_s=float(row.get("wall_s", 0.0)),
                extra=dict(row.get("extra", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{out_dir / RESULT_FILE}: malformed training result ({exc})") from exc


def _to_float(value: Any) -> float:
    return float(value.detach().float().mean().item()) if torch.is_tensor(value) else float(value)


def _fused_adamw(params: list[torch.nn.Parameter]) -> bool:
    """torch's fused AdamW kernel (the same update in one pass over all tensors: 2x faster than the per-tensor loop
    on the mini models, differences at float rounding) where it exists: floating parameters on CPU or CUDA."""
    return all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)


def _build_accelerator(config: TrainConfig):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, GradientAccumulationPlugin

    # Stage-specific freezing leaves some trainable parameters without a gradient on some batches (for example
    # the box head on a sample without a box); DDP must be told to expect that.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    cuda = torch.cuda.is_available()
    process_state()
    # The step -> micro-batch mapping must not depend on where a data pass ends (sync_with_dataloader=False), and
    # the scheduler is stepped once per optimizer step by the loop itself.
    accumulation = GradientAccumulationPlugin(
        num_steps=config.grad_accum, adjust_scheduler=False, sync_with_dataloader=False
    )
    return Accelerator(
        cpu=not cuda,
        mixed_precision=config.resolved_precision(cuda),
        kwargs_handlers=[ddp],
        gradient_accumulation_plugin=accumulation,
        step_scheduler_with_optimizer=False,
    )


class Trainer:
    """Runs one training stage of ``model`` on ``dataset`` into ``out_dir``, resuming from its last checkpoint."""

    def __init__(
        self,
        model: torch.nn.Module,
        dataset: Dataset,
        config: TrainConfig,
        out_dir: str | Path,
        *,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        accelerator: Any = None,
        num_workers: int = 0,
        extra: dict[str, Any] | None = None,
    ):
        self.model = model
        self.dataset = dataset
        self.config = config
        self.out_dir = Path(out_dir)
        self.collate_fn = collate_fn
        self.accelerator = accelerator
        self.num_workers = num_workers
        self.extra = dict(extra or {})

    @property
    def checkpoint_root(self) -> Path:
        return self.out_dir / "checkpoints"

    # -- entry point -----------------------------------------------------------------------------------------
    def train(self, resume: bool = True) -> TrainResult:
        """Train to ``config.max_steps``. With ``resume`` a finished run is returned as is and an interrupted one
        continues from its last checkpoint; without it the run folder is cleared first."""
        started = time.perf_counter()
        cfg = self.config
        acc = self.accelerator or _build_accelerator(cfg)
        if acc.gradient_accumulation_steps != cfg.grad_accum:
            raise ValueError(
                f"{cfg.stage}: the accelerator accumulates {acc.gradient_accumulation_steps} micro-batches "
                f"but the config asks for grad_accum={cfg.grad_accum}"
            )
        self.accelerator = acc
        main = acc.is_main_process
        if resume and (self.out_dir / RESULT_FILE).is_file():
            done = TrainResult.load(self.out_dir)
            diffs = TrainConfig.from_json(done.train_config).trajectory_differences(cfg)
            if diffs:
                raise ValueError(
                    f"{self.out_dir}: holds a finished run with different settings ({'; '.join(diffs)}); "
                    "use another output folder or resume=False"
                )
            # The caller's model ends in the same state as after a fresh run: configured and holding the weights.
            if hasattr(self.model, "configure_stage"):
                self.model.configure_stage(cfg.stage)
            load_weights(self.model, done.final_dir)
            return done
        if main:
            if not resume:
                for name in ("checkpoints", "final", "loss_log.csv", RESULT_FILE):
                    path = self.out_dir / name
                    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            ckpt.remove_partial(self.checkpoint_root)
            self.out_dir.mkdir(parents=True, exist_ok=True)
        acc.wait_for_everyone()

        model = self.model
        if hasattr(model, "configure_stage"):
            model.configure_stage(cfg.stage)
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError(f"{cfg.stage}: the model has no trainable parameters after configure_stage")
        optimizer = torch.optim.AdamW(
            params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay, fused=_fused_adamw(params)
        )
        scheduler = build_scheduler(optimizer, cfg.warmup_steps, cfg.max_steps, cfg.schedule)
        sampler = PassSampler(len(self.dataset), cfg.seed)
        # Starting a DataLoader iterator draws a worker seed; a private generator keeps that draw off the global
        # RNG, whose stream (dropout) must depend on the step only. Samples are seeded by SeededSamples anyway.
        loader = DataLoader(
            SeededSamples(self.dataset),
            batch_sampler=BatchSampler(sampler, cfg.batch_size, True),
            collate_fn=self.collate_fn,
            num_workers=self.num_workers,
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        model, optimizer, loader = acc.prepare(model, optimizer, loader)
        batches_per_pass = len(loader)
        if batches_per_pass == 0:
            raise ValueError(
                f"{cfg.stage}: {len(self.dataset)} training samples are fewer than batch_size "
                f"{cfg.batch_size} x {acc.num_processes} process(es)"
            )

        start_step, resumed_from = 0, None
        latest = self._resume_point() if resume else None
        if latest is not None:
            start_step = self._restore(latest, model, optimizer, scheduler, batches_per_pass)
            resumed_from = start_step
        log = LossLog(self.out_dir / "loss_log.csv") if main else None
        if log is not None:
            log.truncate_after(start_step)

        last_losses = self._run(model, optimizer, scheduler, loader, sampler, batches_per_pass, start_step, log)

        final, tmp = self.out_dir / "final", self.out_dir / ".tmp-final"
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        self._export(model, tmp)
        if main:
            shutil.rmtree(final, ignore_errors=True)
            tmp.replace(final)
        acc.unwrap_model(model, keep_fp32_wrapper=False)  # drops accelerate's autocast wrapper from the caller's model
        if not last_losses:
            state = ckpt.read_state(ckpt.latest_checkpoint(self.checkpoint_root))
            last_losses = state.get("losses", {})
        result = TrainResult(
            out_dir=self.out_dir,
            stage=cfg.stage,
            steps=cfg.max_steps,
            final_dir=self.out_dir / "final",
            loss_log=self.out_dir / "loss_log.csv",
            final_losses=last_losses,
            train_config=cfg.to_json(),
            world_size=acc.num_processes,
            resumed_from=resumed_from,
            wall_s=time.perf_counter() - started,
            extra=self.extra,
        )
        if main:
            atomic_write_json(self.out_dir / RESULT_FILE, result.to_json())
        acc.wait_for_everyone()
        acc.free_memory()
        return result

    # -- the loop --------------------------------------------------------------------------------------------
    def _run(
        self,
        model,
        optimizer,
        scheduler,
        loader,
        sampler: PassSampler,
        batches_per_pass: int,
        start_step: int,
        log: LossLog | None,
    ) -> dict[str, float]:
        from tqdm.auto import tqdm

        acc, cfg = self.accelerator, self.config
        data_pass, offset = divmod(start_step * cfg.grad_accum, batches_per_pass)

        def start_pass(source):
            # accelerate's loader re-applies its own pass counter to the sampler when iteration starts, so the
            # pass number goes to the loader too, not only to the sampler.
            source.set_epoch(data_pass)
            sampler.set_epoch(data_pass)
            return iter(source)

        iterator = start_pass(acc.skip_first_batches(loader, offset) if offset else loader)

        def next_batch():
            nonlocal iterator, data_pass
            try:
                return next(iterator)
            except StopIteration:
                data_pass += 1
                iterator = start_pass(loader)
                return next(iterator)

        progress = tqdm(
            total=cfg.max_steps,
            initial=start_step,
            desc=cfg.stage,
            unit="step",
            disable=not (acc.is_main_process and cfg.show_progress),
            dynamic_ncols=True,
        )
        last: dict[str, float] = {}
        try:
            for step in range(start_step, cfg.max_steps):
                seed_step(cfg.seed, step, acc.process_index)
                model.train()
                lr = float(optimizer.param_groups[0]["lr"])
                sums: dict[str, float] = {}
                for _ in range(cfg.grad_accum):
                    batch = next_batch()
                    # accumulate() skips the gradient all-reduce (DDP) or the engine step (DeepSpeed) on all but the
                    # last micro-batch, and backward() divides the loss by the accumulation count.
                    with acc.accumulate(model):
                        out = model(batch)
                        values = self._check_finite(step + 1, out)
                        acc.backward(out.loss)
                    for name, value in values.items():
                        sums[name] = sums.get(name, 0.0) + value / cfg.grad_accum
                if not acc.sync_gradients:
                    raise RuntimeError(
                        f"{cfg.stage}: accelerate's accumulation counter is out of step with "
                        f"grad_accum={cfg.grad_accum} (an accelerator reused mid-accumulation?)"
                    )
                # DeepSpeed clips inside its engine and returns no norm; that step logs the norm as empty.
                norm = acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                grad_norm = _to_float(norm) if norm is not None else math.nan
                if norm is not None and not math.isfinite(grad_norm):
                    raise NonFiniteLossError(
                        step + 1, {"grad_norm": grad_norm}, ckpt.latest_checkpoint(self.checkpoint_root), cfg.stage
                    )
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                last = self._mean_over_processes(sums)
                if log is not None:
                    terms = {k: v for k, v in last.items() if k != "loss"}
                    log.append(step + 1, lr, last["loss"], grad_norm, terms)
                progress.update(1)
                progress.set_postfix(loss=f"{last['loss']:.4f}", lr=f"{lr:.2e}", refresh=False)
                if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.max_steps:
                    self._save_checkpoint(step + 1, model, optimizer, scheduler, batches_per_pass, last)
        finally:
            progress.close()
        return last

    def _check_finite(self, step: int, out: Any) -> dict[str, float]:
        """Python floats of the total loss and each term; raises on every process if any process saw a non-finite one."""
        acc = self.accelerator
        values = {"loss": _to_float(out.loss)}
        for name, value in sorted(dict(out.losses).items()):
            values[name] = _to_float(value)
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        flag = torch.tensor([1.0 if bad else 0.0], device=acc.device)
        if acc.num_processes > 1:
            flag = acc.reduce(flag, reduction="sum")
        if flag.item() > 0:
            if acc.num_processes > 1:
                from accelerate.utils import gather_object

                merged: dict[str, float] = {}
                for rank, rank_bad in enumerate(gather_object([bad])):
                    merged.update({f"{k} (rank {rank})": v for k, v in rank_bad.items()})
                bad = merged
            raise NonFiniteLossError(step, bad, ckpt.latest_checkpoint(self.checkpoint_root), self.config.stage)
        return values

    def _mean_over_processes(self, values: dict[str, float]) -> dict[str, float]:
        acc = self.accelerator
        if acc.num_processes == 1:
            return dict(values)
        from accelerate.utils import gather_object

        per_rank = gather_object([values])
        keys = sorted({k for row in per_rank for k in row}, key=lambda k: (k != "loss", k))
        return {k: sum(row[k] for row in per_rank if k in row) / sum(1 for row in per_rank if k in row) for k in keys}

    # -- checkpoints -----------------------------------------------------------------------------------------
    def _export(self, model, directory: Path) -> None:
        """``save_pretrained`` of the whole model by the main process (called on every process).

        Under FSDP each process holds a shard of the parameters; they are gathered onto the main process (on the
        CPU) for the duration of the save, which every process must join."""
        acc = self.accelerator
        if acc.distributed_type.value == "FSDP":
            from torch.distributed.fsdp import FullyShardedDataParallel

            with FullyShardedDataParallel.summon_full_params(
                model, writeback=False, rank0_only=True, offload_to_cpu=True
            ):
                if acc.is_main_process:
                    acc.unwrap_model(model).save_pretrained(directory)
        elif acc.is_main_process:
            acc.unwrap_model(model).save_pretrained(directory)

    def _sharded_optimizer(self) -> bool:
        return self.accelerator.distributed_type.value in ("DEEPSPEED", "FSDP")

    def _save_checkpoint(
        self, step: int, model, optimizer, scheduler, batches_per_pass: int, losses: dict[str, float]
    ) -> None:
        acc, cfg = self.accelerator, self.config
        root = self.checkpoint_root
        tmp = ckpt.temp_dir(root, step)
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        if self._sharded_optimizer():
            # DeepSpeed / FSDP shard the optimizer state over processes; accelerate writes and reads those shards.
            acc.save_state(str(tmp / "accelerate_state"))
        else:
            ckpt.save_tensors(ckpt.rng_state(), tmp / f"rng_rank{acc.process_index}.pt")
        acc.wait_for_everyone()
        self._export(model, tmp / "model")
        if acc.is_main_process:
            if not self._sharded_optimizer():
                ckpt.save_tensors(optimizer.state_dict(), tmp / "optimizer.pt")
            ckpt.save_tensors(scheduler.state_dict(), tmp / "scheduler.pt")
            data_pass, offset = divmod(step * cfg.grad_accum, batches_per_pass)
            atomic_write_json(
                tmp / ckpt.STATE_FILE,
                {
                    "stage": cfg.stage,
                    "step": step,
                    "data_pass": data_pass,
                    "batch_offset": offset,
                    "batches_per_pass": batches_per_pass,
                    "world_size": acc.num_processes,
                    "train_config": cfg.to_json(),
                    "losses": losses,
                    "extra": self.extra,
                    "files": ckpt.file_checksums(tmp),
                },
            )
            ckpt.commit(tmp, root, step, cfg.keep_checkpoints)
        acc.wait_for_everyone()

    def _resume_point(self) -> Path | None:
        """The newest checkpoint that verifies. Damaged newer ones are reported, naming the one loaded instead, and
        removed (training rewrites them); with checkpoints but none intact, a :class:`DataError` says so."""
        acc, root = self.accelerator, self.checkpoint_root
        latest, damaged = ckpt.latest_verified(root)
        acc.wait_for_everyone()  # every process has chosen before any damaged folder goes
        if not damaged:
            return latest
        if latest is None:
            raise DataError(
                f"{root}: no intact checkpoint to resume from ({'; '.join(damaged)}); start over with resume=False "
                "(sparrow train --no-resume)"
            )
        if acc.is_main_process:
            warnings.warn(
                f"{root}: resumed from {latest.name}, the newest intact checkpoint; damaged and removed: "
                + "; ".join(damaged),
                stacklevel=3,
            )
            for _, folder in ckpt.list_checkpoints(root):
                if folder.name > latest.name:
                    shutil.rmtree(folder, ignore_errors=True)
        acc.wait_for_everyone()
        return latest

    def _restore(self, folder: Path, model, optimizer, scheduler, batches_per_pass: int) -> int:
        acc, cfg = self.accelerator, self.config
        state = ckpt.read_state(folder)
        problems = TrainConfig.from_json(state["train_config"]).trajectory_differences(cfg)
        if state["world_size"] != acc.num_processes:
            problems.append(f"processes: {state['world_size']} (checkpoint) vs {acc.num_processes} (now)")
        if state.get("batches_per_pass", batches_per_pass) != batches_per_pass:
            problems.append(
                f"batches per data pass: {state['batches_per_pass']} (checkpoint) vs {batches_per_pass} "
                "(now; the dataset changed)"
            )
        if problems:
            raise ValueError(
                f"{folder}: cannot resume, the run's settings changed: {'; '.join(problems)}. "
                "Resume with the original settings, or pass resume=False to start over."
            )
        if self._sharded_optimizer():
            acc.load_state(str(folder / "accelerate_state"))  # model shards, optimizer shards, generators
        else:
            load_weights(acc.unwrap_model(model), folder / "model")
            optimizer.load_state_dict(ckpt.load_tensors(folder / "optimizer.pt"))
            ckpt.set_rng_state(ckpt.load_tensors(folder / f"rng_rank{acc.process_index}.pt"))
        scheduler.load_state_dict(ckpt.load_tensors(folder / "scheduler.pt"))
        return int(state["step"])


def load_weights(model: torch.nn.Module, directory: Path) -> None:
    """Copy the weights saved by ``model.save_pretrained(directory)`` into ``model`` (strictly: same keys).

    A ``model.safetensors`` holding the full state dict (the kit's layout) is read directly; otherwise the model
    class rebuilds itself with ``from_pretrained`` and its state dict is copied over."""
    weights = Path(directory) / "model.safetensors"
    if weights.is_file():
        from sparrow.model.checkpoint import load_state_strict

        load_state_strict(model, weights)
        return
    loaded = type(model).from_pretrained(directory)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    if missing or unexpected:
        raise DataError(
            f"{directory}: weights do not match the model (missing {sorted(missing)[:10]}, "
            f"unexpected {sorted(unexpected)[:10]})"
        )
