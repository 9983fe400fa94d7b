"""Sizes of SPARROW-Mini per profile.

``smoke`` is a handful of tiny videos per source (CI: the whole generation takes about a second);
``mini`` is the embedded benchmark: a few hundred 128x128 training videos across the sources and about 50
held-out videos per benchmark split (MeViS ``valid`` and ``valid_u``, Ref-YouTube-VOS ``valid``, Ref-DAVIS17
``valid``, VidSTG ``test``, VideoGCG ``val``). ``paper`` has no synthetic counterpart: the paper trains and
evaluates on the real releases.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sparrow.profiles import get_profile


@dataclass(frozen=True)
class SynthConfig:
    """How much SPARROW-Mini to generate and at which size (every count is a number of videos)."""

    profile: str
    height: int
    width: int
    num_frames: int
    min_objects: int
    max_objects: int
    # Upper bound on referring expressions written per video (MeViS/ReVOS style; DAVIS always has 4 per object).
    max_expressions: int
    mevis_train: int
    mevis_valid_u: int
    mevis_valid: int
    ytvos_train: int
    ytvos_valid: int
    ytvos_test: int
    davis_train: int
    davis_valid: int
    got10k_train: int
    lasot_train: int
    a2d_train: int
    vidstg_train: int
    vidstg_val: int
    vidstg_test: int
    videogcg_train: int
    videogcg_val: int
    revos_train: int
    revos_valid: int
    jpeg_quality: int = 90
    # VidSTG mp4s are written at 1 fps so that the 1-fps sampling of the MLLM grounding protocol
    # (docs/evaluation.md §7.2) scores every frame of these short clips.
    vidstg_fps: float = 1.0
    # Ref-YouTube-VOS names frames by their 30-fps index at 6 fps: 00000, 00005, ...
    ytvos_frame_step: int = 5
    # VideoGCG frames are a uniform subsample of a longer clip, named by their original index.
    gcg_frame_stride: int = 3

    def __post_init__(self) -> None:
        if self.num_frames < 8:
            raise ValueError(f"num_frames={self.num_frames}: SPARROW's tracking loader asserts 8 SAM frames")
        if self.height % 2 or self.width % 2:
            raise ValueError(f"{self.height}x{self.width}: H.264 (yuv420p) needs even frame sides")
        if not 2 <= self.min_objects <= self.max_objects <= 254:
            raise ValueError(
                f"objects per video must satisfy 2 <= min <= max <= 254, got {self.min_objects}..{self.max_objects}"
            )

    @classmethod
    def for_profile(cls, profile: str) -> SynthConfig:
        section = get_profile(profile).data
        if section is None:
            raise ValueError(
                f"SPARROW-Mini has no {profile!r} profile: the paper uses the real datasets; point "
                "`sparrow curate --source NAME=ROOT` at the released folders instead"
            )
        return cls(
            profile=profile,
            height=section.height,
            width=section.width,
            num_frames=section.num_frames,
            min_objects=section.min_objects,
            max_objects=section.max_objects,
            max_expressions=section.max_expressions,
            **section.videos,
        )

    @property
    def train_videos(self) -> int:
        return (
            self.mevis_train
            + self.ytvos_train
            + self.davis_train
            + self.got10k_train
            + self.lasot_train
            + self.a2d_train
            + self.vidstg_train
            + self.vidstg_val
            + self.videogcg_train
            + self.revos_train
        )

    @property
    def held_out_videos(self) -> int:
        return (
            self.mevis_valid_u
            + self.mevis_valid
            + self.ytvos_valid
            + self.ytvos_test
            + self.davis_valid
            + self.vidstg_test
            + self.videogcg_val
            + self.revos_valid
        )

    def to_json(self) -> dict:
        return asdict(self)
