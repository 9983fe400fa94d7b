"""VidSTG raw layout (docs/data-formats.md §4.1): VidSTG sentence annotations over VidOR trajectories and mp4 videos.

```
vidstg/
  annotations/{train,val,test}_files.json         [vid, ...]
  annotations/{train,val,test}_annotations.json   [{vid, frame_count, fps, width, height, subject/objects,
                                                    used_segment, used_relation, temporal_gt, captions, questions}]
  vidor/training/<4-digit folder>/<vid>.json      VidOR: video_id, video_path, frame_count, fps, width, height,
  vidor/validation/<folder>/<vid>.json              subject/objects, trajectories (one list per frame),
                                                    relation_instances
  video/<folder>/<vid>.mp4                        H.264 (PyAV libx264), decodable by decord
```

- VidSTG train and val videos come from VidOR *training*, VidSTG test from VidOR *validation* (as in the release).
- Each annotation is one relation instance ``subject predicate object`` (``toward``, ``away``, ``left_of``,
  ``right_of``, ``above``, ``below``, ``in_front_of``) that holds on ``temporal_gt = [begin_fid, end_fid)``:
  frame ids are 0-based and ``end_fid`` is exclusive, the TubeDETR reading (VideoGLaMM's mask generator reads it
  inclusively; normalise explicitly). ``used_segment`` is the whole clip, its ``end_fid`` the last frame
  (``frame_count - 1``) as in the release, where a ``temporal_gt`` that runs to the end has ``end_fid ==
  frame_count``.
- ``captions`` are declarative sentences about the subject (``target_id`` = subject tid); ``questions`` are
  interrogative sentences whose answer is the subject or the object tube (only written when that answer is
  unique over the span).
- ``tid`` = the object's index in the scene; ``category`` = its shape. Trajectory boxes are the tight box of the
  visible mask, ``xmax``/``ymax`` exclusive; a frame lists only the objects visible in it (``generated`` 0).
- Videos are written at ``SynthConfig.vidstg_fps`` (1 fps by default) so that the 1-fps sampling of the MLLM
  grounding protocol scores every frame of these short clips.
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

from sparrow.data.synthetic.expressions import Expression, World, relation_events
from sparrow.data.synthetic.writers.common import SourceWriter, Written, digit_id, unique, write_json
from sparrow.data.synthetic.writers.mevis import video_tags

_VIDOR_DIR = {"train": "training", "val": "training", "test": "validation"}


def write_mp4(path, frames: np.ndarray, fps: float) -> None:
    """H.264 mp4 with bit-exact muxing and one encoder thread, so the same frames give the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), "w", format="mp4", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream("libx264", rate=rate, options={"crf": "16", "preset": "fast", "threads": "1"})
        stream.width = int(frames.shape[2])
        stream.height = int(frames.shape[1])
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


class VidstgWriter(SourceWriter):
    name = "vidstg"
    root = "vidstg"
    scenarios = ("crossing", "free", "occlusion", "crossing", "leaves", "motion_distractor")

    def __post_init__(self) -> None:
        self.files: dict[str, list[str]] = {}
        self.annotations: dict[str, list[dict]] = {}
        self.used_ids: set[str] = set()

    def plan(self) -> list[tuple[str, int]]:
        return [("train", self.cfg.vidstg_train), ("val", self.cfg.vidstg_val), ("test", self.cfg.vidstg_test)]

    def annotate(self, world: World, rng: np.random.Generator, split: str):
        events = relation_events(world, rng, limit=2)
        if not events or not any(e.interrogative for e in events):
            return None
        return events

    def write(self, split: str, index: int, world: World, annotation, rng: np.random.Generator) -> Written:
        vid = unique(lambda: digit_id(rng, 10), self.used_ids)
        folder = f"{int(rng.integers(0, 12)):04d}"
        fps = float(self.cfg.vidstg_fps)
        write_mp4(self.base / "video" / folder / f"{vid}.mp4", world.video.frames, fps)
        objects = [{"tid": k, "category": world.facts[k].shape} for k in range(world.n)]
        trajectories = []
        for t in range(world.T):
            entries = []
            for k in range(world.n):
                box = world.video.box(k, t)
                if box is None:
                    continue
                x0, y0, x1, y1 = (int(v) for v in box)
                entries.append(
                    {
                        "tid": k,
                        "bbox": {"xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1},
                        "generated": 0,
                        "tracker": "none",
                    }
                )
            trajectories.append(entries)
        relations = [
            {
                "subject_tid": e.subject,
                "object_tid": e.object,
                "predicate": e.predicate,
                "begin_fid": e.begin,
                "end_fid": e.end,
            }
            for e in annotation
        ]
        vidor = {
            "version": "VERSION 1.0",
            "video_id": vid,
            "video_path": f"{folder}/{vid}.mp4",
            "frame_count": world.T,
            "fps": fps,
            "width": world.width,
            "height": world.height,
            "subject/objects": objects,
            "trajectories": trajectories,
            "relation_instances": relations,
        }
        write_json(self.base / "vidor" / _VIDOR_DIR[split] / folder / f"{vid}.json", vidor)
        expressions: list[Expression] = []
        for event, relation in zip(annotation, relations):
            captions = [
                {"description": event.declarative, "type": world.facts[event.subject].shape, "target_id": event.subject}
            ]
            questions = [
                {"description": text, "type": world.facts[target].shape, "target_id": target}
                for text, target in event.interrogative
            ]
            self.annotations.setdefault(split, []).append(
                {
                    "vid": vid,
                    "frame_count": world.T,
                    "fps": fps,
                    "width": world.width,
                    "height": world.height,
                    "subject/objects": objects,
                    "used_segment": {"begin_fid": 0, "end_fid": world.T - 1},
                    "used_relation": relation,
                    "temporal_gt": {"begin_fid": event.begin, "end_fid": event.end},
                    "captions": captions,
                    "questions": questions,
                }
            )
            span = (event.begin, event.end)
            expressions.append(Expression(event.declarative, (event.subject,), "declarative", ("relation",), (), span))
            expressions.extend(
                Expression(text, (target,), "interrogative", ("relation",), (), span)
                for text, target in event.interrogative
            )
        self.files.setdefault(split, []).append(vid)
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
        for split in ("train", "val", "test"):
            if split in self.files:
                write_json(self.base / "annotations" / f"{split}_files.json", self.files[split])
                write_json(self.base / "annotations" / f"{split}_annotations.json", self.annotations[split])
