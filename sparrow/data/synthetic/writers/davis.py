"""Ref-DAVIS17 in the ReferFormer-converted layout (docs/data-formats.md §3.3), plus the DAVIS-2017 evaluation root.

```
ref-davis17/
  meta_expressions/{train,valid}/meta_expressions.json
      {"videos": {name: {"expressions": {"0": {"exp", "obj_id": "1"}, ...}, "frames": ["00000", ...]}}}
  {train,valid}/JPEGImages/<name>/00000.jpg ...
  {train,valid}/Annotations/<name>/00000.png    palette PNG, raw index = object id
  {train,valid}/meta.json                       {"videos": {name: {"objects": {"1": {"category": ...}}}}}  (no "frames")
  DAVIS/JPEGImages/480p/<name>/00000.jpg
  DAVIS/Annotations_unsupervised/480p/<name>/00000.png
  DAVIS/ImageSets/2017/{train,val}.txt
```

Every object has exactly four expressions with consecutive ids, objects in string order of ``obj_id``:
``4k+0`` annotator 1 first-frame, ``4k+1`` annotator 1 full-video, ``4k+2`` annotator 2 first-frame,
``4k+3`` annotator 2 full-video (first-frame expressions only use what frame 0 shows: appearance and position).
Video names are hyphenated words like the DAVIS ones (``spinning-rings``); frames are consecutive.

The ``DAVIS`` folder is what the unsupervised DAVIS-2017 protocol (docs/evaluation.md §5.3) reads. It keeps
SPARROW-Mini's own frame size although the folder is named ``480p``, as the toolkit expects that name. Every
object is visible in frame 0, because the toolkit counts the ground-truth objects as the largest id of the
first annotation frame. ``valid/Annotations`` exist in the real conversion as well (DAVIS val has public masks).
"""

from __future__ import annotations

import numpy as np

from sparrow.data.synthetic.expressions import World, davis_expressions
from sparrow.data.synthetic.scene import SceneRules
from sparrow.data.synthetic.writers.common import (
    SourceWriter,
    Written,
    jpeg_bytes,
    png_palette_bytes,
    unique,
    write_bytes,
    write_json,
    write_text,
)
from sparrow.data.synthetic.writers.mevis import video_tags

_FIRST = (
    "spinning",
    "drifting",
    "bouncing",
    "sliding",
    "floating",
    "racing",
    "dancing",
    "hidden",
    "crossing",
    "wandering",
    "rolling",
    "shy",
    "busy",
    "lazy",
    "twin",
    "fleeting",
)
_SECOND = (
    "shapes",
    "rings",
    "stars",
    "squares",
    "circles",
    "diamonds",
    "triangles",
    "parade",
    "party",
    "crowd",
    "chase",
    "swap",
    "traffic",
    "garden",
    "pond",
    "market",
)


class DavisWriter(SourceWriter):
    name = "ref-davis17"
    root = "ref-davis17"
    scenarios = ("motion_distractor", "crossing", "occlusion", "exit_reenter", "leaves", "free", "multi_object")
    rules = SceneRules(first_frame_visible=True, allow_pop_in=False)

    def __post_init__(self) -> None:
        self.meta_expressions: dict[str, dict] = {}
        self.meta: dict[str, dict] = {}
        self.image_sets: dict[str, list[str]] = {}
        self.used_names: set[str] = set()

    def plan(self) -> list[tuple[str, int]]:
        return [("train", self.cfg.davis_train), ("valid", self.cfg.davis_valid)]

    def annotate(self, world: World, rng: np.random.Generator, split: str):
        return davis_expressions(world, rng)

    def _name(self, rng: np.random.Generator) -> str:
        def make() -> str:
            name = f"{_FIRST[int(rng.integers(len(_FIRST)))]}-{_SECOND[int(rng.integers(len(_SECOND)))]}"
            if name in self.used_names:
                name += f"-{int(rng.integers(2, 100))}"
            return name

        return unique(make, self.used_names)

    def write(self, split: str, index: int, world: World, annotation, rng: np.random.Generator) -> Written:
        name = self._name(rng)
        frames = [f"{t:05d}" for t in range(world.T)]
        for t, frame in enumerate(frames):
            jpeg = jpeg_bytes(world.video.frames[t], self.cfg.jpeg_quality)
            png = png_palette_bytes(world.video.labels[t])
            write_bytes(self.base / split / "JPEGImages" / name / f"{frame}.jpg", jpeg)
            write_bytes(self.base / split / "Annotations" / name / f"{frame}.png", png)
            write_bytes(self.base / "DAVIS" / "JPEGImages" / "480p" / name / f"{frame}.jpg", jpeg)
            write_bytes(self.base / "DAVIS" / "Annotations_unsupervised" / "480p" / name / f"{frame}.png", png)
        expressions = {}
        object_ids = sorted(str(k + 1) for k in range(world.n))  # string order, as the conversion script
        for obj_id in object_ids:
            for slot in annotation[int(obj_id) - 1]:
                expressions[str(len(expressions))] = {"exp": slot.text, "obj_id": obj_id}
        self.meta_expressions.setdefault(split, {})[name] = {"expressions": expressions, "frames": frames}
        self.meta.setdefault(split, {})[name] = {
            "objects": {obj_id: {"category": world.facts[int(obj_id) - 1].shape} for obj_id in object_ids}
        }
        self.image_sets.setdefault("train" if split == "train" else "val", []).append(name)
        flat = [e for slots in annotation for e in slots]
        self.count(split, len(expressions), world.n, world.T)
        return Written(
            key=f"{split}/{name}",
            split=split,
            scenario=world.scene.scenario,
            tags=video_tags(world, flat),
            expressions=len(expressions),
            objects=world.n,
        )

    def finish(self) -> None:
        for split, videos in self.meta_expressions.items():
            write_json(self.base / "meta_expressions" / split / "meta_expressions.json", {"videos": videos})
            write_json(self.base / split / "meta.json", {"videos": self.meta[split]})
        for image_set in ("train", "val"):
            names = sorted(self.image_sets.get(image_set, []))
            write_text(
                self.base / "DAVIS" / "ImageSets" / "2017" / f"{image_set}.txt", "".join(f"{n}\n" for n in names)
            )
