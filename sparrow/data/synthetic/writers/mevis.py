"""MeViS layout (docs/data-formats.md §3.1): motion expressions, multi-object referents, ``mask_dict.json`` RLEs.

```
mevis/{train,valid_u,valid}/
  JPEGImages/<12-hex vid>/00000.jpg ...
  meta_expressions.json   {"videos": {vid: {"frames": [...], "expressions": {"0": {"exp", "obj_id": [int],
                                                                                      "anno_id": [int]}}}}}
  mask_dict.json          {str(anno_id): [RLE with str counts | null] x num_frames}
```

``obj_id`` is video-local (the object's index in the scene, from 0), ``anno_id`` is unique across the split and
keys ``mask_dict.json``; every object of a video has one ``anno_id``, referenced or not. A multi-object
expression lists several aligned ids (its target is the union). ``null`` marks a frame where the object is not
visible (it left the frame, has not appeared yet, or is fully occluded).

Deviation from the release, on purpose: the real ``valid`` split ships without ground truth (CodaLab only);
SPARROW-Mini also writes ``valid/mask_dict.json`` and keeps ``obj_id``/``anno_id`` in ``valid`` so that the
split can be scored locally.
"""

from __future__ import annotations

import numpy as np

from sparrow.data.rle import encode_rle
from sparrow.data.synthetic.expressions import Expression, World, motion_expressions
from sparrow.data.synthetic.scene import hard_case_tags
from sparrow.data.synthetic.writers.common import (
    SourceWriter,
    Written,
    hex_id,
    jpeg_bytes,
    unique,
    write_bytes,
    write_json,
)


def object_rles(world: World, k: int) -> list[dict | None]:
    """Per-frame COCO RLE (str counts) of object k's visible pixels, None where it is not visible."""
    masks = world.video.mask(k)
    return [encode_rle(masks[t]) if masks[t].any() else None for t in range(world.T)]


def video_tags(world: World, expressions: list[Expression]) -> tuple[str, ...]:
    tags = list(hard_case_tags(world.scene, world.video))
    for e in expressions:
        tags.extend(t for t in e.hard_cases if t not in tags)
    return tuple(tags)


def shows_scenario(scenario: str, expressions: list[Expression]) -> bool:
    """The expressions exercise the scene's hard case (a motion-dependent, multi-object or temporal one)."""
    if scenario == "motion_distractor":
        return any("motion" in e.needs for e in expressions)
    if scenario == "multi_object":
        return any(len(e.targets) > 1 for e in expressions)
    if scenario in ("late_appearance", "exit_reenter", "leaves"):
        return any("time" in e.cues for e in expressions)
    return True


class MevisWriter(SourceWriter):
    name = "mevis"
    root = "mevis"
    scenarios = (
        "motion_distractor",
        "multi_object",
        "late_appearance",
        "exit_reenter",
        "motion_distractor",
        "crossing",
        "occlusion",
        "leaves",
        "multi_object",
    )

    def __post_init__(self) -> None:
        self.meta: dict[str, dict] = {}
        self.masks: dict[str, dict] = {}
        self.next_anno: dict[str, int] = {}
        self.used_ids: set[str] = set()

    def plan(self) -> list[tuple[str, int]]:
        return [("train", self.cfg.mevis_train), ("valid_u", self.cfg.mevis_valid_u), ("valid", self.cfg.mevis_valid)]

    def annotate(self, world: World, rng: np.random.Generator, split: str):
        expressions = motion_expressions(world, rng, self.cfg.max_expressions)
        if len(expressions) < 2 or not shows_scenario(world.scene.scenario, expressions):
            return None
        return expressions

    def write(self, split: str, index: int, world: World, annotation, rng: np.random.Generator) -> Written:
        expressions: list[Expression] = annotation
        vid = unique(lambda: hex_id(rng, 12), self.used_ids)
        frames = [f"{t:05d}" for t in range(world.T)]
        folder = self.base / split / "JPEGImages" / vid
        for t, name in enumerate(frames):
            write_bytes(folder / f"{name}.jpg", jpeg_bytes(world.video.frames[t], self.cfg.jpeg_quality))
        masks = self.masks.setdefault(split, {})
        anno_of = {}
        for k in range(world.n):
            anno = self.next_anno.get(split, 0)
            self.next_anno[split] = anno + 1
            anno_of[k] = anno
            masks[str(anno)] = object_rles(world, k)
        entry = {
            "frames": frames,
            "expressions": {
                str(i): {
                    "exp": e.text,
                    "obj_id": [int(k) for k in e.targets],
                    "anno_id": [anno_of[k] for k in e.targets],
                }
                for i, e in enumerate(expressions)
            },
        }
        self.meta.setdefault(split, {})[vid] = entry
        self.count(split, len(expressions), world.n, world.T)
        return Written(
            key=f"{split}/{vid}",
            split=split,
            scenario=world.scene.scenario,
            tags=video_tags(world, expressions),
            expressions=len(expressions),
            objects=world.n,
        )

    def finish(self) -> None:
        for split, videos in self.meta.items():
            write_json(self.base / split / "meta_expressions.json", {"videos": videos})
            write_json(self.base / split / "mask_dict.json", self.masks.get(split, {}))
