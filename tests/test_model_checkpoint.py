"""save_pretrained / from_pretrained: exact round trip, strict loading errors, corrupt files, atomic writes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import sparrow  # noqa: F401  (torchvision shim first)
from sparrow.model import CheckpointError, ModelConfig, SparrowExample, SparrowModel
from sparrow.model.checkpoint import WEIGHTS_NAME, read_state

pytestmark = pytest.mark.usefixtures("one_thread")


def make_example(cfg: ModelConfig, seed: int = 0) -> SparrowExample:
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 255, (5, 32, 40, 3), dtype=np.uint8)
    masks = np.zeros((1, cfg.num_sam_frames, 32, 40), np.int8)
    masks[0, :, 8:20, 10:30] = 1
    return SparrowExample(
        "s/v",
        f"e{seed}",
        "expression",
        "the blue circle",
        None,
        video[: cfg.num_frames],
        video[: cfg.num_sam_frames],
        masks,
        np.array([[0.25, 0.25, 0.75, 0.6]], np.float32),
    )


def trained_like(host: str, stage: str = "stage2") -> SparrowModel:
    torch.manual_seed(0)
    model = SparrowModel.from_config(ModelConfig.for_preset(host, "smoke"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".lora_B." in name:
                p.normal_(std=0.2)  # non-zero LoRA so the round trip covers adapter weights
    return model.configure_stage(stage)


@pytest.mark.parametrize("host", ["videoglamm", "unipixel", "glus"])
def test_round_trip_is_exact(tmp_path, host):
    model = trained_like(host)
    target = model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in target.iterdir()) == ["components", "config.json", WEIGHTS_NAME, "tokenizer"]
    loaded = SparrowModel.from_pretrained(target)
    assert loaded.stage == "stage2" and loaded.cfg == model.cfg
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert loaded.tokenizer.encode("Sure, [BOX] [SEG].") == model.tokenizer.encode("Sure, [BOX] [SEG].")
    model.eval()
    batch = model.collator()([make_example(model.cfg)])
    with torch.no_grad():
        out_a, out_b = model(batch), loaded(batch)
    assert torch.equal(out_a.loss, out_b.loss)
    assert torch.equal(out_a.mask_logits[0], out_b.mask_logits[0])


def test_read_state_reads_one_prefix_alone(tmp_path):
    from safetensors.torch import save_file

    a, b = torch.arange(4.0), torch.ones(2)
    path = tmp_path / WEIGHTS_NAME
    # "proposer.tied" is stored as an alias of a tensor outside the prefix
    save_file({"proposer.w": a, "llm.w": b}, str(path), metadata={"sparrow_aliases": '{"proposer.tied": "llm.w"}'})
    full = read_state(path)
    assert set(full) == {"proposer.w", "llm.w", "proposer.tied"}
    part = read_state(path, prefix="proposer.")
    assert set(part) == {"proposer.w", "proposer.tied"}
    assert torch.equal(part["proposer.w"], a) and torch.equal(part["proposer.tied"], b)


def test_strict_loading_names_missing_and_unexpected_keys(tmp_path):
    model = trained_like("videoglamm")
    target = model.save_pretrained(tmp_path / "ckpt")
    config = json.loads((target / "config.json").read_text())
    config["model"]["box"] = False  # the config no longer builds the proposer, selector and ROI helper
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError) as err:
        SparrowModel.from_pretrained(target)
    message = str(err.value)
    assert WEIGHTS_NAME in message and "unexpected keys" in message and "proposer." in message
    assert "missing keys (0)" in message
    # a weights file lacking one tensor: the key is named as missing
    config["model"]["box"] = True
    (target / "config.json").write_text(json.dumps(config))
    from safetensors.torch import save_file

    state = read_state(target / WEIGHTS_NAME)
    dropped = "lv_projector.net.0.base_layer.weight"
    save_file({k: v.contiguous() for k, v in state.items() if k != dropped}, str(target / WEIGHTS_NAME))
    with pytest.raises(CheckpointError, match=f"missing keys \\(1\\): {dropped}"):
        SparrowModel.from_pretrained(target)


def test_corrupt_empty_and_incomplete_checkpoints(tmp_path):
    model = trained_like("glus", stage="stage1")
    target = model.save_pretrained(tmp_path / "ckpt")
    weights = target / WEIGHTS_NAME
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{weights}.*not a readable safetensors"):
        SparrowModel.from_pretrained(target)
    weights.write_bytes(b"")
    with pytest.raises(CheckpointError, match=f"{weights}: checkpoint weights file is empty"):
        SparrowModel.from_pretrained(target)
    weights.unlink()
    with pytest.raises(CheckpointError, match="checkpoint weights not found"):
        SparrowModel.from_pretrained(target)
    (target / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: invalid checkpoint config"):
        SparrowModel.from_pretrained(target)
    (target / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json: checkpoint config not found"):
        SparrowModel.from_pretrained(target)
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        SparrowModel.from_pretrained(tmp_path / "nowhere")


def test_save_is_atomic(tmp_path, monkeypatch):
    model = trained_like("glus", stage="stage1")
    target = model.save_pretrained(tmp_path / "ckpt")
    before = (target / WEIGHTS_NAME).read_bytes()
    import sparrow.model.checkpoint as sm

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(sm, "save_state", fail)
    with pytest.raises(OSError, match="disk full"):
        model.save_pretrained(target)
    assert (target / WEIGHTS_NAME).read_bytes() == before  # the old checkpoint is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporary folder left behind
    monkeypatch.undo()
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if ".lora_B." in n).add_(1.0)
    model.save_pretrained(target)
    assert (target / WEIGHTS_NAME).read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("tsf", "false", "'tsf' must be true/false, got a string \"false\""),
        ("num_frames", "4", "'num_frames' must be an integer, got a string \"4\""),
        ("num_frames", True, "'num_frames' must be an integer, got a boolean true"),
        ("tsf_placeholders", 2.5, "'tsf_placeholders' must be an integer or null, got a number 2.5"),
        ("sam", {"image_size": "64"}, "'sam.image_size' must be an integer or null"),
        ("lora", {"llm_targets": "q_proj"}, "'lora.llm_targets' must be a list of strings"),
        ("proposer", {"score_power": [0.3]}, "'proposer.score_power' must be a list of 2"),
        ("temporal", [], "'temporal' must be a TemporalSpec object"),
    ],
)
def test_config_fields_are_type_checked_on_load(tmp_path, field, value, expected):
    target = trained_like("videoglamm", stage="stage1").save_pretrained(tmp_path / "ckpt")
    config = target / "config.json"
    data = json.loads(config.read_text())
    data["model"][field] = {**data["model"][field], **value} if isinstance(value, dict) else value
    config.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=f"{config}: invalid checkpoint config \\(field {expected}"):
        SparrowModel.from_pretrained(target)


def test_config_numbers_read_back_as_their_field_types():
    cfg = ModelConfig.for_preset("videoglamm", "smoke")
    data = cfg.to_json()
    data["losses"] = {**data["losses"], "bce": 2}  # an integer where a float is declared is the same number
    back = ModelConfig.from_json(data)
    assert back == cfg and isinstance(back.losses.bce, float) and isinstance(back.proposer.score_power, tuple)
