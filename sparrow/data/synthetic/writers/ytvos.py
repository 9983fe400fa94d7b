"""Ref-YouTube-VOS layout (docs/data-formats.md §3.2): appearance expressions, palette PNG masks, frame names step 5.

```
ref-youtube-vos/
  meta_expressions/{train,valid,test}/meta_expressions.json
      {"videos": {vid: {"expressions": {"0": {"exp": ..., "obj_id": "1"}}, "frames": ["00000", "00005", ...]}}}
  train/JPEGImages/<vid>/00000.jpg, 00005.jpg, ...
  train/Annotations/<vid>/00000.png ...     palette PNG (mode P), raw index = object id (1..N), 0 = background
  train/meta.json     {"videos": {vid: {"objects": {"1": {"category": "square", "frames": [names where visible]}}}}}
  valid/JPEGImages/<vid>/...
  test/JPEGImages/<vid>/...
```

Quirks reproduced: ``obj_id`` is a str scalar equal to the palette index; frame names are the 30-fps index of
frames kept at 6 fps (``00000, 00005, ...``), so names are not positions; ``meta_expressions/valid`` lists the
valid *and* the test videos (the 202/305 split of the competition release: subtract the keys of
``meta_expressions/test``). Video ids are 10 hex characters; categories are the shape names.

Deviation from the release, on purpose: ``valid/Annotations`` is written too (the real valid split has no
public masks) so that SPARROW-Mini can score the split locally. Test videos get frames but no masks, and there
is no ``valid/meta.json`` (as in the release).
"""

from __future__ import annotations

import numpy as np

from sparrow.data.synthetic.expressions import World, appearance_expressions
from sparrow.data.synthetic.writers.common import (
    SourceWriter,
    Written,
    hex_id,
    jpeg_bytes,
    png_palette_bytes,
    unique,
    write_bytes,
    write_json,
)
from sparrow.data.synthetic.writers.mevis import video_tags


class YtvosWriter(SourceWriter):
    name = "ref-youtube-vos"
    root = "ref-youtube-vos"
    scenarios = ("free", "occlusion", "late_appearance", "free", "crossing", "leaves", "exit_reenter")

    def __post_init__(self) -> None:
        self.meta_expressions: dict[str, dict] = {}
        self.meta: dict[str, dict] = {}
        self.used_ids: set[str] = set()

    def plan(self) -> list[tuple[str, int]]:
        return [("train", self.cfg.ytvos_train), ("valid", self.cfg.ytvos_valid), ("test", self.cfg.ytvos_test)]

    def annotate(self, world: World, rng: np.random.Generator, split: str):
        return appearance_expressions(world, rng)

    def write(self, split: str, index: int, world: World, annotation, rng: np.random.Generator) -> Written:
        vid = unique(lambda: hex_id(rng, 10), self.used_ids)
        step = self.cfg.ytvos_frame_step
        frames = [f"{t * step:05d}" for t in range(world.T)]
        for t, name in enumerate(frames):
            write_bytes(
                self.base / split / "JPEGImages" / vid / f"{name}.jpg",
                jpeg_bytes(world.video.frames[t], self.cfg.jpeg_quality),
            )
            if split in ("train", "valid"):
                write_bytes(
                    self.base / split / "Annotations" / vid / f"{name}.png", png_palette_bytes(world.video.labels[t])
                )
        entry = {
            "expressions": {str(i): {"exp": e.text, "obj_id": str(e.targets[0] + 1)} for i, e in enumerate(annotation)},
            "frames": frames,
        }
        self.meta_expressions.setdefault(split, {})[vid] = entry
        if split == "test":
            # The competition's valid meta also lists the test videos.
            self.meta_expressions.setdefault("valid", {})[vid] = entry
        if split == "train":
            self.meta[vid] = {
                "objects": {
                    str(k + 1): {
                        "category": world.facts[k].shape,
                        "frames": [frames[t] for t in range(world.T) if world.facts[k].visible[t]],
                    }
                    for k in range(world.n)
                }
            }
        self.count(split, len(annotation), world.n, world.T)
        return Written(
            key=f"{split}/{vid}",
            split=split,
            scenario=world.scene.scenario,
            tags=video_tags(world, annotation),
            expressions=len(annotation),
            objects=world.n,
        )

    def finish(self) -> None:
        for split in ("train", "valid", "test"):
            if split in self.meta_expressions:
                write_json(
                    self.base / "meta_expressions" / split / "meta_expressions.json",
                    {"videos": self.meta_expressions[split]},
                )
        if self.meta:
            write_json(self.base / "train" / "meta.json", {"videos": self.meta})
