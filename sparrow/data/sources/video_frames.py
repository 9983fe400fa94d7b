"""Pulling JPEG frames out of the mp4 releases (VidSTG / VidOR, HC-STVG), since curated readers use ``frame_paths``.

Frames are decoded in order with PyAV and only the kept ones are written, one at a time (no video is held in
memory). Positions are 0-based decode indices, the convention of VidOR ``fid`` s; names are the index zero-padded.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from sparrow.data.sources.base import FrameExtraction, ItemError


@dataclass
class ExtractedFrames:
    indices: list[int]  # decode index of each written frame
    paths: list[Path]
    height: int
    width: int
    native_fps: float
    stride: int
    decoded: int  # frames decoded before ``stop`` (all of them when the video ends first)


def stride_for(native_fps: float, extraction: FrameExtraction) -> int:
    if extraction.fps is None or native_fps <= 0:
        return 1
    return max(1, round(native_fps / extraction.fps))


def extract_frames(
    mp4: Path,
    out_dir: Path,
    extraction: FrameExtraction,
    start: int = 0,
    stop: int | None = None,
    fps_hint: float = 0.0,
) -> ExtractedFrames:
    """Write frames ``start <= i < stop`` (every ``stride``-th) of ``mp4`` as ``<i:06d>.jpg`` under ``out_dir``.

    A video that does not decode (corrupt, truncated) is an :class:`ItemError` naming it, and what was written of
    it is removed; a caller that needs frames up to some index checks ``decoded``.
    """
    import av

    if not mp4.is_file():
        raise ItemError(mp4, "video file not found")
    out_dir.mkdir(parents=True, exist_ok=True)
    indices: list[int] = []
    paths: list[Path] = []
    size = (0, 0)
    decoded = 0
    try:
        with av.open(str(mp4)) as container:
            stream = container.streams.video[0]
            native = float(stream.average_rate) if stream.average_rate else fps_hint
            stride = stride_for(native, extraction)
            for i, frame in enumerate(container.decode(stream)):
                if stop is not None and i >= stop:
                    break
                decoded = i + 1
                if i < start or (i - start) % stride:
                    continue
                image = frame.to_image()
                size = (image.height, image.width)
                path = out_dir / f"{i:06d}.jpg"
                tmp = path.with_name(f".{path.name}.tmp")
                image.save(tmp, format="JPEG", quality=extraction.jpeg_quality)
                os.replace(tmp, path)
                indices.append(i)
                paths.append(path)
    except (av.error.FFmpegError, IndexError) as exc:  # not OSError: a failing JPEG write is no bad video
        shutil.rmtree(out_dir, ignore_errors=True)
        raise ItemError(mp4, f"cannot decode video, corrupt or truncated ({exc})") from None
    if not paths:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise ItemError(mp4, f"no frames decoded in [{start}, {stop})")
    return ExtractedFrames(indices, paths, size[0], size[1], native, stride, decoded)


def require_frames(frames: ExtractedFrames, mp4: Path, needed: int, what: str) -> None:
    """An :class:`ItemError` naming ``mp4`` when it decoded fewer than ``needed`` frames (a truncated video)."""
    if frames.decoded < needed:
        raise ItemError(mp4, f"decoded {frames.decoded} frames, {what} needs {needed} (truncated video?)")


def span_positions(indices: list[int], begin: int, end: int) -> list[int] | None:
    """``[begin, end)`` in decode indices as ``[start, stop)`` positions of the kept frames, or None if empty."""
    positions = [p for p, i in enumerate(indices) if begin <= i < end]
    if not positions:
        return None
    return [positions[0], positions[-1] + 1]
