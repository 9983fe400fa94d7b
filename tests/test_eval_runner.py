"""The benchmark runner: predictions on disk in the server layouts, resume, the MeViS missing rule, bad input, CLI.

Most tests use a deterministic stand-in model (colour thresholds of the frames, so the masks are neither empty nor
the ground truth and every metric is non-trivial); one runs the real smoke-size SparrowModel end to end.
"""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest

import sparrow  # noqa: F401  (torchvision shim first)
from sparrow.eval.benchmarks import BENCHMARKS, benchmarks_for, get_benchmark
from sparrow.eval.gcg import WordBagEncoder
from sparrow.eval.runner import (
    BenchmarkResult,
    PredictionsMismatch,
    evaluate_checkpoint,
    keyed_eval_dir,
    run_benchmark,
    score_benchmark,
)
from sparrow.model.batch import Prediction
from sparrow.storage import DataError, FolderLocked


class Interrupted(Exception):
    pass


class ColourModel:
    """``predict`` -> pixels whose channel ``c`` (chosen by the text) is bright; a GCG answer with one phrase."""

    def __init__(self, interrupt_after: int | None = None, batched: bool = False):
        self.calls = 0
        self.interrupt_after = interrupt_after
        self.batched_calls = 0
        if batched:
            self.predict_many = self._predict_many

    def predict(self, frames, text, *, raw_question=False, tsf_boxes=None, max_new_tokens=None):
        if self.interrupt_after is not None and self.calls >= self.interrupt_after:
            raise Interrupted(f"killed after {self.calls} predictions")
        self.calls += 1
        frames = np.asarray(frames)
        c = zlib.crc32(text.encode()) % 3
        masks = frames[..., c] > 150
        boxes = np.full((len(frames), 4), np.nan, np.float32)
        for i, m in enumerate(masks):
            ys, xs = np.nonzero(m)
            if ys.size:
                boxes[i] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
        answer = "<p> a bright thing </p> [SEG] moves." if raw_question else "Sure, [SEG]."
        return Prediction(
            masks=masks, boxes=boxes, answer=answer, masks_per_seg=masks[None], prompt_boxes=[], seg_found=True
        )

    def _predict_many(self, frames, texts, tsf_boxes=None):
        self.batched_calls += 1
        return [self.predict(frames, t) for t in texts]


@pytest.fixture(scope="module")
def curated():
    from sparrow.data.curate import ensure_curated

    return ensure_curated("smoke", 0)


def _metrics(folder: Path) -> dict:
    return json.loads((folder / "metrics.json").read_text())["result"]


@pytest.mark.parametrize("key", [b.key for b in BENCHMARKS])
def test_every_benchmark_writes_its_layout_and_scores(curated, tmp_path, key):
    bench = get_benchmark(key, "smoke")
    result = run_benchmark(ColourModel(), bench, curated, tmp_path / key, model_id="colour", show_progress=False)
    assert isinstance(result, BenchmarkResult) and result.value is not None and 0.0 <= result.value <= 100.0
    assert result.units == bench.limit and result.expressions >= result.units and not result.missing
    out = tmp_path / key
    layout = {
        "rvos": "Annotations",
        "ref_davis": "Davis17_annot2_full_video",
        "grounding": "masks",
        "gcg": "video_gcg",
    }[bench.protocol]
    assert (out / layout).is_dir() and list((out / "records").glob("*.json"))
    if bench.protocol == "ref_davis":
        from PIL import Image

        png = next((out / "Davis17_annot1").rglob("*.png"))
        assert Image.open(png).mode == "P"  # palette PNGs, object k = index k, as DAVIS reads them
        # both published protocols: the table's DAVIS one, and per expression (GLUS, UniPixel) on the same masks
        from sparrow.data.curated import CuratedDataset
        from sparrow.eval.score import score_ref_davis

        ds = CuratedDataset(curated)
        root = ds.meta["sources"]["ref-davis17"]["root"]
        videos = sorted({e.video_id.split("/", 1)[1] for es in bench.select(ds).values() for e in es})
        per = score_ref_davis(root, out, protocols=("expression",), sequences=videos).tables["per expression"]
        assert result.details["J&F per expression"] == per["J&F"] != result.value
    if bench.protocol == "gcg":
        res = json.loads(next((out / "video_gcg").rglob("res.json")).read_text())
        assert {"gt_text", "pred_text", "gt_phrases", "pred_phrases"} <= set(res)
        assert result.details["CLAIR"] is None and "no CLAIR judge" in result.details["notes"]["clair"]
        # no BERT weights in a kit run: the recall is computed with the lexical similarity, and says so
        assert 0.0 <= result.details["recall"] <= 1.0
        assert result.details["recall_similarity"] == WordBagEncoder.name


def test_some_metric_is_not_trivial(curated, tmp_path):
    # Guards the stand-in: a resume test on all-zero scores would prove nothing.
    result = run_benchmark(
        ColourModel(),
        get_benchmark("mevis_valid_u", "smoke"),
        curated,
        tmp_path / "m",
        model_id="colour",
        show_progress=False,
    )
    assert 0.0 < result.value < 100.0


@pytest.mark.parametrize("key", ["mevis_valid", "ref_davis17", "vidstg", "videogcg"])
def test_resume_after_interruption_gives_identical_metrics(curated, tmp_path, key):
    bench = get_benchmark(key, "smoke").replace(limit=None if key != "ref_davis17" else 2)
    straight = run_benchmark(
        ColourModel(), bench, curated, tmp_path / "straight", model_id="colour", show_progress=False
    )
    total = ColourModel()
    run_benchmark(total, bench, curated, tmp_path / "count", model_id="colour", show_progress=False)
    killer = ColourModel(interrupt_after=total.calls - 1)  # dies inside the last video
    with pytest.raises(Interrupted):
        run_benchmark(killer, bench, curated, tmp_path / "resumed", model_id="colour", show_progress=False)
    done_before = {p.name for p in (tmp_path / "resumed" / "records").glob("*.json")}
    assert done_before and not (tmp_path / "resumed" / "metrics.json").exists()
    again = ColourModel()
    resumed = run_benchmark(again, bench, curated, tmp_path / "resumed", model_id="colour", show_progress=False)
    assert 0 < again.calls < total.calls  # finished videos were not recomputed
    a, b = straight.to_json(), resumed.to_json()
    for d in (a, b):
        d.pop("predictions"), d.pop("predict_seconds")
    assert a == b


def test_cached_predictions_do_not_load_the_model(curated, tmp_path):
    bench = get_benchmark("vidstg", "smoke")
    first = run_benchmark(ColourModel(), bench, curated, tmp_path / "v", model_id="colour", show_progress=False)

    def loader():
        raise AssertionError("the model was loaded although every prediction was on disk")

    assert run_benchmark(loader, bench, curated, tmp_path / "v", model_id="colour", show_progress=False) == first
    # Scoring settings change the score key, not the predictions: rescored from disk, still no model.
    wider = bench.replace(limit=1)
    assert run_benchmark(loader, wider, curated, tmp_path / "v", model_id="colour", show_progress=False).units == 1


def test_another_model_is_refused_and_the_folder_kept(curated, tmp_path):
    bench = get_benchmark("mevis_valid", "smoke")
    first = run_benchmark(ColourModel(), bench, curated, tmp_path / "m", model_id="a", show_progress=False)
    files = {p: p.read_bytes() for p in (tmp_path / "m").rglob("*") if p.is_file()}
    second = ColourModel()
    with pytest.raises(PredictionsMismatch, match=r"manifest.json: .*model a \(folder\) vs b \(now\)"):
        run_benchmark(second, bench, curated, tmp_path / "m", model_id="b", show_progress=False)
    assert second.calls == 0 and {p: p.read_bytes() for p in files} == files
    assert run_benchmark(ColourModel(), bench, curated, tmp_path / "m", model_id="a", show_progress=False) == first
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("someone else's file")
    with pytest.raises(PredictionsMismatch, match="not empty and has no manifest.json"):
        run_benchmark(ColourModel(), bench, curated, tmp_path / "other", model_id="a", show_progress=False)


HOLD_LOCK = """
import sys, time
from sparrow.storage import folder_lock
with folder_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_folder_being_written_refuses_a_second_writer_and_a_dead_writers_lock_is_reclaimed(curated, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    bench = get_benchmark("vidstg", "smoke")
    out = tmp_path / "v"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        model = ColourModel()
        with pytest.raises(FolderLocked, match=f"another process is writing here \\(process {holder.pid} ") as info:
            run_benchmark(model, bench, curated, out, model_id="colour", show_progress=False)
        assert "\n" not in str(info.value) and model.calls == 0 and not (out / "manifest.json").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with pytest.warns(UserWarning, match=f"reclaimed a lock left by a process that is gone \\(process {holder.pid} "):
        result = run_benchmark(ColourModel(), bench, curated, out, model_id="colour", show_progress=False)
    assert result.value is not None
    alone = run_benchmark(ColourModel(), bench, curated, tmp_path / "alone", model_id="colour", show_progress=False)
    assert result.value == alone.value


def test_default_prediction_folders_are_keyed_by_the_model():
    a, b = "a" * 64, "b" * 64
    assert keyed_eval_dir("root", "final", a) == keyed_eval_dir("root", "final", a)
    assert keyed_eval_dir("root", "final", a) != keyed_eval_dir("root", "final", b)
    with_tsf = keyed_eval_dir("root", "final", a, "tsf-run:x")
    assert with_tsf.name.startswith("final+tsf-test-") and with_tsf != keyed_eval_dir("root", "final", a, "tsf-run:y")


def test_predict_many_is_used_when_the_model_has_it(curated, tmp_path):
    bench = get_benchmark("ref_davis17", "smoke")
    model = ColourModel(batched=True)
    run_benchmark(model, bench, curated, tmp_path / "d", model_id="colour", show_progress=False)
    assert model.batched_calls == bench.limit and model.calls > model.batched_calls  # one call per video


class ClipModel(ColourModel):
    """The text picks a channel, the clip's first frame the threshold: a clip predicted on its own differs from the
    same frames predicted within the whole video. Records every call's frame count and TSF boxes."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[int, object]] = []

    def predict(self, frames, text, *, raw_question=False, tsf_boxes=None, max_new_tokens=None):
        self.seen.append((len(frames), tsf_boxes))
        frames = np.asarray(frames)
        c = zlib.crc32(text.encode()) % 3
        masks = frames[..., c] > frames[0, ..., c].mean()
        boxes = np.zeros((len(frames), 4), np.float32)
        answer = f"[SEG] {len(frames)} frames from {int(frames[0].sum()) % 997}"
        return Prediction(masks, boxes, answer, masks[None], [], seg_found=len(frames) > 2)


def test_ref_davis17_runs_independent_clips_and_joins_them(curated, tmp_path):
    from PIL import Image

    bench = get_benchmark("ref_davis17", "smoke").replace(limit=1)
    assert all(get_benchmark("ref_davis17", p).clip_frames == 64 for p in ("smoke", "mini", "paper"))
    from sparrow.data.curated import CuratedDataset

    ds = CuratedDataset(curated)
    ((video_id, expressions),) = bench.select(ds).items()
    frames = ds.load_frames(video_id)
    n = len(frames)
    size = n // 2 + 1  # two clips, the second shorter
    tsf = {e.expression_id: np.arange(n * 4, dtype=float).reshape(n, 4) + i for i, e in enumerate(expressions)}
    model = ClipModel()
    clipped = bench.replace(clip_frames=size)
    result = run_benchmark(
        model,
        clipped,
        curated,
        tmp_path / "c",
        model_id="clip",
        tsf_boxes=lambda e: tsf[e.expression_id],
        tsf_tag="t",
        show_progress=False,
    )
    assert [k for k, _ in model.seen] == [size] * len(expressions) + [n - size] * len(expressions)
    for (k, boxes), e in zip(model.seen, expressions * 2):
        start = 0 if k == size else size
        np.testing.assert_array_equal(boxes, tsf[e.expression_id][start : start + k])  # each clip its own frames'
    record = json.loads(next((tmp_path / "c" / "records").glob("*.json")).read_text())
    row = record["expressions"][0]
    alone = [ClipModel().predict(frames[a:b], bench.prompt(expressions[0])[0]) for a, b in ((0, size), (size, n))]
    assert row["clip_answers"] == [p.answer for p in alone] and row["answer"] == alone[0].answer
    assert row["seg_found"] == (n - size > 2)
    # The palette PNGs hold the clips' own masks: expression 0 is object 1 of annotator set 0
    assert expressions[0].expression_id.endswith("/0") and expressions[0].object_ids == ["1"]
    pngs = sorted((tmp_path / "c" / "Davis17_annot1").rglob("*.png"))
    labels = np.stack([np.asarray(Image.open(p)) for p in pngs])
    joined = np.concatenate([p.masks for p in alone])
    assert (labels == 1).any() and not ((labels == 1) & ~joined).any()
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["clip_frames"] == size and result.units == 1
    whole = run_benchmark(ClipModel(), bench, curated, tmp_path / "w", model_id="clip", show_progress=False)
    assert whole.value != result.value  # the whole video in one sample is another prediction
    with pytest.raises(ValueError, match="clip_frames"):
        get_benchmark("vidstg", "smoke").replace(clip_frames=8)


def test_missing_prediction_scores_zero_under_the_mevis_rule_and_is_listed(curated, tmp_path):
    bench = get_benchmark("mevis_valid_u", "smoke")
    full = run_benchmark(ColourModel(), bench, curated, tmp_path / "m", model_id="colour", show_progress=False)
    video = next(p for p in (tmp_path / "m" / "Annotations").iterdir())
    expression = sorted(video.iterdir())[0]
    shutil.rmtree(expression)
    scored = score_benchmark(bench, curated, tmp_path / "m")
    assert scored.missing == [f"{video.name}/{expression.name}"]
    assert scored.warnings and "score 0" in scored.warnings[0]
    from sparrow.data.curated import CuratedDataset
    from sparrow.eval.rvos import evaluate_rvos

    per = {
        s.expression_id: s
        for s in evaluate_rvos(CuratedDataset(curated), tmp_path / "m" / "Annotations", "mevis", "valid_u").expressions
    }
    assert all(s.j == s.f == 0.0 for s in per.values() if s.missing)
    assert scored.value < full.value


def test_vidstg_missing_prediction_scores_zero_and_is_listed(curated, tmp_path):
    bench = get_benchmark("vidstg", "smoke")
    run_benchmark(ColourModel(), bench, curated, tmp_path / "v", model_id="colour", show_progress=False)
    gone = next((tmp_path / "v" / "masks").rglob("*.png")).parent
    shutil.rmtree(gone)
    scored = score_benchmark(bench, curated, tmp_path / "v")
    assert len(scored.missing) == 1 and gone.name in scored.missing[0]


def test_bad_prediction_png_names_the_file(curated, tmp_path):
    bench = get_benchmark("mevis_valid", "smoke")
    run_benchmark(ColourModel(), bench, curated, tmp_path / "m", model_id="colour", show_progress=False)
    png = sorted((tmp_path / "m" / "Annotations").rglob("*.png"))[0]
    png.write_bytes(b"not a png")
    with pytest.raises(DataError, match=str(png.name)):
        score_benchmark(bench, curated, tmp_path / "m")


def test_bad_record_names_the_file(curated, tmp_path):
    bench = get_benchmark("vidstg", "smoke")
    run_benchmark(ColourModel(), bench, curated, tmp_path / "v", model_id="colour", show_progress=False)
    record = sorted((tmp_path / "v" / "records").glob("*.json"))[0]
    record.write_text("{ broken")
    with pytest.raises(DataError, match=record.name):
        run_benchmark(ColourModel(), bench, curated, tmp_path / "v", model_id="colour", show_progress=False)


def test_missing_davis_sequence_is_an_error_naming_it(curated, tmp_path):
    bench = get_benchmark("ref_davis17", "smoke")
    run_benchmark(ColourModel(), bench, curated, tmp_path / "d", model_id="colour", show_progress=False)
    seq = next((tmp_path / "d" / "Davis17_annot2").iterdir())
    shutil.rmtree(seq)
    with pytest.raises(DataError, match=seq.name):
        score_benchmark(bench, curated, tmp_path / "d")


def test_not_a_curated_dataset_names_the_folder(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path)):
        run_benchmark(
            ColourModel(),
            get_benchmark("mevis_valid", "smoke"),
            tmp_path,
            tmp_path / "out",
            model_id="colour",
            show_progress=False,
        )


def test_benchmark_subsets_are_fixed_and_evenly_spread(curated):
    from sparrow.data.curated import CuratedDataset

    ds = CuratedDataset(curated)
    bench = get_benchmark("ref_youtube_vos", "smoke").replace(limit=2)
    every = bench.expressions(ds)
    chosen = bench.select(ds)
    assert list(chosen) == sorted({e.video_id for e in every})[:: len({e.video_id for e in every}) - 1]
    assert all(chosen[v] == [e for e in every if e.video_id == v] for v in chosen)  # whole videos
    assert bench.select(ds) == chosen
    sentences = get_benchmark("vidstg", "smoke").replace(limit=3)
    picked = [e for exps in sentences.select(ds).values() for e in exps]
    assert len(picked) == 3 and picked[0] == sentences.expressions(ds)[0]
    vidstg = get_benchmark("vidstg", "smoke")
    assert all(e.kind == "interrogative" for exps in vidstg.replace(limit=None).select(ds).values() for e in exps)
    assert [b.limit for b in benchmarks_for("paper")] == [None] * 6


def test_real_smoke_model_end_to_end_and_cli(curated, tmp_path, capsys):
    from sparrow.cli import main
    from sparrow.train.variants import build_model, model_config

    model = build_model(model_config("videoglamm", "smoke", True, True, curated), 0)
    ckpt = model.save_pretrained(tmp_path / "ckpt")
    benches = benchmarks_for("smoke", ["vidstg", "videogcg"])
    results = evaluate_checkpoint(ckpt, benches, curated, tmp_path / "eval", show_progress=False)
    assert set(results) == {"vidstg", "videogcg"}
    for r in results.values():
        assert r.value is not None and r.seg_found_rate is not None and r.predict_seconds > 0
    again = evaluate_checkpoint(ckpt, benches, curated, tmp_path / "eval", show_progress=False)
    assert again == results  # from the cache
    assert (
        main(
            [
                "eval",
                "--checkpoint",
                str(ckpt),
                "--curated",
                str(curated),
                "--profile",
                "smoke",
                "--benchmark",
                "vidstg",
                "--out",
                str(tmp_path / "eval"),
                "--quiet",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "VidSTG mIoU" in printed and f"{results['vidstg'].value:.2f}" in printed


def test_sparrow_eval_keeps_two_runs_final_folders_apart(curated, tmp_path, capsys):
    from sparrow.cli import main
    from sparrow.train.variants import build_model, model_config

    cfg = model_config("videoglamm", "smoke", True, True, curated)
    folders = {}
    for seed in (0, 1):
        final = build_model(cfg, seed).save_pretrained(tmp_path / f"run{seed}" / "final")
        argv = ["eval", "--checkpoint", str(final), "--curated", str(curated), "--profile", "smoke"]
        assert main([*argv, "--benchmark", "vidstg", "--quiet", "--json"]) == 0
        folders[seed] = Path(json.loads(capsys.readouterr().out)["vidstg"]["predictions"])
    assert folders[0] != folders[1] and folders[0].parent.name.startswith("final-")
    models = {json.loads((f / "manifest.json").read_text())["model"] for f in folders.values()}
    assert len(models) == 2
