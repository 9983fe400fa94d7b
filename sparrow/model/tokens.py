"""Special tokens, placeholder ids, the ``[BOX]`` rewrite rule, and the offline tokenizer of tiny models.

Conventions of the released code (docs/design.md §4.1):

- ``[SEG]`` and ``[BOX]`` are added to the tokenizer; every target ``[SEG]`` becomes ``[BOX] [SEG]``: a ``[SEG]`` not
  already preceded by ``[BOX]`` plus one whitespace character is replaced (negative look-behind), and a bare
  ``[SEG]`` left afterwards is an error.
- ``<video>`` and ``<tsf>`` never become vocabulary ids: the prompt is split on them and the negative placeholder ids
  ``IMAGE_TOKEN_INDEX`` (-200) and ``TSF_TOKEN_INDEX`` (-201) are inserted, which the multimodal input builder expands.

Tiny models (smoke, mini) need a tokenizer that works offline. docs/runtime.md §6.2 suggests a word-level one; the kit
uses a WordPiece model over a word vocabulary plus single characters (``a`` and ``##a`` ...), so that known words are
one token and an unknown word falls back to characters instead of ``<unk>``. It is built from a fixed vocabulary
(plus ``LLMSpec.extra_words``), deterministic, and saved with ``save_pretrained`` like any tokenizer.
"""

from __future__ import annotations

import re
import string

IGNORE_INDEX = -100
IMAGE_TOKEN_INDEX = -200
TSF_TOKEN_INDEX = -201
MASK_IGNORE_INDEX = -1

SEG_TOKEN = "[SEG]"
BOX_TOKEN = "[BOX]"
VIDEO_PLACEHOLDER = "<video>"
TSF_PLACEHOLDER = "<tsf>"

_BARE_SEG = re.compile(r"(?<!\[BOX\]\s)\[SEG\]")
_BOX_PREFIX = re.compile(r"\[BOX\]\s?")


def enforce_box_before_seg(text: str) -> str:
    """Rewrite every ``[SEG]`` not preceded by ``[BOX]`` + one whitespace into ``[BOX] [SEG]`` (released rule)."""
    out = _BARE_SEG.sub("[BOX] [SEG]", text)
    if _BARE_SEG.search(out):
        raise RuntimeError(f"a bare [SEG] remains after the [BOX] rewrite: {out!r}")
    return out


def strip_box_tokens(text: str) -> str:
    """Host (no dual prompt) form of an answer: drop every ``[BOX]`` and the whitespace after it."""
    return _BOX_PREFIX.sub("", text)


# -- offline vocabulary ------------------------------------------------------------------------------------------
CHAT_MARKERS: tuple[str, ...] = (
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|end|>",
    "<|im_start|>",
    "<|im_end|>",
    "USER:",
    "ASSISTANT:",
    "<p>",
    "</p>",
)

_WORDS = """
a an the this that these those it its is are was were be been being am do does did done have has had
and or but not no yes so if then than as of in on at to from by with without into onto over under above below
between behind front left right top bottom middle center centre up down near far next beside around through across
along toward towards away inside outside before after during while when where which who whom whose what why how
all any each every some many much more most less least few several both either neither other another same different
one two three four five six seven eight nine ten first second third fourth fifth last final only also again still
can could will would should may might must shall please respond output give show find tell describe explain
segment segmentation mask masks result results answer question video videos frame frames image images clip scene
sure here there it's is. you your i me my we our they them their he she him her his hers
object objects thing things target item items shape shapes square squares circle circles triangle triangles
rectangle rectangles star stars ellipse ellipses diamond diamonds cross crosses ring rings blob blobs disk disks
box boxes ball balls dot dots bar bars block blocks hexagon hexagons pentagon pentagons polygon heart hearts
red green blue yellow orange purple pink brown black white gray grey cyan magenta teal navy olive maroon lime gold
silver violet indigo beige dark light bright pale colored coloured color colour striped dotted checkered plain
textured solid hollow filled outlined big small large tiny huge little medium tall short long wide narrow thin thick
moving moves move moved static still stationary standing stops stopped stop stopping starts started start starting
running runs run walking walks walk jumping jumps jump bouncing bounces bounce rotating rotates rotate rotation
spinning spins spin turning turns turn turned shaking shakes shake sliding slides slide falling falls fall rising rises
rise flying flies fly following follows follow chasing chases chase leaving leaves leave entering enters enter
appearing appears appear appeared disappearing disappears disappear disappeared reappears reappear returning returns
return crossing crosses cross crossed passing passes pass passed hiding hides hide hidden occluded occludes occlude
visible invisible staying stays stay remains remain remaining approaching approaches approach reaching reaches
fast faster fastest slow slower slowest quickly slowly quick steadily steady later earlier early late beginning
end ending start whole entire side sides edge edges corner corners direction motion speed path horizontally
vertically diagonally upward upwards downward downwards leftward leftwards rightward rightwards clockwise
counterclockwise anticlockwise back forth toward together alone apart closer closest farther farthest nearest
bigger biggest smaller smallest larger largest leftmost rightmost topmost bottommost upper lower higher highest
lowest person people man woman child dog cat car bird horse cow sheep boat bike bicycle truck bus train plane
there's which's detailed description interleaved corresponding parts part caption person's
""".split()


def base_vocabulary(extra_words: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The tiny tokenizer's word list: fixed words, extra words, then characters and ``##`` continuations."""
    chars = list(string.ascii_lowercase + string.digits) + list(string.punctuation)
    words: list[str] = []
    seen: set[str] = set()
    for w in list(_WORDS) + [w.lower() for w in extra_words] + chars + ["##" + c for c in chars]:
        if w and w not in seen:
            seen.add(w)
            words.append(w)
    return words


def vocabulary_from_texts(texts) -> tuple[str, ...]:
    """Lower-cased alphanumeric words of ``texts`` (e.g. a curated dataset's expressions), for ``extra_words``."""
    found: dict[str, None] = {}
    for text in texts:
        for w in re.findall(r"[a-z0-9]+", str(text).lower()):
            found.setdefault(w, None)
    return tuple(found)


def build_word_tokenizer(extra_words: tuple[str, ...] | list[str] = ()):
    """An offline tokenizer over :func:`base_vocabulary`, with ``[SEG]``, ``[BOX]`` and the chat markers added."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    vocab = {tok: i for i, tok in enumerate(specials)}
    for w in base_vocabulary(extra_words):
        vocab.setdefault(w, len(vocab))
    tk = Tokenizer(models.WordPiece(vocab=vocab, unk_token="<unk>", max_input_chars_per_word=64))
    tk.normalizer = normalizers.Lowercase()
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.decoder = decoders.WordPiece(prefix="##")
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )
    tok.add_special_tokens({"additional_special_tokens": list(CHAT_MARKERS)})
    add_segmentation_tokens(tok)
    return tok


def add_segmentation_tokens(tokenizer) -> tuple[int, int]:
    """Add ``[SEG]`` and ``[BOX]`` (kept whole, never split) and return their ids."""
    tokenizer.add_tokens([SEG_TOKEN, BOX_TOKEN], special_tokens=True)
    if tokenizer.pad_token is None:
        # LLaMA tokenizers ship without a pad token; padding positions are masked anyway.
        tokenizer.pad_token = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token
    return token_id(tokenizer, SEG_TOKEN), token_id(tokenizer, BOX_TOKEN)


def token_id(tokenizer, token: str) -> int:
    ids = tokenizer.encode(token, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"{token!r} is not a single token in this tokenizer (ids {ids})")
    return int(ids[0])
