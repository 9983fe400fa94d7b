"""Forward/backward of every host preset and switch combination (smoke sizes), the pixel decoder's extra sparse
token, SAM2 memory propagation, stages, LoRA folding, and ``predict`` (no ``[SEG]``, short videos, guidance)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import sparrow  # noqa: F401  (torchvision shim first)
from sparrow.model import HOSTS, LOSS_KEYS, ModelConfig, SparrowExample, SparrowModel
from sparrow.model.pixel_decoder import MemoryState
from sparrow.model.stages import trainable_names


def make_example(cfg: ModelConfig, seed: int = 0, t: int = 6, h: int = 40, w: int = 56) -> SparrowExample:
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 255, (t, h, w, 3), dtype=np.uint8)
    video[:, 10:26, 14:34] = (220, 30, 30)
    masks = np.zeros((1, cfg.num_sam_frames, h, w), np.int8)
    masks[0, :, 10:26, 14:34] = 1
    masks[0, :, 0, :] = -1
    idx = np.linspace(0, t - 1, cfg.num_frames).astype(int)
    sam_idx = np.linspace(0, t - 1, cfg.num_sam_frames).astype(int)
    return SparrowExample(
        f"src/v{seed}",
        f"e{seed}",
        "expression",
        "the red square",
        None,
        video[idx],
        video[sam_idx],
        masks,
        np.array([[14 / w, 10 / h, 34 / w, 26 / h]], np.float32),
    )


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {}


def get_model(models, host, tsf=True, box=True, **overrides) -> SparrowModel:
    key = (host, tsf, box, tuple(sorted(overrides.items())))
    if key not in models:
        torch.manual_seed(0)
        models[key] = SparrowModel.from_config(ModelConfig.for_preset(host, "smoke", tsf=tsf, box=box, **overrides))
    return models[key]


def run_stage(model: SparrowModel, stage: str, n: int = 2):
    model.configure_stage(stage)
    model.train()
    batch = model.collator()([make_example(model.cfg, i) for i in range(n)])
    out = model(batch)
    model.zero_grad(set_to_none=True)
    out.loss.backward()
    return batch, out


@pytest.mark.parametrize("host", HOSTS)
@pytest.mark.parametrize("tsf,box", [(False, False), (True, False), (False, True), (True, True)])
def test_forward_backward_every_preset_and_switch(models, host, tsf, box):
    model = get_model(models, host, tsf, box)
    stages = ["host", "stage1"] + (["proposer", "stage2"] if box else [])
    for stage in stages:
        batch, out = run_stage(model, stage)
        assert torch.isfinite(out.loss) and set(LOSS_KEYS) <= set(out.losses)
        grads = [p.grad for p in model.trainable_parameters()]
        assert grads and any(g is not None and g.abs().sum() > 0 for g in grads), stage
        frozen = [p for n, p in model.named_parameters() if not p.requires_grad]
        assert all(p.grad is None for p in frozen)
        if stage == "proposer":
            assert out.losses["det_cls"] > 0 and out.losses["ce"] == 0
            continue
        assert out.losses["ce"] > 0 and out.losses["bce"] > 0 and out.losses["dice"] > 0
        assert len(out.mask_logits) == 2 and out.mask_logits[0].shape == (1, model.cfg.num_sam_frames, 40, 56)
        uses_tsf = stage == "stage1" and tsf
        assert (batch.tsf_crops is not None) == uses_tsf
        text = model.tokenizer.decode(batch.input_ids[0][batch.input_ids[0] >= 0])
        assert ("[BOX] [SEG]" in text) == (box and stage != "host")
        assert "[SEG]" in text
        if stage == "stage2":
            assert out.losses["prop"] > 0 and all(len(b) == 1 and b[0].shape[1] == 4 for b in out.selected_boxes)
        else:
            assert out.losses["prop"] == 0


def test_box_regression_loss_only_when_enabled(models):
    from sparrow.model.config import SelectorSpec
    from sparrow.model.proposer import Proposals

    model = get_model(models, "videoglamm", selector=SelectorSpec(box_regression=True))
    d = model.proposer.spec.d_model
    gt = torch.tensor([[14 / 56, 10 / 40, 34 / 56, 26 / 40], [0.0, 0.0, 0.2, 0.2]])  # the first is the target's box
    model.proposer.propose = lambda feats: [
        Proposals(gt, torch.randn(2, d), torch.tensor([0.9, 0.8]), torch.ones(2, dtype=torch.bool))
    ]
    try:
        _, out = run_stage(model, "stage2")
    finally:
        del model.proposer.propose
    # zero-initialised head: every pair box is (0.5, 0.5, 0.5, 0.5), so L1 and GIoU are positive
    assert out.losses["box"] > 0 and out.losses["prop"] > 0
    boxes = model.selector(torch.randn(1, model.pixel_decoder.hidden_dim), torch.randn(2, d))[3]
    assert torch.equal(boxes[..., 0], boxes[..., 2])  # the released head starts (and stays) width-less


def test_stage_trainables_follow_the_released_split(models):
    model = get_model(models, "videoglamm")
    names = lambda stage: {n for n, p in model.named_parameters() if n in trainable_names(model, stage)}  # noqa: E731
    stage1, stage2, host, prop = names("stage1"), names("stage2"), names("host"), names("proposer")
    assert stage1 and all(".lora_" in n for n in stage1)
    assert any(n.startswith("image_adapter.") for n in stage1) and any(n.startswith("lv_projector.") for n in stage1)
    assert any("qkv_proj.lora_A" in n for n in stage1)  # Phi-3's fused qkv matches "v_proj" by substring
    assert not any("embed_tokens" in n or "lm_head" in n or "pixel_decoder" in n for n in stage1 | stage2)
    assert not any(n.startswith("image_adapter.") for n in stage2)
    assert any(n.startswith("selector.") for n in stage2) and "roi_fusion_gamma" in stage2
    assert any("embed_tokens" in n for n in host) and any("lm_head" in n for n in host)
    assert all(n.startswith("proposer.") for n in prop)
    model.configure_stage("stage1")
    assert {id(p) for p in model.trainable_parameters()} == {id(p) for p in model.parameters() if p.requires_grad}
    with pytest.raises(ValueError, match="unknown stage"):
        model.configure_stage("stage3")
    batch = model.collator("stage2")([make_example(model.cfg)])
    with pytest.raises(ValueError, match="collated for stage"):
        model(batch)


def test_merge_lora_keeps_outputs_and_resets_adapters(models):
    model = get_model(models, "glus", tsf=False, box=False)
    model.configure_stage("stage1").eval()
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if ".lora_B." in n:
                p.normal_(std=0.5)
    batch = model.collator()([make_example(model.cfg)])
    with torch.no_grad():
        before = model(batch)
        assert model.merge_lora() > 0
        after = model(batch)
    assert all((p == 0).all() for n, p in model.named_parameters() if ".lora_B." in n)
    assert torch.allclose(before.loss, after.loss, atol=1e-4)
    assert torch.allclose(before.mask_logits[0], after.mask_logits[0], atol=1e-3)


def test_pixel_decoder_appends_seg_tokens_to_sparse_prompts(models):
    model = get_model(models, "videoglamm", tsf=False, box=False)
    pd = model.pixel_decoder
    enc = pd.sam.sam_prompt_encoder
    boxes = torch.tensor([[4.0, 4.0, 30.0, 40.0]])
    sparse, _ = enc(points=None, boxes=boxes, masks=None)
    tokens = torch.randn(1, 1, pd.hidden_dim)
    with pd.extra_sparse_tokens(tokens):
        with_token, _ = enc(points=None, boxes=boxes, masks=None)
        only_token, dense = enc(points=None, boxes=None, masks=None)
    assert sparse.shape[1] == 2 and with_token.shape[1] == 3  # [2 box corners + SEG]
    assert torch.equal(with_token[:, 2:], tokens) and torch.equal(with_token[:, :2], sparse)
    assert only_token.shape == (1, 1, pd.hidden_dim) and dense.shape[0] == 1
    assert enc(points=None, boxes=boxes, masks=None)[0].shape[1] == 2  # the hook is inactive outside the block
    frames = torch.rand(3, 3, 48, 48)
    model.eval()
    feats = pd.encode(frames)
    token = torch.randn(2, 1, pd.hidden_dim, requires_grad=True)
    logits = pd.decode(feats, token, None, (30, 20))
    assert logits.shape == (2, 3, 30, 20)
    logits.sum().backward()
    assert token.grad is not None and token.grad.abs().sum() > 0
    other = pd.decode(feats, token.detach() * -3.0, None, (30, 20))
    assert not torch.allclose(logits.detach(), other)
    # max over a token's boxes, taken on the 1/4-resolution logits (compared at that size: no resampling)
    low = (pd.image_size // 4, pd.image_size // 4)
    guided = pd.decode(
        feats,
        token.detach(),
        [torch.tensor([[0.1, 0.1, 0.5, 0.6]]), torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.2, 0.2, 0.4, 0.4]])],
        low,
    )
    single = pd.decode(feats, token.detach()[1:], [torch.tensor([[0.0, 0.0, 1.0, 1.0]])], low)
    second = pd.decode(feats, token.detach()[1:], [torch.tensor([[0.2, 0.2, 0.4, 0.4]])], low)
    assert torch.allclose(guided[1], torch.maximum(single[0], second[0]), atol=1e-5)


@pytest.mark.parametrize("host,mode", [("unipixel", "memory_from_first"), ("glus", "memory_every_frame")])
def test_memory_propagation_carries_frame_zero_prompt(models, host, mode):
    model = get_model(models, host, tsf=False, box=False)
    assert model.cfg.propagation == mode
    pd = model.pixel_decoder.eval()
    feats = pd.encode(torch.rand(4, 3, 48, 48))
    a, b = torch.randn(1, 2, pd.hidden_dim), torch.randn(1, 2, pd.hidden_dim)
    la, lb = pd.decode(feats, a, None, (24, 24), mode), pd.decode(feats, b, None, (24, 24), mode)
    assert la.shape == (1, 4, 24, 24)
    # frames after 0 see the prompt only through memory (unipixel) or also directly (glus): both depend on it
    assert not torch.allclose(la[:, 3], lb[:, 3])
    # a memory state carried across calls equals one call over all frames
    state = MemoryState(num_frames=4)
    parts = torch.cat(
        [
            pd.decode(feats.frames(0, 2), a, None, (24, 24), mode, state),
            pd.decode(feats.frames(2, 4), a, None, (24, 24), mode, state),
        ],
        dim=1,
    )
    assert torch.allclose(parts, la, atol=1e-5)


def test_framewise_frames_are_independent(models):
    model = get_model(models, "videoglamm", tsf=False, box=False)
    pd = model.pixel_decoder.eval()
    frames = torch.rand(3, 3, 48, 48)
    token = torch.randn(1, 1, pd.hidden_dim)
    full = pd.decode(pd.encode(frames), token, None, (16, 16))
    last = pd.decode(pd.encode(frames[2:]), token, None, (16, 16))
    assert torch.allclose(full[:, 2], last[:, 0], atol=1e-5)


def test_sam_trained_from_scratch_decodes_its_single_mask_at_inference(models):
    # Training supervises only the single-mask output (mask token 0); without pretrained SAM2 weights the multimask
    # tokens and IoU head stay untrained, so inference must not fall back to them (sam2's stability fallback).
    model = get_model(models, "videoglamm", tsf=False, box=False)
    pd = model.pixel_decoder
    assert model.cfg.sam.checkpoint is None
    assert not pd.sam.sam_mask_decoder.dynamic_multimask_via_stability
    was_training = pd.training
    with torch.no_grad():
        feats = pd.eval().encode(torch.rand(2, 3, 48, 48))
        token = torch.randn(2, 1, pd.hidden_dim)
        at_inference = pd.decode(feats, token, None, (16, 16))
        in_training = pd.train().decode(feats, token, None, (16, 16))
    pd.train(was_training)
    assert torch.allclose(at_inference, in_training, atol=1e-6)


def test_encode_crops_gives_one_llm_vector_per_crop(models):
    for host in HOSTS:
        model = get_model(models, host)
        emb = model.encode_crops(torch.rand(5, 3, 20, 20))
        assert emb.shape == (5, model.llm.hidden_size) and torch.isfinite(emb).all()
        assert model.encode_crops(torch.rand(0, 3, 20, 20)).shape == (0, model.llm.hidden_size)
        with pytest.raises(ValueError, match="crops must be"):
            model.encode_crops(torch.rand(5, 20, 20))


def _force_answer(model, ids, captured: list | None = None):
    """Make the LLM answer ``ids`` (teacher-forced through the real decoding, so hidden states stay real)."""
    real = type(model.llm).generate

    def forced(embeds, n, stops):
        if captured is not None:
            captured.append(embeds.clone())
        return real(model.llm, embeds, n, stops, forced=list(ids))

    model.llm.generate = forced


@pytest.mark.parametrize("host", HOSTS)
def test_predict_no_seg_gives_empty_mask_and_warning(models, host):
    model = get_model(models, host)
    _force_answer(model, [model.tokenizer.convert_tokens_to_ids("red"), model.tokenizer.eos_token_id])
    frames = np.random.default_rng(0).integers(0, 255, (5, 24, 32, 3), dtype=np.uint8)
    with pytest.warns(UserWarning, match="no \\[SEG\\]"):
        pred = model.predict(frames, "the dog")
    assert not pred.seg_found and pred.masks.shape == (5, 24, 32) and not pred.masks.any()
    assert np.isnan(pred.boxes).all() and pred.answer == "red"
    del model.llm.generate


@pytest.mark.parametrize("host", HOSTS)
def test_predict_short_video_and_guided_masks(models, host):
    model = get_model(models, host)
    seg, box, eos = model.seg_token_id, model.box_token_id, model.tokenizer.eos_token_id
    _force_answer(model, [box, seg, eos])
    one = np.full((1, 24, 32, 3), 128, dtype=np.uint8)  # one frame, fewer than the encoder's sample
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pred = model.predict(one, "the red square")
    assert pred.seg_found and pred.masks.shape == (1, 24, 32) and pred.masks.dtype == bool
    assert pred.answer == "[BOX] [SEG]" and len(pred.prompt_boxes) == 1 and pred.prompt_boxes[0].shape[1] == 4
    assert pred.prompt_boxes[0].shape[0] == model.cfg.selector.box_prior_max_keep  # the box prior filter keeps 1
    frames = np.random.default_rng(1).integers(0, 255, (7, 24, 32, 3), dtype=np.uint8)
    pred = model.predict(frames, "the red square")
    assert pred.masks.shape == (7, 24, 32) and pred.masks_per_seg.shape == (1, 7, 24, 32)
    nonempty = pred.masks.reshape(7, -1).any(1)
    assert np.isfinite(pred.boxes[nonempty]).all() and np.isnan(pred.boxes[~nonempty]).all()
    del model.llm.generate


def test_predict_rejects_bad_frames_and_runs_real_generation(models):
    model = get_model(models, "videoglamm", tsf=False, box=False)
    with pytest.raises(ValueError, match="uint8"):
        model.predict(np.zeros((2, 8, 8, 3), np.float32), "x")
    with pytest.raises(ValueError, match="non-empty"):
        model.predict(np.zeros((0, 8, 8, 3), np.uint8), "x")
    frames = np.random.default_rng(2).integers(0, 255, (3, 24, 32, 3), dtype=np.uint8)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        pred = model.predict(frames, "the red square", max_new_tokens=4)
    assert isinstance(pred.answer, str) and pred.masks.shape == (3, 24, 32)


def test_sampled_decoding_is_seeded_and_repeats(models):
    model = get_model(models, "videoglamm", tsf=False, box=False, decoding="sample", decoding_seed=3)
    real, seeds = type(model.llm).generate, []

    def spy(embeds, n, stops, **kwargs):
        seeds.append(kwargs.get("sample_seed"))
        return real(model.llm, embeds, n, stops, **kwargs)

    model.llm.generate = spy
    frames = np.random.default_rng(2).integers(0, 255, (3, 24, 32, 3), dtype=np.uint8)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        a = model.predict(frames, "the red square", max_new_tokens=6)
        b = model.predict(frames, "the red square", max_new_tokens=6)
    assert seeds == [3, 3] and a.answer == b.answer


def test_guided_box_prompts_clamp_only_when_switched_on(models):
    pd = get_model(models, "videoglamm").pixel_decoder
    tokens, boxes = torch.zeros(1, 2, pd.sam.sam_prompt_encoder.embed_dim), [torch.tensor([[-0.25, 0.1, 0.5, 1.5]])]
    assert pd.clamp_boxes
    clamped = pd._prompts(tokens, boxes)[1]
    pd.clamp_boxes = False
    try:
        free = pd._prompts(tokens, boxes)[1]
    finally:
        pd.clamp_boxes = True
    size = pd.image_size
    assert torch.equal(clamped, torch.tensor([[0.0, 0.1, 0.5, 1.0]]) * size)
    assert torch.equal(free, boxes[0] * size)


def test_tsf_at_test_uses_given_embeddings_or_boxes(models):
    model = get_model(models, "videoglamm", tsf_at_test=True)
    seg, eos = model.seg_token_id, model.tokenizer.eos_token_id
    captured = []
    _force_answer(model, [seg, eos], captured)
    frames = np.random.default_rng(3).integers(0, 255, (4, 24, 32, 3), dtype=np.uint8)
    tsf = torch.full((2, model.llm.hidden_size), 3.5)
    model.predict(frames, "the red square", tsf_embeddings=tsf)
    rows = captured[-1][0]
    assert (rows == 3.5).all(dim=1).sum() == 2  # two TSF vectors inserted, the other placeholders dropped
    model.predict(frames, "the red square", tsf_boxes=np.array([[2, 2, 20, 20]]))
    with pytest.warns(UserWarning, match="zero vectors"):
        model.predict(frames, "the red square")
    assert (captured[-1][0] == 0).all(dim=1).sum() == model.cfg.tsf_k
    del model.llm.generate


# -- speed paths: each must compute what the straightforward path computes -------------------------------------
def _same_prediction(a, b) -> bool:
    return (
        a.answer == b.answer
        and a.seg_found == b.seg_found
        and np.array_equal(a.masks, b.masks)
        and np.array_equal(a.masks_per_seg, b.masks_per_seg)
        and np.array_equal(a.boxes, b.boxes, equal_nan=True)
        and len(a.prompt_boxes) == len(b.prompt_boxes)
        and all(np.array_equal(x, y) for x, y in zip(a.prompt_boxes, b.prompt_boxes))
    )


@pytest.mark.parametrize("host", HOSTS)
def test_predict_many_equals_predict_per_text(models, host):
    frames = np.random.default_rng(4).integers(0, 255, (7, 24, 32, 3), dtype=np.uint8)
    frames[:, 6:18, 8:20] = (220, 30, 30)
    texts = ["the red square", "the thing on the left.", "the red square"]
    for box in (True, False):
        model = get_model(models, host, box=box)
        _force_answer(model, [model.box_token_id, model.seg_token_id, model.tokenizer.eos_token_id])
        try:
            many = model.predict_many(frames, texts)
            single = [model.predict(frames, t) for t in texts]
            assert all(p.seg_found for p in many) and all(map(_same_prediction, many, single))
            raw = model.predict_many(frames, texts[:2], raw_question=True, max_new_tokens=5)
            assert all(map(_same_prediction, raw, [model.predict(frames, t, raw_question=True) for t in texts[:2]]))
        finally:
            del model.llm.generate
    model = get_model(models, host)  # free generation (random weights: answers without [SEG] warn)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        many = model.predict_many(frames, texts[:2], max_new_tokens=4)
        assert all(map(_same_prediction, many, [model.predict(frames, t, max_new_tokens=4) for t in texts[:2]]))
    assert model.predict_many(frames, []) == []
    with pytest.raises(ValueError, match="tsf_boxes has 1 entries for 2 texts"):
        model.predict_many(frames, texts[:2], tsf_boxes=[None])


def test_predict_many_with_tsf_boxes_per_text(models):
    model = get_model(models, "videoglamm", tsf_at_test=True)
    _force_answer(model, [model.seg_token_id, model.tokenizer.eos_token_id])
    frames = np.random.default_rng(5).integers(0, 255, (4, 24, 32, 3), dtype=np.uint8)
    boxes = [np.array([[2, 2, 20, 20]]), None, np.array([[0, 4, 10, 24], [3, 3, 30, 22]])]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the text without boxes gets zero TSF vectors, with a warning
            many = model.predict_many(frames, ["a", "b", "c"], tsf_boxes=boxes)
            single = [model.predict(frames, t, tsf_boxes=b) for t, b in zip("abc", boxes)]
    finally:
        del model.llm.generate
    assert all(map(_same_prediction, many, single))


@pytest.mark.parametrize("host", HOSTS)
def test_generation_hidden_states_equal_one_forward_over_prompt_and_answer(models, host):
    model = get_model(models, host, tsf=False, box=False)
    llm = model.llm.eval()
    torch.manual_seed(3)
    prompt = torch.randn(1, 9, llm.hidden_size)
    answer = [model.box_token_id, model.seg_token_id, 7, model.tokenizer.eos_token_id]
    with torch.no_grad():
        ids, states = llm.generate(prompt, 10, {model.tokenizer.eos_token_id}, forced=answer)
        full = torch.cat([prompt, llm.embed(torch.tensor([answer[:-1]]))], dim=1)
        _, hidden, _ = llm(full, torch.ones(1, full.shape[1], dtype=torch.long))
    assert ids == answer and states.shape == (4, llm.hidden_size)  # last prompt position + 3 fed answer tokens
    assert torch.allclose(states, hidden[0, 8:], atol=1e-5)


def _framewise_reference(pd, feats, tokens, boxes, out_hw):
    """The frame-by-frame decoding the batched path replaces."""
    if tokens.shape[0] == 0:
        return tokens.new_zeros((0, feats.num_frames) + out_hw)
    ptok, px, owner = pd._prompts(tokens, boxes)
    frames = []
    for t in range(feats.num_frames):
        embed = pd.memoryless_embed(feats, t).expand(ptok.shape[0], -1, -1, -1)
        high = [feats.level(i, t).expand(ptok.shape[0], -1, -1, -1) for i in range(len(feats.vision_feats) - 1)]
        low, _, _ = pd._decode(embed, high or None, px, ptok)
        frames.append(pd._max_by_owner(low, owner, tokens.shape[0]))
    return pd._upsample(torch.stack(frames, dim=1), out_hw)


@pytest.mark.parametrize("host", ["videoglamm", "unipixel"])
def test_batched_framewise_decoding_equals_frame_by_frame(models, host, monkeypatch):
    import sparrow.model.pixel_decoder as pdm

    model = get_model(models, host, tsf=False, box=False)
    pd = model.pixel_decoder.eval()
    with torch.no_grad():
        feats = pd.encode(torch.rand(5, 3, 48, 48))
    k = model.cfg.seg_tokens_per_target
    torch.manual_seed(2)
    tokens = [torch.randn(2, k, pd.hidden_dim), torch.randn(1, k, pd.hidden_dim), torch.randn(0, k, pd.hidden_dim)]
    boxes = [
        [torch.tensor([[0.1, 0.1, 0.5, 0.6]]), torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.2, 0.3, 0.9, 0.8]])],
        None,
        None,
    ]
    spans = [(0, 3), (3, 5), (1, 4)]
    requests = [(a, b, tok, bx, (20, 28)) for (a, b), tok, bx in zip(spans, tokens, boxes)]
    for budget in (pdm.DECODE_BATCH_ELEMENTS, 1):  # one call per group, and one (frame, prompt) pair per call
        monkeypatch.setattr(pdm, "DECODE_BATCH_ELEMENTS", budget)
        with torch.no_grad():
            out = pd.decode_framewise_many(feats, requests)
        for (a, b), tok, bx, got in zip(spans, tokens, boxes, out):
            ref = _framewise_reference(pd, feats.frames(a, b), tok, bx, (20, 28))
            assert got.shape == ref.shape == (tok.shape[0], b - a, 20, 28)
            assert torch.allclose(got, ref, atol=1e-5)
    # gradients reach the prompt tokens as through the per-frame calls
    a = tokens[0].clone().requires_grad_(True)
    b = tokens[0].clone().requires_grad_(True)
    pd.decode(feats, a, boxes[0], (20, 28)).square().mean().backward()
    _framewise_reference(pd, feats, b, boxes[0], (20, 28)).square().mean().backward()
    assert torch.allclose(a.grad, b.grad, atol=1e-6, rtol=1e-4)


def test_frozen_sam_features_are_cached_per_sample_and_only_while_frozen(models):
    model = get_model(models, "videoglamm", tsf=False, box=False)
    pd = model.pixel_decoder
    cache = pd.feature_cache
    frames = torch.rand(2, 2, 3, pd.image_size, pd.image_size)
    model.configure_stage("stage1").train()  # SAM2 frozen: cached
    cache.clear()
    first = pd.encode_samples(frames)
    assert len(cache) == 2 and cache.misses >= 2
    hits = cache.hits
    again = pd.encode_samples(frames)
    assert cache.hits == hits + 2 and len(cache) == 2
    assert all(torch.equal(x, y) for x, y in zip(first.vision_feats, again.vision_feats))
    # a sample's features do not depend on the batch it came in: equal to encoding it alone, bit for bit
    alone = pd.encode(frames[1])
    assert all(torch.equal(x[:, 2:], y) for x, y in zip(first.vision_feats, alone.vision_feats))
    assert all(torch.equal(x[:, 2:], y) for x, y in zip(first.vision_pos, alone.vision_pos))
    # a weight change drops the cache
    with torch.no_grad():
        pd.sam.image_encoder.trunk.patch_embed.proj.weight.mul_(1.5)
        changed = pd.encode_samples(frames)
        pd.sam.image_encoder.trunk.patch_embed.proj.weight.div_(1.5)
    assert len(cache) == 2 and not torch.equal(changed.vision_feats[-1], first.vision_feats[-1])
    # the host stage trains SAM2 (mini and smoke presets) and inference runs in eval mode: no cache
    for stage, train in (("host", True), ("stage1", False)):
        model.configure_stage(stage).train(train)
        cache.clear()
        pd.encode_samples(frames)
        assert len(cache) == 0, stage
    model.train()


def test_batched_training_forward_keeps_samples_apart(models):
    # Every cross-sample batching (decoder, proposer, TSF crop encoding) must give each sample what it gets alone.
    model = get_model(models, "videoglamm")
    examples = [make_example(model.cfg, i) for i in range(2)]
    examples[1].target_masks[0, :, 5:15, 5:15] = 1
    for stage in ("stage1", "stage2"):
        model.configure_stage(stage).eval()  # no dropout, so single and batched runs are comparable
        collate = model.collator()
        with torch.no_grad():
            both = model(collate(examples))
            for i, ex in enumerate(examples):
                alone = model(collate([ex]))
                assert torch.allclose(both.mask_logits[i], alone.mask_logits[0], atol=1e-4), (stage, i)
                assert [b.tolist() for b in both.selected_boxes[i]] == [b.tolist() for b in alone.selected_boxes[0]]
    model.train()
