"""``sparrow score`` and ``sparrow package`` on tiny benchmarks in their released layouts (fixtures/score_data.py),
held to the official scorers' numbers (fixtures/score_reference.json, written by fixtures/make_score_reference.py):
J and F to 1e-12, ReVOS' rounded rows and tables exactly; missing predictions, errors naming the file, parallel
workers, JSON rows, the figure, streaming memory and reproducible server zips."""

from __future__ import annotations

import json
import shutil
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixtures import score_data
from sparrow.cli import main
from sparrow.eval.package import package, validate
from sparrow.eval.parallel import map_ordered
from sparrow.eval.score import read_score_json, score, score_mevis, tqdm_progress
from sparrow.storage import DataError

REFERENCE = json.loads((Path(__file__).parent / "fixtures" / "score_reference.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return score_data.build_all(tmp_path_factory.mktemp("score"))


def _official_jf(ref: dict) -> dict[str, float]:
    return {"J&F": 100 * ref["J&F"], "J": 100 * ref["J"], "F": 100 * ref["F"]}


def _close(table: dict[str, float], want: dict[str, float], tol: float = 1e-10) -> None:
    assert set(want) <= set(table)
    for k, v in want.items():
        assert table[k] == pytest.approx(v, abs=tol, rel=0), k


def _rows_match(rows: list[dict], official: dict[str, list[float]]) -> None:
    assert len(rows) == len(official)
    for r in rows:
        j, f = official[f"{r['video']}_{r['expression']}"]
        assert abs(r["j"] - j) <= 1e-12 and abs(r["f"] - f) <= 1e-12, r


def test_mevis_equals_eval_mevis_and_lists_the_missing_video(data):
    d, ref = data["mevis"], REFERENCE["mevis"]
    result = score("mevis-valid-u", d["pred"], d["gt"])
    _close(result.tables["MeViS valid_u (per expression)"], _official_jf(ref))
    _rows_match(result.expressions, ref["expressions"])
    assert result.missing == ["vid02/0", "vid02/1", "vid02/2"]
    assert "3 of 9 expressions have no prediction and score 0" in result.warnings[0]


def test_mevis_from_sa2va_rle_json_equals_its_printed_table(data):
    d = data["mevis"]
    result = score("mevis-valid-u", d["rle"], d["gt"])
    table = result.tables["MeViS valid_u (per expression)"]
    assert {k: round(v, 2) for k, v in table.items()} == REFERENCE["mevis_rle"]
    assert not result.missing  # the JSON holds every video, the PNG folder one fewer


def test_videogcg_from_the_sample_folders(data):
    ref = REFERENCE["videogcg"]
    result = score("videogcg", data["videogcg"]["pred"], None)
    assert result.tables["VideoGCG"]["mIoU"] == pytest.approx(100 * ref["mIoU"], abs=1e-10, rel=0)
    assert [r["miou"] for r in result.videos] == pytest.approx(ref["per_sample"], abs=1e-12, rel=0)
    assert result.videos[2]["failed"] == "2 predicted phrases for 1 mask tubes"
    assert "meteor: not computed: caption metrics off" in result.warnings


def test_vidstg_equals_tubedetrs_evaluator(data):
    d, ref = data["vidstg"], REFERENCE["vidstg"]
    result = score("vidstg", d["pred"], d["gt"])
    names = {"tiou": "m_tIoU", "viou": "m_vIoU", "gt_viou": "m_gt_vIoU"}
    for key, value in ref["summary"].items():
        qtype, metric = key.split("_", 1)
        name = names.get(metric) or metric.replace("viou", "vIoU")
        assert result.tables[f"VidSTG {qtype} (TubeDETR)"][name] == pytest.approx(100 * value, abs=1e-10, rel=0), key
    for row in result.expressions:
        for metric, value in ref["per_sentence"][row["video"]].items():
            assert row[metric] == pytest.approx(value, abs=1e-12, rel=0)
    broken = json.loads(d["pred"].read_text())
    broken["predictions"] = {k: v for k, v in broken["predictions"].items() if not k.startswith("0_")}
    (d["pred"].parent / "broken.json").write_text(json.dumps(broken))
    with pytest.raises(DataError, match="no box prediction for frame 0_"):
        score("vidstg", d["pred"].parent / "broken.json", d["gt"])


def test_ref_youtube_vos_from_palette_annotations(data):
    d, ref = data["ref-youtube-vos"], REFERENCE["ref-youtube-vos"]
    result = score("ref-youtube-vos", d["pred"], d["gt"])  # the Annotations folder itself
    _close(result.tables["Ref-YouTube-VOS (per expression)"], _official_jf(ref))
    _rows_match(result.expressions, ref["expressions"])
    again = score("ref-youtube-vos", d["pred"].parent, d["gt"])  # its parent, the server layout
    assert again.tables == result.tables


def test_ref_davis17_reports_both_protocols_labelled(data, tmp_path):
    d, ref = data["ref-davis17"], REFERENCE["ref-davis17"]
    result = score("ref-davis17", d["pred"], d["gt"])
    runs = ref["annotators"]
    for folder, run in runs.items():
        official = run["table"]
        _close(
            result.tables[f"DAVIS unsupervised, {folder}"],
            {"J&F": 100 * official["J&F-Mean"], "J": 100 * official["J-Mean"], "F": 100 * official["F-Mean"]},
        )
    mean = np.mean([r["table"]["J&F-Mean"] for r in runs.values()])
    _close(result.tables["DAVIS unsupervised, mean of 4 annotator sets"], {"J&F": 100 * mean})
    per = ref["per_expression"]
    _close(result.tables["per expression"], _official_jf(per))
    _rows_match(result.expressions, per["expressions"])
    assert {k: round(v, 2) for k, v in result.tables["per expression"].items()} == per["printed"]
    # The two protocols differ on the same masks: both are printed, never one for the other.
    assert abs(result.tables["per expression"]["J&F"] - 100 * mean) > 0.1
    # ReferFormer's folder names (anno_0..anno_3, same slot order) give the same numbers.
    renamed = tmp_path / "referformer"
    for slot, folder in enumerate(score_data.DAVIS_FOLDERS):
        shutil.copytree(d["pred"] / folder, renamed / f"anno_{slot}")
    other = score("ref-davis17", renamed, d["gt"])
    assert other.tables["per expression"] == result.tables["per expression"]
    assert other.tables["DAVIS unsupervised, anno_2"] == result.tables["DAVIS unsupervised, Davis17_annot2"]
    # The converted layout alone (valid/Annotations, copies of the unsupervised annotations) gives the same.
    converted = tmp_path / "converted"
    shutil.copytree(d["gt"], converted, ignore=shutil.ignore_patterns("DAVIS"))
    assert score("ref-davis17", d["pred"], converted).tables == result.tables
    # Per-expression folders alone (UniPixel's layout) give the per-expression protocol, with a note.
    per_exp = tmp_path / "per_expression"
    for r in result.expressions:
        slot = score_data.DAVIS_FOLDERS[int(r["expression"]) % 4]
        obj = int(r["expression"]) // 4 + 1
        for f in score_data.frames():
            labels = np.array(Image.open(d["pred"] / slot / r["video"] / f"{f}.png"))
            score_data._png(per_exp / r["video"] / r["expression"] / f"{f}.png", np.where(labels == obj, 255, 0))
    alone = score("ref-davis17", per_exp, d["gt"])
    assert list(alone.tables) == ["per expression"] and "annotator folders" in alone.warnings[-1]
    _rows_match(alone.expressions, per["expressions"])
    # A DAVIS root alone (no converted expression list) gives the DAVIS protocol.
    only = score("ref-davis17", d["pred"], d["davis"], protocol="davis")
    assert only.tables["DAVIS unsupervised, mean of 4 annotator sets"] == pytest.approx(
        result.tables["DAVIS unsupervised, mean of 4 annotator sets"], abs=1e-12
    )


@pytest.mark.parametrize("kind, layout", [("png", "pred"), ("rle", "rle")])
def test_revos_equals_the_visa_and_sa2va_scorers(data, kind, layout):
    d, ref = data["revos"], REFERENCE["revos"][kind]
    result = score("revos", d[layout], d["gt"])
    for name, official in (("referring", ref["referring"]), ("reasoning", ref["reason"]), ("overall", ref["overall"])):
        _close(result.tables[name], official, tol=1e-9)
    for r in result.expressions:
        assert r["official"] == ref["expressions"][f"{r['video']}/{r['expression']}"]
    assert "no target" in result.warnings[-1]


def test_progress_wraps_the_stream_of_videos(data):
    d = data["mevis"]
    seen = []

    def progress(stream, total, desc):
        seen.append((total, desc))
        return stream

    plain = score("mevis-valid-u", d["pred"], d["gt"])
    assert score("mevis-valid-u", d["pred"], d["gt"], progress=progress).to_json() == plain.to_json()
    assert seen == [(3, "MeViS valid_u")]
    assert score("mevis-valid-u", d["pred"], d["gt"], progress=tqdm_progress).to_json() == plain.to_json()


def test_device_path_gives_the_same_values(data):
    # The torch counting path (here on the CPU; --device cuda on a GPU) returns the CPU path's values.
    d = data["revos"]
    assert score("revos", d["rle"], d["gt"], device="cpu").to_json() == score("revos", d["rle"], d["gt"]).to_json()


def test_workers_give_the_same_result(data):
    d = data["mevis"]
    assert (
        score("mevis-valid-u", d["pred"], d["gt"], workers=2).to_json()
        == score("mevis-valid-u", d["pred"], d["gt"]).to_json()
    )
    assert list(map_ordered(abs, [-3, 1, -2], workers=2)) == [3, 1, 2]


def test_problems_are_one_line_errors_naming_the_file(data, tmp_path):
    d = data["mevis"]
    pred = tmp_path / "pred"
    shutil.copytree(d["pred"], pred)
    with pytest.raises(DataError, match="prediction folder .*nowhere does not exist"):
        score("mevis-valid-u", tmp_path / "nowhere", d["gt"])
    (pred / "vid00" / "1" / "00002.png").unlink()
    with pytest.raises(DataError, match="video vid00, expression 1, frame 00002: missing file .*00002.png"):
        score("mevis-valid-u", pred, d["gt"])
    score_data._png(pred / "vid00" / "1" / "00002.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(DataError, match=r"frame 00002: prediction size \(10, 10\) differs"):
        score("mevis-valid-u", pred, d["gt"])
    gt = tmp_path / "valid"
    gt.mkdir()
    shutil.copy(d["gt"] / "meta_expressions.json", gt)
    with pytest.raises(DataError, match="sparrow package"):
        score("mevis-valid", d["pred"], gt)
    with pytest.raises(ValueError, match="unknown benchmark"):
        score("mevis", d["pred"], d["gt"])


def test_json_rows_figure_and_cli(data, tmp_path, capsys):
    d = data["mevis"]
    out = tmp_path / "score.json"
    figure = tmp_path / "score.png"
    code = main(
        ["score", "mevis-valid-u", "--pred", str(d["pred"]), "--gt", str(d["gt"]), "--json", str(out)]
        + ["--figure", str(figure), "--quiet"]
    )
    printed = capsys.readouterr().out
    assert code == 0 and "MeViS valid_u (per expression)" in printed and "missing (scored 0): vid02/0" in printed
    back = read_score_json(out)
    assert back.to_json() == score("mevis-valid-u", d["pred"], d["gt"]).to_json()
    assert len(back.expressions) == 9 and {r["video"] for r in back.videos} == {"vid00", "vid01", "vid02"}
    assert len(back.videos[0]["j_frames"]) == score_data.T
    assert figure.stat().st_size > 0

    from sparrow.viz import score_figure

    fig = score_figure(back, video="vid01")
    bars, strip = fig.axes
    assert len(bars.patches) == 3 and strip.get_title().startswith("vid01")
    np.testing.assert_allclose(strip.lines[0].get_ydata(), 100 * np.asarray(back.videos[1]["j_frames"]))


def _peak(root: Path, videos: int) -> int:
    d = score_data.build_mevis(root, videos=videos)
    tracemalloc.start()
    try:
        score("mevis-valid-u", d["pred"], d["gt"])
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_the_number_of_videos(tmp_path):
    # One video's masks are decoded, scored and dropped before the next is read: six more videos may add only
    # their rows and their RLE ground truth as released, less than one decoded (T, H, W) stack each (a video has
    # three expressions, each a ground-truth and a prediction stack).
    _peak(tmp_path / "warm", 2)  # first-use imports and caches are not the scorer's memory
    small, large = _peak(tmp_path / "a", 2), _peak(tmp_path / "b", 8)
    one_stack = score_data.T * score_data.H * score_data.W
    assert large - small < 6 * one_stack, (small, large)
    assert small > 2 * one_stack  # the measure sees the decoded masks


def test_package_writes_identical_validated_zips(data, tmp_path):
    d = data["mevis"]
    gt = d["gt"]
    with pytest.raises(DataError, match="vid02/0: missing"):
        package("mevis-valid", d["pred"], gt, tmp_path / "x.zip")
    pred = tmp_path / "complete"
    shutil.copytree(d["pred"], pred)
    shutil.copytree(pred / "vid01", pred / "vid02")
    first = package("mevis-valid", pred, gt, tmp_path / "a.zip").read_bytes()
    second = package("mevis-valid", pred, gt, tmp_path / "b.zip").read_bytes()
    assert first == second
    with zipfile.ZipFile(tmp_path / "a.zip") as zf:
        names = zf.namelist()
        assert names == sorted(names) and names[0] == "vid00/0/00000.png" and len(names) == 9 * score_data.T
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    ytvos = package("ref-youtube-vos", pred, gt / "meta_expressions.json", tmp_path / "y.zip")
    with zipfile.ZipFile(ytvos) as zf:
        assert zf.namelist()[0] == "Annotations/vid00/0/00000.png"
    assert main(["package", "mevis-valid", "--pred", str(pred), "--gt", str(gt), "--out", str(tmp_path / "c.zip")]) == 0
    assert (tmp_path / "c.zip").read_bytes() == first

    (pred / "vid00" / "0" / "00009.png").write_bytes((pred / "vid00" / "0" / "00000.png").read_bytes())
    with pytest.raises(DataError, match="00009.png are not frames of vid00"):
        validate(pred, gt)
    (pred / "vid00" / "0" / "00009.png").unlink()
    score_data._png(pred / "vid00" / "0" / "00001.png", np.zeros((10, 12), np.uint8))
    with pytest.raises(DataError, match=r"00001.png: size 12x10 differs from 128x96"):
        validate(pred, gt)
    Image.fromarray(np.zeros((96, 128, 3), np.uint8)).save(pred / "vid00" / "0" / "00001.png")
    with pytest.raises(DataError, match="mode RGB"):
        validate(pred, gt)


def _tiny_bert(folder: Path) -> Path:
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "the", "red", "car", "person", "dog", "two", "children"]
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(str(folder / "vocab.txt")).save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    return folder


def test_videogcg_cli_computes_recall_and_clair_with_a_configured_encoder_and_judge(data, tmp_path, capsys):
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    prompts = []

    class Judge(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            prompts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            body = json.dumps({"choices": [{"message": {"content": '{"score": 40, "reason": "fair"}'}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Judge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    bert = _tiny_bert(tmp_path / "bert")
    out = tmp_path / "gcg.json"
    try:
        argv = ["score", "videogcg", "--pred", str(data["videogcg"]["pred"]), "--quiet", "--json", str(out)]
        argv += ["--text-encoder", str(bert), "--judge-url", f"http://127.0.0.1:{server.server_port}/v1"]
        assert main(argv) == 0
    finally:
        server.shutdown()
    table = read_score_json(out).tables["VideoGCG"]
    assert table["CLAIR"] == pytest.approx(40.0, abs=1e-9) and prompts
    assert 0.0 <= table["recall"] <= 100.0
    assert table["mIoU"] == pytest.approx(100 * REFERENCE["videogcg"]["mIoU"], abs=1e-10, rel=0)
    assert (
        main(["score", "videogcg", "--pred", str(data["videogcg"]["pred"]), "--text-encoder", str(tmp_path / "none")])
        == 2
    )
    assert "--text-encoder" in capsys.readouterr().err


def test_mevis_videos_only_scores_just_the_named_videos(data):
    full = score("mevis-valid-u", data["mevis"]["pred"], data["mevis"]["gt"])
    first = full.videos[0]["video"]
    one = score_mevis(data["mevis"]["gt"], data["mevis"]["pred"], videos_only=[first])
    assert [r["video"] for r in one.videos] == [first]
    assert {e["expression"] for e in one.expressions} == {
        e["expression"] for e in full.expressions if e["video"] == first
    }
    with pytest.raises(DataError, match="no video 'nope'"):
        score_mevis(data["mevis"]["gt"], data["mevis"]["pred"], videos_only=["nope"])
