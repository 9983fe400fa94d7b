"""Training a whole variant (a row of the paper's tables) through its stages, cached and resumable.

A variant is a host plus the two SPARROW switches. Its stages follow the released recipe:

- under ``smoke`` and ``mini`` a shared SAM2 pretraining run comes first (:mod:`sparrow.train.sam_pretrain`: the
  stand-in for the released SAM2 checkpoint), and the host stage starts from it;
- ``baseline`` (no TSF, no dual prompt) is the host model alone: the ``host`` stage. The paper compares with the
  released host checkpoints; the kit has none offline, so it trains the host with the host's own recipe.
- every other variant starts from those same host weights and runs ``proposer`` (only with the dual prompt),
  ``stage1`` (TSF injection when ``tsf``; LoRA) and ``stage2`` (selector and ROI helper when ``box``; LoRA).
  LoRA is folded into the base weights between stages, as the released stage scripts export merged weights
  and start the next stage with a fresh adapter.
- ``control`` (``control=True``, both switches off) is the host trained further without either addition: the
  same ``stage1`` and ``stage2`` (configs, steps, LoRA fold, data, seeds) as + SPARROW, on the host model, with
  no proposer stage.

So a SPARROW variant receives more optimizer steps than the baseline, as in the paper (SPARROW fine-tunes the
released host); the control receives the same further steps without TSF and ``[BOX]``, so + SPARROW minus control
is SPARROW's gain beyond the extra training. :func:`variant_stages` lists the stages and :class:`RunResult` keeps
every stage's step count.

Layout under ``sparrow.paths.runs_dir(profile)``::

    <host>-seed<seed>/host/          the host stage, shared by every variant of that host and seed
    <host>-seed<seed>/<variant>/<stage>/   the later stages of one variant
    <host>-seed<seed>/<variant>/run.json   written when the variant is complete

Each stage folder is a :class:`~sparrow.train.trainer.Trainer` run (checkpoints, loss log, final weights), so an
interrupted variant resumes from its last checkpoint, and a finished one is returned without training. A run
whose data or settings no longer match (a regenerated dataset, a changed preset) is retrained from scratch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sparrow.data.curate import ensure_curated
from sparrow.data.curated import CuratedDataset, records_fingerprint
from sparrow.distributed import process_state
from sparrow.model import ModelConfig, SparrowDataset, SparrowModel
from sparrow.model.checkpoint import CheckpointError, read_state
from sparrow.model.config import GroundingSpec
from sparrow.model.dataset import GCG_SHARE
from sparrow.model.dense_grounding import grounding_vocabulary
from sparrow.model.tokens import vocabulary_from_texts
from sparrow.paths import runs_dir
from sparrow.profiles import check_profile, get_profile
from sparrow.storage import DataError, atomic_write_json, read_json, sha256_file
from sparrow.train.checkpoint import latest_checkpoint
from sparrow.train.checkpoint import read_state as read_checkpoint
from sparrow.train.config import TrainConfig
from sparrow.train.grounding_pretrain import ensure_pretrained_grounding, load_pretrained_grounding
from sparrow.train.loss_log import read_loss_log
from sparrow.train.sam_pretrain import ensure_pretrained_sam, load_pretrained_sam
from sparrow.train.sampling import derive_seed, seed_all
from sparrow.train.trainer import RESULT_FILE, Trainer, TrainResult

RUN_FILE = "run.json"
TRAIN_SPLIT = "train"
# Modules that exist only with the dual prompt: absent from host weights, initialised fresh in a variant.
DUAL_PROMPT_PREFIXES = ("proposer.", "selector.", "roi_helper.", "roi_fusion_gamma")
_MODEL_INIT, _LORA_FOLD = 11, 12  # seed-derivation tags


CONTROL = "control"


def _check_control(tsf: bool, box: bool, control: bool) -> None:
    if control and (tsf or box):
        raise ValueError("the control variant trains without TSF and [BOX]: tsf and box must be False")


def variant_name(tsf: bool, box: bool, control: bool = False) -> str:
    _check_control(tsf, box, control)
    if control:
        return CONTROL
    return {(False, False): "baseline", (True, True): "sparrow", (True, False): "tsf-only", (False, True): "box-only"}[
        (bool(tsf), bool(box))
    ]


def variant_stages(tsf: bool, box: bool, control: bool = False) -> tuple[str, ...]:
    """The stages a variant trains, in order (the host stage included)."""
    _check_control(tsf, box, control)
    if not tsf and not box and not control:
        return ("host",)
    return ("host",) + (("proposer",) if box else ()) + ("stage1", "stage2")


def pretrains_sam(cfg) -> bool:
    """Whether a variant's host stage starts from the kit's own SAM2 pretraining (a random tiny SAM2) rather than
    from a SAM2 checkpoint."""
    return cfg.sam.checkpoint is None and cfg.sam.tiny and cfg.host_trainable_sam != "all"


def pretrained_sam(
    cfg,
    curated_root: str | Path,
    fingerprint: str | None = None,
    *,
    runs_root: str | Path | None = None,
    show_progress: bool = False,
) -> tuple[Path | None, str]:
    """The kit's pretrained SAM2 for a host config, trained on first use: (weights, fingerprint), or (None, "")
    where the host starts from a SAM2 checkpoint instead."""
    if not pretrains_sam(cfg):
        return None, ""
    return ensure_pretrained_sam(
        cfg.profile,
        curated_root,
        cfg.sam,
        fingerprint or records_fingerprint(curated_root),
        runs_root=runs_root,
        show_progress=show_progress,
    )


def model_config(
    host: str, profile: str, tsf: bool, box: bool, curated_root: str | Path, location_channel: bool | None = None
):
    """The host preset with the switches set, and (tiny models) a vocabulary covering the dataset's words.

    The tiny word-level tokenizer would split unknown words into characters; giving it every word of the curated
    texts (all splits: vocabulary only, like a pretrained tokenizer) keeps one token per word. The location
    channel's grounding knows the words of the training split only (the words its pretraining saw): any other
    word is left out of its query rather than entering it as an untrained embedding. ``location_channel``: None keeps the profile's switch
    (:data:`sparrow.profiles.LOCATION_CHANNEL`), True / False turn it on or off."""
    cfg = ModelConfig.for_preset(host, profile, tsf=tsf, box=box)
    if location_channel is not None:
        spec = get_profile(profile).model.grounding
        if location_channel and spec is None:
            raise ValueError(f"the {profile} profile has no location channel (no dense-grounding sizes)")
        cfg = cfg.replace(grounding=GroundingSpec(**spec) if location_channel else None)
    if cfg.llm.path is not None:
        return cfg
    curated = CuratedDataset(curated_root)
    texts = [e.text for e in curated.iter_expressions()]
    cfg = cfg.replace(llm=dataclasses.replace(cfg.llm, extra_words=vocabulary_from_texts(texts)))
    if cfg.grounding is not None:
        seen = grounding_vocabulary([e.text for e in curated.iter_expressions(split=TRAIN_SPLIT)])
        cfg = cfg.replace(grounding=dataclasses.replace(cfg.grounding, vocabulary=seen))
    return cfg


def pretrained_grounding(
    cfg,
    curated_root: str | Path,
    fingerprint: str,
    *,
    runs_root: str | Path | None = None,
    show_progress: bool = False,
) -> tuple[Path | None, str]:
    """The location channel's pretrained dense grounding for a host config, trained on first use: (folder,
    fingerprint), or (None, "") without the location channel."""
    if cfg.grounding is None:
        return None, ""
    return ensure_pretrained_grounding(
        cfg.profile,
        curated_root,
        cfg.grounding,
        fingerprint,
        runs_root=runs_root,
        show_progress=show_progress,
        foundation_seeds=get_profile(cfg.profile).model.grounding_foundation_seeds,
    )


def pretrain_foundation(profile: str, data_seed: int = 0, commit: bool = False) -> dict[str, tuple[Path, float]]:
    """Pretrain the foundation of ``profile``'s SPARROW-Mini (data seed ``data_seed``) here, never taking the
    committed copies: the tiny SAM2 (box and mask prompts) and the dense grounding. ``commit``: then write them as
    the committed weights (``reproductions/weights``), the files the runs of that data use instead of pretraining.
    Returns, per component ("sam2", "grounding"), the folder written and the CPU seconds it took."""
    import time

    from sparrow.data.curate import ensure_curated
    from sparrow.train.grounding_pretrain import write_committed_grounding
    from sparrow.train.sam_pretrain import write_committed_sam

    root = ensure_curated(profile, data_seed)
    cfg = model_config("videoglamm", profile, False, False, root, location_channel=True)
    out: dict[str, tuple[Path, float]] = {}
    cpu = time.process_time()
    weights, fingerprint = ensure_pretrained_sam(profile, root, cfg.sam, records_fingerprint(root), use_committed=False)
    folder = write_committed_sam(profile, weights, fingerprint, cfg.sam) if commit else weights.parent
    out["sam2"] = (folder, time.process_time() - cpu)
    cpu = time.process_time()
    folder, _ = ensure_pretrained_grounding(
        profile,
        root,
        cfg.grounding,
        records_fingerprint(root),
        foundation_seeds=get_profile(profile).model.grounding_foundation_seeds,
        use_committed=False,
    )
    if commit:
        folder = write_committed_grounding(profile, folder)
    out["grounding"] = (folder, time.process_time() - cpu)
    return out


def build_model(cfg, seed: int):
    """A freshly initialised :class:`SparrowModel`; the random init depends only on ``seed``."""
    seed_all(derive_seed(seed, _MODEL_INIT))
    return SparrowModel.from_config(cfg)


def load_host_weights(model, host_dir: str | Path) -> list[str]:
    """Load host-stage weights into a variant model; only dual-prompt modules may be missing from them.

    Returns the names initialised fresh (not found in the host weights)."""
    path = Path(host_dir) / "model.safetensors"
    state = read_state(path)
    own = model.state_dict()
    unexpected = sorted(set(state) - set(own))
    missing = sorted(set(own) - set(state))
    foreign = [k for k in missing if not k.startswith(DUAL_PROMPT_PREFIXES)]
    if unexpected or foreign:
        raise CheckpointError(
            f"{path}: host weights do not fit this variant; missing {foreign[:10]}, unexpected {unexpected[:10]}"
        )
    wrong = [f"{k} {tuple(v.shape)} != {tuple(own[k].shape)}" for k, v in state.items() if v.shape != own[k].shape]
    if wrong:
        raise CheckpointError(f"{path}: host weights have other shapes: {wrong[:10]}")
    model.load_state_dict(state, strict=False)
    return missing


@dataclass
class RunResult:
    """A trained variant: where its stages are and what they reported."""

    host: str
    profile: str
    seed: int
    tsf: bool
    box: bool
    run_dir: Path
    stages: dict[str, TrainResult] = field(default_factory=dict)
    data_fingerprint: str = ""
    model_config: dict[str, Any] = field(default_factory=dict)
    control: bool = False

    @property
    def name(self) -> str:
        return variant_name(self.tsf, self.box, self.control)

    @property
    def final_dir(self) -> Path:
        """The weights of the last stage (``SparrowModel.from_pretrained`` reads it)."""
        return list(self.stages.values())[-1].final_dir

    @property
    def total_steps(self) -> int:
        return sum(r.steps for r in self.stages.values())

    @property
    def train_seconds(self) -> float:
        """Wall time spent training, summed over stages, as measured when each stage ran (0 for a cached stage is
        never recorded: each stage keeps the time of the run that produced it; a resumed stage counts the last
        process only)."""
        return sum(r.wall_s for r in self.stages.values())

    @property
    def final_losses(self) -> dict[str, float]:
        """The last step's loss terms of the last stage."""
        return dict(list(self.stages.values())[-1].final_losses)

    def loss_logs(self) -> dict[str, list[dict[str, float]]]:
        """Every stage's loss log rows (step, lr, loss, grad_norm and the terms), in stage order."""
        return {stage: read_loss_log(result.loss_log) for stage, result in self.stages.items()}

    def loss_curve(
        self, term: str = "loss", stages: tuple[str, ...] | None = None, skip: tuple[str, ...] = ("proposer",)
    ) -> tuple[list[int], list[float]]:
        """One term's values over the stages run back to back: (global step, value) with steps numbered on from
        one stage to the next. The proposer stage is skipped by default: its detection loss is another quantity
        on another scale (plot it on its own with ``stages=("proposer",)``)."""
        steps: list[int] = []
        values: list[float] = []
        offset = 0
        for stage, result in self.stages.items():
            if (stages is not None and stage not in stages) or (stages is None and stage in skip):
                continue
            for row in read_loss_log(result.loss_log):
                steps.append(offset + int(row["step"]))
                values.append(float(row.get(term, float("nan"))))
            offset += result.steps
        return steps, values

    def load_model(self):
        return SparrowModel.from_pretrained(self.final_dir)

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "profile": self.profile,
            "seed": self.seed,
            "tsf": self.tsf,
            "box": self.box,
            "control": self.control,
            "variant": self.name,
            "data_fingerprint": self.data_fingerprint,
            # relative, so that a runs folder can move; a host stage of another seed's folder is "../<name>/host"
            "stages": {s: os.path.relpath(r.out_dir, self.run_dir.parent) for s, r in self.stages.items()},
            "model_config": self.model_config,
        }

    @classmethod
    def load(cls, run_dir: str | Path) -> RunResult:
        run_dir = Path(run_dir)
        row = read_json(run_dir / RUN_FILE)
        try:
            stages = {s: TrainResult.load(run_dir.parent / rel) for s, rel in row["stages"].items()}
            return cls(
                host=row["host"],
                profile=row["profile"],
                seed=int(row["seed"]),
                tsf=bool(row["tsf"]),
                box=bool(row["box"]),
                run_dir=run_dir,
                stages=stages,
                data_fingerprint=row["data_fingerprint"],
                model_config=row["model_config"],
                control=bool(row.get("control", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{run_dir / RUN_FILE}: malformed run record ({exc})") from exc


def _stage_matches(folder: Path, fingerprint: str, model_json: dict, cfg: TrainConfig) -> bool:
    """Whether a stage folder was produced from this data, model config and training config."""
    result_file = folder / RESULT_FILE
    if result_file.is_file():
        done = TrainResult.load(folder)
        extra, train_cfg = done.extra, TrainConfig.from_json(done.train_config)
    else:
        latest = latest_checkpoint(folder / "checkpoints")
        if latest is None:
            return True  # nothing to reuse; the trainer starts fresh
        state = read_checkpoint(latest)
        extra, train_cfg = state.get("extra", {}), TrainConfig.from_json(state["train_config"])
    return (
        extra.get("data_fingerprint") == fingerprint
        and extra.get("model_config") == model_json
        and not train_cfg.trajectory_differences(cfg)
    )


def _train_stage(
    model, stage: str, fold_seed: int, dataset, config: TrainConfig, folder: Path, extra: dict[str, Any]
) -> TrainResult:
    # The released stage scripts start each LoRA stage from merged weights with a fresh adapter. The fresh
    # adapter's random init is seeded here so that it does not depend on what ran before in this process.
    seed_all(fold_seed)
    model.configure_stage(stage, fold_lora=stage in ("stage1", "stage2"))
    trainer = Trainer(model, dataset, config, folder, collate_fn=model.collator(stage), extra=extra)
    return trainer.train(resume=True)


def _record(run: RunResult) -> RunResult:
    """Write the run record that marks a variant complete (the main process; the others wait for it)."""
    state = process_state()
    if state.is_main_process:
        atomic_write_json(run.run_dir / RUN_FILE, run.to_json())
    state.wait_for_everyone()
    return run


def _reuse_or_invalidate(run_dir: Path, stages, folders, fingerprint: str, model_json, configs) -> RunResult | None:
    """The finished run when every stage matches (no model is built at all); else a stage whose inputs changed
    invalidates itself and everything after it, and None is returned."""
    state = process_state()
    if (run_dir / RUN_FILE).is_file():
        try:
            cached = RunResult.load(run_dir)
        except DataError:
            cached = None
        if cached is not None and all(
            _stage_matches(folders[s], fingerprint, model_json[s], configs[s]) and (folders[s] / RESULT_FILE).is_file()
            for s in stages
        ):
            return cached
    if state.is_main_process:
        stale = False
        for s in stages:
            stale = stale or not _stage_matches(folders[s], fingerprint, model_json[s], configs[s])
            if stale and folders[s].exists():
                warnings.warn(f"{folders[s]}: trained on other data or settings; retraining", stacklevel=3)
                shutil.rmtree(folders[s])
        (run_dir / RUN_FILE).unlink(missing_ok=True)
    state.wait_for_everyone()
    return None


def train_variant(
    host: str = "videoglamm",
    profile: str = "mini",
    seed: int = 0,
    tsf: bool = True,
    box: bool = True,
    *,
    curated_root: str | Path | None = None,
    show_progress: bool = True,
    train_overrides: dict[str, dict[str, Any]] | None = None,
    runs_root: str | Path | None = None,
    location_channel: bool | None = None,
    control: bool = False,
    host_seed: int | None = None,
) -> RunResult:
    """Train (or load from the cache) one variant on the curated SPARROW-Mini of ``profile``/``seed``.

    ``control``: the control variant (``tsf`` and ``box`` False): the host trained further by ``stage1`` and
    ``stage2`` with both switches off (see the module docstring). ``train_overrides`` maps a stage name to :class:`TrainConfig` field overrides (for experiments; a changed
    setting retrains that stage and the ones after it). ``location_channel``: see :func:`model_config` (a run
    with the other setting in the same ``runs_root`` is retrained). ``host_seed``: the training seed of the host
    checkpoint the variant starts from (None: ``seed``); the host stage of a seed is trained once, under
    ``<host>-seed<host_seed>/host``, and every variant of any seed that names it starts from it, as the paper's
    variants start from one released host checkpoint."""
    check_profile(profile)
    _check_control(tsf, box, control)
    state = process_state()
    if curated_root is None:
        with state.main_process_first():  # generating the data twice at once is not safe
            curated_root = ensure_curated(profile, seed)
    curated_root = Path(curated_root)
    fingerprint = records_fingerprint(curated_root)
    root = Path(runs_root) if runs_root is not None else runs_dir(profile)
    host_seed = seed if host_seed is None else host_seed

    def stage_seed(stage: str) -> int:  # the host stage is the host checkpoint's; the others are this run's
        return host_seed if stage == "host" else seed

    name = variant_name(tsf, box, control)
    run_dir = root / f"{host}-seed{seed}" / name
    overrides = train_overrides or {}
    stages = variant_stages(tsf, box, control)
    configs = {
        s: TrainConfig.for_profile(
            profile,
            s,
            host=host,
            seed=stage_seed(s),
            show_progress=show_progress,
            **overrides.get(s, {}),
        )
        for s in stages
    }
    host_cfg = model_config(host, profile, False, False, curated_root, location_channel)
    var_cfg = host_cfg.replace(tsf=tsf, box=box)
    sam_weights, sam_fingerprint = pretrained_sam(
        host_cfg, curated_root, fingerprint, runs_root=runs_root, show_progress=show_progress
    )
    if sam_weights is not None:
        # The pretrained SAM2 is part of every stage's starting point: other SAM2 weights make every stage stale.
        fingerprint = f"{fingerprint}+sam2-{sam_fingerprint}"
    grounding_dir, grounding_fingerprint = pretrained_grounding(
        host_cfg, curated_root, records_fingerprint(curated_root), runs_root=runs_root, show_progress=show_progress
    )
    if grounding_dir is not None:
        fingerprint = f"{fingerprint}+grounding-{grounding_fingerprint}"
    # Another mixture of the same records is other training data. Both shares enter every variant's fingerprint,
    # whatever its stages, so that the host folder that every variant shares is matched the same way by all.
    train_section = get_profile(profile).train
    shares = {s: train_section.gcg_share_for(s) for s in stages}
    if train_section.gcg_share != GCG_SHARE:
        fingerprint = f"{fingerprint}+gcg-{train_section.gcg_share:g}"
    if train_section.gcg_share_for("host") != train_section.gcg_share:
        fingerprint = f"{fingerprint}+host-gcg-{train_section.gcg_share_for('host'):g}"
    folders = {s: (root / f"{host}-seed{host_seed}" / "host" if s == "host" else run_dir / s) for s in stages}
    # Compared with what a stage recorded in JSON, so tuples must already be lists.
    model_json = {s: json.loads(json.dumps((host_cfg if s == "host" else var_cfg).to_json())) for s in stages}

    cached = _reuse_or_invalidate(run_dir, stages, folders, fingerprint, model_json, configs)
    if cached is not None:
        return cached

    results: dict[str, TrainResult] = {}
    model = None
    datasets: dict = {}  # one per model config and share, so decoded frames are shared by the stages that use it
    for index, stage in enumerate(stages):
        cfg_s = host_cfg if stage == "host" else var_cfg
        if model is None:
            model = build_model(cfg_s, stage_seed(stage))
            if stage != "host":
                load_host_weights(model, results["host"].final_dir)
            else:
                if sam_weights is not None:
                    load_pretrained_sam(model.pixel_decoder.sam, sam_weights)
                if grounding_dir is not None:
                    load_pretrained_grounding(model.grounding, grounding_dir, grounding_fingerprint)
        if (cfg_s, shares[stage]) not in datasets:
            datasets[cfg_s, shares[stage]] = SparrowDataset(curated_root, TRAIN_SPLIT, cfg_s, gcg_share=shares[stage])
        extra = {
            "data_fingerprint": fingerprint,
            "model_config": model_json[stage],
            "host": host,
            "variant": "host" if stage == "host" else name,
        }
        results[stage] = _train_stage(
            model,
            stage,
            derive_seed(stage_seed(stage), _LORA_FOLD, index),
            datasets[cfg_s, shares[stage]],
            configs[stage],
            folders[stage],
            extra,
        )
        if stage == "host":
            model = None  # a variant model has other modules: it is rebuilt and loads these host weights

    run = RunResult(
        host=host,
        profile=profile,
        seed=seed,
        tsf=tsf,
        box=box,
        run_dir=run_dir,
        stages=results,
        data_fingerprint=fingerprint,
        model_config=var_cfg.to_json(),
        control=control,
    )
    return _record(run)


RELEASED_HOST_STAGES = ("stage1", "stage2")


def train_from_checkpoint(
    host_dir: str | Path,
    curated_root: str | Path,
    runs_root: str | Path,
    *,
    proposer_from: str | Path | None = None,
    tsf: bool = True,
    box: bool = True,
    seed: int = 0,
    profile: str = "paper",
    train_overrides: dict[str, dict[str, Any]] | None = None,
    show_progress: bool = False,
) -> RunResult:
    """A variant trained from a converted host checkpoint (a released baseline, ``sparrow convert``), as the released
    SPARROW stages start from the released host: ``stage1`` and ``stage2`` on the curated training split with the
    profile's recipe (``train_overrides`` per stage, e.g. fewer steps), cached and resumable as :func:`train_variant`
    under ``<runs_root>/<host folder name>/<variant>/``.

    With the dual prompt, the class-agnostic proposer is the released one, not trained here: its spec and weights
    come from ``proposer_from``, a converted SPARROW checkpoint (``sparrow convert --release sparrow --proposer``),
    since the proposer does not depend on the host."""
    host_dir, curated_root = Path(host_dir), Path(curated_root)
    if not (host_dir / "model.safetensors").is_file():
        raise CheckpointError(f"{host_dir}: not a converted host checkpoint (no model.safetensors)")
    host_cfg = ModelConfig.from_json(read_json(host_dir / "config.json")["model"], source=str(host_dir))
    if box and proposer_from is None:
        raise ValueError("the dual prompt needs the released proposer: proposer_from=<converted SPARROW checkpoint>")
    changes: dict[str, Any] = {"tsf": tsf, "box": box}
    proposer_state: dict[str, Any] = {}
    fingerprint = f"{records_fingerprint(curated_root)}+host-{sha256_file(host_dir / 'model.safetensors')[:16]}"
    if box:
        proposer_from = Path(proposer_from)
        source = ModelConfig.from_json(read_json(proposer_from / "config.json")["model"], source=str(proposer_from))
        changes["proposer"] = dataclasses.replace(source.proposer, path=None)
        proposer_state = read_state(proposer_from / "model.safetensors", prefix="proposer.")
        if not proposer_state:
            raise CheckpointError(f"{proposer_from}: no proposer weights (convert the SPARROW release with --proposer)")
        fingerprint += f"+proposer-{sha256_file(proposer_from / 'model.safetensors')[:16]}"
    var_cfg = host_cfg.replace(**changes)
    overrides = train_overrides or {}
    configs = {
        s: TrainConfig.for_profile(
            profile, s, host=host_cfg.host, seed=seed, show_progress=show_progress, **overrides.get(s, {})
        )
        for s in RELEASED_HOST_STAGES
    }
    name = variant_name(tsf, box)
    run_dir = Path(runs_root) / host_dir.name / name
    folders = {s: run_dir / s for s in RELEASED_HOST_STAGES}
    model_json = {s: json.loads(json.dumps(var_cfg.to_json())) for s in RELEASED_HOST_STAGES}
    cached = _reuse_or_invalidate(run_dir, RELEASED_HOST_STAGES, folders, fingerprint, model_json, configs)
    if cached is not None:
        return cached

    # The folder the model is built from: the host's (its component configs and tokenizer, not its weights), the
    # released proposer's component config beside them
    base = run_dir / "host-base"
    if process_state().is_main_process:
        shutil.rmtree(base, ignore_errors=True)
        shutil.copytree(host_dir, base, ignore=shutil.ignore_patterns("model.safetensors"))
        if box:
            shutil.copy2(proposer_from / "components" / "proposer.json", base / "components" / "proposer.json")
    process_state().wait_for_everyone()
    seed_all(derive_seed(seed, _MODEL_INIT))  # the fresh dual-prompt modules
    model = SparrowModel(var_cfg, checkpoint_dir=base)
    load_host_weights(model, host_dir)
    if proposer_state:
        missing = [k for k in model.state_dict() if k.startswith("proposer.") and k not in proposer_state]
        if missing:
            raise CheckpointError(f"{proposer_from}: proposer weights miss {missing[:5]}")
        model.load_state_dict(proposer_state, strict=False)
    dataset = SparrowDataset(curated_root, TRAIN_SPLIT, var_cfg, gcg_share=get_profile(profile).train.gcg_share)
    results = {}
    for index, stage in enumerate(RELEASED_HOST_STAGES):
        extra = {
            "data_fingerprint": fingerprint,
            "model_config": model_json[stage],
            "host": host_cfg.host,
            "variant": name,
        }
        results[stage] = _train_stage(
            model, stage, derive_seed(seed, _LORA_FOLD, index), dataset, configs[stage], folders[stage], extra
        )
    run = RunResult(
        host=host_cfg.host,
        profile=profile,
        seed=seed,
        tsf=tsf,
        box=box,
        run_dir=run_dir,
        stages=results,
        data_fingerprint=fingerprint,
        model_config=var_cfg.to_json(),
    )
    return _record(run)
