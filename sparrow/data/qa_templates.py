"""Question/answer templates and caption markup: how curated expressions become Q&A pairs with ``[BOX] [SEG]``.

Templates are SPARROW's for its tracking sources (docs/data-formats.md §5.1): four questions that wrap a phrase, five
answers carrying ``[SEG]``, every ``[SEG]`` then rewritten to ``[BOX] [SEG]`` by SPARROW's rule (a ``[SEG]`` not
already preceded by ``[BOX]`` and one whitespace character). Unlike SPARROW's loader, the question is formatted
from the *plain* phrase (markup removed), so no ``[SEG]`` leaks into the human turn.

Grounded captions (kind ``caption``, plain text with phrase spans) use VideoGLaMM's GCG questions; the answer is the
caption with each phrase span rewritten to ``<p> phrase </p> [BOX] [SEG]``. Releases mark phrases as
``[phrase](ids)``; :func:`unmark` turns such a caption into the curated plain text and spans, :func:`marked_text`
writes the markup back.

Targets: ``QARecord.object_ids`` holds exactly one entry per ``[SEG]`` of the answer, in order. An entry naming
several objects joins their ids with ``+`` and means their union (a multi-object referent, as MeViS scores it);
:func:`seg_targets` splits them back.

Choices are deterministic: a template index is a CRC32 of the seed and the expression id.
"""

from __future__ import annotations

import re
import zlib

from sparrow.data.records import ExpressionRecord, QARecord

VIDEO_TOKEN = "<video>"
SEG = "[SEG]"
BOX = "[BOX]"

QUESTION_TEMPLATES = (
    "Can you segment {phrase} in this video?",
    "Please locate {phrase} in this video.",
    "What is {phrase} in this video? Please respond with segmentation masks.",
    "Perform spatial segmentation of {phrase}",
)
ANSWER_TEMPLATES = (
    "It is [SEG].",
    "Sure, [SEG].",
    "Sure, it is [SEG].",
    "Sure, the segmentation result is [SEG].",
    "[SEG].",
)
# A question that is already a question (reasoning / interrogative) keeps its own words and gets this request.
QUESTION_SUFFIX = "Please respond with segmentation masks."
GCG_QUESTIONS = (
    "Could you please give me a detailed description of the video? Please respond with interleaved segmentation "
    "masks for the corresponding parts of the answer.",
    "Please describe in detail the contents of the video. Please respond with interleaved segmentation masks for "
    "the corresponding parts of the answer.",
    "Could you give me an elaborate explanation of this video? Please respond with interleaved segmentation masks "
    "for the corresponding phrases.",
)

MARKUP = re.compile(r"\[([^\]]+)\]\(([^)]+)\)")
_BARE_SEG = re.compile(r"(?<!\[BOX\]\s)\[SEG\]")
_SPACES = re.compile(r"\s+")
TARGET_JOIN = "+"


def enforce_box_before_seg(text: str) -> str:
    """SPARROW's rule: every ``[SEG]`` not already preceded by ``[BOX]`` + one whitespace becomes ``[BOX] [SEG]``."""
    return _BARE_SEG.sub("[BOX] [SEG]", text)


def parse_markup(caption: str) -> list[tuple[str, list[str]]]:
    """``[phrase](id, id)`` spans as (phrase, ids); ids are split on commas and stripped."""
    return [(phrase, [i.strip() for i in ids.split(",") if i.strip()]) for phrase, ids in MARKUP.findall(caption)]


def strip_markup(caption: str) -> str:
    """The caption as plain text: ``[a dog](1) runs`` -> ``a dog runs``."""
    return _SPACES.sub(" ", MARKUP.sub(r"\1", caption)).strip()


def format_markup(phrase: str, ids: list[str]) -> str:
    return f"[{phrase}]({', '.join(ids)})"


def unmark(caption: str) -> tuple[str, list[dict]]:
    """A marked-up caption as (plain text, phrase spans): ``[a dog](1) runs`` -> ``("a dog runs", [{"start": 0,
    "end": 5, "object_ids": ["1"]}])``. Whitespace is collapsed first (as :func:`strip_markup` does), so that the
    spans index the text that is kept."""
    caption = _SPACES.sub(" ", caption).strip()
    pieces: list[str] = []
    phrases: list[dict] = []
    length, last = 0, 0
    for match in MARKUP.finditer(caption):
        before = caption[last : match.start()]
        phrase = match.group(1).strip()
        pieces += [before, phrase]
        start = length + len(before)
        length = start + len(phrase)
        ids = [i.strip() for i in match.group(2).split(",") if i.strip()]
        phrases.append({"start": start, "end": length, "object_ids": ids})
        last = match.end()
    pieces.append(caption[last:])
    return "".join(pieces), phrases


def marked_text(expression: ExpressionRecord) -> str:
    """The expression's text with its phrase spans written as ``[phrase](ids)`` markup (the text itself when it
    has no spans)."""
    text, out, last = expression.text, [], 0
    for p in expression.phrases or []:
        out += [text[last : p["start"]], format_markup(text[p["start"] : p["end"]], list(p["object_ids"]))]
        last = p["end"]
    out.append(text[last:])
    return "".join(out)


def markup_to_tokens(caption: str) -> str:
    """``[phrase](ids)`` -> ``<p> phrase </p> [BOX] [SEG]`` (VideoGLaMM's rewrite, then SPARROW's ``[BOX]`` rule)."""
    return enforce_box_before_seg(MARKUP.sub(r"<p> \1 </p> [SEG]", caption))


def normalise_text(text: str) -> str:
    """The cleanup every referring loader applies (lower case, collapsed whitespace); used for de-duplication."""
    return _SPACES.sub(" ", strip_markup(text)).strip().lower()


def plain_phrase(text: str) -> str:
    """The ``{phrase}`` of a question template: plain text, lower-cased, dots removed (SPARROW's formatting)."""
    return _SPACES.sub(" ", strip_markup(text).lower().replace(".", "")).strip()


def _pick(seed: int, key: str, salt: str, n: int) -> int:
    return zlib.crc32(f"{seed}|{salt}|{key}".encode()) % n


def is_question(expression: ExpressionRecord) -> bool:
    return expression.kind in ("reasoning", "interrogative") or expression.text.rstrip().endswith("?")


def make_qa(expression: ExpressionRecord, seed: int) -> QARecord | None:
    """The Q&A pair of one expression, or None when it has no target (no-target or no-ground-truth items)."""
    if not expression.object_ids:
        return None
    key = expression.expression_id
    qa_id = f"{key}/qa"
    if expression.kind == "caption" and expression.phrases:
        question = GCG_QUESTIONS[_pick(seed, key, "gcg", len(GCG_QUESTIONS))]
        targets = [TARGET_JOIN.join(ids) for _, ids in expression.phrase_list()]
        answer = markup_to_tokens(marked_text(expression))
    else:
        if is_question(expression):
            question = f"{_SPACES.sub(' ', strip_markup(expression.text)).strip()} {QUESTION_SUFFIX}"
        else:
            template = QUESTION_TEMPLATES[_pick(seed, key, "question", len(QUESTION_TEMPLATES))]
            question = template.format(phrase=plain_phrase(expression.text))
        answer = enforce_box_before_seg(ANSWER_TEMPLATES[_pick(seed, key, "answer", len(ANSWER_TEMPLATES))])
        targets = [TARGET_JOIN.join(expression.object_ids)]
    return QARecord(
        qa_id=qa_id,
        video_id=expression.video_id,
        question=f"{VIDEO_TOKEN}\n{question}",
        answer=answer,
        object_ids=targets,
    )


def seg_targets(qa: QARecord) -> list[list[str]]:
    """The objects behind each ``[SEG]`` of an answer, in order (several ids: their union)."""
    return [entry.split(TARGET_JOIN) for entry in qa.object_ids]
