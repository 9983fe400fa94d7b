"""GLUS's own video inference (``inference_iter.py`` with ``model/GLUS.py::evaluate``), used when
``ModelConfig.protocol == "glus"``; :mod:`sparrow.model.host_protocol` names it and
:func:`sparrow.model.inference.host_view` runs :class:`GlusVideo` for a model without the dual prompt (the released
GLUS-A and the kit's GLUS host). docs/released-weights.md §7.1 describes the protocol step by step:

- global context: the middle one of GLUS's context clips (:func:`context_frames`), fixed for the whole video;
- one conversation turn per frame, in video order: the context images, then a sliding window of the last
  ``question_frames`` question turns (one image each); the answer is forced to start with ``answer_prefix`` and one
  token is generated; that token's prediction state (the last prompt position) is the ``[SEG]`` embedding;
- a frame whose turn does not produce the ``[SEG]`` gets an empty mask, no memory, and ``[SEG] .`` in the history;
- SAM2 decodes the frame from its own features conditioned on GLUS's memory bank (:func:`memory_frames`): up to
  ``num_maskmem`` earlier frames on a ``mem_stride`` grid plus the previous frame, memory encoded from the
  conditioned features and the mask logits at the SAM input size, no object pointers, no temporal encoding.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from sparrow.model.llm import choose_next
from sparrow.model.pixel_decoder import EMPTY_LOGIT, FrameFeatures
from sparrow.model.tokens import IMAGE_TOKEN_INDEX

if TYPE_CHECKING:
    from sparrow.model.sparrow_model import SparrowModel

IMAGE = "<image>"
SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
ROLES = ("USER", "ASSISTANT")
SEPS = (" ", "</s>")  # LLaVA v1 (``SeparatorStyle.TWO``)
CONTEXT_TASK = "\nPlease finished the following tasks on the context frames above.\n"
QUESTION = IMAGE + "\nCan you segment the {phrase} in this frame?"
FAILED_ANSWER_FILL = "[SEG] ."


@dataclass(frozen=True)
class GlusSettings:
    """``inference_iter.py``'s defaults (``--context_frame_num``, ``--question_frame_num``, ``--mem_stride``) and
    ``GLUSForCausalLM``'s memory length."""

    context_frames: int = 4
    question_frames: int = 4
    num_maskmem: int = 7
    mem_stride: int = 3
    answer_prefix: str = "Sure, the segmentation result is "
    image_markup: tuple[str, str] = ("<im_start>", "<im_end>")  # ``--use_mm_start_end`` (on)
    # transformers 4.31's slow LlamaTokenizer in its legacy mode, its default (a tokenizer_config without the key)
    legacy_tokenizer: bool = True


def context_clips(num_available: int, n: int) -> list[list[int]]:
    """Every candidate context clip: the video cut at ``linspace(0, T, n + 1)`` (int), clip i taking
    ``min(cut_j + i, cut_{j+1} - 1)`` from each of the n parts. A video shorter than n frames has empty parts,
    whose index -1 GLUS reads as a Python index: the last frame."""
    cuts = np.linspace(0, num_available, n + 1, dtype=int)
    return [
        [int(min(cuts[j] + i, cuts[j + 1] - 1)) % num_available for j in range(n)]
        for i in range(math.ceil(num_available / n))
    ]


def context_frames(num_available: int, n: int) -> list[int]:
    """The middle clip (``len // 2``), the one fixed set of context frames GLUS uses for the whole video."""
    clips = context_clips(num_available, n)
    return clips[len(clips) // 2]


def memory_frames(frame: int, num_maskmem: int, stride: int) -> list[int]:
    """The earlier frames whose memory conditions ``frame``, oldest first: ``num_maskmem - 1`` frames on the
    ``stride`` grid at or below ``frame - 2``, then ``frame - 1`` (negative ones dropped)."""
    out = []
    for t_rel in range(num_maskmem, 0, -1):
        prev = frame - 1 if t_rel == 1 else ((frame - 2) // stride) * stride - (t_rel - 2) * stride
        if prev >= 0:
            out.append(prev)
    return out


def glus_phrase(text: str) -> str:
    """The referring text as GLUS puts it in its question: one trailing dot removed, lower-cased."""
    return (text[:-1] if text.endswith(".") else text).lower()


def prompt_text(messages: list[list[str]]) -> str:
    """The LLaVA v1 prompt of ``[role, message]`` pairs, cut before the last ``</s>`` (the open assistant turn)."""
    text = SYSTEM + SEPS[0]
    for i, (role, message) in enumerate(messages):
        text += f"{role}: {message}{SEPS[i % 2]}"
    return SEPS[1].join(text.split(SEPS[1])[:-1])


SPIECE_UNDERLINE = "\u2581"


def _sp_pieces(tokenizer, text: str, first: bool, legacy: bool) -> list[int]:
    """transformers 4.31 ``LlamaTokenizer._tokenize`` of one piece between added tokens: SentencePiece with its
    dummy prefix; without ``legacy`` the prefix is dropped again where the piece does not start the text."""
    if not text:
        return []
    pieces = tokenizer.convert_ids_to_tokens(tokenizer.encode(text, add_special_tokens=False))
    if not legacy and not first and not text.startswith(" ") and pieces and pieces[0].startswith(SPIECE_UNDERLINE):
        pieces = ([pieces[0][1:]] if len(pieces[0]) > 1 else []) + pieces[1:]
    unk = tokenizer.unk_token_id
    return [unk if i is None else int(i) for i in tokenizer.convert_tokens_to_ids(pieces)]


def slow_llama_ids(tokenizer, text: str, legacy: bool) -> list[int]:
    """The ids transformers 4.31's slow ``LlamaTokenizer`` (GLUS's) gives ``text``, from the kit's tokenizer: the
    text is split at every added token, whitespace next to an added token is dropped unless the token is one of the
    special tokens (``<s>``, ``</s>``, ``<unk>``, which keep it), and each piece is tokenised on its own."""
    specials = {t for t in (tokenizer.bos_token, tokenizer.eos_token, tokenizer.unk_token) if t}
    no_split = specials | {str(t) for t in tokenizer.added_tokens_decoder.values()}
    if not legacy:
        text = SPIECE_UNDERLINE + text.replace(SPIECE_UNDERLINE, " ")
    pattern = "(" + "|".join(re.escape(t) for t in sorted(no_split, key=len, reverse=True)) + ")"
    parts = re.split(pattern, text)
    for i, part in enumerate(parts):
        if part in no_split and part not in specials:
            if i + 1 < len(parts) and parts[i + 1]:
                parts[i + 1] = parts[i + 1].lstrip()
            if i > 0 and parts[i - 1]:
                parts[i - 1] = parts[i - 1].rstrip()
    bos = tokenizer.bos_token_id
    ids = [int(bos)] if bos is not None and tokenizer("a").input_ids[:1] == [bos] else []
    for part in parts:
        if part in no_split:
            ids.append(int(tokenizer.convert_tokens_to_ids(part)))
            continue
        first = not legacy and part.startswith(SPIECE_UNDERLINE)
        ids += _sp_pieces(tokenizer, part[1:] if first else part, first, legacy)
    return ids


def tokenize_with_images(tokenizer, prompt: str, legacy: bool) -> list[int]:
    """LLaVA's ``tokenizer_image_token``: each piece between images tokenised on its own (:func:`slow_llama_ids`,
    BOS kept once), an ``IMAGE_TOKEN_INDEX`` per image."""
    chunks = [slow_llama_ids(tokenizer, chunk, legacy) for chunk in prompt.split(IMAGE)]
    bos = tokenizer.bos_token_id
    offset = 1 if chunks and chunks[0] and chunks[0][0] == bos else 0
    ids = [chunks[0][0]] if offset else []
    for k, chunk in enumerate(chunks):
        if k:
            ids.append(IMAGE_TOKEN_INDEX)
        ids.extend(chunk[offset:])
    return ids


def _question(settings: GlusSettings, phrase: str, with_context: bool) -> str:
    text = (IMAGE * settings.context_frames + CONTEXT_TASK if with_context else "") + QUESTION.format(phrase=phrase)
    start, end = settings.image_markup
    return text.replace(IMAGE, start + IMAGE + end)


@dataclass
class GlusTurn:
    """One frame's turn: the prompt ids (``IMAGE_TOKEN_INDEX`` per image), the new id, the last-position logits,
    and the frame's mask logits (None where the turn produced no ``[SEG]``)."""

    input_ids: list[int]
    new_id: int
    logits: torch.Tensor
    mask_logits: torch.Tensor | None


@dataclass
class GlusRun:
    frames: list[int]  # the question frames in turn order
    context: list[int]
    turns: list[GlusTurn] = field(default_factory=list)

    def mask_logits(self, out_hw: tuple[int, int]) -> torch.Tensor:
        """(T, H, W) logits in video order; a frame without ``[SEG]`` is ``EMPTY_LOGIT`` everywhere."""
        out = torch.full((len(self.frames), *out_hw), EMPTY_LOGIT)
        for t, turn in zip(self.frames, self.turns):
            if turn.mask_logits is not None:
                out[t] = turn.mask_logits.float().cpu()
        return out


class MemoryBank:
    """GLUS's memory bank: per frame, the memory-encoder features and their position encoding."""

    def __init__(self, settings: GlusSettings):
        self.settings = settings
        self.entries: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def condition(self, sam, top: torch.Tensor, top_pos: torch.Tensor, frame: int) -> torch.Tensor:
        """The lowest-resolution features (HW, 1, C) of ``frame`` after memory attention (``no_mem_embed`` when no
        earlier frame is in the bank)."""
        grid = memory_frames(frame, self.settings.num_maskmem, self.settings.mem_stride)
        found = [self.entries[f] for f in grid if f in self.entries]  # a frame without [SEG] left no entry
        if not found:
            return top + sam.no_mem_embed
        memory = torch.cat([feat.flatten(2).permute(2, 0, 1) for feat, _ in found])
        memory_pos = torch.cat([pos.flatten(2).permute(2, 0, 1) for _, pos in found])
        return sam.memory_attention(
            curr=[top], curr_pos=[top_pos], memory=memory, memory_pos=memory_pos, num_obj_ptr_tokens=0
        )


def _sam_pixels(frames: torch.Tensor, size: int) -> torch.Tensor:
    """SAM2Transforms' resize (torchvision ``Resize``, bilinear with antialiasing) of (T, 3, H, W) frames in [0, 1]."""
    if frames.shape[-2:] == (size, size):
        return frames
    return F.interpolate(frames, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


class _Frames:
    """Per-frame inputs, computed on first use: the encoder tokens of a frame and its SAM2 features."""

    def __init__(self, model: SparrowModel, frames: torch.Tensor, sam_feats: FrameFeatures | None):
        self.model = model
        self.frames = frames
        sizes = model.frame_sizes()
        self.spatial, self.kind, self.sam_size = sizes.spatial, sizes.spatial_kind, sizes.sam
        self.sam_feats = sam_feats
        self._tokens: dict[int, torch.Tensor] = {}

    def tokens(self, index: list[int]) -> list[torch.Tensor]:
        from sparrow.model.frames import encoder_frames

        todo = sorted({i for i in index if i not in self._tokens})
        if todo:
            pixels = encoder_frames(self.frames[todo], self.spatial, self.kind)
            flat = self.model.visual_tokens(pixels.unsqueeze(0), None)[0]
            for i, rows in zip(todo, flat.reshape(len(todo), -1, flat.shape[-1])):
                self._tokens[i] = rows
        return [self._tokens[i] for i in index]

    def sam(self, t: int) -> FrameFeatures:
        if self.sam_feats is not None:
            return self.sam_feats.frames(t, t + 1)
        return self.model.pixel_decoder.encode(_sam_pixels(self.frames[t : t + 1], self.sam_size))


def _embed(model: SparrowModel, ids: list[int], images: list[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
    """(1, L', D) embeddings with each image's tokens at its placeholder, and each id's row in them."""
    device = images[0].device
    t = torch.tensor(ids, dtype=torch.long, device=device)
    text = model.llm.embed(t)
    pieces, rows, k, row = [], [], 0, 0
    for i, token in enumerate(ids):
        rows.append(row)
        if token == IMAGE_TOKEN_INDEX:
            pieces.append(images[k].to(text.dtype))
            row += images[k].shape[0]
            k += 1
        else:
            pieces.append(text[i : i + 1])
            row += 1
    return torch.cat(pieces).unsqueeze(0), rows


def _decode_frame(model: SparrowModel, feats: FrameFeatures, bank: MemoryBank, frame: int, token: torch.Tensor):
    """Low-resolution mask logits (1, 1, h, w) of one frame, and its memory entry."""
    decoder = model.pixel_decoder
    sam = decoder.sam
    vision = list(feats.vision_feats)
    vision[-1] = bank.condition(sam, vision[-1], feats.vision_pos[-1], frame)
    conditioned = FrameFeatures(vision, feats.vision_pos, feats.feat_sizes, feats.image_size)
    levels = [conditioned.level(i, 0) for i in range(len(vision))]
    low, _, obj_scores = decoder._decode(levels[-1], levels[:-1] or None, None, token)
    size = decoder.image_size
    high = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
    features, pos = sam._encode_new_memory(
        current_vision_feats=vision,
        feat_sizes=feats.feat_sizes,
        pred_masks_high_res=high.to(vision[-1].dtype),
        object_score_logits=obj_scores,
        is_mask_from_pts=False,
    )
    return low, (features, pos[0])


@torch.no_grad()
def run_video(
    model: SparrowModel,
    frames: torch.Tensor,
    phrase: str,
    settings: GlusSettings | None = None,
    sam_feats: FrameFeatures | None = None,
) -> GlusRun:
    """GLUS's inference of one referring ``phrase`` (as it enters the question: :func:`glus_phrase` of the text) on
    (T, 3, H, W) frames in [0, 1] (``sam_feats``: the frames' SAM2 features when already computed as GLUS computes
    them)."""
    s = settings or GlusSettings()
    t, (h, w) = frames.shape[0], frames.shape[-2:]
    if t < 1:
        raise ValueError("GLUS's protocol needs at least one frame")
    tokenizer = model.tokenizer
    inputs = _Frames(model, frames, sam_feats)
    run = GlusRun(frames=list(range(t)), context=context_frames(t, s.context_frames))
    bank = MemoryBank(s)
    messages: list[list[str]] = []
    for i in range(1, t + 1):
        if i == 1:
            messages += [[ROLES[0], _question(s, phrase, True)], [ROLES[1], s.answer_prefix]]
        else:
            messages += [[ROLES[0], _question(s, phrase, False)], [ROLES[1], s.answer_prefix]]
            if i > s.question_frames:
                messages = messages[2:]
                messages[0][1] = _question(s, phrase, True)
        window = run.frames[max(0, i - s.question_frames) : i]
        ids = tokenize_with_images(tokenizer, prompt_text(messages), s.legacy_tokenizer)
        embeds, rows = _embed(model, ids, inputs.tokens(run.context + window))
        logits, hidden, _ = model.llm.forward(embeds)
        new_id = choose_next(logits[0, -1])
        full = ids + [new_id]
        seg_at = [p for p, token in enumerate(full) if token == model.seg_token_id]
        frame = window[-1]
        if frame == 0:
            bank.entries.clear()
        if len(seg_at) != len(window):  # GLUS's [SEG]-count check: one per question image
            messages[-1][1] += FAILED_ANSWER_FILL
            run.turns.append(GlusTurn(ids, new_id, logits[0, -1].float(), None))
            continue
        # the state that predicts the last [SEG] is its embedding (the last prompt position when it is the new id)
        state = hidden[0, rows[seg_at[-1] - 1]] if seg_at[-1] < len(ids) else hidden[0, -1]
        token = model.lv_projector(state.unsqueeze(0))
        low, entry = _decode_frame(model, inputs.sam(frame), bank, frame, token)
        bank.entries[frame] = entry
        run.turns.append(
            GlusTurn(
                ids,
                new_id,
                logits[0, -1].float(),
                F.interpolate(low, (h, w), mode="bilinear", align_corners=False)[0, 0],
            )
        )
        decoded = tokenizer.decode([x for x in full if x != IMAGE_TOKEN_INDEX], skip_special_tokens=False)
        decoded = decoded.strip().replace("\n", "").replace("  ", " ")
        messages[-1][1] = decoded.split(ROLES[1] + ": ")[-1].split(SEPS[1])[0] + "."
    return run


class GlusVideo:
    """GLUS's protocol as a host view of :mod:`sparrow.model.inference` (the ``segment`` of its views)."""

    def __init__(self, video, settings: GlusSettings | None = None):
        self.video = video
        self.settings = settings or GlusSettings()
        size = video.model.frame_sizes().sam
        # the view's SAM2 features are GLUS's when no frame side shrinks (bilinear upsampling with and without
        # antialiasing agree up to float rounding); a larger video is resized again with antialiasing, as
        # torchvision's Resize does
        self.sam_feats = video.feats if max(video.shape[1:]) <= size else None

    def segment(self, question: str, tsf, num_tsf: int, max_new_tokens: int, behaviour, locator=None):
        model, video = self.video.model, self.video
        run = run_video(model, video.frames, self.phrase(question), self.settings, self.sam_feats)
        first = run.turns[0]
        answer = model.tokenizer.decode([first.new_id], skip_special_tokens=False).strip()
        if all(turn.mask_logits is None for turn in run.turns):
            return None, answer, None
        return run.mask_logits(tuple(video.shape[1:])).unsqueeze(0).to(video.frames.device), answer, None

    def phrase(self, question: str) -> str:
        """The phrase inside the kit's question (``ModelConfig.eval_prompt`` filled with the protocol's phrase rule,
        :func:`glus_phrase`), or the question itself (``raw_question``)."""
        head, _, tail = self.video.model.cfg.eval_prompt.partition("{phrase}")
        if question.startswith(head) and question.endswith(tail) and len(question) >= len(head) + len(tail):
            return question[len(head) : len(question) - len(tail)]
        return question
