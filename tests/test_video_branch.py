"""The ``video_branch`` propagation mode against sam2's own video predictor.

VideoGLaMM's documented evaluation runs its bundled ``SAM2VideoPredictor``: ``add_new_text`` puts the ``[SEG]``
token on frame 0 (``_run_single_frame_inference`` with no points, the token after SAM2's padding), then
``propagate_in_video``. The reference here is the ``sam2`` package's ``SAM2VideoPredictor`` (built by
``build_sam2_video_predictor`` with its post-processing, the kit's tiny SAM2's weights), driven the same way: the
token enters through the kit's prompt-encoder hook for the frame-0 call, as ``add_new_text`` does. Its hole filling
needs sam2's CUDA extension and is skipped on a CPU, as the released predictor comments it out.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict

import pytest
import torch

from sparrow.model.pixel_decoder import sam_overrides

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def decoder():
    from sparrow.model import SparrowModel
    from sparrow.model.config import ModelConfig

    torch.manual_seed(0)
    model = SparrowModel.from_config(ModelConfig.for_preset("videoglamm", "smoke")).eval()
    pd = model.pixel_decoder
    with torch.no_grad():  # a trained-looking SAM2: multimask heads, IoU head and memory away from their init
        for p in pd.sam.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model, pd


def _state(predictor, frames: torch.Tensor, hw: tuple[int, int]) -> dict:
    """sam2's ``init_state`` on frames already at SAM2's input size (it otherwise reads them from files)."""
    state = {
        "images": frames,
        "num_frames": frames.shape[0],
        "offload_video_to_cpu": False,
        "offload_state_to_cpu": False,
        "video_height": hw[0],
        "video_width": hw[1],
        "device": torch.device("cpu"),
        "storage_device": torch.device("cpu"),
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        "cached_features": {},
        "constants": {},
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        "output_dict_per_obj": {},
        "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
    }
    predictor._get_image_feature(state, frame_idx=0, batch_size=1)
    return state


def _reference(pd, sam_spec, frames: torch.Tensor, token: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    from sam2.build_sam import build_sam2_video_predictor

    predictor = build_sam2_video_predictor(
        sam_spec.config, None, device="cpu", mode="eval", hydra_overrides_extra=sam_overrides(sam_spec)
    )
    predictor.load_state_dict(pd.sam.state_dict())
    predictor.sam_prompt_encoder.register_forward_hook(pd._append_tokens)
    state = _state(predictor, frames, hw)
    obj = predictor._obj_id_to_idx(state, 0)
    with pd.extra_sparse_tokens(token), torch.no_grad():  # add_new_text on frame 0
        out, _ = predictor._run_single_frame_inference(
            state, state["output_dict_per_obj"][obj], 0, 1, True, None, None, False, False, None
        )
    state["temp_output_dict_per_obj"][obj]["cond_frame_outputs"][0] = out
    masks = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the hole filling's missing CUDA extension
        for t, _, video_res in predictor.propagate_in_video(state):
            masks[t] = video_res[0, 0]
    return torch.stack([masks[t] for t in range(frames.shape[0])])


@pytest.mark.parametrize(("score_shift", "frame0_shown"), [(0.0, False), (0.03, True)])
def test_video_branch_equals_sams_video_predictor_driven_like_add_new_text(decoder, score_shift, frame0_shown):
    """Measured: equal to the last bit on every frame, with the object gated off on frame 0 and with it shown."""
    model, pd = decoder
    head = pd.sam.sam_mask_decoder.pred_obj_score_head
    bias = (head.layers[-1] if hasattr(head, "layers") else head).bias
    g = torch.Generator().manual_seed(1)
    frames = torch.rand(5, 3, pd.image_size, pd.image_size, generator=g)
    token = torch.randn(1, 1, pd.hidden_dim, generator=g)
    hw = (40, 56)
    with torch.no_grad():
        bias.add_(score_shift)
    try:
        with torch.no_grad():
            feats = pd.encode(frames)
            ours = pd.decode(feats, token, None, hw, "video_branch")[0]
            other = pd.decode(feats, token, None, hw, "memory_from_first")[0]
        expected = _reference(pd, model.cfg.sam, (frames - pd.mean) / pd.std, token, hw)
    finally:
        with torch.no_grad():
            bias.sub_(score_shift)
    assert bool(expected[0].max() > -1000) == frame0_shown  # NO_OBJ_SCORE where the object score gates it off
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)
    assert (ours - other).abs().max() > 1e-2  # the semantics differ from the kit's memory mode
    assert not pd.sam.binarize_mask_from_pts_for_mem_enc  # the predictor's settings apply only while decoding
    assert not pd.sam.sam_mask_decoder.dynamic_multimask_via_stability
