"""VideoGLaMM grounded-caption (GCG) data in the ``vidstg_gcg`` layout (docs/data-formats.md §4.3).

```
videogcg/
  {train,val}/<video_id>/frames/<frame:06d>.png
  {train,val}/<video_id>/masks/<id:03d>/<frame:06d>.png      binary 0/255 grayscale, one per frame per id
  {split}_captions/<video_id>.json                           {"caption": "[a red square](0) moves left while
                                                               [two blue circles](1, 2) stay still."}
```

Why this layout among VideoGLaMM's GCG sources: it is the per-sample-folder format shared by ``vidstg_gcg`` and
``hcstvg_gcg`` and it is part of the GCG evaluation set (``vidstg_gcg`` val), so SPARROW-Mini's VideoGCG
split can be scored with the same mIoU / caption metrics. The MeViS-GCG and BURST/YTVIS-GCG variants are not
written.

- Ids are the objects' indices in the scene (0-based, like VidSTG ``tid``s); every object of the video is
  named in the caption. Look-alikes that move the same way share one phrase with several ids
  (``[two blue circles](1, 2)``); VideoGLaMM's loader then uses only the first id of each phrase, while a union
  of the ids is the phrase's full referent.
- Frames are a uniform subsample of a longer clip and are named by their original index
  (``SynthConfig.gcg_frame_stride`` apart, from a random offset), so names are not positions. Mask files carry
  the frame's file name. Video ids are digits only (the loader splits the caption file name at the first dot).
"""

from __future__ import annotations

import numpy as np

from sparrow.data.synthetic.expressions import Expression, World, gcg_caption
from sparrow.data.synthetic.writers.common import (
    SourceWriter,
    Written,
    digit_id,
    png_binary_bytes,
    png_rgb_bytes,
    unique,
    write_bytes,
    write_json,
)
from sparrow.data.synthetic.writers.mevis import video_tags


class VideoGcgWriter(SourceWriter):
    name = "videogcg"
    root = "videogcg"
    scenarios = ("multi_object", "motion_distractor", "late_appearance", "free", "crossing", "leaves")

    def __post_init__(self) -> None:
        self.used_ids: set[str] = set()

    def plan(self) -> list[tuple[str, int]]:
        return [("train", self.cfg.videogcg_train), ("val", self.cfg.videogcg_val)]

    def annotate(self, world: World, rng: np.random.Generator, split: str):
        caption, groups = gcg_caption(world, rng)
        if world.scene.scenario == "multi_object" and not any(len(g) > 1 for g in groups):
            return None  # the scenario is there for a multi-id phrase
        return caption, groups

    def write(self, split: str, index: int, world: World, annotation, rng: np.random.Generator) -> Written:
        caption, groups = annotation
        video_id = unique(lambda: digit_id(rng, 10), self.used_ids)
        offset = int(rng.integers(0, 40))
        names = [f"{offset + t * self.cfg.gcg_frame_stride:06d}" for t in range(world.T)]
        folder = self.base / split / video_id
        for t, name in enumerate(names):
            write_bytes(folder / "frames" / f"{name}.png", png_rgb_bytes(world.video.frames[t]))
        for k in range(world.n):
            masks = world.video.mask(k)
            for t, name in enumerate(names):
                write_bytes(folder / "masks" / f"{k:03d}" / f"{name}.png", png_binary_bytes(masks[t]))
        write_json(self.base / f"{split}_captions" / f"{video_id}.json", {"caption": caption})
        # One entry per grounded phrase: a phrase with several ids is a multi-object referent.
        phrases = [Expression(caption, g, "caption") for g in groups]
        self.count(split, 1, world.n, world.T)
        return Written(
            key=f"{split}/{video_id}",
            split=split,
            scenario=world.scene.scenario,
            tags=video_tags(world, phrases),
            expressions=1,
            objects=world.n,
        )
