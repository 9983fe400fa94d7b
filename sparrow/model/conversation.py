"""Conversations: chat templates per host, training templates, ``<tsf>`` placeholders, and tokenisation to ids/labels.

Layout of one sample (released code, docs/design.md §4.3):
``[system][USER: <video>\\n question \\n <tsf> x N][ASSISTANT: answer]``. ``<tsf>`` placeholders are appended to the
end of the human turn (N = the number of encoder frames for video prompts) only when TSF is used. Only the answer (and
the template's end-of-turn marker) is labelled; everything else is ``IGNORE_INDEX``.

Each piece is tokenised separately and concatenated, which keeps the label boundary exact for any tokenizer (as
LLaVA-style code tokenises per round).
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from sparrow.data.qa_templates import GCG_QUESTIONS
from sparrow.model.tokens import (
    IGNORE_INDEX,
    IMAGE_TOKEN_INDEX,
    SEG_TOKEN,
    TSF_PLACEHOLDER,
    TSF_TOKEN_INDEX,
    VIDEO_PLACEHOLDER,
    enforce_box_before_seg,
    strip_box_tokens,
)


@dataclass(frozen=True)
class ChatTemplate:
    system: str
    user_prefix: str
    user_suffix: str
    assistant_prefix: str
    assistant_suffix: str


CHAT_TEMPLATES: dict[str, ChatTemplate] = {
    # VideoGPT+'s phi3_instruct turns without its system turn (the tiny smoke/mini presets)
    "phi3": ChatTemplate("", "<|user|>\n", "<|end|>\n", "<|assistant|>\n", "<|end|>"),
    # VideoGPT+'s conv_phi3_instruct as the released training and evaluation prompt it (MPT style: system + <|end|>,
    # then "\n<|user|>\n" message <|end|> "\n<|assistant|>\n"): the paper preset
    "phi3_instruct": ChatTemplate(
        "<|system|>\nYou are a helpful AI assistant.<|end|>\n", "<|user|>\n", "<|end|>\n", "<|assistant|>\n", "<|end|>"
    ),
    # LLaVA v1 (LISA / GLUS)
    "llava_v1": ChatTemplate(
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
        "detailed, and polite answers to the user's questions. ",
        "USER: ",
        " ",
        "ASSISTANT: ",
        "</s>",
    ),
    # Qwen2.5-VL chat
    "qwen_chatml": ChatTemplate(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n",
        "<|im_start|>user\n",
        "<|im_end|>\n",
        "<|im_start|>assistant\n",
        "<|im_end|>",
    ),
}

QUESTION_TEMPLATES: tuple[str, ...] = (
    "Can you segment {phrase} in this video?",
    "Please segment {phrase} in this video.",
    "What is {phrase} in this video? Please respond with segmentation mask.",
    "What is {phrase} in this video? Please output segmentation mask.",
)
ANSWER_TEMPLATES: tuple[str, ...] = (
    "It is [SEG].",
    "Sure, [SEG].",
    "Sure, it is [SEG].",
    "Sure, the segmentation result is [SEG].",
    "[SEG].",
)


def pick_template(templates: tuple[str, ...], key: str) -> str:
    """A template chosen by a stable hash of ``key`` (deterministic across processes, unlike ``hash``)."""
    return templates[zlib.crc32(key.encode("utf-8")) % len(templates)]


def referring_turn(phrase: str, key: str) -> tuple[str, str]:
    """Training question and answer for a referring expression."""
    phrase = phrase.strip().rstrip(".")
    return pick_template(QUESTION_TEMPLATES, key).format(phrase=phrase), pick_template(ANSWER_TEMPLATES, key + "/a")


def grounded_caption_answer(caption: str, spans: Sequence[dict], max_phrases: int) -> str:
    """The caption with each phrase span written ``<p> phrase </p> [SEG]`` (VideoGLaMM's GCG answer).

    Only the first ``max_phrases`` spans are marked; later phrases stay plain words, so that every ``[SEG]`` the
    model learns to write has a mask it is trained on (the loader keeps ``max_phrases`` masks, docs/design.md §4.1).
    """
    out, last = [], 0
    for span in list(spans)[:max_phrases]:
        out += [caption[last : span["start"]], f"<p> {caption[span['start'] : span['end']].strip()} </p> {SEG_TOKEN}"]
        last = span["end"]
    out.append(caption[last:])
    return "".join(out)


_PHRASE = re.compile(r"<p>(.*?)</p>", re.S)


def seg_texts(answer: str | None, fallback: str) -> list[str]:
    """The text each ``[SEG]`` of ``answer`` stands for, in order: the last ``<p> phrase </p>`` written after the
    previous ``[SEG]`` (a grounded caption's phrase), else ``fallback`` (the referring expression or the question).
    ``answer`` None (the template answer of a referring expression): ``[fallback]``."""
    if answer is None:
        return [fallback]
    out = []
    for piece in answer.split(SEG_TOKEN)[:-1]:
        phrases = [p.strip() for p in _PHRASE.findall(piece) if p.strip()]
        out.append(phrases[-1] if phrases else fallback)
    return out


def grounded_caption_turn(caption: str, spans: Sequence[dict], key: str, max_phrases: int) -> tuple[str, str]:
    """Training question (one of the GCG questions, by ``key``) and answer for a grounded caption."""
    return pick_template(GCG_QUESTIONS, key), grounded_caption_answer(caption, spans, max_phrases)


def apply_box_rule(answer: str, dual_prompt: bool) -> str:
    """``[BOX] [SEG]`` for the dual prompt, plain ``[SEG]`` for the host."""
    return enforce_box_before_seg(answer) if dual_prompt else strip_box_tokens(answer)


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer's own encoding starts with its BOS, as the released ``tokenizer(text).input_ids`` does.

    Asked of the encoding rather than of ``add_bos_token``: a Llama tokenizer read from ``tokenizer.json`` (every
    saved converted folder) reports ``add_bos_token=False`` while its post-processor still adds the BOS."""
    bos = getattr(tokenizer, "bos_token_id", None)
    return bos is not None and tokenizer.encode("a", add_special_tokens=True)[:1] == [bos]


@dataclass
class TokenizedTurn:
    input_ids: list[int]
    labels: list[int]


def tokenize_conversation(
    tokenizer,
    template: ChatTemplate,
    question: str,
    answer: str | None,
    num_tsf: int = 0,
    max_length: int | None = None,
) -> TokenizedTurn:
    """Ids and labels of one turn; ``answer=None`` gives the generation prompt (ends with the assistant prefix).

    The video placeholder goes first in the human turn; ``num_tsf`` ``<tsf>`` placeholders follow the question.
    Truncation (``max_length``) cuts the end, as the released code's ``model_max_length - reserve``.
    """
    ids: list[int] = []
    labels: list[int] = []
    if adds_bos(tokenizer):
        ids.append(int(tokenizer.bos_token_id))
        labels.append(IGNORE_INDEX)

    def text(piece: str, labelled: bool) -> None:
        if not piece:
            return
        toks = tokenizer.encode(piece, add_special_tokens=False)
        ids.extend(int(t) for t in toks)
        if labelled:
            labels.extend(int(t) for t in toks)
        else:
            labels.extend([IGNORE_INDEX] * len(toks))

    def placeholder(index: int) -> None:
        ids.append(index)
        labels.append(IGNORE_INDEX)

    text(template.system + template.user_prefix, False)
    placeholder(IMAGE_TOKEN_INDEX)
    # the newline before the <tsf> run belongs to the question's piece, as in the released prompt string: a piece of
    # its own would start with SentencePiece's word-boundary mark
    text("\n" + question + ("\n" if num_tsf else ""), False)
    if num_tsf:
        for _ in range(num_tsf):
            placeholder(TSF_TOKEN_INDEX)
    text(template.user_suffix + template.assistant_prefix, False)
    if answer is not None:
        text(answer + template.assistant_suffix, True)
        eos = getattr(tokenizer, "eos_token_id", None)
        if eos is not None and ids[-1] != eos:
            ids.append(int(eos))
            labels.append(int(eos))
    if max_length is not None and len(ids) > max_length:
        ids, labels = ids[:max_length], labels[:max_length]
    return TokenizedTurn(ids, labels)


def placeholder_string(num_tsf: int) -> str:
    """The textual form of the human-turn suffix (for display): ``\\n<tsf><tsf>...``."""
    return ("\n" + TSF_PLACEHOLDER * num_tsf) if num_tsf else ""


__all__ = [
    "ANSWER_TEMPLATES",
    "CHAT_TEMPLATES",
    "ChatTemplate",
    "QUESTION_TEMPLATES",
    "TokenizedTurn",
    "VIDEO_PLACEHOLDER",
    "adds_bos",
    "apply_box_rule",
    "grounded_caption_answer",
    "seg_texts",
    "grounded_caption_turn",
    "pick_template",
    "placeholder_string",
    "referring_turn",
    "tokenize_conversation",
]
