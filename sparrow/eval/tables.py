"""The paper's main table and Ref-DAVIS17 ablation, measured and set beside the published numbers (notebook 04).

What is measured:

- **Main table**: for every host (VideoGLaMM, UniPixel, GLUS) the baseline (the host stage alone) and
  + SPARROW (TSF in training + ``[BOX]``), trained with :func:`sparrow.train.variants.train_variant` on the
  curated data of the plan's data seed for each training seed, evaluated on the six benchmarks of
  :mod:`sparrow.eval.benchmarks` with :func:`sparrow.eval.runner.evaluate_run` (cached per run and benchmark).
- **Ablation** (Ref-DAVIS17, VideoGLaMM): baseline → + TSF (``tsf=True, box=False``) → + ``[BOX]`` (the SPARROW run)
  → + TSF at test (the SPARROW run with tracked TSF boxes from :func:`sparrow.tsf.pipeline.ensure_tsf`).
- Under ``paper`` nothing is trained: the checkpoints of the released models, converted to the kit's
  ``save_pretrained`` format, are read from ``<checkpoints>/<host>-<variant>`` and scored on the real data, and
  each number is compared with the paper's within :data:`PAPER_TOLERANCE`.

Under mini the (host, seed) groups run in ``TablePlan.workers`` single-threaded processes (two on the 2-core target
machine): each group's runs share a host stage, so a group never runs in two processes at once, and every run is
seeded and cached, so the numbers do not depend on the schedule. With a pool, the VideoGLaMM groups of the main table
also train and score the ablation's runs, which :func:`measure_ablation` then reads back from the cache.

Per cell: mean ± sample standard deviation over seeds (no std with one seed). Gains are paired per seed (both
variants of a seed share the host stage): ``gain_s = sparrow_s − baseline_s``, then mean ± std of the gains.
A verdict says +SPARROW beats the baseline when the mean gain is at least :data:`NEGLIGIBLE` (half the tables'
0.1-point precision), that it does not when the gain is at most −NEGLIGIBLE, and that there is no difference in
between; it says how many seeds agree and whether the gain exceeds its seed-to-seed spread.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sparrow.eval.benchmarks import COLUMNS, Benchmark, benchmarks_for
from sparrow.eval.paper import TABLE_HOSTS, TITLES, ablation, main_table, paper_value
from sparrow.profiles import check_profile

HOST_NAMES = {"unipixel": "UniPixel", "glus": "GLUS", "videoglamm": "VideoGLaMM"}
VARIANT_SWITCHES = {"baseline": (False, False), "sparrow": (True, True), "tsf-only": (True, False)}
ABLATION_HOST = "videoglamm"
ABLATION_COLUMN = "ref_davis17"
ABLATION_STEPS = ("baseline", "tsf", "box", "tsf_test")  # ablation.csv step names
# Seeds and hosts per profile: three seeds under mini, so that every mean and every paired gain carries a
# seed-to-seed standard deviation (two seeds would rest it on a single difference) while `make reproduce` stays
# within its 20-minute budget; smoke is a CI check of the code path,
# not of the numbers, and must take well under a minute, so it trains one seed of one host.
DEFAULT_SEEDS = {"smoke": 1, "mini": 3, "paper": 1}
DEFAULT_HOSTS = {"smoke": ("videoglamm",), "mini": TABLE_HOSTS, "paper": TABLE_HOSTS}
# Processes: under mini the (host, seed) groups are independent runs, two at a time on the 2-core target machine;
# smoke stays in the notebook's process (starting a worker costs more than smoke's whole work).
DEFAULT_WORKERS = {"smoke": 1, "mini": 2, "paper": 1}
# |measured - paper| allowed under `paper`: the protocols are reimplemented exactly (J and F equal the official code
# to 1e-12), so what remains is inference numerics (fp16 kernels, SAM2 ops, GPU nondeterminism) and, for VidSTG,
# the resize to 224 px; one point of J&F / mIoU covers that and nothing larger.
PAPER_TOLERANCE = 1.0
# A mean gain smaller than this is "no difference": half the 0.1-point precision the tables print.
NEGLIGIBLE = 0.05
PAPER_SOURCE = "README results table (reproductions/paper/main_table.csv)"
ABLATION_SOURCE = "paper ablation (reproductions/paper/ablation.csv)"


@dataclass(frozen=True)
class TablePlan:
    """What notebook 04 measures: profile, the data seed, training seeds, hosts and the benchmarks."""

    profile: str
    data_seed: int
    seeds: tuple[int, ...]
    hosts: tuple[str, ...] = TABLE_HOSTS
    benchmarks: tuple[Benchmark, ...] = ()
    workers: int = 1  # processes training and evaluating (host, seed) groups side by side

    def __post_init__(self) -> None:
        check_profile(self.profile)
        if not self.seeds:
            raise ValueError("a table needs at least one training seed")
        unknown = [h for h in self.hosts if h not in TABLE_HOSTS]
        if unknown:
            raise ValueError(f"unknown host(s) {unknown}; choose from {TABLE_HOSTS}")

    @classmethod
    def for_profile(cls, profile: str, seed: int = 0, seeds: Sequence[int] | None = None,
                    hosts: Sequence[str] | None = None) -> "TablePlan":
        """Default seeds: ``seed, seed + 1, ...`` (:data:`DEFAULT_SEEDS` of them); data always from ``seed``;
        default hosts :data:`DEFAULT_HOSTS`."""
        check_profile(profile)
        chosen = tuple(seeds) if seeds is not None else tuple(seed + i for i in range(DEFAULT_SEEDS[profile]))
        return cls(profile, int(seed), tuple(int(s) for s in chosen),
                   tuple(hosts) if hosts else DEFAULT_HOSTS[profile], benchmarks_for(profile),
                   max(1, min(DEFAULT_WORKERS[profile], os.cpu_count() or 1)))


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
        cells = sorted((c for c in self.cells if (c.host, c.variant, c.column) == (host, variant, column)),
                       key=lambda c: c.seed)
        return [c.value for c in cells if c.value is not None]

    def cell(self, host: str, variant: str, column: str, seed: int) -> Cell | None:
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


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return float(statistics.fmean(values)), (float(statistics.stdev(values)) if len(values) > 1 else None)


def fmt(mean: float | None, std: float | None, digits: int = 1, sign: bool = False) -> str:
    if mean is None:
        return "n/a"
    text = f"{mean:+.{digits}f}" if sign else f"{mean:.{digits}f}"
    return text + (f" ± {std:.{digits}f}" if std is not None else "")


# ----------------------------------------------------------------------------------------------------------------
# Assets under `paper`
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PaperAssets:
    """Where the real data and checkpoints are, and whether they are there."""

    curated_root: Path | None
    checkpoints_root: Path | None
    missing: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.missing

    @property
    def message(self) -> str:
        if self.ok:
            return f"paper assets found: curated data {self.curated_root}, checkpoints {self.checkpoints_root}"
        return ("SKIPPED: the paper comparison needs assets that are absent: " + "; ".join(self.missing)
                + ". Curate the real releases with `sparrow curate` and put the converted checkpoints in "
                  "<checkpoints>/<host>-<baseline|sparrow|tsf-only>/ (SparrowModel.save_pretrained format).")


def checkpoint_name(host: str, variant: str) -> str:
    return f"{host}-{variant}"


def find_paper_assets(plan: TablePlan, curated_root: str | Path | None, checkpoints_root: str | Path | None
                      ) -> PaperAssets:
    """Check the curated real data and every checkpoint the plan needs (relative paths are under SPARROW_HOME)."""
    from sparrow.paths import home

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
        from sparrow.data.curated import CuratedDataset

        ds = CuratedDataset(data)
        for b in plan.benchmarks:
            if b.split not in ds.splits(b.source):
                missing.append(f"{b.source}/{b.split} in {data}")
    names = [checkpoint_name(h, v) for h in plan.hosts for v in ("baseline", "sparrow")]
    if ABLATION_HOST in plan.hosts:
        names.append(checkpoint_name(ABLATION_HOST, "tsf-only"))
    for name in names:
        if ckpt is None or not (ckpt / name / "model.safetensors").is_file():
            missing.append(f"checkpoint {ckpt / name if ckpt else name}")
    return PaperAssets(data, ckpt, tuple(missing))


# ----------------------------------------------------------------------------------------------------------------
# Measuring
# ----------------------------------------------------------------------------------------------------------------
def _cells(results: dict, host: str, variant: str, seed: int) -> list[Cell]:
    return [Cell(host, variant, seed, key, r.value, r.note, r.seg_found_rate, r.units, dict(r.details),
                 r.expressions) for key, r in results.items()]


def _paper_device() -> str | None:
    """Paper-size checkpoints go to the GPU when there is one (smoke/mini stay on the CPU their expectations
    were recorded on)."""
    import torch

    return "cuda" if torch.cuda.is_available() else None


def _train(plan: TablePlan, host: str, variant: str, seed: int, curated_root: Path, show_progress: bool):
    from sparrow.train.variants import train_variant

    tsf, box = VARIANT_SWITCHES[variant]
    return train_variant(host, plan.profile, seed, tsf, box, curated_root=curated_root, show_progress=show_progress)


def _tsf_run(plan: TablePlan, curated_root: Path | None, tsf_run: str | Path | None) -> tuple[Path | None, str]:
    """(finished TSF run folder, why not) for TSF at test on the ablation's split: the run given, or under
    smoke/mini the cached one of :func:`sparrow.tsf.pipeline.ensure_tsf` (notebook 02 computes it)."""
    from sparrow.eval.benchmarks import get_benchmark

    if tsf_run is not None:
        return Path(tsf_run), ""
    if plan.profile == "paper":
        return None, ("not computed: under paper, TSF at test needs a finished tracked TSF run of ref-davis17/valid "
                      "(pass tsf_run, computed with the released GroundingDINO)")
    b = get_benchmark(ABLATION_COLUMN, plan.profile)
    try:
        from sparrow.data.curate import ensure_curated
        from sparrow.tsf.pipeline import ensure_tsf
    except ImportError as exc:
        return None, f"not computed: the TSF pipeline is not available ({exc})"
    root = curated_root if curated_root is not None else ensure_curated(plan.profile, plan.data_seed)
    return ensure_tsf(plan.profile, plan.data_seed, b.split, b.source, curated_root=root), ""


@dataclass(frozen=True)
class _Group:
    """One (host, seed) of a plan: its runs share the host stage, so they are trained in one process, in order."""

    plan: TablePlan
    host: str
    seed: int
    kind: str  # "main": baseline and + SPARROW on every benchmark; "ablation": + TSF, and TSF at test
    tsf_run: str | None = None
    tsf_why: str = ""
    # a "main" group of the ablation host also trains and scores the ablation's runs (kept in the cache for
    # measure_ablation): one pool then balances all the work, instead of a second pool with an idle worker
    with_ablation: bool = False


def _measure_group(group: _Group, clair_judge: Any = None) -> Measurements:
    from sparrow.data.curate import ensure_curated
    from sparrow.eval.benchmarks import get_benchmark
    from sparrow.eval.runner import evaluate_run, tsf_boxes_from_run

    plan, host, seed = group.plan, group.host, group.seed
    out = Measurements(plan)
    curated_root = ensure_curated(plan.profile, plan.data_seed)
    if group.kind == "main":
        for variant in ("baseline", "sparrow"):
            start = time.perf_counter()
            run = _train(plan, host, variant, seed, curated_root, False)
            mid = time.perf_counter()
            results = evaluate_run(run, plan.benchmarks, curated_root, clair_judge=clair_judge, show_progress=False)
            out.train_seconds += mid - start
            out.eval_seconds += time.perf_counter() - mid
            out.predict_seconds += sum(r.predict_seconds for r in results.values())
            out.cells += _cells(results, host, variant, seed)
        if group.with_ablation:
            ahead = _measure_group(replace(group, kind="ablation", with_ablation=False))
            out.train_seconds += ahead.train_seconds
            out.eval_seconds += ahead.eval_seconds
        return out
    bench = [get_benchmark(ABLATION_COLUMN, plan.profile)]
    start = time.perf_counter()
    run = _train(plan, host, "tsf-only", seed, curated_root, False)
    mid = time.perf_counter()
    out.train_seconds += mid - start
    out.cells += _cells(evaluate_run(run, bench, curated_root, show_progress=False), host, "tsf", seed)
    if group.tsf_run is None:
        out.cells.append(Cell(host, "tsf_test", seed, ABLATION_COLUMN, None, group.tsf_why))
    else:
        boxes, tag = tsf_boxes_from_run(group.tsf_run)
        sparrow_run = _train(plan, host, "sparrow", seed, curated_root, False)
        results = evaluate_run(sparrow_run, bench, curated_root, tsf_boxes=boxes, tsf_tag=tag, show_progress=False)
        out.cells += _cells(results, host, "tsf_test", seed)
    out.eval_seconds += time.perf_counter() - mid
    return out


def _pretrain_sam(plan: TablePlan) -> None:
    """The SAM2 pretraining every tiny host starts from, run here with all threads before the pool starts (the
    pool's workers would otherwise wait for the first of them to train it on one thread)."""
    from sparrow.data.curate import ensure_curated
    from sparrow.model import ModelConfig
    from sparrow.train.variants import pretrained_sam

    curated_root = ensure_curated(plan.profile, plan.data_seed)
    for host in plan.hosts:  # every tiny host has the same SAM2 spec: the first trains it, the others find it
        pretrained_sam(ModelConfig.for_preset(host, plan.profile), curated_root)


def _single_thread() -> None:
    # Two single-threaded processes use 2 cores far better than one process with 2 intra-op threads on models
    # this small (and do not oversubscribe a loaded machine).
    import warnings

    import torch

    torch.set_num_threads(1)
    warnings.simplefilter("ignore")


def _run_groups(groups: list[_Group], workers: int, show_progress: bool) -> list[Measurements]:
    """Each group in order (``workers`` <= 1) or in a pool of single-threaded processes, longest first."""
    from tqdm.auto import tqdm

    if workers <= 1 or len(groups) <= 1:
        return [_measure_group(g) for g in tqdm(groups, desc="runs", disable=not show_progress)]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    # measured training + evaluation time order on mini (videoglamm groups carry the ablation's runs)
    cost = {"unipixel": 3, "glus": 2, "videoglamm": 2 if any(g.with_ablation for g in groups) else 1}
    order = sorted(groups, key=lambda g: -cost.get(g.host, 0))
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_single_thread) as pool:
        futures = [pool.submit(_measure_group, g) for g in order]
        for _ in tqdm(as_completed(futures), total=len(futures), desc="runs", disable=not show_progress):
            pass
        return [f.result() for f in futures]


def _merge(plan: TablePlan, parts: list[Measurements]) -> Measurements:
    out = Measurements(plan)
    for part in parts:
        out.cells += part.cells
        out.train_seconds += part.train_seconds
        out.eval_seconds += part.eval_seconds
        out.predict_seconds += part.predict_seconds
    out.cells.sort(key=lambda c: (c.host, c.variant, c.seed, COLUMNS.index(c.column)))
    return out


def measure_main(plan: TablePlan, assets: PaperAssets | None = None, show_progress: bool = False,
                 clair_judge: Any = None) -> Measurements:
    """Every (host, variant, seed) on every benchmark of the plan (trained and cached under smoke/mini, in
    ``plan.workers`` processes; the converted checkpoints under paper, or nothing with ``skipped`` set when they
    are absent). ``train_seconds``/``eval_seconds`` add up the time of every group (more than the wall time when
    groups ran in parallel; with a pool they include the ablation's runs, see the module docstring); the notebook
    reports its own wall time beside them."""
    from sparrow.eval.runner import eval_root, evaluate_checkpoint

    out = Measurements(plan)
    if plan.profile == "paper":
        if assets is None or not assets.ok:
            out.skipped = assets.message if assets is not None else "SKIPPED: no paper assets given"
            return out
        for host in plan.hosts:
            for variant in ("baseline", "sparrow"):
                start = time.perf_counter()
                name = checkpoint_name(host, variant)
                results = evaluate_checkpoint(assets.checkpoints_root / name, plan.benchmarks, assets.curated_root,
                                              eval_root("paper") / name, clair_judge=clair_judge,
                                              show_progress=show_progress, device=_paper_device())
                out.eval_seconds += time.perf_counter() - start
                out.predict_seconds += sum(r.predict_seconds for r in results.values())
                out.cells += _cells(results, host, variant, plan.seeds[0])
        return out
    groups = [_Group(plan, host, seed, "main") for seed in plan.seeds for host in plan.hosts]
    if plan.workers > 1:
        _pretrain_sam(plan)
    if ABLATION_HOST in plan.hosts and plan.workers > 1:
        path, why = _tsf_run(plan, None, None)
        groups = [replace(g, tsf_run=str(path) if path else None, tsf_why=why, with_ablation=True)
                  if g.host == ABLATION_HOST else g for g in groups]
    if clair_judge is not None:  # a judge (an HTTP client, a loaded LLM) stays in this process
        return _merge(plan, [_measure_group(g, clair_judge) for g in groups])
    return _merge(plan, _run_groups(groups, plan.workers, show_progress))


def measure_ablation(plan: TablePlan, main: Measurements, assets: PaperAssets | None = None,
                     tsf_run: str | Path | None = None, show_progress: bool = False) -> Measurements:
    """Ref-DAVIS17 of the four ablation steps per seed; baseline and + [BOX] are the main table's cells."""
    from sparrow.eval.benchmarks import get_benchmark
    from sparrow.eval.runner import eval_root, evaluate_checkpoint, tsf_boxes_from_run

    out = Measurements(plan)
    if ABLATION_HOST not in plan.hosts:
        out.skipped = f"the plan has no {ABLATION_HOST}"
        return out
    if main.skipped:
        out.skipped = main.skipped
        return out
    base = []
    for step, variant in (("baseline", "baseline"), ("box", "sparrow")):
        for s in plan.seeds:
            c = main.cell(ABLATION_HOST, variant, ABLATION_COLUMN, s)
            base.append(Cell(ABLATION_HOST, step, s, ABLATION_COLUMN, c.value, c.note, c.seg_found_rate, c.units,
                             dict(c.details), c.expressions))
    path, why = _tsf_run(plan, assets.curated_root if assets else None, tsf_run)
    if plan.profile == "paper":
        out.details["tsf_test"] = why or f"tsf-run:{path.name}"
        bench = [get_benchmark(ABLATION_COLUMN, plan.profile)]
        seed = plan.seeds[0]
        out.cells = base
        for step, name, use_boxes in (("tsf", "tsf-only", False), ("tsf_test", "sparrow", True)):
            if use_boxes and path is None:
                out.cells.append(Cell(ABLATION_HOST, step, seed, ABLATION_COLUMN, None, why))
                continue
            boxes, tag = tsf_boxes_from_run(path) if use_boxes else (None, None)
            ckpt = checkpoint_name(ABLATION_HOST, name)
            r = evaluate_checkpoint(assets.checkpoints_root / ckpt, bench, assets.curated_root,
                                    eval_root("paper") / (ckpt + ("+tsf-test" if use_boxes else "")),
                                    tsf_boxes=boxes, tsf_tag=tag, show_progress=show_progress,
                                    device=_paper_device())[ABLATION_COLUMN]
            out.cells.append(Cell(ABLATION_HOST, step, seed, ABLATION_COLUMN, r.value, r.note, r.seg_found_rate,
                                  r.units, dict(r.details), r.expressions))
        return out
    groups = [_Group(plan, ABLATION_HOST, s, "ablation", str(path) if path else None, why) for s in plan.seeds]
    out = _merge(plan, _run_groups(groups, plan.workers, show_progress))
    out.cells = base + out.cells
    out.details["tsf_test"] = why or f"tsf-run:{path.name}"
    return out


# ----------------------------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------------------------
def _method(host: str, variant: str) -> str:
    return HOST_NAMES[host] + (" + SPARROW" if variant == "sparrow" else "")


def main_table_frame(m: Measurements, digits: int = 1):
    """The paper's layout: one row per method (host, then host + SPARROW), one column per benchmark, each cell
    ``mean ± std`` over seeds (``n/a`` where nothing was computed)."""
    import pandas as pd

    rows = {}
    for host in m.plan.hosts:
        for variant in ("baseline", "sparrow"):
            rows[_method(host, variant)] = {TITLES[c]: fmt(*mean_std(m.values(host, variant, c)), digits)
                                            for c in COLUMNS}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = f"{m.plan.profile}, {len(m.plan.seeds)} seed(s)"
    return frame


def paper_table_frame(hosts: Sequence[str] = TABLE_HOSTS):
    """The published table in the same layout."""
    import pandas as pd

    table = main_table()
    rows = {_method(h, v): {TITLES[c]: paper_value(h, v, c, table) for c in COLUMNS}
            for h in hosts for v in ("baseline", "sparrow")}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "paper"
    return frame


def gains_frame(m: Measurements, digits: int = 2):
    """Per host and column: measured baseline, + SPARROW and gain (mean ± std over seeds, paired per seed), the
    paper's gain, and how many seeds the gain is positive in."""
    import pandas as pd

    table = main_table()
    rows = []
    for host in m.plan.hosts:
        for c in COLUMNS:
            g = m.paired_gains(host, c)
            paper_gain = round(paper_value(host, "sparrow", c, table) - paper_value(host, "baseline", c, table), 2)
            mean, std = mean_std(g)
            rows.append({"host": HOST_NAMES[host], "column": TITLES[c],
                         "baseline": fmt(*mean_std(m.values(host, "baseline", c)), digits),
                         "+ SPARROW": fmt(*mean_std(m.values(host, "sparrow", c)), digits),
                         "gain": fmt(mean, std, digits, sign=True), "paper gain": f"{paper_gain:+.2f}",
                         "gain − paper gain": "n/a" if mean is None else f"{mean - paper_gain:+.2f}",
                         "seeds with gain > 0": f"{sum(v > 0 for v in g)}/{len(g)}"})
    return pd.DataFrame(rows).set_index(["host", "column"])


def ablation_frame(a: Measurements, digits: int = 2):
    """The ablation steps: measured Ref-DAVIS17 J&F (mean ± std), step-to-step change, the paper's value and
    change, and the measured minus the paper's value."""
    import pandas as pd

    paper_steps = {s.step: s for s in ablation()}
    rows, prev, prev_paper = [], None, None
    for step in ABLATION_STEPS:
        mean, std = mean_std(a.values(ABLATION_HOST, step, ABLATION_COLUMN))
        p = paper_steps[step].ref_davis17
        notes = {c.note for c in a.cells if c.variant == step and c.value is None and c.note}
        rows.append({"step": paper_steps[step].setting, "measured": fmt(mean, std, digits) if mean is not None
                     else (next(iter(notes)) if notes else "n/a"),
                     "change": "" if prev is None or mean is None else f"{mean - prev:+.{digits}f}",
                     "paper": f"{p:.1f}", "paper change": "" if prev_paper is None else f"{p - prev_paper:+.1f}",
                     "measured − paper": "n/a" if mean is None else f"{mean - p:+.{digits}f}"})
        prev = mean if mean is not None else prev
        prev_paper = p
    return pd.DataFrame(rows).set_index("step")


CAPTION_METRICS = ("METEOR", "CIDEr", "CLAIR")


def _caption_values(m: Measurements, host: str, variant: str, metric: str) -> tuple[list[float], set[str]]:
    cells = [c for c in m.cells if (c.host, c.variant, c.column) == (host, variant, "videogcg")]
    values = [float(c.details[metric]) for c in cells if c.details.get(metric) is not None]
    notes = {c.details.get("notes", {}).get(metric.lower(), "") for c in cells if c.details.get(metric) is None}
    return values, {n for n in notes if n}


def caption_frame(m: Measurements, digits: int = 3):
    """VideoGCG's caption metrics beside its mIoU column: METEOR and CIDEr (pycocoevalcap, raw scale) and CLAIR
    (x100, only with a judge; otherwise the reason it was not computed, never a number)."""
    import pandas as pd

    rows = {}
    for host in m.plan.hosts:
        for variant in ("baseline", "sparrow"):
            row = {}
            for metric in CAPTION_METRICS:
                values, notes = _caption_values(m, host, variant, metric)
                row[metric] = fmt(*mean_std(values), digits) if values else ("; ".join(sorted(notes)) or "n/a")
            rows[_method(host, variant)] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def seg_rate_frame(m: Measurements):
    """Share of answers that contained a [SEG] (a model that emits none scores 0 whatever its masks would be)."""
    import pandas as pd

    rows = {}
    for host in m.plan.hosts:
        for variant in ("baseline", "sparrow"):
            rows[_method(host, variant)] = {
                TITLES[c]: fmt(*mean_std([x.seg_found_rate for x in m.cells if (x.host, x.variant, x.column) ==
                                          (host, variant, c) and x.seg_found_rate is not None]), 2)
                for c in COLUMNS}
    return pd.DataFrame.from_dict(rows, orient="index")


# ----------------------------------------------------------------------------------------------------------------
# Verdicts
# ----------------------------------------------------------------------------------------------------------------
def verdicts(m: Measurements) -> list[str]:
    """One sentence per host and column, from the measured numbers; then a count."""
    if m.skipped:
        return [m.skipped]
    table = main_table()
    lines, wins, total, paper_wins = [], 0, 0, 0
    for host in m.plan.hosts:
        for c in COLUMNS:
            base, new = m.values(host, "baseline", c), m.values(host, "sparrow", c)
            paper_gain = paper_value(host, "sparrow", c, table) - paper_value(host, "baseline", c, table)
            what = f"{HOST_NAMES[host]}, {TITLES[c]}"
            if not base or not new:
                notes = {x.note for x in m.cells if x.host == host and x.column == c and x.note}
                lines.append(f"{what}: not computed ({'; '.join(sorted(notes)) or 'no value'}).")
                continue
            g = m.paired_gains(host, c)
            gm, gs = mean_std(g)
            total += 1
            paper_wins += paper_gain > 0
            numbers = (f"{fmt(*mean_std(new))} vs {fmt(*mean_std(base))}, gain {fmt(gm, gs, 2, sign=True)}, "
                       f"positive in {sum(v > 0 for v in g)}/{len(g)} seeds; paper {paper_gain:+.2f}")
            if gm >= NEGLIGIBLE:
                wins += 1
                spread = "" if gs is None else (" (more than its seed-to-seed spread)" if gm > gs
                                                else " (within its seed-to-seed spread)")
                lines.append(f"{what}: +SPARROW beats the baseline{spread}: {numbers}.")
            elif gm > -NEGLIGIBLE:
                lines.append(f"{what}: +SPARROW does NOT beat the baseline (no difference at the table's precision): "
                             f"{numbers}.")
            else:
                lines.append(f"{what}: +SPARROW does NOT beat the baseline (it scores lower): {numbers}.")
    lines.append(f"Overall on {m.plan.profile}: +SPARROW beats the baseline in {wins} of {total} host x column cells "
                 f"(mean over {len(m.plan.seeds)} seed(s)); the paper reports a gain in {paper_wins} of them.")
    return lines


def verdict_text(m: Measurements) -> str:
    return "\n".join(verdicts(m))


def ablation_verdicts(a: Measurements) -> list[str]:
    if a.skipped:
        return [a.skipped]
    paper_steps = {s.step: s for s in ablation()}
    lines = []
    for before, after in zip(ABLATION_STEPS, ABLATION_STEPS[1:]):
        x, y = a.values(ABLATION_HOST, before, ABLATION_COLUMN), a.values(ABLATION_HOST, after, ABLATION_COLUMN)
        p = paper_steps[after].ref_davis17 - paper_steps[before].ref_davis17
        what = f"{paper_steps[before].setting} -> {paper_steps[after].setting}"
        if not x or not y:
            lines.append(f"{what}: not computed ({a.details.get('tsf_test') if after == 'tsf_test' else 'no value'}).")
            continue
        d = statistics.fmean(y) - statistics.fmean(x)
        word = ("improves" if d >= NEGLIGIBLE else "does NOT improve (no difference at the table's precision)"
                if d > -NEGLIGIBLE else "does NOT improve (lower)")
        lines.append(f"{what}: {word}: Ref-DAVIS17 J&F {d:+.2f} ({statistics.fmean(x):.2f} -> "
                     f"{statistics.fmean(y):.2f}); paper {p:+.1f}.")
    return lines


def paper_checks(m: Measurements, a: Measurements | None = None, tolerance: float = PAPER_TOLERANCE) -> list[str]:
    """Under ``paper``: each measured number against the published one within ``tolerance`` points."""
    if m.plan.profile != "paper":
        return [f"not a paper run ({m.plan.profile}): SPARROW-Mini numbers are not comparable with the paper's; "
                "compare the gains instead"]
    if m.skipped:
        return [m.skipped]
    table, lines = main_table(), []
    for host in m.plan.hosts:
        for variant in ("baseline", "sparrow"):
            for c in COLUMNS:
                v = m.values(host, variant, c)
                p = paper_value(host, variant, c, table)
                if not v:
                    lines.append(f"{_method(host, variant)}, {TITLES[c]}: not computed, paper {p}")
                    continue
                ok = abs(v[0] - p) <= tolerance
                lines.append(f"{_method(host, variant)}, {TITLES[c]}: {v[0]:.2f} vs paper {p} "
                             f"({v[0] - p:+.2f}) {'within' if ok else 'OUTSIDE'} ±{tolerance}")
    if a is not None and not a.skipped:
        for step in ablation():
            v = a.values(ABLATION_HOST, step.step, ABLATION_COLUMN)
            if v:
                ok = abs(v[0] - step.ref_davis17) <= tolerance
                lines.append(f"ablation {step.setting}: {v[0]:.2f} vs paper {step.ref_davis17} "
                             f"({v[0] - step.ref_davis17:+.2f}) {'within' if ok else 'OUTSIDE'} ±{tolerance}")
    return lines


# ----------------------------------------------------------------------------------------------------------------
# Chart data and recorded numbers
# ----------------------------------------------------------------------------------------------------------------
def gain_series(m: Measurements) -> dict[str, dict[str, tuple[float | None, float | None, float]]]:
    """``{host: {column title: (measured gain mean, std, paper gain)}}`` for :func:`sparrow.viz.tables.gains_figure`."""
    table = main_table()
    return {HOST_NAMES[h]: {TITLES[c]: (*mean_std(m.paired_gains(h, c)),
                                        round(paper_value(h, "sparrow", c, table) - paper_value(h, "baseline", c,
                                                                                                 table), 2))
                            for c in COLUMNS} for h in m.plan.hosts}


def recorded_numbers(m: Measurements, a: Measurements) -> list[dict[str, Any]]:
    """Every number notebook 04 reports, as keyword arguments of :meth:`sparrow.results.Recorder.add`."""
    table = main_table()
    steps = {s.step: s for s in ablation()}
    out: list[dict[str, Any]] = []
    n = len(m.plan.seeds)
    note = f"{m.plan.profile}, mean over {n} training seed(s) {list(m.plan.seeds)}, data seed {m.plan.data_seed}"
    for host in m.plan.hosts:
        for variant in ("baseline", "sparrow"):
            for c in COLUMNS:
                b = next(b for b in m.plan.benchmarks if b.key == c)
                mean, std = mean_std(m.values(host, variant, c))
                why = "; ".join(sorted({x.note for x in m.cells if (x.host, x.variant, x.column) == (host, variant, c)
                                        and x.note})) or None
                out.append({"name": f"main/{host}/{variant}/{c}/mean", "value": mean, "unit": f"{b.metric} (%)",
                            "paper": paper_value(host, variant, c, table), "paper_source": PAPER_SOURCE,
                            "note": why or note})
                out.append({"name": f"main/{host}/{variant}/{c}/std", "value": std, "unit": f"{b.metric} (%)",
                            "note": None if std is not None else "one seed: no spread"})
                for s in m.plan.seeds:
                    cell = m.cell(host, variant, c, s)
                    out.append({"name": f"main/{host}/{variant}/{c}/seed{s}", "value": cell.value if cell else None,
                                "unit": f"{b.metric} (%)", "note": cell.note if cell and cell.note else None})
        for c in COLUMNS:
            gm, gs = mean_std(m.paired_gains(host, c))
            paper_gain = round(paper_value(host, "sparrow", c, table) - paper_value(host, "baseline", c, table), 2)
            out.append({"name": f"gain/{host}/{c}/mean", "value": gm, "unit": "points", "paper": paper_gain,
                        "paper_source": PAPER_SOURCE})
            out.append({"name": f"gain/{host}/{c}/std", "value": gs, "unit": "points"})
        for variant in ("baseline", "sparrow"):
            for metric in CAPTION_METRICS:
                values, notes = _caption_values(m, host, variant, metric)
                mean, std = mean_std(values)
                out.append({"name": f"gcg/{host}/{variant}/{metric}/mean", "value": mean,
                            "unit": "x100" if metric == "CLAIR" else "score",
                            "note": "; ".join(sorted(notes)) or None})
                out.append({"name": f"gcg/{host}/{variant}/{metric}/std", "value": std,
                            "unit": "x100" if metric == "CLAIR" else "score"})
    for step in ABLATION_STEPS:
        mean, std = mean_std(a.values(ABLATION_HOST, step, ABLATION_COLUMN))
        reason = a.details.get("tsf_test") if step == "tsf_test" and mean is None else None
        out.append({"name": f"ablation/{step}/mean", "value": mean, "unit": "J&F (%)",
                    "paper": steps[step].ref_davis17, "paper_source": ABLATION_SOURCE, "note": reason or note})
        out.append({"name": f"ablation/{step}/std", "value": std, "unit": "J&F (%)"})
        for s in m.plan.seeds:
            cell = a.cell(ABLATION_HOST, step, ABLATION_COLUMN, s)
            out.append({"name": f"ablation/{step}/seed{s}", "value": cell.value if cell else None, "unit": "J&F (%)"})
    for b in m.plan.benchmarks:
        out.append({"name": f"subset/{b.key}/{b.unit}", "value": _count(m, b.key, "units"), "unit": "count",
                    "note": f"{b.source}/{b.split}, evenly spread subset (limit {b.limit} {b.unit})"})
        out.append({"name": f"subset/{b.key}/scored_expressions", "value": _count(m, b.key, "expressions"),
                    "unit": "count"})
    return out


def _count(m: Measurements, column: str, what: str) -> int | None:
    """The subset size of a column, the same for every model (None if the models disagree or none ran)."""
    counts = {getattr(c, what) for c in m.cells if c.column == column}
    return counts.pop() if len(counts) == 1 else None


def ablation_series(a: Measurements) -> tuple[list[str], list[float], list[float | None], list[float | None]]:
    """(step names, paper values, measured means, measured stds) for :func:`sparrow.viz.tables.ablation_figure`."""
    paper_steps = {s.step: s for s in ablation()}
    stats = [mean_std(a.values(ABLATION_HOST, s, ABLATION_COLUMN)) for s in ABLATION_STEPS]
    return ([paper_steps[s].setting for s in ABLATION_STEPS], [paper_steps[s].ref_davis17 for s in ABLATION_STEPS],
            [m for m, _ in stats], [s for _, s in stats])
