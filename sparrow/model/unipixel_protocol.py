"""UniPixel's own referring-VOS inference (``unipixel/eval/infer_seg.py`` with ``unipixel/utils/{io,transforms}.py``,
``unipixel/dataset/utils.py`` and ``PixelQwen2_5_VLForConditionalGeneration.forward``), docs/released-weights.md §6.

``ModelConfig.protocol == "unipixel"`` (the paper preset: kit-trained UniPixel hosts) takes the frame and query rules
(:func:`llm_frames`, :func:`query`) into the kit's inference; ``"unipixel-native"`` (converted UniPixel releases,
:func:`native`) runs all of it through :class:`NativeVideo`; :mod:`sparrow.model.host_protocol` names both:

- LLM input: the ``arange`` frame sample (:func:`llm_frames`) as a Qwen2.5-VL *video*: every frame resized with
  PIL (bicubic) to UniPixel's pixel budget (:func:`frame_size`), the frame count padded to even by repeating the last
  frame, two frames per temporal patch (:func:`video_patches`), one ``<|video_pad|>`` per merged patch in the chat
  template's prompt, and the 3-D (mrope) positions Qwen2.5-VL derives from ``video_grid_thw`` and
  ``second_per_grid_ts`` = temporal patch / 2 fps;
- greedy answer; every ``<|seg|>`` (the kit's ``[SEG]``) it holds is decoded from the input state of the final norm
  one position before it, through ``seg_head`` (the L->V projector), into two SAM2 sparse tokens;
- SAM2 on every frame (antialiased bilinear resize to the SAM2 input, ImageNet normalisation): the two tokens after
  SAM2's two padding points prompt frame 0, the memory carries the object through the other frames (sam2's
  ``track_step``), best-IoU multimask on every frame, masks resized bilinearly to the frame size and cut at 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from sparrow.model.sparrow_model import SparrowModel

ARTICLES = ("the ", "an ", "a ")
IMAGE_FACTOR = 28  # patch 14 x merge 2: both sides of a resized frame are multiples of it
VIDEO_MIN_PIXELS = 128 * 28 * 28
VIDEO_PIXELS_PER_FRAME = 256 * 28 * 28  # times int(sample frames / LLM frames): infer_seg.py's max_pixels
MAX_RATIO = 200
FRAME_FACTOR = 2  # frames per temporal patch: the LLM frame count is padded to a multiple
FPS = 2.0  # a video given as frames has this fps, so second_per_grid_ts = temporal patch / FPS
VIDEO_PAD = "<|video_pad|>"
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")  # Qwen2.5-VL's generation_config eos ids
SAM_MEAN = (0.485, 0.456, 0.406)
SAM_STD = (0.229, 0.224, 0.225)


def llm_frames(num_available: int, n: int) -> list[int]:
    """``arange(0, T, (T - 1) / (n - 1))[:n].round()`` when the video is longer than ``n``; else every frame (no
    padding: a short video gives the LLM fewer frames)."""
    if n <= 0 or num_available <= n:
        return list(range(num_available))
    if n == 1:
        return [0]
    step = (num_available - 1) / (n - 1)
    return np.arange(0, num_available, step)[:n].round().astype(int).tolist()


def query(text: str) -> str:
    """The query as UniPixel words it: dots stripped at both ends, the first letter lower-cased, then each leading
    article of ``the ``/``an ``/``a `` removed in that order (the template already says "the")."""
    q = text.strip(".")
    if q:
        q = q[0].lower() + q[1:]
    for article in ARTICLES:
        if q.startswith(article):
            q = q[len(article) :]
    return q


def native(cfg) -> bool:
    """Whether ``cfg`` runs UniPixel's whole inference (:class:`NativeVideo`): the protocol a converted UniPixel
    release gets. Kit-trained UniPixel hosts (``unipixel``) saw the kit's per-frame image input in training and keep
    the kit's inference."""
    return cfg.protocol == "unipixel-native"


def frame_size(height: int, width: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """UniPixel's ``smart_resize`` (``unipixel/dataset/utils.py``): sides rounded to multiples of 28, then scaled up
    to ``min_pixels`` and after that down to ``max_pixels``. transformers' ``smart_resize`` checks the two bounds
    in the other order and clamps differently, so it is not reused."""
    if max(height, width) / min(height, width) > MAX_RATIO:
        raise ValueError(f"aspect ratio {max(height, width) / min(height, width):.1f} exceeds {MAX_RATIO}")
    h = max(IMAGE_FACTOR, round(height / IMAGE_FACTOR) * IMAGE_FACTOR)
    w = max(IMAGE_FACTOR, round(width / IMAGE_FACTOR) * IMAGE_FACTOR)
    if h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / IMAGE_FACTOR) * IMAGE_FACTOR
        w = math.ceil(width * beta / IMAGE_FACTOR) * IMAGE_FACTOR
    if h * w > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h = math.floor(height / beta / IMAGE_FACTOR) * IMAGE_FACTOR
        w = math.floor(width / beta / IMAGE_FACTOR) * IMAGE_FACTOR
    return h, w


def video_frames(frames: np.ndarray, index: list[int], sample_frames: int) -> torch.Tensor:
    """The LLM's frames (T', 3, h, w) uint8: ``frames[index]`` resized as ``fetch_image`` does (PIL's default
    bicubic), padded to an even count with the last frame."""
    from PIL import Image

    height, width = frames.shape[1:3]
    size = frame_size(height, width, VIDEO_MIN_PIXELS, VIDEO_PIXELS_PER_FRAME * int(sample_frames / len(index)))
    resized = [np.asarray(Image.fromarray(frames[i]).resize(size[::-1])) for i in index]
    resized += resized[-1:] * (-len(resized) % FRAME_FACTOR)
    return torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2)


def video_patches(video: torch.Tensor, visual_config) -> tuple[torch.Tensor, torch.Tensor]:
    """Qwen2-VL's video processor on uint8 frames (T, 3, h, w): (patches (N, 3 * tp * p * p), grid_thw (1, 3)).

    Rescaling and normalisation are fused as in transformers' fast processor, (x - 255 mean) / (255 std) in float32
    (the kit's torchvision cannot load the processor class itself)."""
    from sparrow.model.spatial_encoder import CLIP_MEAN, CLIP_STD

    ps, tp = int(visual_config.patch_size), int(visual_config.temporal_patch_size)
    ms = int(visual_config.spatial_merge_size)
    scale = 1.0 / (1 / 255)
    mean = (torch.tensor(CLIP_MEAN) * scale).view(1, 3, 1, 1)
    std = (torch.tensor(CLIP_STD) * scale).view(1, 3, 1, 1)
    x = (video.to(torch.float32) - mean) / std
    if x.shape[0] % tp:
        x = torch.cat([x, x[-1:].expand(tp - x.shape[0] % tp, -1, -1, -1)])
    t, c, h, w = x.shape
    gt, gh, gw = t // tp, h // ps, w // ps
    x = x.view(gt, tp, c, gh // ms, ms, ps, gw // ms, ms, ps).permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return x.reshape(gt * gh * gw, c * tp * ps * ps), torch.tensor([[gt, gh, gw]])


def prompt_ids(tokenizer, question: str, grid_thw: torch.Tensor, merge_size: int) -> torch.Tensor:
    """The chat template's prompt for one video and the question, its ``<|video_pad|>`` repeated once per merged
    patch (what Qwen2.5-VL's processor does), tokenised: (1, L)."""
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("the tokenizer has no chat template (a converted UniPixel folder keeps the release's)")
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    count = int(grid_thw.prod()) // merge_size**2
    if text.count(VIDEO_PAD) != 1:
        raise ValueError(f"the chat template wrote {text.count(VIDEO_PAD)} {VIDEO_PAD} for one video")
    text = text.replace(VIDEO_PAD, VIDEO_PAD * count)
    return torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])


def stop_ids(tokenizer) -> list[int]:
    """The ids greedy decoding stops at: Qwen's two end tokens where the vocabulary has them, and the eos token."""
    vocab = tokenizer.get_vocab()
    ids = {int(vocab[t]) for t in STOP_TOKENS if t in vocab}
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return sorted(ids)


def sam_frames(frames: np.ndarray, size: int) -> torch.Tensor:
    """``get_sam2_transform``: (T, 3, size, size) in [0, 1], antialiased bilinear (torchvision's tensor ``Resize``);
    the SAM2 normalisation is the pixel decoder's."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).to(torch.float32).permute(0, 3, 1, 2) / 255
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


@dataclass
class Answer:
    input_ids: torch.Tensor  # (L,)
    position_ids: torch.Tensor  # (3, L) the prompt's mrope positions (temporal, height, width)
    output_ids: torch.Tensor  # (G,) the greedy answer, its stop token included
    step_logits: torch.Tensor  # (G, V) the logits each answer token was chosen from
    seg_states: torch.Tensor  # (n, d) final-norm inputs one position before each <|seg|>


class NativeVideo:
    """One video under UniPixel's inference: the LLM video input and the SAM2 features, computed once and shared by
    every text on it."""

    def __init__(self, model: SparrowModel, frames: np.ndarray):
        self.model = model
        self.shape = tuple(int(v) for v in frames.shape[:3])
        device = model.device
        qwen = model.llm.model
        self.visual_config = qwen.config.vision_config
        self.llm_index = llm_frames(frames.shape[0], model.cfg.num_frames)
        video = video_frames(frames, self.llm_index, model.cfg.num_frames)
        patches, self.grid_thw = video_patches(video, self.visual_config)
        self.pixel_values_videos = patches.to(device, qwen.dtype)
        self.grid_thw = self.grid_thw.to(device)
        self.second_per_grid_ts = torch.tensor([int(self.visual_config.temporal_patch_size) / FPS], device=device)
        decoder = model.pixel_decoder
        self.feats = decoder.encode(sam_frames(frames, decoder.image_size).to(device))

    def answer(self, question: str, max_new_tokens: int) -> Answer:
        """UniPixel's ``generate`` (greedy) on the video and ``question``, with the ``<|seg|>`` states."""
        model = self.model
        qwen = model.llm.model
        tokenizer = model.tokenizer
        ids = prompt_ids(tokenizer, question, self.grid_thw, int(self.visual_config.spatial_merge_size)).to(
            model.device
        )
        stops = stop_ids(tokenizer)
        # transformers finds the video tokens of the 3-D positions by this type (text 0, image 1, video 2)
        types = (ids == qwen.config.video_token_id).int() * 2
        positions, _ = qwen.model.get_rope_index(
            ids,
            video_grid_thw=self.grid_thw,
            second_per_grid_ts=self.second_per_grid_ts,
            attention_mask=torch.ones_like(ids),
            mm_token_type_ids=types,
        )
        states: list[torch.Tensor] = []
        norm = qwen.model.language_model.norm
        handle = norm.register_forward_pre_hook(lambda module, args: states.append(args[0][0]))
        try:
            out = qwen.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                mm_token_type_ids=types,
                pixel_values_videos=self.pixel_values_videos,
                video_grid_thw=self.grid_thw,
                second_per_grid_ts=self.second_per_grid_ts,
                do_sample=False,
                temperature=None,
                top_k=None,
                top_p=None,
                repetition_penalty=None,
                max_new_tokens=max_new_tokens,
                eos_token_id=stops,
                pad_token_id=stops[0] if stops else None,
                output_logits=True,
                return_dict_in_generate=True,
            )
        finally:
            handle.remove()
        sequence = out.sequences[0]
        hidden = torch.cat(states)  # one row per position the LLM ran: every one but the last answer token
        after = sequence[1 : hidden.shape[0] + 1]
        rows = (after == model.seg_token_id).nonzero().flatten()
        return Answer(ids[0], positions[:, 0], sequence[ids.shape[1] :], torch.cat(out.logits).float(), hidden[rows])

    def segment(self, question: str, max_new_tokens: int) -> tuple[torch.Tensor | None, str, Answer]:
        """(mask logits (n, T, H, W) at the frame size, one per ``<|seg|>``, or None; the answer text; the answer)."""
        model = self.model
        ans = self.answer(question, max_new_tokens)
        text_ids = ans.output_ids.tolist()
        if text_ids and text_ids[-1] in stop_ids(model.tokenizer):
            text_ids = text_ids[:-1]
        text = model.tokenizer.decode(text_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        if ans.seg_states.shape[0] == 0:
            return None, text, ans
        prompts = model.lv_projector(ans.seg_states.to(next(model.lv_projector.parameters()).dtype))
        logits = torch.stack([self.track(p[None]) for p in prompts])
        return logits, text, ans

    def track(self, prompt: torch.Tensor) -> torch.Tensor:
        """SAM2 video prediction from one ``<|seg|>``'s tokens (1, k, C): (T, H, W) logits at the frame size.

        ``SAM2VideoPredictor`` as UniPixel drives it (``add_new_hidden_state`` on frame 0, then
        ``propagate_in_video``): frame 0 is decoded from the prompt alone (no memory) and its memory encoded from
        the upsampled low-resolution mask as a prompted frame's; every later frame attends to that memory and the
        recent frames' through ``track_step``. Memory stays in the model's dtype, as in UniPixel's predictor (sam2's
        own predictor stores it in bfloat16)."""
        decoder = self.model.pixel_decoder
        sam, feats = decoder.sam, self.feats
        n = feats.num_frames
        output_dict: dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
        low_res = []
        for t in range(n):
            vision = [x[:, t : t + 1] for x in feats.vision_feats]
            pos = [x[:, t : t + 1] for x in feats.vision_pos]
            with decoder.extra_sparse_tokens(prompt if t == 0 else None):
                out = sam.track_step(
                    frame_idx=t,
                    is_init_cond_frame=t == 0,
                    current_vision_feats=vision,
                    current_vision_pos_embeds=pos,
                    feat_sizes=feats.feat_sizes,
                    point_inputs=None,
                    mask_inputs=None,
                    output_dict=output_dict,
                    num_frames=n,
                    run_mem_encoder=t > 0,
                )
            if t == 0:
                high = F.interpolate(
                    out["pred_masks"], size=(sam.image_size, sam.image_size), mode="bilinear", align_corners=False
                )
                out["maskmem_features"], out["maskmem_pos_enc"] = sam._encode_new_memory(
                    current_vision_feats=vision,
                    feat_sizes=feats.feat_sizes,
                    pred_masks_high_res=high,
                    object_score_logits=out["object_score_logits"],
                    is_mask_from_pts=True,
                )
            output_dict["cond_frame_outputs" if t == 0 else "non_cond_frame_outputs"][t] = out
            low_res.append(out["pred_masks"])
        low = torch.cat(low_res, dim=1).float()  # (1, T, h, w)
        return F.interpolate(low, size=self.shape[1:], mode="bilinear", align_corners=False)[0]
