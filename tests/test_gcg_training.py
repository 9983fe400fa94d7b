"""Grounded caption conversations in training (one mask target per phrase, the mixing share) and the GCG answer
budget at evaluation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import sparrow  # noqa: F401  (torchvision shim first)
from sparrow.data.qa_templates import GCG_QUESTIONS
from sparrow.model.conversation import grounded_caption_answer, grounded_caption_turn
from sparrow.model.dataset import GCG_SHARE, GCG_SOURCES, mix_share
from sparrow.model.tokens import SEG_TOKEN


@pytest.fixture(scope="module")
def curated():
    from sparrow.data.curate import ensure_curated

    return ensure_curated("smoke", 0)


@pytest.fixture(scope="module")
def cfg(curated):
    from sparrow.train.variants import model_config

    return model_config("videoglamm", "smoke", False, False, curated)


CAPTION = "a red square moves left while two blue circles stay still."
SPANS = [{"start": 0, "end": 12, "object_ids": ["1"]}, {"start": 30, "end": 46, "object_ids": ["2", "3"]}]


def test_grounded_caption_answer_marks_each_phrase_with_one_seg():
    answer = grounded_caption_answer(CAPTION, SPANS, 4)
    assert answer == "<p> a red square </p> [SEG] moves left while <p> two blue circles </p> [SEG] stay still."


def test_phrases_beyond_the_mask_budget_stay_plain_words():
    answer = grounded_caption_answer(CAPTION, SPANS, 1)
    assert answer == "<p> a red square </p> [SEG] moves left while two blue circles stay still."


def test_grounded_caption_question_is_a_gcg_question_chosen_by_key():
    questions = {grounded_caption_turn(CAPTION, SPANS, f"v{k}/caption", 4)[0] for k in range(40)}
    assert questions == set(GCG_QUESTIONS)
    assert grounded_caption_turn(CAPTION, SPANS, "v1", 4) == grounded_caption_turn(CAPTION, SPANS, "v1", 4)


def test_mix_share_repeats_or_thins_to_the_share():
    items = list("abc")
    assert mix_share(items, 40, 0.2) == list("abcabcabca")  # 10 of 50
    assert mix_share(items, 4, 0.2) == ["a"]  # 1 of 5
    assert mix_share(items, 40, None) == items
    assert mix_share(items, 40, 0.0) == []
    assert mix_share(items, 0, 0.2) == items
    with pytest.raises(ValueError, match="share"):
        mix_share(items, 4, 1.0)


def test_dataset_turns_gcg_captions_into_grounded_caption_items(curated, cfg):
    from sparrow.data.curated import CuratedDataset
    from sparrow.model import SparrowDataset

    ds = SparrowDataset(curated, "train", cfg)
    kinds = [k for k, _ in ds.items]
    gcg = [rec for k, rec in ds.items if k == "gcg"]
    assert gcg and kinds.count("gcg") == round(GCG_SHARE / (1 - GCG_SHARE) * kinds.count("expression"))
    reader = CuratedDataset(curated)
    assert all(reader.video(r.video_id).source in GCG_SOURCES and r.kind == "caption" for r in gcg)
    # captions of other sources stay referring items
    assert any(rec.kind == "caption" for k, rec in ds.items if k == "expression")
    assert not any(
        k == "expression" and reader.video(r.video_id).source in GCG_SOURCES and r.phrases
        for k, r in ds.items
        if r.kind == "caption"
    )

    index = kinds.index("gcg")
    rec, ex = ds.items[index][1], ds[index]
    assert ex.kind == "gcg" and ex.text in GCG_QUESTIONS
    n = min(len(rec.phrases), cfg.max_seg_tokens)
    assert ex.answer.count(SEG_TOKEN) == n == ex.target_masks.shape[0]
    expected = np.stack(reader.phrase_masks(rec))[:n][:, ex.sam_frame_indices]  # union of each phrase's ids
    np.testing.assert_array_equal(ex.target_masks, expected.astype(np.int8))

    only = SparrowDataset(curated, "train", cfg, gcg_share=None)
    assert sum(k == "gcg" for k, _ in only.items) == len({r.expression_id for r in gcg})


def test_every_seg_of_a_grounded_caption_is_supervised_by_its_own_mask(curated, cfg):
    from sparrow.model import SparrowDataset
    from sparrow.train.variants import build_model

    ds = SparrowDataset(curated, "train", cfg)
    ex = ds[[k for k, _ in ds.items].index("gcg")]
    model = build_model(cfg, 0)
    model.configure_stage("host")
    question, answer = model.collator("host").conversation(ex)
    assert (question, answer) == (ex.text, ex.answer)
    batch = model.collator("host")([ex])
    out = model(batch)
    n = ex.target_masks.shape[0]
    assert n > 1 and out.mask_logits[0].shape[0] == n
    # the BCE is the mean over every (phrase, frame) pair: a wrong target on the last phrase changes it
    swapped = batch.target_masks[0].clone()
    swapped[-1] = 1 - swapped[-1]
    from sparrow.model.losses import mask_losses

    bce, _, pairs = mask_losses(out.mask_logits, batch.target_masks)
    bce_swapped, _, _ = mask_losses(out.mask_logits, [swapped])
    assert pairs == n * ex.target_masks.shape[1] and not torch.isclose(bce, bce_swapped)


def test_gcg_answers_get_their_own_budget(curated, tmp_path):
    from sparrow.eval.benchmarks import get_benchmark
    from sparrow.eval.runner import GCG_MAX_NEW_TOKENS, run_benchmark
    from sparrow.model.batch import Prediction

    class BudgetModel:
        def __init__(self):
            self.budgets = []

        def predict(self, frames, text, *, raw_question=False, tsf_boxes=None, max_new_tokens=None):
            self.budgets.append(max_new_tokens)
            masks = np.zeros(np.asarray(frames).shape[:3], bool)
            return Prediction(masks, np.full((len(masks), 4), np.nan, np.float32), "a thing.", masks[None], [], True)

    model = BudgetModel()
    run_benchmark(model, get_benchmark("videogcg", "smoke"), curated, tmp_path, model_id="b", show_progress=False)
    assert model.budgets and set(model.budgets) == {GCG_MAX_NEW_TOKENS}
