"""InternVideo2 in plain torch: shapes, chunking, the feature block, preprocessing and the released-file loader."""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import pytest
import torch

import sparrow  # noqa: F401  (torchvision shim first)
from fixtures.release_layouts import internvideo2_stage2_state, write_internvideo2_release
from sparrow.model.config import TemporalSpec
from sparrow.model.internvideo2 import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    InternVideo2,
    InternVideo2Config,
    convert_release_to_safetensors,
    load_released,
    preprocess,
    read_release,
)
from sparrow.model.state_report import StateMismatch
from sparrow.model.temporal_encoder import InternVideo2Encoder, TemporalEncoder
from sparrow.storage import DataError

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = InternVideo2Config.tiny()


def tiny_spec(**changes) -> TemporalSpec:
    spec = TemporalSpec(
        kind="internvideo2",
        image_size=TINY.image_size,
        patch_size=TINY.patch_size,
        chunk_size=TINY.num_frames,
        tubelet_size=TINY.tubelet_size,
        hidden_size=TINY.embed_dim,
        num_layers=TINY.depth,
        num_heads=TINY.num_heads,
        intermediate_size=TINY.mlp_dim,
    )
    return dataclasses.replace(spec, **changes)


def perturbed(cfg: InternVideo2Config = TINY, seed: int = 0) -> InternVideo2:
    torch.manual_seed(seed)
    model = InternVideo2(cfg)
    for p in model.parameters():
        p.data.add_(0.1 * torch.randn_like(p))
    return model.eval()


def test_released_sizes_give_256_tokens_per_frame_and_39_blocks():
    cfg = InternVideo2Config()
    assert (cfg.embed_dim, cfg.num_heads, cfg.mlp_dim, cfg.patch_size, cfg.tubelet_size) == (1408, 16, 6144, 14, 1)
    assert cfg.tokens_per_frame == 256 and cfg.num_frames == 4
    assert cfg.blocks_run == 39  # x_vis_return_idx=-2: the loop stops after block index 38
    with torch.device("meta"):
        model = InternVideo2(cfg)
    assert len(model.blocks) == 39 and model.pos_embed.shape == (1, 1 + 4 * 256, 1408)
    assert model.img_pos_embed.shape == (1, 257, 1408)


def test_forward_shape_and_temporal_encoder_tokens_per_frame():
    model = perturbed()
    out = model(torch.randn(2, 3, 4, 28, 28))
    assert out.shape == (2, 1 + 4 * TINY.tokens_per_frame, TINY.embed_dim)
    encoder = TemporalEncoder.build(tiny_spec(), None)
    assert isinstance(encoder, InternVideo2Encoder) and encoder.resize_kind == "stretch"
    tokens = encoder(torch.rand(8, 3, 28, 28))
    assert tokens.shape == (8, TINY.tokens_per_frame, TINY.embed_dim) and encoder.output_dim == TINY.embed_dim


def test_frames_are_encoded_in_independent_chunks_of_four():
    encoder = InternVideo2Encoder.wrap(perturbed())
    frames = torch.rand(8, 3, 28, 28)
    both = encoder(frames)
    assert torch.allclose(both[:4], encoder(frames[:4]), atol=1e-6)
    assert torch.allclose(both[4:], encoder(frames[4:]), atol=1e-6)
    changed = frames.clone()
    changed[5] = torch.rand(3, 28, 28)
    again = encoder(changed)
    assert torch.equal(again[:4], both[:4])  # another chunk: untouched
    assert not torch.allclose(again[4], both[4])  # same chunk: frame 4 attends to frame 5
    with pytest.raises(ValueError, match="multiple of the temporal chunk"):
        encoder(frames[:6])


def _rms(x: torch.Tensor, w: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    x32 = x.float()
    return w * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


def reference_forward(model: InternVideo2, x: torch.Tensor) -> torch.Tensor:
    """The released forward written out: naive attention, q/k RMSNorm over all heads, stop after the feature
    block."""
    cfg = model.cfg
    h = torch.nn.functional.conv3d(x, model.patch_embed.proj.weight, model.patch_embed.proj.bias, stride=(1, 14, 14))
    b, c = h.shape[:2]
    h = h.flatten(3).permute(0, 2, 3, 1).reshape(b, -1, c)
    h = torch.cat([model.cls_token.expand(b, -1, -1), h], 1) + model.pos_embed
    heads = cfg.num_heads
    for i in range(cfg.depth + cfg.feature_block + 1):
        blk = model.blocks[i]
        y = _rms(h, blk.norm1.weight)
        qkv = (y @ blk.attn.qkv.weight.T).reshape(b, -1, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q = _rms(q.transpose(1, 2).flatten(-2), blk.attn.q_norm.weight).view(b, -1, heads, c // heads).transpose(1, 2)
        k = _rms(k.transpose(1, 2).flatten(-2), blk.attn.k_norm.weight).view(b, -1, heads, c // heads).transpose(1, 2)
        attn = ((q * (c // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
        y = (attn @ v).transpose(1, 2).reshape(b, -1, c) @ blk.attn.proj.weight.T + blk.attn.proj.bias
        h = h + y * blk.ls1.gamma
        y = _rms(h, blk.norm2.weight)
        y = torch.nn.functional.gelu(y @ blk.mlp.fc1.weight.T + blk.mlp.fc1.bias) @ blk.mlp.fc2.weight.T
        h = h + (y + blk.mlp.fc2.bias) * blk.ls2.gamma
    return h


def test_forward_matches_the_released_computation_up_to_the_feature_block():
    cfg = dataclasses.replace(TINY, depth=4)  # 3 of 4 blocks run
    model = perturbed(cfg)
    x = torch.randn(2, 3, 4, 28, 28)
    with torch.no_grad():
        assert len(model.blocks) == 3
        assert torch.allclose(model(x), reference_forward(model, x), atol=1e-5)
        single = model(x[:, :, :1])  # one frame uses the image position embedding
        assert single.shape == (2, 1 + TINY.tokens_per_frame, TINY.embed_dim)


def test_preprocessing_stretches_to_224_and_normalises_with_imagenet_statistics():
    import cv2

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 90, 160, 3), dtype=np.uint8)
    out = preprocess(frames)
    assert out.shape == (2, 3, 224, 224) and out.dtype == torch.float32
    manual = (cv2.resize(frames[1], (224, 224), interpolation=cv2.INTER_LINEAR) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    assert np.allclose(out[1].numpy(), manual.transpose(2, 0, 1), atol=1e-6)
    # a stretch, not a crop: a frame with red left and blue right halves keeps both halves side by side
    halves = np.zeros((1, 100, 300, 3), np.uint8)
    halves[0, :, :150, 0] = 255
    halves[0, :, 150:, 2] = 255
    out = preprocess(halves)[0]
    red = (1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    assert torch.allclose(out[0, :, :100], torch.full((224, 100), red), atol=1e-6)
    assert torch.allclose(
        out[2, :, 124:], torch.full((224, 100), (1.0 - IMAGENET_MEAN[2]) / IMAGENET_STD[2]), atol=1e-6
    )


def test_loader_reports_the_released_keys_and_loads_the_vision_encoder(tmp_path):
    path = tmp_path / "InternVideo2-stage2_1b-224p-f4.pt"
    source = write_internvideo2_release(path, dataclasses.replace(TINY, depth=4))
    encoder = TemporalEncoder.build(tiny_spec(num_layers=4), path)
    got, want = encoder.model.state_dict(), source.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    report = load_released(InternVideo2(dataclasses.replace(TINY, depth=4)), path)
    assert report.ok and sorted(report.loaded) == sorted(want)
    unused = report.allowed_unexpected
    after = next(keys for reason, keys in unused.items() if "after the feature block" in reason)
    assert sorted(after) == [
        "release:vision_encoder.blocks.3.attn.qkv.weight",
        "release:vision_encoder.blocks.3.ls1.gamma",
    ]
    outside = {k for reason, keys in unused.items() if "outside the vision encoder" in reason for k in keys}
    assert {"release:vision_proj.weight", "release:text_proj.weight", "release:temp"} <= outside
    assert "after the feature block" in str(report)


def test_loader_unwraps_a_deepspeed_module_entry(tmp_path):
    path = tmp_path / "ds.pt"
    source = write_internvideo2_release(path, TINY, wrapper="module")
    model = InternVideo2(TINY)
    assert load_released(model, path).ok
    assert torch.equal(model.pos_embed, source.pos_embed)


def test_loader_rejects_unexplained_and_missing_keys(tmp_path):
    model = perturbed()
    state = internvideo2_stage2_state(model)
    extra = dict(state, **{"vision_encoder.extra_head.weight": torch.zeros(2)})
    torch.save({"model": extra}, tmp_path / "extra.pt")
    with pytest.raises(StateMismatch, match=r"UNEXPECTED  release:vision_encoder.extra_head.weight"):
        load_released(InternVideo2(TINY), tmp_path / "extra.pt")
    short = {k: v for k, v in state.items() if k != "vision_encoder.blocks.0.ls2.gamma"}
    torch.save({"model": short}, tmp_path / "short.pt")
    with pytest.raises(StateMismatch, match=r"MISSING  blocks.0.ls2.gamma"):
        load_released(InternVideo2(TINY), tmp_path / "short.pt")
    with pytest.raises(StateMismatch, match="shape"):
        load_released(InternVideo2(dataclasses.replace(TINY, mlp_dim=48)), tmp_path / "extra.pt")


def test_a_pickle_that_weights_only_refuses_is_converted_once_to_safetensors(tmp_path):
    model = perturbed()
    path = tmp_path / "with_args.pt"
    torch.save({"model": internvideo2_stage2_state(model), "args": argparse.Namespace(lr=1e-4)}, path)
    with pytest.raises(DataError, match=r"refused the file \(argparse.Namespace\).*convert_release_to_safetensors"):
        read_release(path)
    with pytest.raises(DataError, match=r"still refused .*argparse.Namespace"):
        convert_release_to_safetensors(path, tmp_path / "refused.safetensors")
    assert not (tmp_path / "refused.safetensors").exists()
    converted = convert_release_to_safetensors(path, tmp_path / "converted.safetensors", ["argparse.Namespace"])
    fresh = InternVideo2(TINY)
    assert load_released(fresh, converted).ok
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))
