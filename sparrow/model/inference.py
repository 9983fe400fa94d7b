"""Inference of :class:`~sparrow.model.sparrow_model.SparrowModel`: a referring text on a video -> masks.

``predict(frames, text)`` runs one text; ``predict_many(frames, texts)`` runs all the texts of a video and computes
the per-video part once (:class:`VideoContext`: SAM2 features, encoder tokens, frame-0 proposals and their ROI
tokens), then the same per-text steps as ``predict``, so its predictions equal ``predict``'s.

Per text: TSF tokens (when ``tsf_at_test``) -> greedy answer -> the ``[SEG]``/``[BOX]`` hidden states that greedy
decoding computed (not a second LLM pass over prompt + answer) -> L->V projector -> selector on frame 0 -> SAM2.
How the LLM sees the video is the host's (:func:`host_view`): :class:`WholeVideo` (VideoGLaMM, UniPixel) answers
once on a frame sample of the whole video; :class:`QuestionWindows` (GLUS) answers per window of SAM frames after
fixed global frames and carries SAM2's memory across the windows.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import torch

from sparrow.data.boxes import frame_boxes
from sparrow.data.indices import linspace_truncated_padded
from sparrow.model import glus_protocol, release_frames, unipixel_protocol
from sparrow.model.batch import Prediction
from sparrow.model.config import ModelConfig, StageBehaviour, stage_behaviour
from sparrow.model.conversation import CHAT_TEMPLATES, seg_texts, tokenize_conversation
from sparrow.model.frames import encoder_frames, stretch, to_float
from sparrow.model.host_protocol import protocol
from sparrow.model.llm import torch_dtype
from sparrow.model.multimodal_inputs import expand_sample, token_marks
from sparrow.model.pixel_decoder import Locations, MemoryState, locations_frames
from sparrow.tsf.crops import tracked_box_crops

if TYPE_CHECKING:
    from sparrow.model.sparrow_model import SparrowModel

SAM_CHUNK = 16  # frames encoded per SAM2 call at inference

# (mask logits (n, T, H, W) or None without [SEG], the answer, the prompt boxes per token or None)
Segmentation = tuple[torch.Tensor | None, str, list[torch.Tensor] | None]
# The location channel of an answer's n [SEG] tokens, from the answer's text (computed once the answer is known)
Locator = Callable[[str, int], Locations]


class VideoContext:
    """The per-video part of inference, computed once and shared by every text on the video: the float frames,
    the SAM2 frames and features, and frame 0 (its proposals and ROI tokens on first use)."""

    def __init__(self, model: SparrowModel, frames: np.ndarray):
        self.model = model
        self.shape = tuple(int(v) for v in frames.shape[:3])
        self.raw = frames  # (T, H, W, 3) uint8, for the released chains
        self.released = model.cfg.frame_chain == "released"
        self.frames = to_float(frames).to(model.device)  # (T, 3, H, W) in [0, 1]
        self.sizes = model.frame_sizes()
        if self.released:
            self.sam_frames = release_frames.sam_frames(frames, self.sizes.sam).to(model.device)
        else:
            self.sam_frames = stretch(self.frames, self.sizes.sam)
        self.feats = model.sam_features(self.sam_frames, SAM_CHUNK)
        self.frame0 = model.frame_zero(self.feats, self.sam_frames[0])

    def encoder_frames(self, index: list[int], size: int | None = None, kind: str | None = None) -> torch.Tensor:
        """Frames ``index`` for an encoder (default: the spatial one) through the configured chain."""
        size, kind = size or self.sizes.spatial, kind or self.sizes.spatial_kind
        if self.released:
            return release_frames.encoder_frames(self.raw[index], size, kind).to(self.frames.device)
        return encoder_frames(self.frames[index], size, kind)


class WholeVideo:
    """VideoGLaMM, UniPixel: the LLM sees ``num_frames`` frames spread over the video; SAM2 decodes every frame."""

    def __init__(self, video: VideoContext):
        self.video = video
        self._visual: torch.Tensor | None = None

    def visual(self) -> torch.Tensor:
        """LLM visual tokens (N_vis, D) of the encoder frames (computed on first use)."""
        if self._visual is None:
            m, sizes, frames = self.video.model, self.video.sizes, self.video.frames
            idx = protocol(m.cfg.protocol).llm_frames(frames.shape[0], m.cfg.num_frames)
            llm_frames = self.video.encoder_frames(idx)
            temporal = None
            if sizes.temporal:
                same = sizes.temporal == sizes.spatial and sizes.spatial_kind == sizes.temporal_kind == "clip"
                temporal = llm_frames if same else self.video.encoder_frames(idx, sizes.temporal, sizes.temporal_kind)
            self._visual = m.visual_tokens(
                llm_frames.unsqueeze(0), None if temporal is None else temporal.unsqueeze(0)
            )[0]
        return self._visual

    def segment(
        self,
        question: str,
        tsf: torch.Tensor | None,
        num_tsf: int,
        max_new_tokens: int,
        behaviour: StageBehaviour,
        locator: Locator | None = None,
    ) -> Segmentation:
        m, video = self.video.model, self.video
        answer_text, seg_h, box_h = answer(m, self.visual(), question, tsf, num_tsf, max_new_tokens)
        if seg_h.shape[0] == 0:
            return None, answer_text, None
        location = locator(answer_text, seg_h.shape[0]) if locator is not None else None
        logits, boxes = m.segment(
            video.feats,
            m.lv_projector(seg_h),
            m.lv_projector.query(box_h),
            video.shape[1:],
            video.frame0,
            guidance=behaviour.guidance,
            prior_filter=m.cfg.selector.box_prior_filter_test,
            location=location,
        )
        return logits, answer_text, boxes


class QuestionWindows:
    """GLUS: fixed global frames + a sliding question window of ``num_sam_frames`` frames; the LLM answers once per
    window, the first window's boxes prompt every window, and SAM2's memory is carried across windows."""

    def __init__(self, video: VideoContext):
        self.video = video
        self._context: torch.Tensor | None = None
        self._windows: dict[int, torch.Tensor] = {}

    def visual(self, start: int) -> torch.Tensor:
        """Visual tokens of the global frames plus the question window starting at ``start`` (cached per window)."""
        if start not in self._windows:
            m = self.video.model
            t, n = self.video.shape[0], m.cfg.num_sam_frames
            if self._context is None:
                self._context = self.video.encoder_frames(protocol(m.cfg.protocol).context_frames(t, m.cfg.num_frames))
            window = list(range(start, min(start + n, t)))
            padded = window + [window[-1]] * (n - len(window))
            llm_frames = torch.cat([self._context, self.video.encoder_frames(padded)])
            self._windows[start] = m.visual_tokens(llm_frames.unsqueeze(0), None)[0]
        return self._windows[start]

    def segment(
        self,
        question: str,
        tsf: torch.Tensor | None,
        num_tsf: int,
        max_new_tokens: int,
        behaviour: StageBehaviour,
        locator: Locator | None = None,
    ) -> Segmentation:
        m, video = self.video.model, self.video
        t, h, w = video.shape
        n = m.cfg.num_sam_frames
        state = MemoryState(num_frames=t)
        answer_text, seg_prev, boxes, pieces = None, None, None, []
        for start in range(0, t, n):
            window = list(range(start, min(start + n, t)))
            text, seg_h, box_h = answer(m, self.visual(start), question, tsf, num_tsf, max_new_tokens)
            if answer_text is None:
                answer_text = text
                if seg_h.shape[0] == 0:
                    return None, answer_text, None
                # The first window's answer says what each token stands for, as its boxes prompt every window.
                location = locator(answer_text, seg_h.shape[0]) if locator is not None else None
            tokens = m.lv_projector(seg_h) if seg_h.shape[0] else seg_prev
            if seg_prev is not None and tokens.shape[0] != seg_prev.shape[0]:
                fill = seg_prev[tokens.shape[0] :] if tokens.shape[0] < seg_prev.shape[0] else None
                tokens = torch.cat([tokens, fill]) if fill is not None else tokens[: seg_prev.shape[0]]
            logits, win_boxes = m.segment(
                video.feats.frames(window[0], window[-1] + 1),
                tokens,
                m.lv_projector.query(box_h),
                (h, w),
                video.frame0,
                guidance=behaviour.guidance and start == 0,
                prior_filter=m.cfg.selector.box_prior_filter_test,
                state=state,
                fixed_boxes=boxes,
                location=locations_frames(location, window[0], window[-1] + 1),
            )
            if start == 0:
                boxes = win_boxes
            seg_prev = tokens
            pieces.append(logits)
        return torch.cat(pieces, dim=1), answer_text, boxes


HostView = WholeVideo | QuestionWindows | glus_protocol.GlusVideo


def host_view(video: VideoContext) -> HostView:
    """How the host's LLM sees ``video`` (``ModelConfig.llm_sees_sam_frames``: GLUS; GLUS's own loop under its
    protocol for a model without the dual prompt)."""
    cfg = video.model.cfg
    if cfg.protocol == "glus" and not cfg.box:
        return glus_protocol.GlusVideo(video)
    return QuestionWindows(video) if cfg.llm_sees_sam_frames else WholeVideo(video)


def _stop_ids(model: SparrowModel) -> set[int]:
    stops = set()
    if model.tokenizer.eos_token_id is not None:
        stops.add(int(model.tokenizer.eos_token_id))
    suffix = CHAT_TEMPLATES[model.cfg.chat_template].assistant_suffix.strip()
    ids = model.tokenizer.encode(suffix, add_special_tokens=False) if suffix else []
    if len(ids) == 1:
        stops.add(int(ids[0]))
    return stops


def question_text(cfg: ModelConfig, text: str, raw_question: bool = False) -> str:
    """The question a referring ``text`` is asked as: the evaluation prompt around the protocol's phrase."""
    return text if raw_question else cfg.eval_prompt.format(phrase=protocol(cfg.protocol).phrase(text))


def prompt_ids(model: SparrowModel, question: str, num_tsf: int) -> list[int]:
    """Token ids of the generation prompt (one image placeholder for all the visual tokens, ``num_tsf`` ``<tsf>``
    placeholders), in the model's chat template."""
    turn = tokenize_conversation(model.tokenizer, CHAT_TEMPLATES[model.cfg.chat_template], question, None, num_tsf)
    return turn.input_ids


def answer(
    model: SparrowModel,
    visual: torch.Tensor,
    question: str,
    tsf: torch.Tensor | None,
    num_tsf: int,
    max_new_tokens: int,
) -> tuple[str, torch.Tensor, torch.Tensor]:
    """Greedy answer for one sample on its visual tokens (N_vis, D): (text, [SEG] hidden states (n, d),
    [BOX] hidden states (m, d)).

    The hidden states are the ones the greedy decoding computed (the KV-cache steps see the same causal context
    as one forward over prompt + answer), so the answer is not run through the LLM a second time."""
    cfg = model.cfg
    device = visual.device
    prompt = torch.tensor(prompt_ids(model, question, num_tsf), dtype=torch.long, device=device)
    embeds, _, _, _ = expand_sample(
        prompt, None, visual, tsf, model.llm.embed, model.seg_token_id, model.box_token_id, cfg.tsf_k, cfg.seg_hidden_at
    )
    stops = _stop_ids(model)
    sampling = {"sample_seed": cfg.decoding_seed} if cfg.decoding == "sample" else {}
    generated, states = model.llm.generate(embeds.unsqueeze(0), max_new_tokens, stops, **sampling)
    text_ids = [i for i in generated if i not in stops]
    text = model.tokenizer.decode(text_ids, skip_special_tokens=False).strip()
    # Row r of ``states`` is the position of tail[r]: the last prompt token, then every fed answer token.
    tail = torch.tensor([int(prompt[-1])] + list(generated), dtype=torch.long, device=device)
    rows = states.shape[0]
    seg_rows = token_marks(tail, model.seg_token_id, cfg.seg_hidden_at)[:rows]
    box_rows = token_marks(tail, model.box_token_id, cfg.seg_hidden_at)[:rows]
    return text, states[seg_rows][: cfg.max_seg_tokens], states[box_rows][: cfg.max_seg_tokens]


def _tsf_tokens(model: SparrowModel, video: torch.Tensor, tsf_boxes, tsf_embeddings) -> torch.Tensor | None:
    if tsf_embeddings is not None:
        emb = torch.as_tensor(tsf_embeddings, dtype=torch.float32, device=video.device)
        if emb.dim() != 2 or emb.shape[1] != model.llm.hidden_size:
            raise ValueError(f"tsf_embeddings must be (k, {model.llm.hidden_size}), got {tuple(emb.shape)}")
        return emb
    if tsf_boxes is not None:
        crops, _, _ = tracked_box_crops(video, np.asarray(tsf_boxes), model.spatial.image_size)
        return model.tsf_tokens(crops)
    warnings.warn(
        "tsf_at_test is on but no tsf_boxes or tsf_embeddings were given; the <tsf> placeholders "
        "become zero vectors (released rule)",
        stacklevel=3,
    )
    return None


def _check_frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"frames must be a non-empty (T, H, W, 3) array, got shape {frames.shape}")
    if frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {frames.dtype}")
    return frames


@contextmanager
def _inference_mode(model: SparrowModel):
    # Switching modes walks every submodule, which costs more than a small model's answer: only when needed.
    was_training = model.training
    if was_training:
        model.eval()
    lowered = model.cfg.precision != "mixed"
    try:
        # the released evaluation runs under autocast to its --precision (docs/released-weights.md §3)
        dtype = torch_dtype(model.cfg.precision) if lowered else torch.float32
        with torch.autocast(model.device.type, dtype=dtype, enabled=lowered):
            yield
    finally:
        if was_training:
            model.train()


@torch.no_grad()
def predict(
    model: SparrowModel,
    frames: np.ndarray,
    text: str,
    *,
    raw_question: bool = False,
    tsf_boxes=None,
    tsf_embeddings=None,
    max_new_tokens: int | None = None,
) -> Prediction:
    """:meth:`SparrowModel.predict <sparrow.model.sparrow_model.SparrowModel.predict>`."""
    frames = _check_frames(frames)
    if unipixel_protocol.native(model.cfg):
        return _predict_unipixel(model, frames, [text], raw_question, max_new_tokens)[0]
    with _inference_mode(model):
        view = host_view(VideoContext(model, frames))
        return _predict_text(
            view, text, raw_question, tsf_boxes, tsf_embeddings, max_new_tokens or model.cfg.max_new_tokens
        )


@torch.no_grad()
def predict_many(
    model: SparrowModel,
    frames: np.ndarray,
    texts: Sequence[str],
    *,
    tsf_boxes: Sequence | None = None,
    raw_question: bool = False,
    max_new_tokens: int | None = None,
) -> list[Prediction]:
    """:meth:`SparrowModel.predict_many <sparrow.model.sparrow_model.SparrowModel.predict_many>`."""
    frames = _check_frames(frames)
    texts = [texts] if isinstance(texts, str) else list(texts)
    boxes = [None] * len(texts) if tsf_boxes is None else list(tsf_boxes)
    if len(boxes) != len(texts):
        raise ValueError(f"tsf_boxes has {len(boxes)} entries for {len(texts)} texts")
    if not texts:
        return []
    if unipixel_protocol.native(model.cfg):
        return _predict_unipixel(model, frames, texts, raw_question, max_new_tokens)
    with _inference_mode(model):
        view = host_view(VideoContext(model, frames))
        return [
            _predict_text(view, text, raw_question, box, None, max_new_tokens or model.cfg.max_new_tokens)
            for text, box in zip(texts, boxes)
        ]


def _predict_text(
    view: HostView, text: str, raw_question: bool, tsf_boxes, tsf_embeddings, max_new_tokens: int
) -> Prediction:
    model, video = view.video.model, view.video
    cfg = model.cfg
    behaviour = stage_behaviour(cfg, "inference")
    question = question_text(cfg, text, raw_question)
    num_tsf = cfg.num_tsf_placeholders if behaviour.tsf else 0
    tsf = _tsf_tokens(model, video.frames, tsf_boxes, tsf_embeddings) if num_tsf else None

    def locator(answer_text: str, n: int) -> Locations:
        # Each [SEG] grounds what it stands for: asked to segment a phrase, that phrase (whatever the answer
        # writes around it); asked a free question (a grounded caption), each [SEG]'s own <p> phrase </p>.
        texts = seg_texts(answer_text, text) if raw_question else [text]
        return model.locate_tokens(video.sam_frames, texts, n)

    logits, answer_text, boxes = view.segment(question, tsf, num_tsf, max_new_tokens, behaviour, locator)
    return _prediction(logits, boxes, answer_text, text, video.shape)


def _predict_unipixel(
    model: SparrowModel, frames: np.ndarray, texts: list[str], raw_question: bool, max_new_tokens: int | None
) -> list[Prediction]:
    """A UniPixel release's own inference (:mod:`sparrow.model.unipixel_protocol`); it has no TSF or [BOX]."""
    with _inference_mode(model):
        video = unipixel_protocol.NativeVideo(model, frames)
        out = []
        for text in texts:
            question = text if raw_question else model.cfg.eval_prompt.format(phrase=unipixel_protocol.query(text))
            logits, answer_text, _ = video.segment(question, max_new_tokens or model.cfg.max_new_tokens)
            out.append(_prediction(logits, None, answer_text, text, video.shape))
        return out


def _prediction(
    logits: torch.Tensor | None,
    boxes: list[torch.Tensor] | None,
    answer_text: str,
    text: str,
    shape: tuple[int, int, int],
) -> Prediction:
    t, h, w = shape
    if logits is None or logits.shape[0] == 0:
        warnings.warn(
            f"the model emitted no [SEG] for {text!r} (answer {answer_text!r}); returning an empty mask", stacklevel=3
        )
        empty = np.zeros((t, h, w), dtype=bool)
        return Prediction(
            masks=empty,
            boxes=np.full((t, 4), np.nan, dtype=np.float32),
            answer=answer_text,
            masks_per_seg=np.zeros((0, t, h, w), dtype=bool),
            prompt_boxes=[],
            seg_found=False,
        )
    masks = (logits > 0).cpu().numpy()
    first = masks[0]
    scale = np.array([w, h, w, h], dtype=np.float32)
    prompt = [b.float().cpu().numpy() * scale for b in boxes] if boxes else []
    return Prediction(
        masks=first,
        boxes=frame_boxes(first),
        answer=answer_text,
        masks_per_seg=masks,
        prompt_boxes=prompt,
        seg_found=True,
    )
