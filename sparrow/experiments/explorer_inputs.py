"""What notebook 05 shows by default: notebook 04's predictions and notebook 02's TSF tracks, read from disk.

:func:`notebook_outputs` returns, for one benchmark split, the server-layout prediction folders of one host's
baseline and + SPARROW runs (training seed = the data seed, i.e. notebook 04's first seed) and a folder of TSF
track files for the same split. Everything is content-addressed and cached by the notebooks that compute it, so
after ``make reproduce`` this only reads; run on its own (e.g. one notebook test) it computes the same files with
the same seeds, so the explorer shows the same numbers whatever ran first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sparrow.data.curate import ensure_curated
from sparrow.data.curated import CuratedDataset
from sparrow.eval.benchmarks import get_benchmark
from sparrow.eval.runner import evaluate_run
from sparrow.experiments.tables import VARIANT_SWITCHES
from sparrow.paths import cache_dir
from sparrow.profiles import check_profile
from sparrow.train.variants import train_variant
from sparrow.tsf.pipeline import ensure_tsf
from sparrow.tsf.runs import TSFRun
from sparrow.viz.predictions import PredictionFolder

DEFAULT_HOST = "videoglamm"
# MeViS val^u: motion expressions with ground truth, where tracking the referent over time matters most.
DEFAULT_BENCHMARK = "mevis_valid_u"
MODELS = {"baseline": "baseline", "SPARROW": "sparrow"}  # display name -> variant of sparrow.experiments.tables


@dataclass(frozen=True)
class ExplorerInputs:
    """Folders for :class:`sparrow.viz.explorer.MaskExplorer` and the first expression that has a prediction."""

    benchmark: str
    predictions: dict[str, Path] = field(default_factory=dict)
    tracks: Path | None = None
    video_id: str | None = None
    expression_id: str | None = None


def notebook_outputs(
    profile: str, seed: int, host: str = DEFAULT_HOST, benchmark: str = DEFAULT_BENCHMARK
) -> ExplorerInputs:
    """Predictions of ``host`` (baseline and + SPARROW, seed ``seed``) on ``benchmark`` and the TSF tracks of its
    split, trained, predicted and tracked only where the cache lacks them."""
    check_profile(profile)
    bench = get_benchmark(benchmark, profile)
    if bench.protocol != "rvos":
        raise ValueError(
            f"{benchmark}: the explorer reads server-layout masks, which only the MeViS and "
            f"Ref-YouTube-VOS benchmarks write"
        )
    curated = ensure_curated(profile, seed)
    predictions: dict[str, Path] = {}
    for name, variant in MODELS.items():
        tsf, box = VARIANT_SWITCHES[variant]
        run = train_variant(host, profile, seed, tsf, box, curated_root=curated, show_progress=False)
        result = evaluate_run(run, [bench], curated, show_progress=False)[bench.key]
        predictions[name] = Path(result.predictions) / "Annotations"
    tsf_run = TSFRun(ensure_tsf(profile, seed, bench.split, bench.source, curated_root=curated))
    tracks = cache_dir("tsf") / "tracks" / tsf_run.path.name
    tsf_run.export_tracks(tracks)

    dataset = CuratedDataset(curated)
    first = PredictionFolder(predictions["baseline"])
    for video in dataset.iter_videos():
        if video.source != bench.source or video.split != bench.split:
            continue
        for expression in dataset.expressions(video.video_id):
            if expression.object_ids and first.has(video.video_id, expression.expression_id):
                return ExplorerInputs(bench.key, predictions, tracks, video.video_id, expression.expression_id)
    return ExplorerInputs(bench.key, predictions, tracks)


AUTO = "auto"


def resolve_inputs(
    profile: str,
    seed: int,
    baseline: str | Path | None = AUTO,
    sparrow: str | Path | None = AUTO,
    tracks: str | Path | None = AUTO,
    video_id: str | None = None,
    expression_id: str | None = None,
) -> ExplorerInputs:
    """Notebook 05's parameters made into explorer inputs: each ``"auto"`` is replaced by :func:`notebook_outputs`'
    folder, other values are kept (None: not shown); the shown expression defaults to the first predicted one
    when the outputs of the notebooks are used and no video is given."""
    chosen = (baseline, sparrow, tracks)
    found = notebook_outputs(profile, seed) if AUTO in [str(c) for c in chosen] else ExplorerInputs("")

    def pick(value: str | Path | None, auto: Path | None) -> Path | None:
        return auto if str(value) == AUTO else (Path(value) if value is not None else None)

    predictions = {
        "baseline": pick(baseline, found.predictions.get("baseline")),
        "SPARROW": pick(sparrow, found.predictions.get("SPARROW")),
    }
    if video_id is None:
        video_id, expression_id = found.video_id, found.expression_id
    return ExplorerInputs(
        found.benchmark,
        {k: v for k, v in predictions.items() if v is not None},
        pick(tracks, found.tracks),
        video_id,
        expression_id,
    )
