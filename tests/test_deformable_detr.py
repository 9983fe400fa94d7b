"""The released Deformable-DETR proposer: deformable attention against a gather reference, the two-stage selection
and the decoder's fixed references, proposals, the 448 input chain and the checkpoint-* loader."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch

import sparrow  # noqa: F401  (torchvision shim first)
from fixtures.release_layouts import TINY_PROPOSER, release_config, write_proposer_release
from sparrow.model.deformable_detr import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DeformableProposer,
    DeformableTransformer,
    grid_proposals,
    load_release,
    proposal_pos_embed,
    release_spec,
)
from sparrow.model.proposer import ProposerOutput, load_proposer
from sparrow.model.state_report import StateMismatch
from sparrow.storage import DataError

pytestmark = pytest.mark.usefixtures("one_thread")


def _bilinear_zero_padded(value: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """value (H, W, C) sampled at pixel coordinates (x, y) (pixel centres at integers), zero outside."""
    h, w, _ = value.shape
    x0, y0 = math.floor(x), math.floor(y)
    out = torch.zeros(value.shape[-1], dtype=value.dtype)
    for yy, wy in ((y0, y0 + 1 - y), (y0 + 1, y - y0)):
        for xx, wx in ((x0, x0 + 1 - x), (x0 + 1, x - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out += wy * wx * value[yy, xx]
    return out


def reference_deformable_attention(attn, query, memory, ref, shape) -> torch.Tensor:
    """Multi-scale deformable attention with one level, written as loops and explicit gathers."""
    b, q, _ = query.shape
    h, w = shape
    heads, points = attn.n_heads, attn.n_points
    dh = attn.d_model // heads
    value = attn.value_proj(memory).view(b, h, w, heads, dh)
    offsets = attn.sampling_offsets(query).view(b, q, heads, points, 2)
    weights = attn.attention_weights(query).view(b, q, heads, points).softmax(-1)
    out = torch.zeros(b, q, heads, dh, dtype=query.dtype)
    for i in range(b):
        for j in range(q):
            cx, cy, bw, bh = ref[i, j].tolist()
            for k in range(heads):
                for p in range(points):
                    lx = cx + offsets[i, j, k, p, 0].item() / points * bw * 0.5
                    ly = cy + offsets[i, j, k, p, 1].item() / points * bh * 0.5
                    sample = _bilinear_zero_padded(value[i, :, :, k], lx * w - 0.5, ly * h - 0.5)
                    out[i, j, k] += weights[i, j, k, p] * sample
    return attn.output_proj(out.reshape(b, q, heads * dh))


def test_deformable_attention_matches_a_loop_and_gather_reference():
    torch.manual_seed(0)
    spec = dataclasses.replace(TINY_PROPOSER, d_model=16, num_heads=2, num_points=3)
    attn = DeformableTransformer(spec).decoder.layers[0].encoder_attn.double()
    with torch.no_grad():
        attn.sampling_offsets.weight.normal_(0, 2.0)  # offsets that also leave the map (zero padding)
        attn.attention_weights.weight.normal_(0, 1.0)
    h, w = 4, 5
    query = torch.randn(2, 6, 16, dtype=torch.float64)
    memory = torch.randn(2, h * w, 16, dtype=torch.float64)
    ref = torch.cat([torch.rand(2, 6, 2), 0.2 + 0.6 * torch.rand(2, 6, 2)], -1).double()
    with torch.no_grad():
        got, _ = attn(
            hidden_states=query,
            encoder_hidden_states=memory,
            reference_points=ref[:, :, None],
            spatial_shapes=torch.tensor([[h, w]]),
            spatial_shapes_list=[(h, w)],
            level_start_index=torch.zeros(1, dtype=torch.long),
        )
        want = reference_deformable_attention(attn, query, memory, ref, (h, w))
    assert (got - want).abs().max().item() < 1e-6


def test_grid_proposals_cover_cell_centres_and_mask_the_border():
    logits, valid = grid_proposals(2, 60, torch.device("cpu"))
    boxes = logits.sigmoid()
    assert logits.shape == (120, 4) and valid.shape == (120, 1)
    assert torch.allclose(boxes[61, :2], torch.tensor([1.5 / 60, 0.75]), atol=1e-6)
    assert torch.allclose(boxes[1, 2:], torch.tensor([0.05, 0.05]), atol=1e-6)
    # the first and last columns have centres within 0.01 of the border: invalid, logits +inf
    assert not valid[0] and not valid[59] and valid[1] and torch.isinf(logits[0]).all()


def _perturbed_transformer(spec, seed=0) -> DeformableTransformer:
    torch.manual_seed(seed)
    model = DeformableTransformer(spec)
    for p in model.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    return model.eval()


def test_two_stage_queries_and_decoder_attend_with_the_initial_boxes():
    """The released decoder: top-k encoder proposals, the Groma queries, every layer on the initial boxes, each
    layer's boxes refined from the previous layer's prediction."""
    from transformers.models.deformable_detr.modeling_deformable_detr import inverse_sigmoid

    spec = dataclasses.replace(TINY_PROPOSER, decoder_layers=3)
    model = _perturbed_transformer(spec)
    src = torch.randn(2, 32, 4, 5)
    seen: list[dict] = []
    outputs: list[torch.Tensor] = []
    memory: list[torch.Tensor] = []
    for layer in model.decoder.layers:
        layer.register_forward_pre_hook(lambda m, a, k: seen.append({**k, "hidden": a[0]}), with_kwargs=True)
        layer.register_forward_hook(lambda m, a, o: outputs.append(o))
    model.encoder.layers[-1].register_forward_hook(lambda m, a, o: memory.append(o))
    with torch.no_grad():
        out = model(src)
        queries = model.enc_output_norm(model.enc_output(memory[0]))
        top = model.class_embed_enc(queries)[..., 0].topk(spec.num_queries, dim=1).indices
        proposals, _ = grid_proposals(4, 5, src.device)
        coords = torch.stack([(model.bbox_embed[-1](queries[i]) + proposals)[top[i]] for i in range(2)])
        ref0 = coords.sigmoid()
        query_pos = model.pos_trans_norm(model.pos_trans(proposal_pos_embed(coords, 16)))[..., :32]
        assert torch.allclose(seen[0]["hidden"], model.query_position_embeddings.weight.expand(2, -1, -1))
        refs = [ref0]
        for i, kwargs in enumerate(seen):
            assert torch.allclose(kwargs["reference_points"][:, :, 0], ref0, atol=1e-6)  # never updated
            assert torch.allclose(kwargs["object_queries_position_embeddings"], query_pos, atol=1e-5)
            delta = model.bbox_embed[i](outputs[i])
            assert torch.allclose(out.boxes[i], (delta + inverse_sigmoid(refs[-1])).sigmoid(), atol=1e-6)
            refs.append((delta + inverse_sigmoid(ref0)).sigmoid())
            assert torch.allclose(out.logits_coco[i], model.class_embed_coco[i](outputs[i])[..., 0])
            assert torch.allclose(out.logits_sa1b[i], model.class_embed_sa1b[i](outputs[i])[..., 0])
    assert out.boxes.shape == (3, 2, spec.num_queries, 4) and torch.equal(out.hidden, outputs[-1])


def test_proposals_fuse_both_heads_keep_the_top_k_and_are_not_clamped(monkeypatch):
    torch.manual_seed(0)
    model = DeformableProposer(TINY_PROPOSER)
    q = TINY_PROPOSER.num_queries
    coco, sa1b = torch.randn(2, 1, q), torch.randn(2, 1, q)
    boxes = torch.rand(2, 1, q, 4)
    boxes[..., 0, 0, :] = torch.tensor([0.02, 0.5, 0.3, 0.2])  # reaches x < 0
    coco[..., 0] = sa1b[..., 0] = 5.0  # the best query
    hidden = torch.randn(1, q, 32)
    monkeypatch.setattr(model, "forward", lambda images: ProposerOutput(coco, sa1b, boxes, hidden))
    got = model.propose(torch.zeros(1, 3, 64, 64))[0]
    scores = coco[-1, 0].sigmoid() ** 0.3 * sa1b[-1, 0].sigmoid() ** 0.7
    order = scores.argsort(descending=True)[: TINY_PROPOSER.topk]
    assert torch.allclose(got.scores, scores[order]) and torch.equal(got.features, hidden[0, order])
    cx, cy, w, h = boxes[-1, 0, order].unbind(-1)
    assert torch.allclose(got.boxes, torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1))
    assert order[0] == 0 and got.boxes[0, 0] < 0


def test_input_chain_rounds_to_uint8_resizes_bicubic_and_normalises():
    from PIL import Image

    model = DeformableProposer(dataclasses.replace(TINY_PROPOSER, image_size=448))
    frame = torch.rand(3, 40, 70)
    got = model.preprocess(frame)
    assert got.shape == (1, 3, 448, 448)
    pixels = (frame * 255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
    image = np.asarray(Image.fromarray(pixels).resize((448, 448), Image.BICUBIC), np.float32) / 255.0
    want = (image - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert np.allclose(got[0].permute(1, 2, 0).numpy(), want, atol=1e-5)


def test_backbone_is_a_frozen_sam2_image_encoder_read_at_stride_16():
    model = DeformableProposer(TINY_PROPOSER).train()
    assert not any(p.requires_grad for p in model.vis_encoder.parameters()) and not model.vis_encoder.training
    feats = model.backbone_features(torch.randn(1, 3, 64, 64))
    assert feats.shape == (1, model.in_channels, 4, 4)
    out = model(torch.randn(2, 3, 64, 64))
    assert out.logits_coco.shape == (2, 2, 10) and out.hidden.shape == (2, 10, 32)


@pytest.mark.parametrize("safetensors", [False, True])
def test_release_folder_loads_strictly_and_reproduces_the_source(tmp_path, safetensors, capsys):
    folder = tmp_path / "sparrow-det-pretrain" / "checkpoint-5000"
    source = write_proposer_release(folder, safetensors=safetensors)
    loaded = load_release(folder, TINY_PROPOSER, verbose=True)
    assert loaded.report.ok and not loaded.report.unexpected and not loaded.report.missing
    assert "tensors loaded" in capsys.readouterr().out
    heads = [
        k for k in source.state_dict() if k.startswith(("ddetr_transformer.bbox_embed", "ddetr_transformer.class"))
    ]
    assert len(loaded.report.aliased) == (0 if safetensors else len(heads))  # the heads' second names
    got, want = loaded.proposer.state_dict(), source.state_dict()
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a, b = loaded.proposer(x), source(x)
    assert torch.equal(a.boxes, b.boxes) and torch.equal(a.hidden, b.hidden)
    assert isinstance(load_proposer(folder, TINY_PROPOSER), DeformableProposer)  # the kit's proposer entry point


def test_release_folder_errors_name_the_problem(tmp_path):
    folder = tmp_path / "det" / "checkpoint-5"
    write_proposer_release(folder)
    with pytest.raises(DataError, match="checkpoint-5"):
        load_release(tmp_path / "det", TINY_PROPOSER)
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    state["ddetr_transformer.decoder.class_embed_enc.bias"] = state["ddetr_transformer.class_embed_enc.bias"] + 1
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(DataError, match="different values"):
        load_release(folder, TINY_PROPOSER)
    state["ddetr_transformer.decoder.class_embed_enc.bias"] = state["ddetr_transformer.class_embed_enc.bias"]
    state["ddetr_transformer.extra.weight"] = torch.zeros(1)
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(StateMismatch, match=r"UNEXPECTED  release:ddetr_transformer.extra.weight"):
        load_release(folder, TINY_PROPOSER)
    config = release_config(TINY_PROPOSER)
    config["ddetr_cfg"]["num_feature_levels"] = 4
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(DataError, match="num_feature_levels=4"):
        load_release(folder, TINY_PROPOSER)


def test_release_config_defaults_are_deformable_detrs():
    config = {
        "model_type": "ddetr_sam2",
        "sam2_cfg": "sam2_hiera_l.yaml",
        "ddetr_cfg": release_config(TINY_PROPOSER)["ddetr_cfg"],
    }
    for name in ("d_model", "num_queries", "encoder_layers", "decoder_layers"):
        del config["ddetr_cfg"][name]
    for part in ("encoder", "decoder"):
        del config["ddetr_cfg"][f"{part}_attention_heads"], config["ddetr_cfg"][f"{part}_ffn_dim"]
    config["ddetr_cfg"]["two_stage_num_proposals"] = 300
    spec = release_spec(config)
    assert (spec.d_model, spec.encoder_layers, spec.num_heads, spec.ffn_dim, spec.num_points) == (256, 6, 8, 1024, 4)
    assert spec.num_queries == 300 and spec.backbone == "configs/sam2/sam2_hiera_l.yaml"
    assert (spec.topk, spec.image_size, spec.kind) == (100, 448, "deformable_detr")


def test_a_fresh_proposer_seeds_its_backbone_from_a_sam2_checkpoint(tmp_path):
    import sam2  # noqa: F401
    from hydra import compose
    from hydra.utils import instantiate

    from sparrow.model.pixel_decoder import tiny_overrides

    torch.manual_seed(3)
    sam = instantiate(compose(config_name=TINY_PROPOSER.backbone, overrides=tiny_overrides(64)).model, _recursive_=True)
    torch.save({"model": sam.state_dict()}, tmp_path / "sam2.pt")
    model = DeformableProposer(TINY_PROPOSER)
    report = model.load_backbone(tmp_path / "sam2.pt")
    assert report.ok and len(report.loaded) == len(model.vis_encoder.state_dict())
    assert all(torch.equal(v, sam.image_encoder.state_dict()[k]) for k, v in model.vis_encoder.state_dict().items())
