"""The six benchmark columns of the paper's main table, as analogs on a curated dataset (SPARROW-Mini or real data).

Each :class:`Benchmark` names the curated source and split it reads, the protocol that scores it
(docs/design.md §11, docs/evaluation.md) and the prompt the released evaluation scripts use:

=============  =========================  =============  ===================================================
column         curated source / split     protocol       number in the table
=============  =========================  =============  ===================================================
MeViS val      ``mevis/valid``            ``rvos``       J&F per expression (MeViS ``eval_mevis.py``, §6.1)
MeViS val^u    ``mevis/valid_u``          ``rvos``       J&F per expression
Ref-YTVOS      ``ref-youtube-vos/valid``  ``rvos``       J&F per expression (the server's understood rule)
Ref-DAVIS17    ``ref-davis17/valid``      ``ref_davis``  DAVIS unsupervised J&F, mean of 4 annotator runs,
                                                         in independent 64-frame clips (``clip_frames``)
VidSTG         ``vidstg/test``            ``grounding``  MLLM-style mIoU (``gt_viou``), interrogative only
VideoGCG       ``videogcg/val``           ``gcg``        tube mIoU; METEOR / CIDEr beside it; CLAIR (judge)
=============  =========================  =============  ===================================================

On the real releases MeViS ``valid`` and Ref-YouTube-VOS ``valid`` have no public ground truth: the runner then
writes the server submission and reports the number as not computed. SPARROW-Mini generates ground truth for
every held-out split, so all six are scored locally.

**Subsets.** A full held-out split of SPARROW-Mini costs ~0.1 s per expression per model on one core and the tables
need 27 model evaluations, so ``mini`` scores a fixed subset per split (:data:`SUBSET_LIMITS`: MeViS val 4 videos,
val^u 6, Ref-YTVOS 3, Ref-DAVIS17 3 videos, VidSTG 15 sentences, VideoGCG 4 videos): the units (whole videos, or VidSTG sentences)
sorted by id and thinned evenly with the rule of :func:`sparrow.data.indices.evenly_spread`. The choice depends
only on the ids, so every model is scored on the same subset; ``paper`` scores every unit.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sparrow.data.indices import evenly_spread
from sparrow.data.qa_templates import GCG_QUESTIONS, QUESTION_SUFFIX
from sparrow.data.records import ExpressionRecord
from sparrow.profiles import PROFILES, check_profile, get_profile
from sparrow.storage import DataError

PROTOCOLS = ("rvos", "ref_davis", "grounding", "gcg")
# eval_grounding.py's two prompts (docs/design.md §11): interrogative sentences get the segmentation request
# appended, declarative ones are wrapped in a question.
GROUNDING_PROMPTS = {
    "interrogative": "{caption} " + QUESTION_SUFFIX,
    "declarative": "Can you segment {caption} in this video?",
}
GCG_PROMPT = GCG_QUESTIONS[0]  # eval_gcg_infer.py's prompt


@dataclass(frozen=True)
class Benchmark:
    """One column of the main table: what is read, how it is scored and how much of it is scored.

    ``limit`` is the number of ``unit`` s scored, None scoring every one. The unit is a whole video (all its
    expressions) except for VidSTG, whose sentences each have their own clip: Ref-DAVIS17 needs every object of a
    video, GCG the whole caption, and for the referring benchmarks whole videos let the expressions of a video be
    predicted in one batch (the video is encoded once).
    ``kinds`` keeps only these expression kinds (VidSTG: the interrogative sentences of the paper's number; GCG:
    the grounded captions, not the referring expression curated for each of their phrases).
    """

    key: str
    title: str
    source: str
    split: str
    protocol: str
    metric: str
    kinds: tuple[str, ...] | None = None
    limit: int | None = None
    max_frames: int | None = None  # grounding / GCG clips: at most this many frames, evenly spread (40 released)
    # Referring clips: a longer video is cut into runs of this many frames, each predicted on its own (its own
    # encoder frames, answer and frame-0 proposals) and the masks joined (released Ref-DAVIS17 script: 64).
    clip_frames: int | None = None
    unit: str = "videos"  # "videos" or "expressions"
    caption_metrics: bool = True  # GCG: METEOR and CIDEr (Java); off under smoke, where the jar's start dominates

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"benchmark {self.key}: protocol must be one of {PROTOCOLS}, got {self.protocol!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"benchmark {self.key}: limit must be >= 1 or None, got {self.limit}")
        if self.unit not in ("videos", "expressions"):
            raise ValueError(f"benchmark {self.key}: unit must be 'videos' or 'expressions', got {self.unit!r}")
        if self.unit == "expressions" and self.protocol in ("ref_davis", "gcg"):
            raise ValueError(f"benchmark {self.key}: the {self.protocol} protocol scores whole videos")
        if self.clip_frames is not None and (self.clip_frames < 1 or self.protocol not in ("rvos", "ref_davis")):
            raise ValueError(
                f"benchmark {self.key}: clip_frames ({self.clip_frames}) needs a referring protocol and >= 1 frame"
            )

    def replace(self, **changes: Any) -> Benchmark:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["kinds"] = list(self.kinds) if self.kinds is not None else None
        return out

    def expressions(self, curated) -> list[ExpressionRecord]:
        """The split's expressions of the wanted kinds, sorted by (video, expression) id."""
        if self.split not in curated.splits(self.source):
            raise DataError(
                f"{curated.root}: benchmark {self.title} needs {self.source}/{self.split}; the curated "
                f"set has {', '.join(f'{s}/{p}' for s in curated.sources() for p in curated.splits(s))}"
            )
        found = [
            e
            for e in curated.iter_expressions(source=self.source, split=self.split)
            if self.kinds is None or e.kind in self.kinds
        ]
        if not found:
            raise DataError(
                f"{curated.root}: no {'/'.join(self.kinds or ('',))} expressions in "
                f"{self.source}/{self.split} for {self.title}"
            )
        return sorted(found, key=lambda e: (e.video_id, e.expression_id))

    def select(self, curated) -> dict[str, list[ExpressionRecord]]:
        """The scored subset: ``{video_id: [expressions]}`` in sorted order (see the module doc)."""
        expressions = self.expressions(curated)
        if self.unit == "videos":
            videos = evenly_spread(sorted({e.video_id for e in expressions}), self.limit)
            chosen = set(videos)
            expressions = [e for e in expressions if e.video_id in chosen]
        else:
            expressions = evenly_spread(expressions, self.limit)
        units: dict[str, list[ExpressionRecord]] = {}
        for e in expressions:
            units.setdefault(e.video_id, []).append(e)
        return units

    def prompt(self, expression: ExpressionRecord) -> tuple[str, bool]:
        """(text, raw_question) for ``model.predict``: referring expressions go through the host's own evaluation
        prompt; VidSTG and GCG use the released scripts' raw prompts."""
        if self.protocol == "grounding":
            template = GROUNDING_PROMPTS.get(expression.kind)
            if template is None:
                raise DataError(
                    f"{expression.expression_id}: VidSTG sentence kind {expression.kind!r} is neither "
                    f"{' nor '.join(GROUNDING_PROMPTS)}"
                )
            return template.format(caption=expression.text.strip()), True
        if self.protocol == "gcg":
            return GCG_PROMPT, True
        return expression.text, False


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("mevis_valid", "MeViS val", "mevis", "valid", "rvos", "J&F"),
    Benchmark("mevis_valid_u", "MeViS val^u", "mevis", "valid_u", "rvos", "J&F"),
    Benchmark("ref_youtube_vos", "Ref-YTVOS", "ref-youtube-vos", "valid", "rvos", "J&F"),
    Benchmark("ref_davis17", "Ref-DAVIS17", "ref-davis17", "valid", "ref_davis", "J&F", clip_frames=64),
    Benchmark(
        "vidstg",
        "VidSTG mIoU",
        "vidstg",
        "test",
        "grounding",
        "mIoU",
        kinds=("interrogative",),
        max_frames=40,
        unit="expressions",
    ),
    Benchmark("videogcg", "VideoGCG mIoU", "videogcg", "val", "gcg", "mIoU", kinds=("caption",), max_frames=40),
)
COLUMNS: tuple[str, ...] = tuple(b.key for b in BENCHMARKS)
RVOS_COLUMNS: tuple[str, ...] = tuple(b.key for b in BENCHMARKS if b.metric == "J&F")

# Units scored per split (see the module doc); None = the whole split. The measured cost of ``mini``'s sizes is in
# notebook 04's output.
SUBSET_LIMITS: dict[str, dict[str, int | None]] = {name: dict(get_profile(name).eval.limits) for name in PROFILES}


def benchmarks_for(profile: str, keys: tuple[str, ...] | list[str] | None = None) -> tuple[Benchmark, ...]:
    """The benchmarks of ``profile`` (its subset sizes applied), all six or the named ones in table order."""
    check_profile(profile)
    wanted = list(keys) if keys is not None else list(COLUMNS)
    unknown = [k for k in wanted if k not in COLUMNS]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(COLUMNS)}")
    limits = SUBSET_LIMITS[profile]
    caption_metrics = get_profile(profile).eval.caption_metrics
    return tuple(b.replace(limit=limits[b.key], caption_metrics=caption_metrics) for b in BENCHMARKS if b.key in wanted)


def get_benchmark(key: str, profile: str) -> Benchmark:
    return benchmarks_for(profile, [key])[0]
