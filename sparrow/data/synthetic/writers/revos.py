"""ReVOS layout (docs/data-formats.md §3.4): MeViS-family files with referring *and* reasoning expressions.

```
revos/
  JPEGImages/<source>/<vid>/00000.jpg            <source> in MOSE, LV-VIS, OVIS, TAO, UVO
  meta_expressions_train_.json                   trailing underscore, as released
  meta_expressions_valid_.json
      {"videos": {"<source>/<vid>": {"frames": [...], "expressions": {"0": {"exp", "obj_id": [int],
                                                                            "anno_id": [int], "type_id": 0|1}}}}}
  mask_dict.json                                 train + valid masks, {str(anno_id): [RLE | [RLE, RLE] | null]}
  mask_dict_foreground.json                      {"<source>/<vid>": {"masks_rle": [RLE per frame]}} (union)
```

``type_id`` 0 marks a referring expression, 1 a reasoning question. Some expressions describe something that
is not in the video and have empty ``obj_id``/``anno_id`` lists (ReVOS's no-target instructions, scored by the
robustness metric). Video keys include the source prefix. One object per video is stored the way some ReVOS
entries are, as a *list* of RLEs per frame (its mask split into a left and a right part) that readers reduce
with a logical OR.
"""

from __future__ import annotations

import numpy as np

from sparrow.data.rle import encode_rle
from sparrow.data.synthetic.expressions import World, absent_expression, motion_expressions, reasoning_expressions
from sparrow.data.synthetic.writers.common import (
    SourceWriter,
    Written,
    hex_id,
    jpeg_bytes,
    unique,
    write_bytes,
    write_json,
)
from sparrow.data.synthetic.writers.mevis import object_rles, video_tags

_ORIGINS = ("MOSE", "LV-VIS", "OVIS", "TAO", "UVO")


def split_rles(mask_frames: np.ndarray) -> list[list[dict] | None]:
    """Per frame, the mask as two RLEs (columns left and right of its middle) or None where it is empty."""
    out: list[list[dict] | None] = []
    for mask in mask_frames:
        cols = np.flatnonzero(mask.any(axis=0))
        if cols.size == 0:
            out.append(None)
            continue
        middle = (int(cols[0]) + int(cols[-1]) + 1) // 2
        left, right = mask.copy(), mask.copy()
        left[:, middle:] = False
        right[:, :middle] = False
        out.append([encode_rle(part) for part in (left, right) if part.any()])
    return out


class RevosWriter(SourceWriter):
    name = "revos"
    root = "revos"
    scenarios = ("occlusion", "late_appearance", "exit_reenter", "motion_distractor", "leaves", "multi_object")

    def __post_init__(self) -> None:
        self.meta: dict[str, dict] = {}
        self.masks: dict[str, object] = {}
        self.foreground: dict[str, dict] = {}
        self.next_anno = 0
        self.used_ids: set[str] = set()

    def plan(self) -> list[tuple[str, int]]:
        return [("train", self.cfg.revos_train), ("valid", self.cfg.revos_valid)]

    def annotate(self, world: World, rng: np.random.Generator, split: str):
        reasoning = reasoning_expressions(world, rng, max(1, self.cfg.max_expressions // 2))
        referring = motion_expressions(world, rng, max(1, self.cfg.max_expressions - len(reasoning)))
        if not reasoning or not referring:
            return None
        return referring, reasoning, absent_expression(world, rng)

    def write(self, split: str, index: int, world: World, annotation, rng: np.random.Generator) -> Written:
        referring, reasoning, absent = annotation
        origin = _ORIGINS[int(rng.integers(len(_ORIGINS)))]
        vid = unique(lambda: hex_id(rng, 8 if origin != "TAO" else 12), self.used_ids)
        key = f"{origin}/{vid}"
        frames = [f"{t:05d}" for t in range(world.T)]
        for t, name in enumerate(frames):
            write_bytes(
                self.base / "JPEGImages" / origin / vid / f"{name}.jpg",
                jpeg_bytes(world.video.frames[t], self.cfg.jpeg_quality),
            )
        anno_of = {}
        split_object = int(rng.integers(world.n))
        for k in range(world.n):
            anno_of[k] = self.next_anno
            self.next_anno += 1
            rles = split_rles(world.video.mask(k)) if k == split_object else object_rles(world, k)
            self.masks[str(anno_of[k])] = rles
        union = world.video.labels > 0
        self.foreground[key] = {"masks_rle": [encode_rle(union[t]) for t in range(world.T)]}
        expressions = {}
        for e in referring + reasoning:
            expressions[str(len(expressions))] = {
                "exp": e.text,
                "obj_id": [int(k) for k in e.targets],
                "anno_id": [anno_of[k] for k in e.targets],
                "type_id": 1 if e.kind == "reasoning" else 0,
            }
        if absent is not None:
            expressions[str(len(expressions))] = {"exp": absent, "obj_id": [], "anno_id": [], "type_id": 0}
        self.meta.setdefault(split, {})[key] = {"frames": frames, "expressions": expressions}
        self.count(split, len(expressions), world.n, world.T)
        return Written(
            key=f"{split}/{key}",
            split=split,
            scenario=world.scene.scenario,
            tags=video_tags(world, referring + reasoning),
            expressions=len(expressions),
            objects=world.n,
        )

    def finish(self) -> None:
        for split in ("train", "valid"):
            if split in self.meta:
                write_json(self.base / f"meta_expressions_{split}_.json", {"videos": self.meta[split]})
        if self.masks:
            write_json(self.base / "mask_dict.json", self.masks)
            write_json(self.base / "mask_dict_foreground.json", self.foreground)
