"""The TSF cache: content keys, checksums, recomputing corrupt entries, and resuming a run killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from fixtures.toydata import write_toy_curated
from sparrow.tsf.cache import CorruptEntry, TSFEntry, TSFStore, decode_entry, encode_entry
from sparrow.tsf.detection import DetectorConfig
from sparrow.tsf.encoder import PatchMeanEncoder
from sparrow.tsf.pipeline import TSFConfig, run_tsf


def _config(**overrides) -> TSFConfig:
    # ground-truth keyframe boxes: no detector to train, the rest of the pipeline is the real one
    return TSFConfig.for_profile("smoke", detector=DetectorConfig(box_source="ground_truth"), **overrides)


def _entry() -> TSFEntry:
    return TSFEntry(
        video_id="toy/a",
        expression_id="e1",
        key="ab" * 32,
        keyframe=2,
        key_box=(1.0, 2.0, 5.0, 6.0),
        key_score=0.9,
        key_source="detector",
        target_object="0",
        fallbacks=("lost_track",),
        clip_start=0,
        frame_indices=[0, 2, 4],
        crop_boxes=np.arange(12, dtype=np.float32).reshape(3, 4),
        track_boxes=np.array([[1, 2, 5, 6], [np.nan] * 4, [2, 2, 6, 6]], dtype=np.float32),
        selected=np.array([0, 2]),
        features=torch.arange(8, dtype=torch.float32).reshape(2, 4),
        crop_features=torch.ones(3, 4),
        meta={"lost_crop_frames": 1},
    )


def test_entry_round_trip_and_damage_detection():
    data = encode_entry(_entry())
    back = decode_entry(data)
    assert back.key == "ab" * 32 and back.fallbacks == ("lost_track",) and back.frame_indices == [0, 2, 4]
    assert torch.equal(back.features, _entry().features) and back.track()[1] is None
    assert back.summary()["selected_frames"] == [0, 4] and back.summary()["lost_crop_frames"] == 1
    assert encode_entry(back) == data  # deterministic bytes
    flipped = bytearray(data)
    flipped[-3] ^= 0x40  # inside the tensor data
    with pytest.raises(CorruptEntry, match="checksum"):
        decode_entry(bytes(flipped))
    with pytest.raises(CorruptEntry, match="unreadable"):
        decode_entry(data[: len(data) // 2])
    with pytest.raises(CorruptEntry):
        decode_entry(b"")


def test_store_layout_and_key_check(tmp_path):
    store = TSFStore(tmp_path)
    entry = _entry()
    path = store.put(entry)
    assert path == tmp_path / "ab" / f"{entry.key}.safetensors"
    assert store.get(entry.key).expression_id == "e1"
    assert store.get("cd" * 32) is None
    os.makedirs(tmp_path / "cd", exist_ok=True)
    (tmp_path / "cd" / f"{'cd' * 32}.safetensors").write_bytes(path.read_bytes())  # right bytes, wrong name
    with pytest.raises(CorruptEntry, match="holds key"):
        store.get("cd" * 32)


def test_corrupt_entries_are_recomputed_identically(tmp_path):
    root = write_toy_curated(tmp_path / "toy", videos=3, frames=6)
    config, encoder = _config(), PatchMeanEncoder(32)
    store = TSFStore(tmp_path / "entries")
    first = run_tsf(root, "valid", config, encoder, store=store, out_dir=tmp_path / "run")
    assert first.counts["computed"] == 6 and first.counts["cache_hits"] == 0
    files = sorted((tmp_path / "entries").rglob("*.safetensors"))
    original = {p: p.read_bytes() for p in files}
    damaged = bytearray(original[files[0]])
    damaged[-1] ^= 0xFF
    files[0].write_bytes(bytes(damaged))
    files[1].write_bytes(original[files[1]][:40])
    second = run_tsf(root, "valid", config, encoder, store=store, out_dir=tmp_path / "run")
    assert second.counts["corrupt_recomputed"] == 2 and second.counts["cache_hits"] == 4
    assert second.rows == first.rows
    assert {p: p.read_bytes() for p in files} == original


def test_keys_follow_inputs_and_config(tmp_path):
    root = write_toy_curated(tmp_path / "toy", videos=2, frames=5)
    encoder = PatchMeanEncoder(32)
    base = run_tsf(root, "valid", _config(), encoder, store=TSFStore(tmp_path / "e"), out_dir=tmp_path / "r")
    keys = {r["expression_id"]: r["key"] for r in base.rows}
    # a changed setting changes every key
    other = run_tsf(root, "valid", _config(k=3), encoder, store=TSFStore(tmp_path / "e"), out_dir=tmp_path / "r2")
    assert not set(keys.values()) & {r["key"] for r in other.rows}
    # device and batch size do not enter the key
    same = run_tsf(
        root, "valid", _config(device="cpu"), encoder, store=TSFStore(tmp_path / "e"), out_dir=tmp_path / "r3"
    )
    assert same.counts["cache_hits"] == len(keys)
    # a changed frame changes only its own video's keys
    frame = root / "frames" / "valid" / "01" / "00003.png"
    from PIL import Image

    pixels = np.asarray(Image.open(frame)).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(frame)
    changed = run_tsf(root, "valid", _config(), encoder, store=TSFStore(tmp_path / "e"), out_dir=tmp_path / "r4")
    for row in changed.rows:
        assert (row["key"] == keys[row["expression_id"]]) == row["video_id"].endswith("valid00")


RESUMABLE_RUN = textwrap.dedent("""
    import sys, time
    import sparrow
    from sparrow.tsf.detection import DetectorConfig
    from sparrow.tsf.encoder import PatchMeanEncoder
    from sparrow.tsf.pipeline import TSFConfig, run_tsf

    root, stall_after = sys.argv[1], int(sys.argv[2])
    config = TSFConfig.for_profile("smoke", detector=DetectorConfig(box_source="ground_truth"))
    stored = []

    def on_entry(entry, status):
        stored.append(entry.expression_id)
        print("ENTRY", entry.expression_id, status, flush=True)
        if len(stored) == stall_after:
            time.sleep(600)  # the parent kills the run here, mid-pass

    report = run_tsf(root, "valid", config, PatchMeanEncoder(config.crop_size), on_entry=on_entry)
    print("DONE", report.counts["computed"], report.counts["cache_hits"], report.index_path, flush=True)
""")


def _launch(script: Path, root: Path, home: Path, stall_after: int) -> subprocess.Popen:
    env = dict(os.environ, SPARROW_HOME=str(home), OMP_NUM_THREADS="1")
    return subprocess.Popen(
        [sys.executable, str(script), str(root), str(stall_after)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _finish(proc: subprocess.Popen) -> list[str]:
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    return out.splitlines()


def test_a_killed_run_resumes_with_identical_output(tmp_path):
    root = write_toy_curated(tmp_path / "toy", videos=4, frames=6)
    script = tmp_path / "run.py"
    script.write_text(RESUMABLE_RUN)

    killed = _launch(script, root, tmp_path / "home_a", stall_after=3)
    seen = []
    for line in killed.stdout:
        if line.startswith("ENTRY"):
            seen.append(line.split()[1])
        if len(seen) == 3:
            break
    killed.send_signal(signal.SIGKILL)  # while it stalls after storing its third entry
    killed.wait(timeout=60)
    assert killed.returncode == -signal.SIGKILL

    assert not (tmp_path / "home_a" / "cache" / "tsf" / "runs").exists()  # no index or report of a half run
    resumed = _finish(_launch(script, root, tmp_path / "home_a", stall_after=0))
    done = resumed[-1].split()
    assert done[0] == "DONE" and (int(done[1]), int(done[2])) == (8 - 3, 3)
    assert not {line.split()[1] for line in resumed if line.startswith("ENTRY")} & set(seen)

    # the uninterrupted reference, in this process with the subprocesses' single thread
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        clean = run_tsf(
            root,
            "valid",
            _config(),
            PatchMeanEncoder(32),
            store=TSFStore(tmp_path / "b" / "entries"),
            out_dir=tmp_path / "b" / "run",
        )
    finally:
        torch.set_num_threads(threads)
    assert (clean.counts["computed"], clean.counts["cache_hits"]) == (8, 0)
    assert Path(resumed[-1].split()[3]).read_bytes() == clean.index_path.read_bytes()
    entries_a = {p.name: p.read_bytes() for p in (tmp_path / "home_a").rglob("*.safetensors")}
    entries_b = {p.name: p.read_bytes() for p in (tmp_path / "b" / "entries").rglob("*.safetensors")}
    assert len(entries_a) == 8 and entries_a == entries_b
    assert not list((tmp_path / "home_a").rglob("*.tmp"))  # the kill hit between writes: no stray temp file


def test_an_entry_from_another_config_or_cut_mid_write_is_recomputed_never_reused(tmp_path):
    root = write_toy_curated(tmp_path / "toy", videos=2, frames=5)
    encoder, store = PatchMeanEncoder(32), TSFStore(tmp_path / "entries")
    other = run_tsf(root, "valid", _config(k=3), encoder, store=store, out_dir=tmp_path / "other")
    first = run_tsf(root, "valid", _config(), encoder, store=store, out_dir=tmp_path / "run")
    entries = {r["expression_id"]: store.path(r["key"]) for r in first.rows}
    original = {e: p.read_bytes() for e, p in entries.items()}
    foreign, cut, killed = sorted(entries)[:3]
    # the same expression's entry under the other config, at this config's address
    entries[foreign].write_bytes(
        store.path(next(r["key"] for r in other.rows if r["expression_id"] == foreign)).read_bytes()
    )
    entries[cut].write_bytes(original[cut][: len(original[cut]) // 2])  # a copy cut short
    entries[killed].unlink()  # a kill inside the atomic write leaves only its temporary file
    (entries[killed].parent / f".{entries[killed].name}.x1y2.tmp").write_bytes(original[killed][:100])
    again = run_tsf(root, "valid", _config(), encoder, store=store, out_dir=tmp_path / "run")
    assert again.counts["corrupt_recomputed"] == 2 and again.counts["computed"] == 3
    assert again.rows == first.rows and {e: p.read_bytes() for e, p in entries.items()} == original


def test_a_run_folder_cut_short_or_of_another_config_is_recomputed(tmp_path):
    from sparrow.tsf.pipeline import ensure_tsf
    from sparrow.tsf.runs import TSFRun

    root = write_toy_curated(tmp_path / "toy", videos=3, frames=5)
    run = ensure_tsf("smoke", 0, "valid", config=_config(), curated_root=root)
    index, report = run / "index.jsonl", run / "report.json"
    whole, rows = index.read_bytes(), len(TSFRun(run))
    lines = whole.splitlines(keepends=True)
    other = ensure_tsf("smoke", 0, "valid", config=_config(k=3), curated_root=root)
    for damage in (
        lambda: index.write_bytes(b"".join(lines[:-1])),  # cut at a row boundary: fewer expressions
        lambda: index.write_bytes(whole[: len(whole) - 20]),  # cut inside a row
        lambda: report.write_bytes((other / "report.json").read_bytes()),  # another config's report
    ):
        damage()
        assert ensure_tsf("smoke", 0, "valid", config=_config(), curated_root=root) == run
        assert index.read_bytes() == whole and len(TSFRun(run)) == rows
        assert TSFRun(run).report["run_key"] != TSFRun(other).report["run_key"]
