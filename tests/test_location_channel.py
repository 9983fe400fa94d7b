"""The location channel: dense grounding of the text, its box prompts into SAM2, its pretraining (fingerprinted,
resumable) and the switch that keeps it off by default."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import sparrow  # noqa: F401  (torchvision shim first)
from sparrow.data.curated import records_fingerprint
from sparrow.model.config import GroundingSpec
from sparrow.model.dense_grounding import (
    DenseGrounding,
    grounding_inputs,
    grounding_vocabulary,
    input_channels,
    location_boxes,
)
from sparrow.model.pixel_decoder import EMPTY_LOGIT, Location
from sparrow.model.presets import preset
from sparrow.storage import DataError
from sparrow.train import TrainConfig
from sparrow.train.grounding_pretrain import (
    GroundingDataset,
    GroundingPretrainer,
    collate,
    ensure_pretrained_grounding,
    grounding_fingerprint,
    load_pretrained_grounding,
    mirror_text,
)
from sparrow.train.trainer import Trainer
from sparrow.train.variants import build_model, model_config

SPEC = GroundingSpec(input_size=32, dim=16, vocabulary=("circle", "red", "the"))


@pytest.fixture(scope="module")
def curated():
    from sparrow.data.curate import ensure_curated

    return ensure_curated("smoke", 0)


def test_location_boxes_are_one_box_per_region_above_threshold_largest_first():
    logits = torch.full((2, 4, 8), -5.0)
    logits[0, 1:3, 4:7] = 5.0  # 6 cells
    logits[0, 0, 0] = 5.0  # 1 cell, another region
    logits[0, 3, 7] = 5.0  # touches the first region diagonally: the same region
    boxes, valid = location_boxes(logits, 0.5, max_boxes=4)
    assert valid.tolist() == [[True, True], [False, False]]
    assert boxes[0, 0].tolist() == pytest.approx([4 / 8, 1 / 4, 8 / 8, 4 / 4])
    assert boxes[0, 1].tolist() == pytest.approx([0.0, 0.0, 1 / 8, 1 / 4])
    one, _ = location_boxes(logits, 0.5, max_boxes=1)
    assert one.shape == (2, 1, 4) and torch.equal(one[0, 0], boxes[0, 0])


def test_grounding_inputs_and_logits_shapes_and_unknown_words():
    frames = torch.rand(5, 3, 48, 48)
    x = grounding_inputs(frames, SPEC)
    assert x.shape == (5, input_channels(SPEC), 32, 32)
    assert torch.equal(x[:, 3:6], grounding_inputs(frames, SPEC)[:, 3:6])  # deterministic motion channels
    net = DenseGrounding(SPEC)
    ids = net.word_ids(["The red circle!", "a blue square"])
    assert ids.shape == (2, SPEC.max_words) and ids[0, :3].tolist() == [3, 2, 1] and int(ids[1].sum()) == 0
    logits = net.ground(frames, ["red circle", "circle", "red circle"])
    assert logits.shape == (3, 5, 8, 8) and torch.equal(logits[0], logits[2]) and not torch.equal(logits[0], logits[1])
    assert grounding_vocabulary(["The red circle", "red square"]) == ("circle", "red", "square", "the")


def test_framewise_location_prompts_a_box_per_frame_and_empties_unlocated_frames():
    model = build_model(preset("videoglamm", "smoke"), 0).eval()
    pd = model.pixel_decoder
    frames = torch.rand(3, 3, pd.image_size, pd.image_size)
    with torch.no_grad():
        feats = pd.encode(frames)
        tokens = torch.randn(1, 1, pd.hidden_dim)
        box = torch.tensor([[0.1, 0.2, 0.6, 0.7]])
        other = torch.tensor([[0.7, 0.7, 0.9, 0.9]])
        loc = Location(
            torch.stack([torch.cat([box, other])] * 3), torch.tensor([[True, True], [False, False], [True, True]])
        )
        out = pd.decode(feats, tokens, None, (20, 20), "framewise", location=loc)
        boxed = pd.decode(feats, tokens, [torch.cat([box, other])], (20, 20), "framewise")
        unlocated = pd.decode(feats, tokens, None, (20, 20), "framewise")
    assert out.shape == (1, 3, 20, 20)
    assert torch.allclose(out[:, [0, 2]], boxed[:, [0, 2]], atol=1e-5)
    assert (out[:, 1] == EMPTY_LOGIT).all() and not torch.allclose(out[:, 0], unlocated[:, 0])


@pytest.mark.parametrize("host", ["unipixel", "glus"])
def test_memory_modes_prompt_only_located_frames(host):
    model = build_model(preset(host, "smoke"), 0).eval()
    pd = model.pixel_decoder
    with torch.no_grad():
        feats = pd.encode(torch.rand(3, 3, pd.image_size, pd.image_size))
        tokens = torch.randn(2, model.cfg.seg_tokens_per_target, pd.hidden_dim)
        box = torch.tensor([[0.1, 0.2, 0.6, 0.7]])
        loc = Location(box.expand(3, 1, -1), torch.tensor([[False], [True], [True]]))
        out = pd.decode(feats, tokens, None, (16, 16), model.cfg.propagation, location=loc)
        plain = pd.decode(feats, tokens, None, (16, 16), model.cfg.propagation)
    assert out.shape == (2, 3, 16, 16) and torch.isfinite(out).all()
    # frame 0 has no location: unprompted (memory only) instead of the token prompt of the plain decoding
    assert not torch.allclose(out[:, 0], plain[:, 0])


def test_the_switch_is_on_by_default_and_builds_a_frozen_grounding(curated):
    from sparrow.profiles import LOCATION_CHANNEL

    assert LOCATION_CHANNEL is True
    assert model_config("videoglamm", "smoke", False, False, curated).grounding is not None
    off = model_config("videoglamm", "smoke", False, False, curated, location_channel=False)
    assert off.grounding is None and "grounding" not in off.to_json()
    on = model_config("videoglamm", "smoke", False, False, curated, location_channel=True)
    assert on.grounding is not None and "circle" in on.grounding.vocabulary
    assert type(on).from_json(on.to_json()) == on
    model = build_model(on, 0)
    for stage in ("stage1", "host"):
        model.configure_stage(stage)
        assert not any(p.requires_grad for p in model.grounding.parameters())
    batch = model.collator("host")([_example(curated, on)])
    out = model(batch)
    assert torch.isfinite(out.loss) and out.mask_logits[0].shape[1] == on.num_sam_frames
    frames = (torch.rand(4, 24, 32, 3) * 255).to(torch.uint8).numpy()
    pred = model.predict(frames, "the red circle")
    assert pred.masks.shape == (4, 24, 32)


def _example(curated, cfg):
    from sparrow.model.dataset import SparrowDataset

    data = SparrowDataset(curated, "train", cfg)
    return next(data[i] for i in range(len(data)) if data[i].kind == "expression")


def test_mirrored_texts_swap_left_and_right():
    assert mirror_text("The star moving left, right of the ring") == "the star moving right, left of the ring"


def test_pretraining_is_fingerprinted_reused_and_refused_for_other_data(curated, tmp_path):
    spec = model_config("videoglamm", "smoke", False, False, curated, location_channel=True).grounding
    fingerprint = records_fingerprint(curated)
    final, fp = ensure_pretrained_grounding(
        "smoke", curated, spec, fingerprint, runs_root=tmp_path, show_progress=False
    )
    stamp = (final / "grounding.safetensors").stat().st_mtime_ns
    again, fp2 = ensure_pretrained_grounding("smoke", curated, spec, fingerprint, runs_root=tmp_path)
    assert (again, fp2) == (final, fp) and (final / "grounding.safetensors").stat().st_mtime_ns == stamp
    _, other = ensure_pretrained_grounding("smoke", curated, spec, "other data", runs_root=tmp_path)
    assert other != fp
    net = DenseGrounding(spec)
    load_pretrained_grounding(net, final, fp)
    assert torch.equal(net.head[-1].weight, GroundingPretrainer.from_pretrained(final).grounding.head[-1].weight)
    with pytest.raises(DataError, match="other data, spec or training settings"):
        load_pretrained_grounding(net, final, other)
    with pytest.raises(ValueError, match="tiny profiles only"):
        TrainConfig.for_profile("paper", "grounding")


def test_an_interrupted_pretraining_resumes_to_the_same_weights(curated, tmp_path):
    spec = model_config("videoglamm", "smoke", False, False, curated, location_channel=True).grounding
    data = GroundingDataset(curated, "train", spec)
    item = data[0]
    assert item["inputs"].shape[1] == input_channels(spec)
    assert item["masks"].shape[:2] == (len(item["texts"]), item["inputs"].shape[0])
    cfg = TrainConfig.for_profile("smoke", "grounding", max_steps=4, checkpoint_every=2, show_progress=False)

    class StopsAfter(torch.utils.data.Dataset):
        """The data, failing on its fifth item: the run stops in step 3, after the step-2 checkpoint."""

        calls = 0

        def __len__(self):
            return len(data)

        def __getitem__(self, index):
            StopsAfter.calls += 1
            if StopsAfter.calls == 5:
                raise RuntimeError("interrupted")
            return data[index]

    def run(folder, dataset):
        torch.manual_seed(0)
        model = GroundingPretrainer(spec)
        Trainer(model, dataset, cfg, folder, collate_fn=collate).train(resume=True)
        return model

    straight = run(tmp_path / "a", data)
    with pytest.raises(RuntimeError, match="interrupted"):
        run(tmp_path / "b", StopsAfter())
    resumed = run(tmp_path / "b", data)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_foundation_corpus_joins_every_split_of_other_data_under_its_own_fingerprint(curated):
    from sparrow.data.curate import ensure_curated

    other = ensure_curated("smoke", 1)
    spec = model_config("videoglamm", "smoke", False, False, curated, location_channel=True).grounding
    own = GroundingDataset(curated, "train", spec)
    both = GroundingDataset(curated, "train", spec, [other])
    joined = [(c, expressions) for c, expressions in both.items if c.root != own.curated.root]
    assert len(both) == len(own) + len(joined) and joined
    assert len({c.video(expressions[0].video_id).split for c, expressions in joined}) > 1
    item = both[len(both) - 1]
    assert item["masks"].shape[:2] == (len(item["texts"]), item["inputs"].shape[0]) and item["masks"].any()
    with pytest.raises(DataError, match="other data than the curated dataset"):
        GroundingDataset(curated, "train", spec, [curated])
    cfg = TrainConfig.for_profile("smoke", "grounding")
    data = records_fingerprint(curated)
    assert grounding_fingerprint(data, spec, cfg, [other]) != grounding_fingerprint(data, spec, cfg)


@pytest.mark.parametrize("host", ["unipixel", "glus"])
def test_memory_modes_prompt_a_located_frame_with_each_of_its_boxes(host):
    model = build_model(preset(host, "smoke"), 0).eval()
    pd = model.pixel_decoder
    boxes = torch.tensor([[0.05, 0.1, 0.4, 0.5], [0.5, 0.5, 0.95, 0.9]])
    with torch.no_grad():
        feats = pd.encode(torch.rand(2, 3, pd.image_size, pd.image_size))
        tokens = torch.randn(1, model.cfg.seg_tokens_per_target, pd.hidden_dim)

        def first_frame(b):
            loc = Location(b.expand(2, -1, -1), torch.ones(2, b.shape[0], dtype=torch.bool))
            return pd.decode(feats, tokens, None, (16, 16), model.cfg.propagation, location=loc)[:, 0]

        both, one, two = first_frame(boxes), first_frame(boxes[:1]), first_frame(boxes[1:])
        # a token with a box of its own (the [BOX] path's) adds it to the located frame's boxes
        loc = Location(boxes[:1].expand(2, -1, -1), torch.ones(2, 1, dtype=torch.bool))
        own = pd.decode(feats, tokens, [boxes[1:]], (16, 16), model.cfg.propagation, location=loc)[:, 0]
    # a referent of two objects: each box prompts SAM2 on its own and the frame's mask is the max of the two
    assert torch.allclose(both, torch.maximum(one, two), atol=1e-5)
    assert not torch.allclose(both, one, atol=1e-3)
    assert torch.allclose(own, both, atol=1e-5)


def test_foundation_seeds_name_the_weights_and_never_include_the_evaluated_seed(curated, tmp_path):
    spec = model_config("videoglamm", "smoke", False, False, curated, location_channel=True).grounding
    cfg = TrainConfig.for_profile("smoke", "grounding")
    data = records_fingerprint(curated)
    plain = grounding_fingerprint(data, spec, cfg)
    assert len({plain, grounding_fingerprint(data, spec, cfg, foundation_seeds=[5])}) == 2
    assert grounding_fingerprint(data, spec, cfg, foundation_seeds=[5]) != grounding_fingerprint(
        data, spec, cfg, foundation_seeds=[6]
    )
    with pytest.raises(DataError, match="data seed 0 is also a foundation seed"):
        ensure_pretrained_grounding("smoke", curated, spec, data, runs_root=tmp_path, foundation_seeds=[0, 7])


def test_committed_weights_serve_their_own_fingerprint_only(curated, tmp_path, monkeypatch, capsys):
    import shutil

    from sparrow.train import grounding_pretrain

    spec = model_config("videoglamm", "smoke", False, False, curated, location_channel=True).grounding
    data = records_fingerprint(curated)
    trained, fp = ensure_pretrained_grounding("smoke", curated, spec, data, runs_root=tmp_path / "a")
    committed = tmp_path / "weights" / "smoke-grounding"
    shutil.copytree(trained, committed)
    monkeypatch.setattr(grounding_pretrain, "committed_weights_root", lambda: tmp_path / "weights")
    used, fp2 = ensure_pretrained_grounding("smoke", curated, spec, data, runs_root=tmp_path / "b")
    assert (used, fp2) == (committed, fp) and not (tmp_path / "b").exists()
    assert "using the committed pretrained weights" in capsys.readouterr().out
    # other data: the committed copy is named, refused, and a run of its own is trained
    other, fp3 = ensure_pretrained_grounding("smoke", curated, spec, "other data", runs_root=tmp_path / "b")
    assert fp3 != fp and other.parent.parent == tmp_path / "b" / "grounding-pretrain"
    assert f"were pretrained for fingerprint {fp}" in capsys.readouterr().out
    own, _ = ensure_pretrained_grounding("smoke", curated, spec, data, runs_root=tmp_path / "c", use_committed=False)
    assert own.parent.parent.parent == tmp_path / "c"


def test_pretrain_command_writes_the_committed_copy_that_runs_then_use(curated, tmp_path, monkeypatch, capsys):
    from sparrow import cli
    from sparrow.train import grounding_pretrain, sam_pretrain

    monkeypatch.setattr(grounding_pretrain, "committed_weights_root", lambda: tmp_path)
    monkeypatch.setattr(sam_pretrain, "committed_weights_root", lambda: tmp_path)
    assert cli.main(["pretrain", "--profile", "smoke", "--commit"]) == 0
    written = tmp_path / "smoke-grounding"
    printed = capsys.readouterr().out
    assert str(written) in printed and str(tmp_path / "smoke-sam2") in printed
    spec = model_config("videoglamm", "smoke", False, False, curated, location_channel=True).grounding
    used, fp = ensure_pretrained_grounding(
        "smoke", curated, spec, records_fingerprint(curated), runs_root=tmp_path / "r"
    )
    assert used == written and GroundingPretrainer.from_pretrained(written).fingerprint == fp


@pytest.mark.parametrize("host", ["videoglamm", "glus"])
def test_a_dense_prompt_reaches_sam2_on_located_frames_only(host):
    model = build_model(preset(host, "smoke"), 0).eval()
    pd = model.pixel_decoder
    grid = tuple(pd.sam.sam_prompt_encoder.mask_input_size)
    box = torch.tensor([[0.1, 0.2, 0.6, 0.7]])
    valid = torch.tensor([[True], [False], [True]])
    dense = torch.randn(3, 1, *grid) * 5
    with torch.no_grad():
        feats = pd.encode(torch.rand(3, 3, pd.image_size, pd.image_size))
        tokens = torch.randn(1, model.cfg.seg_tokens_per_target, pd.hidden_dim)

        def run(masks):
            loc = Location(box.expand(3, 1, -1), valid, masks)
            return pd.decode(feats, tokens, None, (16, 16), model.cfg.propagation, location=loc)

        plain, with_dense, other = run(None), run(dense), run(-dense)
    assert not torch.allclose(plain[:, 0], with_dense[:, 0], atol=1e-4)
    assert not torch.allclose(with_dense[:, 0], other[:, 0], atol=1e-4)
    if host == "videoglamm":  # framewise: an unlocated frame stays empty whatever the dense prompts
        assert torch.equal(plain[:, 1], with_dense[:, 1]) and (with_dense[:, 1] == EMPTY_LOGIT).all()


def test_the_rough_mask_prompt_marks_the_object_and_locate_gives_sam2_its_grid(curated):
    from sparrow.train.sam_pretrain import rough_mask_prompt

    torch.manual_seed(0)
    mask = torch.zeros(64, 64)
    mask[8:40, 16:48] = 1
    inside, outside = [], []
    for _ in range(20):
        logits, _ = rough_mask_prompt(mask, 16)
        inside.append(logits[0, 4:8, 6:10].mean())
        outside.append(logits[0, 12:, :3].mean())
    assert min(inside) > 2 and max(outside) < -2
    cfg = model_config("videoglamm", "smoke", False, False, curated, location_channel=True)
    cfg = cfg.replace(grounding=dataclasses.replace(cfg.grounding, dense_prompt=True))
    model = build_model(cfg, 0).eval()
    loc = model.locate(torch.rand(2, 3, model.pixel_decoder.image_size, model.pixel_decoder.image_size), "the circle")
    assert loc.masks.shape == (2, 1, *model.pixel_decoder.sam.sam_prompt_encoder.mask_input_size)


@pytest.mark.slow
def test_make_pretrain_mini_retrains_the_committed_foundation_bit_for_bit(tmp_path, monkeypatch):
    """About 40 CPU minutes: the committed mini SAM2 and grounding are what `make pretrain-mini` trains from
    scratch."""
    from sparrow.model.checkpoint import read_state
    from sparrow.train import sam_pretrain
    from sparrow.train.grounding_pretrain import SPEC_NAME, WEIGHTS_NAME, committed_grounding
    from sparrow.train.variants import pretrain_foundation

    committed = committed_grounding("mini")
    monkeypatch.setenv("SPARROW_HOME", str(tmp_path))
    out = pretrain_foundation("mini", 0, commit=False)
    sam_dir = sam_pretrain.committed_sam("mini")
    ours = read_state(out["sam2"][0] / sam_pretrain.WEIGHTS_NAME)
    theirs = read_state(sam_dir / sam_pretrain.COMMITTED_WEIGHTS)
    assert sorted(theirs) == sorted(k for k in ours if k.startswith(sam_pretrain.TRAINED_PREFIXES))
    for name, value in theirs.items():
        assert torch.equal(ours[name], value), name
    folder = out["grounding"][0]
    assert folder.parent.parent.parent == tmp_path / "runs" / "mini"
    recorded = json.loads((committed / SPEC_NAME).read_text())
    assert json.loads((folder / SPEC_NAME).read_text()) == recorded
    ours, theirs = read_state(folder / WEIGHTS_NAME), read_state(committed / WEIGHTS_NAME)
    assert sorted(ours) == sorted(theirs)
    for name, value in theirs.items():
        assert torch.equal(ours[name], value), name


def test_each_seg_of_a_grounded_caption_stands_for_its_own_phrase():
    from sparrow.model.conversation import seg_texts

    caption = "<p> a red circle </p> [SEG] moves left while <p> two blue squares </p> [SEG] stay."
    assert seg_texts(caption, "describe") == ["a red circle", "two blue squares"]
    # a [SEG] without a phrase of its own (a phrase before the previous [SEG] is not its) grounds the text asked
    assert seg_texts("<p> a star </p> [SEG] and [SEG].", "the star") == ["a star", "the star"]
    assert seg_texts("Sure, it is [SEG].", "the red circle") == ["the red circle"]
    assert seg_texts(None, "the red circle") == ["the red circle"]
    assert seg_texts("no mask here", "x") == []


def _located(valid_rows):
    box = torch.tensor([[0.1, 0.2, 0.6, 0.7]])
    return Location(box.expand(len(valid_rows), 1, -1), torch.tensor(valid_rows).reshape(-1, 1))


@pytest.mark.parametrize("host", ["videoglamm", "unipixel", "glus"])
def test_per_token_locations_decode_each_token_as_on_its_own(host):
    model = build_model(preset(host, "smoke"), 0).eval()
    pd, mode = model.pixel_decoder, model.cfg.propagation
    first, second = _located([True, False, True]), _located([False, True, True])
    with torch.no_grad():
        feats = pd.encode(torch.rand(3, 3, pd.image_size, pd.image_size))
        tokens = torch.randn(2, model.cfg.seg_tokens_per_target, pd.hidden_dim)
        torch.manual_seed(0)
        both = pd.decode(feats, tokens, None, (16, 16), mode, location=[first, second])
        torch.manual_seed(0)
        alone = [
            pd.decode(feats, tokens[i : i + 1], None, (16, 16), mode, location=loc)
            for i, loc in enumerate((first, second))
        ]
        with pytest.raises(ValueError, match="1 locations for 2 tokens"):
            pd.decode(feats, tokens, None, (16, 16), mode, location=[first])
    assert both.shape == (2, 3, 16, 16)
    assert torch.allclose(both, torch.cat(alone), atol=1e-5)
    assert not torch.allclose(both[0], both[1], atol=1e-3)


def test_the_location_channel_grounds_each_token_s_text_and_shares_one_location_for_one_text(curated):
    cfg = model_config("videoglamm", "smoke", False, False, curated, location_channel=True)
    model = build_model(cfg, 0).eval()
    frames = torch.rand(2, 3, model.pixel_decoder.image_size, model.pixel_decoder.image_size)
    one = model.locate_tokens(frames, ["the red circle"], 2)
    assert isinstance(one, Location)
    assert torch.equal(one.boxes, model.locate(frames, "the red circle").boxes)
    two = model.locate_tokens(frames, ["the red circle", "the blue square"], 3)
    assert isinstance(two, list) and len(two) == 3 and two[2] is two[1]
    assert model.locate_tokens(frames, ["x"], 0) is None
    # training: a grounded caption's batch carries one text per [SEG], its phrases
    from sparrow.model.dataset import SparrowDataset

    data = SparrowDataset(curated, "train", cfg)
    example = next(data[i] for i in range(len(data)) if data[i].kind == "gcg")
    batch = model.collator("host")([example])
    assert len(batch.seg_texts[0]) == batch.target_masks[0].shape[0] > 0
    assert all(t != example.text and t in example.answer for t in batch.seg_texts[0])


@pytest.mark.parametrize("host", ["videoglamm", "glus"])
def test_a_generated_grounded_caption_locates_each_seg_by_its_phrase(curated, host, monkeypatch):
    import sparrow.model.inference as inference

    cfg = model_config(host, "smoke", False, False, curated, location_channel=True)
    model = build_model(cfg, 0).eval()
    caption = "<p> the red circle </p> [SEG] and <p> the blue square </p> [SEG]."
    hidden = model.cfg.llm.hidden_size

    def fixed_answer(m, visual, question, tsf, num_tsf, max_new_tokens):
        return caption, torch.randn(2, hidden), torch.zeros(0, hidden)

    asked = []
    locate_tokens = type(model).locate_tokens

    def spy(self, sam_frames, texts, n):
        asked.append((list(texts), n))
        return locate_tokens(self, sam_frames, texts, n)

    monkeypatch.setattr(inference, "answer", fixed_answer)
    monkeypatch.setattr(type(model), "locate_tokens", spy)
    frames = (torch.rand(4, 24, 32, 3) * 255).to(torch.uint8).numpy()
    pred = model.predict(frames, "Describe the video.", raw_question=True)
    assert asked and asked[0] == (["the red circle", "the blue square"], 2)
    assert pred.masks_per_seg.shape[0] == 2


def test_a_referring_request_grounds_its_phrase_whatever_the_answer_writes(curated, monkeypatch):
    import sparrow.model.inference as inference

    cfg = model_config("videoglamm", "smoke", False, False, curated, location_channel=True)
    model = build_model(cfg, 0).eval()
    hidden = model.cfg.llm.hidden_size
    monkeypatch.setattr(
        inference,
        "answer",
        lambda *a: ("<p> the blue square </p> [SEG].", torch.randn(1, hidden), torch.zeros(0, hidden)),
    )
    asked = []
    locate_tokens = type(model).locate_tokens
    monkeypatch.setattr(
        type(model),
        "locate_tokens",
        lambda self, f, texts, n: asked.append(list(texts)) or locate_tokens(self, f, texts, n),
    )
    frames = (torch.rand(4, 24, 32, 3) * 255).to(torch.uint8).numpy()
    model.predict(frames, "the red circle")
    assert asked == [["the red circle"]]
