"""Inference protocols by name: UniPixel's frame and query rules, GLUS's middle context clip, the kit's default."""

from __future__ import annotations

import numpy as np
import pytest

from sparrow.model import glus_protocol, unipixel_protocol
from sparrow.model.host_protocol import PROTOCOLS, protocol


def test_unipixel_frames_round_an_arange_not_a_truncated_linspace():
    # step 19/15: 0, 1.27, 2.53, 3.8, 5.07, 6.33, 7.6, 8.87, 10.13, 11.4, 12.67, 13.93, 15.2, 16.47, 17.73, 19
    expected = [0, 1, 3, 4, 5, 6, 8, 9, 10, 11, 13, 14, 15, 16, 18, 19]
    assert unipixel_protocol.llm_frames(20, 16) == expected
    assert expected != protocol("kit").llm_frames(20, 16)
    assert unipixel_protocol.llm_frames(31, 16) == list(range(0, 31, 2))


def test_unipixel_short_video_keeps_every_frame_without_padding():
    assert unipixel_protocol.llm_frames(5, 16) == [0, 1, 2, 3, 4]
    assert protocol("kit").llm_frames(5, 16)[-1] == 4 and len(protocol("kit").llm_frames(5, 16)) == 16


@pytest.mark.parametrize(
    "text, query",
    [
        ("The man in red.", "man in red"),
        ("A dog running", "dog running"),
        ("an Apple", "Apple"),
        ("..Person on the left..", "person on the left"),
        ("the a cat", "cat"),
        ("dog", "dog"),
    ],
)
def test_unipixel_query_rule(text, query):
    assert unipixel_protocol.query(text) == query


def test_glus_context_is_the_middle_clip():
    clips = glus_protocol.context_clips(13, 4)  # cuts 0, 3, 6, 9, 13
    assert clips == [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11], [2, 5, 8, 12]]
    assert glus_protocol.context_frames(13, 4) == [2, 5, 8, 11]
    assert protocol("kit").context_frames(13, 4) == [1, 4, 8, 11]  # the kit's segment centres
    # short videos, as inference_iter.py indexes its frame list: cuts 0, 0, 1, 1, 2 give -1, the last frame
    assert glus_protocol.context_clips(2, 4) == [[1, 0, 0, 1]]
    assert glus_protocol.context_clips(4, 4) == [[0, 1, 2, 3]]


def test_presets_name_their_protocols_at_paper_size_only():
    from sparrow.model.config import ModelConfig

    assert ModelConfig.for_preset("unipixel", "paper").protocol == "unipixel"
    assert ModelConfig.for_preset("glus", "paper").protocol == "glus"
    assert ModelConfig.for_preset("videoglamm", "paper").protocol == "kit"
    for host in ("unipixel", "glus", "videoglamm"):
        for profile in ("smoke", "mini"):
            assert ModelConfig.for_preset(host, profile).protocol == "kit"
    with pytest.raises(ValueError, match="protocol"):
        ModelConfig.for_preset("unipixel", "smoke", protocol="nope")
    assert set(PROTOCOLS) == {"kit", "unipixel", "unipixel-native", "glus"}


def test_inference_uses_the_configured_protocol(monkeypatch):
    """WholeVideo samples the LLM frames and _predict_text words the question by the model's protocol."""
    import torch

    from sparrow.model import inference
    from sparrow.model.config import ModelConfig
    from sparrow.model.sparrow_model import SparrowModel

    torch.manual_seed(0)
    model = SparrowModel.from_config(ModelConfig.for_preset("unipixel", "smoke", box=False, protocol="unipixel"))
    model.eval()
    frames = np.zeros((3, 32, 32, 3), dtype=np.uint8)
    seen = {}

    def fake_answer(model_, visual, question, *args, **kwargs):
        seen["prompt"] = question
        raise RuntimeError("stop")

    captured = {}
    original = model.visual_tokens

    def visual_tokens(llm_frames, temporal):
        captured["frames"] = llm_frames.shape[1]
        return original(llm_frames, temporal)

    monkeypatch.setattr(model, "visual_tokens", visual_tokens)
    monkeypatch.setattr(inference, "answer", fake_answer)
    with pytest.raises(RuntimeError, match="stop"):
        inference.predict(model, frames, "The red ball.")
    assert seen["prompt"] == "Please segment the red ball in this video."
    view = inference.WholeVideo(inference.VideoContext(model, frames))
    view.visual()
    assert captured["frames"] == 3  # the kit protocol pads a 3-frame video to num_frames
