"""The paper's main table and Ref-DAVIS17 ablation, measured (notebook 04).

What is measured:

- **Main table**: for every host (VideoGLaMM, UniPixel, GLUS) the baseline (the host stage alone: one host
  checkpoint, trained under the plan's first training seed, the mini "released host"), and for each training seed
  the control (that checkpoint trained further by the same stage 1 and stage 2 as + SPARROW, without TSF and
  ``[BOX]``) and + SPARROW (TSF in training + ``[BOX]``, from that checkpoint), trained with
  :func:`sparrow.train.variants.train_variant` on the curated data of the plan's data seed, evaluated on the six
  benchmarks of :mod:`sparrow.eval.benchmarks` with :func:`sparrow.eval.runner.evaluate_run` (cached per run and
  benchmark).
  + SPARROW minus the control is its gain beyond the extra training steps.
- **Ablation** (Ref-DAVIS17, VideoGLaMM): baseline → + TSF (``tsf=True, box=False``) → + ``[BOX]`` (the SPARROW run)
  → + TSF at test (the SPARROW run with tracked TSF boxes from :func:`sparrow.tsf.pipeline.ensure_tsf`).
- **Hard cases** (:func:`hard_case_rows`): J&F and referent accuracy of each run on the MeViS val^u videos of
  each SPARROW-Mini hard case, from the predictions the main table left on disk.
- Under ``paper`` nothing is trained: the checkpoints of the released models, converted to the kit's
  ``save_pretrained`` format, are read from ``<checkpoints>/<host>-<variant>`` (or where the weights paths
  configuration puts that name) and scored on the real data (:mod:`sparrow.experiments.table_report` compares each
  number with the paper's); a row without a checkpoint (:data:`UNRELEASED_REASONS`: never released) is skipped
  with its reason, recorded beside the numbers. Nothing releases a control: it is scored only where a
  ``<host>-control`` checkpoint is there.

Under mini the runs (one per host, seed and variant) run in ``TablePlan.workers`` single-threaded processes (two
on the 2-core target machine) with :func:`sparrow.experiments.scheduling.run_units`: the runs of a host start
from its one host checkpoint, so each starts after the baseline run, which trains it; every run is seeded and
cached, so the numbers do not depend on the schedule. With a pool, the main table's pool also trains and scores
the ablation's runs, which :func:`measure_ablation` then reads back from the cache.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sparrow.data.curate import ensure_curated
from sparrow.data.curated import CuratedDataset, records_fingerprint
from sparrow.data.synthetic import HARD_CASES
from sparrow.eval.benchmarks import COLUMNS, Benchmark, benchmarks_for, get_benchmark
from sparrow.eval.paper import TABLE_HOSTS
from sparrow.eval.runner import (
    MANIFEST,
    checkpoint_fingerprint,
    eval_root,
    evaluate_checkpoint,
    evaluate_run,
    keyed_eval_dir,
    parity_switches,
    run_eval_dir,
    tsf_boxes_from_run,
)
from sparrow.eval.rvos import aggregate_jf, evaluate_rvos
from sparrow.eval.text_dependence import iter_video_text_masks, text_dependence, text_dependence_of
from sparrow.experiments.scheduling import run_units
from sparrow.model import ModelConfig
from sparrow.paths import component_path, home, runs_dir, weights_root
from sparrow.profiles import check_profile, get_profile
from sparrow.storage import DataError, read_json
from sparrow.train.config import TrainConfig
from sparrow.train.variants import CONTROL, RunResult, pretrained_sam, train_variant
from sparrow.tsf.pipeline import ensure_tsf
from sparrow.tsf.quality import read_hard_case_tags

VARIANT_SWITCHES = {"baseline": (False, False), "sparrow": (True, True), "tsf-only": (True, False)}
# The main table's variants per host, in row order; the control's switches are the baseline's (both off), it
# differs by its further stages (train_variant(control=True)).
MAIN_VARIANTS = ("baseline", CONTROL, "sparrow")
_MAIN_ORDER = ("baseline", "sparrow", CONTROL)  # the pool's order: host stages first, then the longest runs
HARD_CASE_BENCHMARK = "mevis_valid_u"
ALL_VIDEOS, NO_HARD_CASE = "all", "none"  # hard_case_rows' rows beside the hard cases
ABLATION_HOST = "videoglamm"
ABLATION_COLUMN = "ref_davis17"
ABLATION_STEPS = ("baseline", "tsf", "box", "tsf_test")  # ablation.csv step names


@dataclass(frozen=True)
class TablePlan:
    """What notebook 04 measures: profile, the data seed, training seeds, hosts and the benchmarks."""

    profile: str
    data_seed: int
    seeds: tuple[int, ...]
    hosts: tuple[str, ...] = TABLE_HOSTS
    benchmarks: tuple[Benchmark, ...] = ()
    workers: int = 1  # processes training and evaluating runs side by side

    @property
    def host_seed(self) -> int:
        """The training seed of each host's one checkpoint (the baseline; the mini "released host"), from which
        the control and + SPARROW of every training seed are trained, as the paper's variants start from the
        released host checkpoint."""
        return self.seeds[0]

    def seeds_of(self, variant: str) -> tuple[int, ...]:
        """The training seeds a variant has runs of: the baseline is one host checkpoint (:attr:`host_seed`)."""
        return (self.host_seed,) if variant == "baseline" else tuple(self.seeds)

    def __post_init__(self) -> None:
        check_profile(self.profile)
        if not self.seeds:
            raise ValueError("a table needs at least one training seed")
        unknown = [h for h in self.hosts if h not in TABLE_HOSTS]
        if unknown:
            raise ValueError(f"unknown host(s) {unknown}; choose from {TABLE_HOSTS}")

    @classmethod
    def for_profile(
        cls, profile: str, seed: int = 0, seeds: Sequence[int] | None = None, hosts: Sequence[str] | None = None
    ) -> TablePlan:
        """Default seeds: ``seed, seed + 1, ...`` (the profile's ``eval.seeds`` of them); data always from ``seed``;
        default hosts and worker processes: the profile's ``eval.hosts`` and ``eval.workers`` (:mod:`sparrow.profiles`)."""
        table = get_profile(profile).eval
        chosen = tuple(seeds) if seeds is not None else tuple(seed + i for i in range(table.seeds))
        return cls(
            profile,
            int(seed),
            tuple(int(s) for s in chosen),
            tuple(hosts) if hosts else table.hosts,
            benchmarks_for(profile),
            max(1, min(table.workers, os.cpu_count() or 1)),
        )


@dataclass
class Cell:
    """One measured number: a model (host, variant, seed) on one column."""

    host: str
    variant: str
    seed: int
    column: str
    value: float | None
    note: str = ""
    seg_found_rate: float | None = None
    units: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    expressions: int = 0


@dataclass
class Measurements:
    plan: TablePlan
    cells: list[Cell] = field(default_factory=list)
    skipped: str = ""  # why nothing was measured (paper assets absent)
    train_seconds: float = 0.0  # wall time spent training in this process (0 when every run was cached)
    eval_seconds: float = 0.0  # wall time spent predicting and scoring in this process
    predict_seconds: float = 0.0  # prediction time of the cached predictions, summed (whenever they were made)
    details: dict[str, Any] = field(default_factory=dict)

    def values(self, host: str, variant: str, column: str) -> list[float]:
        """The per-seed values, in seed order; seeds without a number are left out."""
        cells = sorted(
            (c for c in self.cells if (c.host, c.variant, c.column) == (host, variant, column)), key=lambda c: c.seed
        )
        return [c.value for c in cells if c.value is not None]

    def cell(self, host: str, variant: str, column: str, seed: int) -> Cell | None:
        """The cell of one run; the baseline, one host checkpoint for every training seed, is the host seed's
        cell for any ``seed`` (so that every seed's gain is taken against it)."""
        if variant == "baseline":
            seed = self.plan.host_seed
        for c in self.cells:
            if (c.host, c.variant, c.column, c.seed) == (host, variant, column, seed):
                return c
        return None

    def paired_gains(self, host: str, column: str, base: str = "baseline", new: str = "sparrow") -> list[float]:
        out = []
        for s in self.plan.seeds:
            a, b = self.cell(host, base, column, s), self.cell(host, new, column, s)
            if a is not None and b is not None and a.value is not None and b.value is not None:
                out.append(b.value - a.value)
        return out


# ----------------------------------------------------------------------------------------------------------------
# Assets under `paper`
# ----------------------------------------------------------------------------------------------------------------
# (host, variant) of the paper table -> the released folder its converted checkpoint comes from
# (docs/released-weights.md); the SPARROW release is VideoGLaMM-based, so the other hosts' + SPARROW rows and the
# ablation's TSF-only step have no released weights, only the paper's numbers.
RELEASED_CHECKPOINTS: dict[tuple[str, str], str] = {
    ("videoglamm", "baseline"): "the VideoGLaMM checkpoint (`sparrow convert --release videoglamm`)",
    ("videoglamm", "sparrow"): "RISys-Lab/sparrow-finetune (`sparrow convert --release sparrow`)",
    ("unipixel", "baseline"): "PolyU-ChenLab/UniPixel-3B (`sparrow convert --release unipixel`)",
    ("glus", "baseline"): "Swindl/GLUS-A (`sparrow convert --release glus`)",
}
UNRELEASED_REASONS: dict[tuple[str, str], str] = {
    ("unipixel", "sparrow"): "no released UniPixel + SPARROW weights (the SPARROW release is VideoGLaMM-based)",
    ("glus", "sparrow"): "no released GLUS + SPARROW weights (the SPARROW release is VideoGLaMM-based)",
    ("videoglamm", "tsf-only"): "no released weights of the ablation's TSF-in-training step (without [BOX])",
}


@dataclass(frozen=True)
class PaperAssets:
    """Where the real data and checkpoints are: the checkpoint folder of each (host, variant) found, and why each
    other row the plan needs is skipped (never released, or not converted yet)."""

    curated_root: Path | None
    checkpoints_root: Path | None
    missing: tuple[str, ...] = ()  # what stops the whole comparison (the data, or every checkpoint)
    checkpoints: dict[tuple[str, str], Path] = field(default_factory=dict)
    skipped_rows: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.missing

    def checkpoint(self, host: str, variant: str) -> Path | None:
        return self.checkpoints.get((host, variant))

    @property
    def skipped_text(self) -> str:
        return "\n".join(f"  {checkpoint_name(h, v)}: {why}" for (h, v), why in self.skipped_rows.items())

    @property
    def message(self) -> str:
        if self.ok:
            found = ", ".join(checkpoint_name(h, v) for h, v in self.checkpoints)
            text = (
                f"paper assets found: curated data {self.curated_root}, checkpoints {found} in {self.checkpoints_root}"
            )
            return text + (f"\nskipped rows:\n{self.skipped_text}" if self.skipped_rows else "")
        return (
            "SKIPPED: the paper comparison needs assets that are absent: "
            + "; ".join(self.missing)
            + ". Curate the real releases with `sparrow curate` and put the converted checkpoints in "
            "<checkpoints>/<host>-<baseline|sparrow>/ (`sparrow convert`, docs/released-weights.md §8; "
            "<host>-control/ is optional)." + (f"\nrows:\n{self.skipped_text}" if self.skipped_rows else "")
        )


def checkpoint_name(host: str, variant: str) -> str:
    return f"{host}-{variant}"


def _checkpoint_folder(root: Path | None, name: str) -> Path:
    """``<root>/<name>`` when it holds a checkpoint, else where the weights paths configuration puts ``name``
    (:func:`sparrow.paths.component_path`: its entry in the paths file, else ``<weights root>/<name>``), so that a
    converted folder kept elsewhere needs no copy; the first place when neither exists (named in the skip reason)."""
    here = root / name if root is not None else weights_root() / name
    if (here / "model.safetensors").is_file():
        return here
    try:
        return component_path(name)
    except FileNotFoundError:
        return here


def find_paper_assets(
    plan: TablePlan, curated_root: str | Path | None, checkpoints_root: str | Path | None
) -> PaperAssets:
    """Check the curated real data and every checkpoint the plan needs (relative paths are under SPARROW_HOME).
    A row whose folder is absent is skipped with its reason (:data:`UNRELEASED_REASONS`, or how to convert it);
    the comparison as a whole needs the data and at least one checkpoint."""

    def resolve(p: str | Path | None) -> Path | None:
        if p is None:
            return None
        p = Path(p)
        return p if p.is_absolute() else home() / p

    data, ckpt = resolve(curated_root), resolve(checkpoints_root)
    missing = []
    if data is None or not (data / "expressions.jsonl").is_file():
        missing.append(f"curated real data ({data or 'no path given'})")
    else:
        ds = CuratedDataset(data)
        for b in plan.benchmarks:
            if b.split not in ds.splits(b.source):
                missing.append(f"{b.source}/{b.split} in {data}")
    rows = [(h, v) for h in plan.hosts for v in MAIN_VARIANTS]
    if ABLATION_HOST in plan.hosts:
        rows.append((ABLATION_HOST, "tsf-only"))
    found, skipped = {}, {}
    for row in rows:
        folder = _checkpoint_folder(ckpt, checkpoint_name(*row))
        if (folder / "model.safetensors").is_file():
            found[row] = folder
        elif row in UNRELEASED_REASONS:
            skipped[row] = UNRELEASED_REASONS[row]
        elif row[1] == CONTROL:
            skipped[row] = f"not computed: no {checkpoint_name(*row)} checkpoint (no control is released)"
        else:
            skipped[row] = f"no converted checkpoint at {folder}: convert " + RELEASED_CHECKPOINTS.get(row, "it")
    if not found:
        missing.append(f"every checkpoint ({ckpt or 'no path given'}/<host>-<variant>)")
    return PaperAssets(data, ckpt, tuple(missing), found, skipped)


# ----------------------------------------------------------------------------------------------------------------
# Measuring
# ----------------------------------------------------------------------------------------------------------------
def _cells(results: dict, host: str, variant: str, seed: int) -> list[Cell]:
    return [
        Cell(host, variant, seed, key, r.value, r.note, r.seg_found_rate, r.units, dict(r.details), r.expressions)
        for key, r in results.items()
    ]


def _paper_device() -> str | None:
    """Paper-size checkpoints go to the GPU when there is one (smoke/mini stay on the CPU their expectations
    were recorded on)."""
    return "cuda" if torch.cuda.is_available() else None


def _train(plan: TablePlan, host: str, variant: str, seed: int, curated_root: Path, show_progress: bool):
    if variant == CONTROL:
        tsf, box, control = False, False, True
    else:
        (tsf, box), control = VARIANT_SWITCHES[variant], False
    return train_variant(
        host,
        plan.profile,
        seed,
        tsf,
        box,
        curated_root=curated_root,
        show_progress=show_progress,
        control=control,
        host_seed=plan.host_seed,
    )


def _tsf_run(plan: TablePlan, curated_root: Path | None, tsf_run: str | Path | None) -> tuple[Path | None, str]:
    """(finished TSF run folder, why not) for TSF at test on the ablation's split: the run given, or under
    smoke/mini the cached one of :func:`sparrow.tsf.pipeline.ensure_tsf` (notebook 02 computes it)."""
    if tsf_run is not None:
        return Path(tsf_run), ""
    if plan.profile == "paper":
        return None, (
            "not computed: under paper, TSF at test needs a finished tracked TSF run of ref-davis17/valid "
            "(pass tsf_run, computed with the released GroundingDINO)"
        )
    b = get_benchmark(ABLATION_COLUMN, plan.profile)
    root = curated_root if curated_root is not None else ensure_curated(plan.profile, plan.data_seed)
    return ensure_tsf(plan.profile, plan.data_seed, b.split, b.source, curated_root=root), ""


# The ablation's own steps beside MAIN_VARIANTS: + TSF (its own run) and + TSF at test (the SPARROW run scored with
# tracked TSF boxes).
_TSF_STEP, _TSF_TEST_STEP = "tsf", "tsf_test"


@dataclass(frozen=True)
class _Unit:
    """One run of a plan: train (or load from the cache) one variant of (host, seed) and score it. Every run of a
    host starts from its host checkpoint, which the baseline unit (at the plan's host seed) trains, so the others
    wait for it."""

    plan: TablePlan
    host: str
    seed: int
    step: str  # one of MAIN_VARIANTS, _TSF_STEP or _TSF_TEST_STEP
    tsf_run: str | None = None
    tsf_why: str = ""


def _measure_unit(unit: _Unit, clair_judge: Any = None) -> Measurements:
    plan, host, seed = unit.plan, unit.host, unit.seed
    out = Measurements(plan)
    curated_root = ensure_curated(plan.profile, plan.data_seed)
    if unit.step == _TSF_TEST_STEP and unit.tsf_run is None:
        out.cells.append(Cell(host, _TSF_TEST_STEP, seed, ABLATION_COLUMN, None, unit.tsf_why))
        return out
    variant = {_TSF_STEP: "tsf-only", _TSF_TEST_STEP: "sparrow"}.get(unit.step, unit.step)
    start = time.perf_counter()
    run = _train(plan, host, variant, seed, curated_root, False)
    mid = time.perf_counter()
    if unit.step in MAIN_VARIANTS:
        results = evaluate_run(run, plan.benchmarks, curated_root, clair_judge=clair_judge, show_progress=False)
    else:
        bench = [get_benchmark(ABLATION_COLUMN, plan.profile)]
        boxes, tag = tsf_boxes_from_run(unit.tsf_run) if unit.step == _TSF_TEST_STEP else (None, None)
        results = evaluate_run(run, bench, curated_root, tsf_boxes=boxes, tsf_tag=tag, show_progress=False)
    out.train_seconds += mid - start
    out.eval_seconds += time.perf_counter() - mid
    out.predict_seconds += sum(r.predict_seconds for r in results.values())
    out.cells += _cells(results, host, unit.step, seed)
    return out


def _needs(units: Sequence[_Unit]) -> list[list[int]]:
    """What each unit waits for: the baseline unit of its host (the host checkpoint, trained under the plan's host
    seed), and for + TSF at test the SPARROW unit of its seed (its run), wherever those are among ``units``."""
    index = {(u.host, u.seed, u.step): i for i, u in enumerate(units)}
    out = []
    for u in units:
        wanted = [] if u.step == "baseline" else [(u.host, u.plan.host_seed, "baseline")]
        if u.step == _TSF_TEST_STEP:
            wanted.append((u.host, u.seed, "sparrow"))
        out.append([index[w] for w in wanted if w in index])
    return out


def _pretrain_sam(plan: TablePlan) -> None:
    """The SAM2 pretraining every tiny host starts from, run here with all threads before the pool starts (the
    pool's workers would otherwise wait for the first of them to train it on one thread)."""
    curated_root = ensure_curated(plan.profile, plan.data_seed)
    for host in plan.hosts:  # every tiny host has the same SAM2 spec: the first trains it, the others find it
        pretrained_sam(ModelConfig.for_preset(host, plan.profile), curated_root)


def _run_units(units: list[_Unit], workers: int, show_progress: bool) -> list[Measurements]:
    """Each unit in order (``workers`` <= 1) or in a pool, every unit after the ones it needs."""
    return run_units(_measure_unit, units, workers, show_progress, needs=_needs(units))


def _merge(plan: TablePlan, parts: list[Measurements]) -> Measurements:
    out = Measurements(plan)
    for part in parts:
        out.cells += part.cells
        out.train_seconds += part.train_seconds
        out.eval_seconds += part.eval_seconds
        out.predict_seconds += part.predict_seconds
    out.cells.sort(key=lambda c: (c.host, c.variant, c.seed, COLUMNS.index(c.column)))
    return out


@dataclass(frozen=True)
class UnreleasedTraining:
    """Under ``paper``, the + SPARROW rows no one released (UniPixel, GLUS): trained from the converted baselines
    (:func:`sparrow.train.variants.train_from_checkpoint`, the released proposer taken from ``videoglamm-sparrow``)
    when ``train`` is set, and in any case their cost estimated from ``estimate_steps`` measured steps of each stage
    on this machine. ``steps``: steps per stage when training (None: the paper profile's recipe)."""

    train: bool = False
    estimate_steps: int = 3
    steps: int | None = None

    def __post_init__(self) -> None:
        if self.estimate_steps < 2:
            raise ValueError("estimate_steps must be >= 2 (the first step also pays the setup)")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")


def _unreleased_row(
    plan: TablePlan, assets: PaperAssets, host: str, training: UnreleasedTraining, show_progress: bool
) -> tuple[dict[str, Any], RunResult | None, str]:
    """(the cost estimate, the trained run or None, why it is not trained) of ``host`` + SPARROW under paper."""
    from sparrow.train.variants import RELEASED_HOST_STAGES, train_from_checkpoint

    host_dir = assets.checkpoint(host, "baseline")
    proposer = assets.checkpoint("videoglamm", "sparrow")
    if host_dir is None or proposer is None:
        return {}, None, f"training it needs the converted {host}-baseline and videoglamm-sparrow checkpoints"
    if "train" not in CuratedDataset(assets.curated_root).splits():
        return {}, None, f"training it needs a curated training split in {assets.curated_root}"
    n = training.estimate_steps
    probe = train_from_checkpoint(
        host_dir,
        assets.curated_root,
        runs_dir("paper") / "step-estimates",
        proposer_from=proposer,
        seed=plan.host_seed,
        train_overrides={s: {"max_steps": n, "checkpoint_every": n, "warmup_steps": 0} for s in RELEASED_HOST_STAGES},
        show_progress=show_progress,
    )
    recipe = {s: TrainConfig.for_profile("paper", s, host=host) for s in RELEASED_HOST_STAGES}
    estimate: dict[str, Any] = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"}
    for stage, result in probe.stages.items():
        per_step = result.wall_s / max(1, result.steps)  # the setup is inside: an upper bound
        estimate[stage] = {"seconds_per_step": per_step, "recipe_steps": recipe[stage].max_steps}
    estimate["hours"] = sum(estimate[s]["seconds_per_step"] * estimate[s]["recipe_steps"] for s in recipe) / 3600
    if not training.train:
        return estimate, None, f"not trained here (about {estimate['hours']:.1f} h on {estimate['device']})"
    n = training.steps
    shorter = {
        s: {} if n is None else {"max_steps": n, "warmup_steps": min(c.warmup_steps, n), "checkpoint_every": n}
        for s, c in recipe.items()
    }
    run = train_from_checkpoint(
        host_dir,
        assets.curated_root,
        runs_dir("paper"),
        proposer_from=proposer,
        seed=plan.host_seed,
        train_overrides=shorter,
        show_progress=show_progress,
    )
    return estimate, run, ""


def measure_main(
    plan: TablePlan,
    assets: PaperAssets | None = None,
    show_progress: bool = False,
    clair_judge: Any = None,
    unreleased: UnreleasedTraining | None = None,
) -> Measurements:
    """Every (host, variant, seed) on every benchmark of the plan (trained and cached under smoke/mini, in
    ``plan.workers`` processes; the converted checkpoints under paper, or nothing with ``skipped`` set when they
    are absent). ``train_seconds``/``eval_seconds`` add up the time of every run (more than the wall time when
    runs ran in parallel; with a pool they include the ablation's runs, see the module docstring); the notebook
    reports its own wall time beside them."""
    out = Measurements(plan)
    if plan.profile == "paper":
        if assets is None or not assets.ok:
            out.skipped = assets.message if assets is not None else "SKIPPED: no paper assets given"
            return out
        out.details["skipped_rows"] = {checkpoint_name(*row): why for row, why in assets.skipped_rows.items()}
        for host in plan.hosts:
            for variant in MAIN_VARIANTS:
                folder = assets.checkpoint(host, variant)
                name = checkpoint_name(host, variant)
                if folder is None and unreleased is not None and (host, variant) in UNRELEASED_REASONS:
                    estimate, run, why_not = _unreleased_row(plan, assets, host, unreleased, show_progress)
                    if estimate:
                        out.details.setdefault("training_estimates", {})[name] = estimate
                    if run is not None:
                        folder = run.final_dir
                        out.train_seconds += run.train_seconds
                    else:
                        out.details["skipped_rows"][name] = f"{UNRELEASED_REASONS[(host, variant)]}; {why_not}"
                if folder is None:
                    why = out.details["skipped_rows"].get(name) or assets.skipped_rows[(host, variant)]
                    out.cells += [Cell(host, variant, plan.seeds[0], b.key, None, why) for b in plan.benchmarks]
                    continue
                out.details["skipped_rows"].pop(name, None)
                start = time.perf_counter()
                model_id = checkpoint_fingerprint(folder)
                results = evaluate_checkpoint(
                    folder,
                    plan.benchmarks,
                    assets.curated_root,
                    keyed_eval_dir(eval_root("paper"), name, model_id),
                    model_id=model_id,
                    clair_judge=clair_judge,
                    show_progress=show_progress,
                    device=_paper_device(),
                )
                out.eval_seconds += time.perf_counter() - start
                out.predict_seconds += sum(r.predict_seconds for r in results.values())
                out.cells += _cells(results, host, variant, plan.seeds[0])
                # what made the row's numbers: propagation, precision, decoding, chains (docs/released-weights.md §3)
                out.details.setdefault("settings", {})[name] = parity_switches(folder)
        return out
    # Host stages first (every other run waits for one), then the longest runs.
    units = [
        _Unit(plan, host, seed, variant)
        for variant in _MAIN_ORDER
        for seed in plan.seeds_of(variant)
        for host in plan.hosts
    ]
    if plan.workers > 1:
        _pretrain_sam(plan)
        if ABLATION_HOST in plan.hosts:
            units += _ablation_units(plan, _tsf_run(plan, None, None))
    if clair_judge is not None:  # a judge (an HTTP client, a loaded LLM) stays in this process
        parts = [_measure_unit(u, clair_judge) for u in units]
    else:
        parts = _run_units(units, plan.workers, show_progress)
    out = _merge(plan, parts)
    # The ablation's runs trained here only to fill the pool: measure_ablation reads their cells from the cache.
    out.cells = [c for c in out.cells if c.variant in MAIN_VARIANTS]
    return out


def _ablation_units(plan: TablePlan, tsf: tuple[Path | None, str]) -> list[_Unit]:
    path, why = tsf
    return [
        _Unit(plan, ABLATION_HOST, s, step, str(path) if path else None, why)
        for step in (_TSF_STEP, _TSF_TEST_STEP)
        for s in plan.seeds
    ]


def measure_ablation(
    plan: TablePlan,
    main: Measurements,
    assets: PaperAssets | None = None,
    tsf_run: str | Path | None = None,
    show_progress: bool = False,
) -> Measurements:
    """Ref-DAVIS17 of the four ablation steps per seed; baseline and + [BOX] are the main table's cells."""
    out = Measurements(plan)
    if ABLATION_HOST not in plan.hosts:
        out.skipped = f"the plan has no {ABLATION_HOST}"
        return out
    if main.skipped:
        out.skipped = main.skipped
        return out
    base = []
    for step, variant in (("baseline", "baseline"), ("box", "sparrow")):
        for s in plan.seeds_of(variant):
            c = main.cell(ABLATION_HOST, variant, ABLATION_COLUMN, s)
            base.append(
                Cell(
                    ABLATION_HOST,
                    step,
                    s,
                    ABLATION_COLUMN,
                    c.value,
                    c.note,
                    c.seg_found_rate,
                    c.units,
                    dict(c.details),
                    c.expressions,
                )
            )
    path, why = _tsf_run(plan, assets.curated_root if assets else None, tsf_run)
    if plan.profile == "paper":
        out.details["tsf_test"] = why or f"tsf-run:{path.name}"
        bench = [get_benchmark(ABLATION_COLUMN, plan.profile)]
        seed = plan.seeds[0]
        out.cells = base
        for step, name, use_boxes in (("tsf", "tsf-only", False), ("tsf_test", "sparrow", True)):
            folder = assets.checkpoint(ABLATION_HOST, name)
            skip = why if use_boxes and path is None else assets.skipped_rows.get((ABLATION_HOST, name), "")
            if skip or folder is None:
                out.cells.append(Cell(ABLATION_HOST, step, seed, ABLATION_COLUMN, None, skip))
                continue
            boxes, tag = tsf_boxes_from_run(path) if use_boxes else (None, None)
            ckpt = checkpoint_name(ABLATION_HOST, name)
            model_id = checkpoint_fingerprint(folder)
            r = evaluate_checkpoint(
                folder,
                bench,
                assets.curated_root,
                keyed_eval_dir(eval_root("paper"), ckpt, model_id, tag),
                model_id=model_id,
                tsf_boxes=boxes,
                tsf_tag=tag,
                show_progress=show_progress,
                device=_paper_device(),
            )[ABLATION_COLUMN]
            out.cells.append(
                Cell(
                    ABLATION_HOST,
                    step,
                    seed,
                    ABLATION_COLUMN,
                    r.value,
                    r.note,
                    r.seg_found_rate,
                    r.units,
                    dict(r.details),
                    r.expressions,
                )
            )
        return out
    out = _merge(plan, _run_units(_ablation_units(plan, (path, why)), plan.workers, show_progress))
    out.cells = base + out.cells
    out.details["tsf_test"] = why or f"tsf-run:{path.name}"
    return out


def _predictions_of(plan, host: str, seed: int, variant: str, benchmark: str, curated_root: Path) -> Path | None:
    """The prediction folder :func:`measure_main` wrote for one run and benchmark (None, or a folder that does not
    exist, when it wrote none). Under paper, where the checkpoints are not at hand here, the folder of
    ``<host>-<variant>`` whose manifest names these data; more than one such folder (several checkpoints evaluated
    under one name) is an error, not a guess."""
    if plan.profile != "paper":
        run_dir = runs_dir(plan.profile) / f"{host}-seed{seed}" / variant
        return run_eval_dir(RunResult.load(run_dir)) / benchmark if (run_dir / "run.json").is_file() else None
    data = records_fingerprint(curated_root)
    name = checkpoint_name(host, variant)
    found = [
        folder / benchmark
        for folder in sorted(eval_root("paper").glob(f"{glob.escape(name)}-*"))
        if (folder / benchmark / MANIFEST).is_file() and read_json(folder / benchmark / MANIFEST).get("data") == data
    ]
    if len(found) > 1:
        raise DataError(f"{', '.join(map(str, found))}: predictions of several {name} checkpoints on these data")
    return found[0] if found else eval_root("paper") / name / benchmark


def tables_text_dependence(plan, curated_root: str | Path | None = None, seed: int | None = None) -> list[dict]:
    """Notebook 04's runs of one training seed (default the plan's first) on its MeViS / Ref-YouTube-VOS columns:
    one row per (host, variant, benchmark) with the pairs, referent accuracy (over its referent cases: does the
    mask of a text overlap its own referent more than the other's; a text-blind model scores at most 0.5), the
    predicted and the ground-truth pair IoU. Reads the
    predictions :func:`measure_main` left on disk; a run without them is left out.
    ``curated_root``: the curated data they were predicted on (default: SPARROW-Mini of the plan's data seed;
    under ``paper`` without it nothing is measured)."""
    seed = plan.seeds[0] if seed is None else seed
    if curated_root is None and plan.profile == "paper":
        return []  # the real data are absent, so nothing was predicted
    curated = CuratedDataset(curated_root if curated_root is not None else ensure_curated(plan.profile, plan.data_seed))
    rows = []
    for host in plan.hosts:
        for variant in MAIN_VARIANTS:
            for b in plan.benchmarks:
                found = _predictions_of(plan, host, seed, variant, b.key, curated.root)
                folder = found / "Annotations" if found is not None else None
                if b.protocol != "rvos" or folder is None or not folder.is_dir():
                    continue
                r = text_dependence(curated, folder, b.source, b.split)
                rows.append(
                    {
                        "host": host,
                        "variant": variant,
                        "benchmark": b.key,
                        "pairs": r.pairs,
                        "referent_cases": r.referent_cases,
                        "referent_accuracy": r.referent_accuracy,
                        "predicted_pair_iou": r.predicted_pair_iou,
                        "ground_truth_pair_iou": r.ground_truth_pair_iou,
                        "ignores_text": r.ignores_text,
                    }
                )
    return rows


def hard_case_rows(
    plan,
    curated_root: str | Path | None = None,
    seed: int | None = None,
    benchmark: str = HARD_CASE_BENCHMARK,
) -> list[dict]:
    """Notebook 04's runs of one training seed (default the plan's first) on ``benchmark``'s scored videos, per
    SPARROW-Mini hard case: one row per (host, variant, case) with the videos and expressions of that case, J&F
    (x100, the benchmark's protocol over those expressions) and referent accuracy
    (:mod:`sparrow.eval.text_dependence`, over the case's pairs of disjoint referents; None without one). A
    video's cases are its tags in the generated SPARROW-Mini's manifest (scene and expression hard cases,
    :func:`sparrow.tsf.quality.read_hard_case_tags`); ``all`` is every scored video, ``none`` those with no
    tag. A case no scored video has gets no row. Reads the predictions :func:`measure_main` left on disk; a run
    without them is left out; data that were not generated (the real releases) have no hard cases: no rows."""
    seed = plan.seeds[0] if seed is None else seed
    if curated_root is None and plan.profile == "paper":
        return []
    curated = CuratedDataset(curated_root if curated_root is not None else ensure_curated(plan.profile, plan.data_seed))
    tags = read_hard_case_tags(curated.root)
    b = get_benchmark(benchmark, plan.profile)
    if not tags or b.protocol != "rvos":
        return []
    units = b.select(curated)
    cases = {ALL_VIDEOS: sorted(units)}
    for case in HARD_CASES:
        cases[case] = [v for v in sorted(units) if case in tags.get(v, ())]
    cases[NO_HARD_CASE] = [v for v in sorted(units) if not set(tags.get(v, ())) & set(HARD_CASES)]
    rows = []
    for host in plan.hosts:
        for variant in MAIN_VARIANTS:
            found = _predictions_of(plan, host, seed, variant, b.key, curated.root)
            folder = found / "Annotations" if found is not None else None
            if folder is None or not folder.is_dir():
                continue
            ids = [e.expression_id for exps in units.values() for e in exps]
            scores = evaluate_rvos(curated, folder, source=b.source, split=b.split, expression_ids=ids).expressions
            masks = dict(iter_video_text_masks(curated, folder, b.source, b.split, videos=set(units)))
            for case, videos in cases.items():
                if not videos:
                    continue
                chosen = set(videos)
                of_case = [s for s in scores if s.video_id in chosen]
                referents = text_dependence_of(masks[v] for v in videos)
                rows.append(
                    {
                        "host": host,
                        "variant": variant,
                        "case": case,
                        "videos": len(videos),
                        "expressions": len(of_case),
                        "jf": 100.0 * aggregate_jf([s.j for s in of_case], [s.f for s in of_case])[2],
                        "referent_cases": referents.referent_cases,
                        "referent_accuracy": referents.referent_accuracy,
                    }
                )
    return rows


def rescore_with_sparrow_score(
    plan: TablePlan,
    main: Measurements,
    host: str = "videoglamm",
    variant: str = "sparrow",
    benchmark: str = "mevis_valid_u",
    seed: int | None = None,
) -> tuple[Any, float | None]:
    """One run's predictions of a MeViS column scored again by ``sparrow score`` (the tool for anyone's own
    predictions) against SPARROW-Mini's released-layout ground truth, on the videos the table predicted: the
    :class:`~sparrow.eval.score.ScoreResult` and the table's number for the same run (the two must agree);
    ``(None, None)`` under paper."""
    from sparrow.data.synthetic import ensure_generated
    from sparrow.eval.score import score_mevis

    seed = plan.seeds[0] if seed is None else seed
    b = get_benchmark(benchmark, plan.profile)
    if b.protocol != "rvos" or b.source != "mevis":
        raise ValueError(f"{benchmark}: only the MeViS columns are scored again here")
    if plan.profile == "paper":
        return None, None  # the real releases are scored with `sparrow score` directly (README)
    found = _predictions_of(plan, host, seed, variant, benchmark, ensure_curated(plan.profile, plan.data_seed))
    folder = found / "Annotations" if found is not None else None
    if folder is None or not folder.is_dir():
        raise DataError(f"{host} {variant} seed {seed}: no {benchmark} predictions on disk (run measure_main first)")
    videos = sorted(p.name for p in folder.iterdir() if p.is_dir())
    gt = ensure_generated(plan.profile, plan.data_seed) / "mevis" / b.split
    result = score_mevis(gt, folder, "mevis-" + b.split.replace("_", "-"), videos_only=videos)
    table = next(
        (c.value for c in main.cells if (c.host, c.variant, c.seed, c.column) == (host, variant, seed, benchmark)),
        None,
    )
    return result, table
