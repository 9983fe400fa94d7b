"""Forward/backward of every host preset and switch combination (smoke sizes), the pixel decoder's extra sparse
token, SAM2 memory propagation, stages, LoRA folding, and ``predict`` (no ``[SEG]``, short videos, guidance)."""

from __future__ import annotations

import warnings

import sparrow  # noqa: F401  (torchvision shim first)
import numpy as np
import pytest
import torch

from sparrow.model import LOSS_KEYS, ModelConfig, SparrowExample, SparrowModel
from sparrow.model.pixel_decoder import MemoryState

HOSTS = ("videoglamm", "unipixel", "glus")


def make_example(cfg: ModelConfig, seed: int = 0, t: int = 6, h: int = 40, w: int = 56) -> SparrowExample:
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 255, (t, h, w, 3), dtype=np.uint8)
    video[:, 10:26, 14:34] = (220, 30, 30)
    masks = np.zeros((1, cfg.num_sam_frames, h, w), np.int8)
    masks[0, :, 10:26, 14:34] = 1
    masks[0, :, 0, :] = -1
    idx = np.linspace(0, t - 1, cfg.num_frames).astype(int)
    sam_idx = np.linspace(0, t - 1, cfg.num_sam_frames).astype(int)
    return SparrowExample(f"src/v{seed}", f"e{seed}", "expression", "the red square", None, video[idx],
                          video[sam_idx], masks, np.array([[14 / w, 10 / h, 34 / w, 26 / h]], np.float32))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny models on a shared 2-core machine: intra-op threads only add contention (10x slower steps measured).
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


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
    model.proposer.propose = lambda feats: [Proposals(gt, torch.randn(2, d), torch.tensor([0.9, 0.8]),
                                                      torch.ones(2, dtype=torch.bool))]
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
    names = lambda stage: {n for n, p in model.named_parameters() if n in model._trainable_names(stage)}  # noqa: E731
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
    guided = pd.decode(feats, token.detach(), [torch.tensor([[0.1, 0.1, 0.5, 0.6]]),
                                               torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.2, 0.2, 0.4, 0.4]])], low)
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
    parts = torch.cat([pd.decode(feats.frames(0, 2), a, None, (24, 24), mode, state),
                       pd.decode(feats.frames(2, 4), a, None, (24, 24), mode, state)], dim=1)
    assert torch.allclose(parts, la, atol=1e-5)


def test_framewise_frames_are_independent(models):
    model = get_model(models, "videoglamm", tsf=False, box=False)
    pd = model.pixel_decoder.eval()
    frames = torch.rand(3, 3, 48, 48)
    token = torch.randn(1, 1, pd.hidden_dim)
    full = pd.decode(pd.encode(frames), token, None, (16, 16))
    last = pd.decode(pd.encode(frames[2:]), token, None, (16, 16))
    assert torch.allclose(full[:, 2], last[:, 0], atol=1e-5)


def test_encode_crops_gives_one_llm_vector_per_crop(models):
    for host in HOSTS:
        model = get_model(models, host)
        emb = model.encode_crops(torch.rand(5, 3, 20, 20))
        assert emb.shape == (5, model.llm.hidden_size) and torch.isfinite(emb).all()
        assert model.encode_crops(torch.rand(0, 3, 20, 20)).shape == (0, model.llm.hidden_size)
        with pytest.raises(ValueError, match="crops must be"):
            model.encode_crops(torch.rand(5, 20, 20))


def _force_answer(model, ids):
    model.llm.generate_greedy = lambda embeds, n, stops: list(ids)


@pytest.mark.parametrize("host", HOSTS)
def test_predict_no_seg_gives_empty_mask_and_warning(models, host):
    model = get_model(models, host)
    _force_answer(model, [model.tokenizer.convert_tokens_to_ids("red"), model.tokenizer.eos_token_id])
    frames = np.random.default_rng(0).integers(0, 255, (5, 24, 32, 3), dtype=np.uint8)
    with pytest.warns(UserWarning, match="no \\[SEG\\]"):
        pred = model.predict(frames, "the dog")
    assert not pred.seg_found and pred.masks.shape == (5, 24, 32) and not pred.masks.any()
    assert np.isnan(pred.boxes).all() and pred.answer == "red"
    del model.llm.generate_greedy


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
    del model.llm.generate_greedy


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


def test_tsf_at_test_uses_given_embeddings_or_boxes(models):
    model = get_model(models, "videoglamm", tsf_at_test=True)
    seg, eos = model.seg_token_id, model.tokenizer.eos_token_id
    captured = []

    def fake(embeds, n, stops):
        captured.append(embeds.clone())
        return [seg, eos]

    model.llm.generate_greedy = fake
    frames = np.random.default_rng(3).integers(0, 255, (4, 24, 32, 3), dtype=np.uint8)
    tsf = torch.full((2, model.llm.hidden_size), 3.5)
    model.predict(frames, "the red square", tsf_embeddings=tsf)
    rows = captured[-1][0]
    assert (rows == 3.5).all(dim=1).sum() == 2  # two TSF vectors inserted, the other placeholders dropped
    model.predict(frames, "the red square", tsf_boxes=np.array([[2, 2, 20, 20]]))
    with pytest.warns(UserWarning, match="zero vectors"):
        model.predict(frames, "the red square")
    assert (captured[-1][0] == 0).all(dim=1).sum() == model.cfg.tsf_k
    del model.llm.generate_greedy
