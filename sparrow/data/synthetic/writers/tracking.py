"""SPARROW's tracking-source (TSF) layout (docs/data-formats.md §5): GOT-10k and LaSOT style (xywh), A2D style (xyxy).

```
tracking/VOT_dataset/
  GOT-10k/train/list.txt
  GOT-10k/train/GOT-10k_Train_000001/00/            <- the scene level is required for GOT-10k
      img/00000001.jpg ...   mask/001/00000001.png ...   groundtruth.txt   nlp.txt
  LaSOT/<class>/<class>-<n>/
      img/...   mask/001/...   groundtruth.txt   nlp.txt   full_occlusion.txt   out_of_view.txt
  A2D_sentences/<11-char id>/00/
      img/...   mask/001/...   mask/002/...   groundtruth.txt   nlp.txt
```

- Frames are ``%08d.jpg`` from 1 (any name works; loaders sort by name). Every sequence has ``num_frames >= 8``
  frames (the loader asserts 8 SAM frames).
- Masks are grayscale (mode L) 0/255 PNGs named like the frames, one per frame for every referenced object,
  all-zero where the object is not visible (the loader raises on a missing file).
- ``groundtruth.txt`` has one line per frame (the loader asserts it) with the box of object 1:
  GOT-10k ``x,y,w,h`` with four decimals, LaSOT ``x,y,w,h`` as integers, A2D ``x1,y1,x2,y2`` as integers. Boxes
  are the tight box of the visible mask with an exclusive max (``x2 = last column + 1``, ``w = x2 - x``);
  a frame without the object has ``0,0,0,0`` (only LaSOT targets may leave the view; ``out_of_view.txt`` and
  ``full_occlusion.txt`` flag those frames as LaSOT does).
- ``nlp.txt``: GOT-10k and LaSOT captions refer to object 1, most without markup, every third GOT-10k caption
  with ``[phrase](1)`` markup; A2D captions mark two objects, ``[phrase](1) ... [phrase](2)``.
"""

from __future__ import annotations

import numpy as np

from sparrow.data.synthetic.expressions import World, marked_caption, single_caption, tracking_pair_caption
from sparrow.data.synthetic.scene import SceneRules
from sparrow.data.synthetic.writers.common import (
    SourceWriter,
    Written,
    jpeg_bytes,
    png_binary_bytes,
    unique,
    write_bytes,
    write_text,
)
from sparrow.data.synthetic.writers.mevis import video_tags

GOT10K, LASOT, A2D = "GOT-10k", "LaSOT", "A2D_sentences"
_PREFERRED_ROLES = ("target", "occluded", "crosser", "group", "distractor")


class TrackingWriter(SourceWriter):
    name = "tracking"
    root = "tracking/VOT_dataset"
    scenarios = ("motion_distractor", "crossing", "occlusion", "free", "multi_object")
    lasot_scenarios = ("exit_reenter", "occlusion", "motion_distractor", "leaves")
    rules = SceneRules(allow_pop_in=False)

    def __post_init__(self) -> None:
        self.got_sequences: list[str] = []
        self.used_ids: set[str] = set()
        self.lasot_counter: dict[str, int] = {}

    def plan(self) -> list[tuple[str, int]]:
        return [(GOT10K, self.cfg.got10k_train), (LASOT, self.cfg.lasot_train), (A2D, self.cfg.a2d_train)]

    def scenarios_for(self, split: str) -> tuple[str, ...]:
        return self.lasot_scenarios if split == LASOT else self.scenarios

    def _candidates(self, world: World, always_visible: bool) -> list[int]:
        ranked = sorted(
            range(world.n),
            key=lambda k: (
                _PREFERRED_ROLES.index(world.scene.objects[k].role)
                if world.scene.objects[k].role in _PREFERRED_ROLES
                else len(_PREFERRED_ROLES),
                k,
            ),
        )
        if always_visible:
            ranked = [k for k in ranked if all(world.facts[k].visible)]
        return ranked

    def annotate(self, world: World, rng: np.random.Generator, split: str):
        if split == A2D:
            ranked = self._candidates(world, always_visible=True)
            for a in ranked:
                for b in ranked:
                    if a != b:
                        caption = tracking_pair_caption(world, rng, a, b)
                        if caption is not None:
                            return (a, b), caption, None
            return None
        for k in self._candidates(world, always_visible=split != LASOT):
            expression = single_caption(world, rng, k)
            if expression is not None:
                return (k,), expression.text, expression
        return None

    def write(self, split: str, index: int, world: World, annotation, rng: np.random.Generator) -> Written:
        targets, caption, expression = annotation
        if split == GOT10K:
            seq = f"GOT-10k_Train_{len(self.got_sequences) + 1:06d}"
            self.got_sequences.append(seq)
            folder = self.base / GOT10K / "train" / seq / "00"
            key = f"{GOT10K}/train/{seq}/00"
            if index % 3 == 2:
                caption = marked_caption(world, rng, targets[0]) or f"[{caption}](1)"
        elif split == LASOT:
            category = world.facts[targets[0]].shape
            number = self.lasot_counter.get(category, 0) + 1
            self.lasot_counter[category] = number
            folder = self.base / LASOT / category / f"{category}-{number}"
            key = f"{LASOT}/{category}/{category}-{number}"
        else:
            alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
            seq = unique(lambda: "".join(alphabet[int(v)] for v in rng.integers(0, len(alphabet), 11)), self.used_ids)
            folder = self.base / A2D / seq / "00"
            key = f"{A2D}/{seq}/00"
        names = [f"{t + 1:08d}" for t in range(world.T)]
        for t, name in enumerate(names):
            write_bytes(folder / "img" / f"{name}.jpg", jpeg_bytes(world.video.frames[t], self.cfg.jpeg_quality))
        for slot, k in enumerate(targets, start=1):
            masks = world.video.mask(k)
            for t, name in enumerate(names):
                write_bytes(folder / "mask" / f"{slot:03d}" / f"{name}.png", png_binary_bytes(masks[t]))
        lines = []
        for t in range(world.T):
            box = world.video.box(targets[0], t)
            x0, y0, x1, y1 = (int(v) for v in box) if box is not None else (0, 0, 0, 0)
            if split == GOT10K:
                lines.append(f"{x0:.4f},{y0:.4f},{x1 - x0:.4f},{y1 - y0:.4f}")
            elif split == LASOT:
                lines.append(f"{x0},{y0},{x1 - x0},{y1 - y0}")
            else:
                lines.append(f"{x0},{y0},{x1},{y1}")
        write_text(folder / "groundtruth.txt", "\n".join(lines) + "\n")
        write_text(folder / "nlp.txt", caption + "\n")
        if split == LASOT:
            k = targets[0]
            out_of_view = ["1" if world.video.in_frame_area[t, k] == 0 else "0" for t in range(world.T)]
            occluded = [
                "1" if (world.video.in_frame_area[t, k] > 0 and world.video.visible_area[t, k] == 0) else "0"
                for t in range(world.T)
            ]
            write_text(folder / "out_of_view.txt", ",".join(out_of_view) + "\n")
            write_text(folder / "full_occlusion.txt", ",".join(occluded) + "\n")
        expressions = [expression] if expression is not None else []
        self.count(split, 1, len(targets), world.T)
        return Written(
            key=key,
            split=split,
            scenario=world.scene.scenario,
            tags=video_tags(world, expressions),
            expressions=1,
            objects=len(targets),
        )

    def finish(self) -> None:
        if self.got_sequences:
            write_text(self.base / GOT10K / "train" / "list.txt", "".join(f"{s}\n" for s in self.got_sequences))
