"""The TSF the model consumes is the TSF the offline pass computed.

At test time (notebook 04's "TSF at test" step) the model receives a finished run's boxes through
``tsf_boxes_from_run``; its crops must be, bit for bit, the crops the pass cut for the same boxes (what notebook 02
draws) and its TSF tokens the pass's K-means picks, when the pass uses the model's own crop encoder. In training,
the collator's ground-truth-mask crops must be the TSF library's for the same clip and masks.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import sparrow  # noqa: F401  (torchvision shim first)
from fixtures.toydata import LosesOneFrame, write_toy_curated
from sparrow.data.curated import CuratedDataset
from sparrow.data.indices import linspace_truncated_padded
from sparrow.eval.runner import predict_texts, tsf_boxes_from_run
from sparrow.model import ModelConfig, SparrowExample, SparrowModel
from sparrow.model.frames import encoder_frames
from sparrow.tsf.cache import TSFStore
from sparrow.tsf.crops import clip_preprocess, crops_at_boxes, ground_truth_mask_crops, sample_frame_indices
from sparrow.tsf.detection import DetectorConfig
from sparrow.tsf.kmeans import tsf_kmeans
from sparrow.tsf.pipeline import TSFConfig, run_tsf
from sparrow.tsf.runs import TSFRun
from sparrow.tsf.tracking import Track

LOST = 5  # a sampled frame (of 20) whose previous frame, 4, is not sampled: the two fill rules would differ


class ModelCropEncoder:
    """The model's ``encode_crops`` as the pass's crop encoder."""

    def __init__(self, model: SparrowModel):
        self.model = model
        self.crop_size = model.spatial.image_size
        self.fingerprint = "model-under-test"

    def __call__(self, crops: torch.Tensor) -> torch.Tensor:
        return self.model.encode_crops(crops)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # the pass runs with one intra-op thread; the model must see the same reductions to give identical features
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def model() -> SparrowModel:
    torch.manual_seed(0)
    cfg = ModelConfig.for_preset("videoglamm", "smoke", tsf=True, box=True, tsf_at_test=True)
    return SparrowModel.from_config(cfg).eval()


def test_model_consumes_the_crops_and_picks_of_the_tsf_run(tmp_path, model, monkeypatch):
    root = write_toy_curated(tmp_path / "toy", videos=2, frames=20)  # 20 > 16 frames: the crops are sampled
    dataset = CuratedDataset(root)
    config = TSFConfig.for_profile(
        "smoke", crop_size=model.spatial.image_size, detector=DetectorConfig(box_source="ground_truth")
    )
    assert (config.k, config.kmeans_iters) == (model.cfg.tsf_k, model.cfg.tsf_kmeans_iters)
    run_tsf(
        root,
        "valid",
        config,
        ModelCropEncoder(model),
        tracker=LosesOneFrame(dataset, LOST),
        store=TSFStore(tmp_path / "entries"),
        out_dir=tmp_path / "run",
    )
    run = TSFRun(tmp_path / "run")
    assert run.counts["lost_track"] == run.counts["expressions"] == 4
    boxes_of, _ = tsf_boxes_from_run(tmp_path / "run")

    consumed: list[tuple[torch.Tensor, torch.Tensor]] = []
    tsf_tokens = model.tsf_tokens

    def spy(crops):
        tokens = tsf_tokens(crops)
        consumed.append((crops, tokens))
        return tokens

    monkeypatch.setattr(model, "tsf_tokens", spy)
    for video_id in sorted({e.video_id for e in dataset.iter_expressions(split="valid")}):
        frames = dataset.load_frames(video_id)
        expressions = sorted(dataset.expressions(video_id), key=lambda e: e.expression_id)
        consumed.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # random weights: answers without [SEG] warn
            predict_texts(model, frames, [e.text for e in expressions], tsf_boxes=[boxes_of(e) for e in expressions])
        assert len(consumed) == len(expressions)
        for expression, (crops, tokens) in zip(expressions, consumed):
            entry = run.entry(video_id, expression.expression_id)
            assert entry.frame_indices == sample_frame_indices(20) and LOST in entry.frame_indices
            # what notebook 02 draws: the entry's boxes cut from the raw frames by the library
            drawn = crops_at_boxes(frames, entry.frame_indices, entry.crop_boxes, model.spatial.image_size)
            assert crops.dtype == drawn.dtype and torch.equal(crops, drawn)
            assert torch.equal(tokens, entry.features)
            assert (
                tsf_kmeans(model.encode_crops(crops), config.k, config.kmeans_iters).indices.tolist()
                == entry.selected.tolist()
            )


def test_training_crops_are_the_librarys_ground_truth_mask_crops(model):
    cfg = model.cfg
    rng = np.random.default_rng(0)
    total, height, width = 11, 30, 44
    frames = rng.integers(0, 255, (total, height, width, 3), dtype=np.uint8)
    first = np.zeros((total, height, width), bool)
    second = np.zeros((total, height, width), bool)
    first[6:, 3:14, 20:41] = True  # the first referent appears late: earlier crops use the second one's box
    second[:, 12:27, 2:19] = True
    idx, sam_idx = (
        linspace_truncated_padded(total, cfg.num_frames),
        linspace_truncated_padded(total, cfg.num_sam_frames),
    )
    masks = np.stack([first, second])[:, sam_idx].astype(np.int8)
    example = SparrowExample(
        "toy/v0",
        "e0",
        "expression",
        "the thing",
        None,
        frames[idx],
        frames[sam_idx],
        masks,
        np.array([[20 / width, 3 / height, 41 / width, 14 / height]], np.float32),
    )
    batch = model.collator("stage1")([example])
    library, source, _ = ground_truth_mask_crops(
        frames, [first, second], model.spatial.image_size, num_frames=cfg.num_frames, num_mask_frames=cfg.num_sam_frames
    )
    assert source == idx
    assert torch.equal(batch.tsf_crops[0], library)


def test_the_encoders_clip_geometry_is_the_tsf_crops():
    video = torch.rand(3, 3, 30, 50, generator=torch.Generator().manual_seed(0))
    assert torch.equal(encoder_frames(video, 16, "clip"), clip_preprocess(video, 16))
    square = video[..., :16, :16]
    assert torch.equal(encoder_frames(square, 16, "clip"), square)  # already at size: left as it is
