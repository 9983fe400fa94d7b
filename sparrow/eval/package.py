"""``sparrow package``: the evaluation servers' zip of a prediction folder, validated and byte-for-byte reproducible.

- MeViS ``valid`` (Codabench): the video folders at the root of the zip, ``<video>/<exp_id>/<frame>.png``;
- Ref-YouTube-VOS ``valid`` (CodaLab): the same under ``Annotations/``.

Before writing, every video and expression of the benchmark's ``meta_expressions.json`` must have a folder with
exactly the listed frames as single-channel (``L`` or palette) PNGs of one size per video (the size of the video's
``JPEGImages`` frames when the ground-truth folder holds them); anything else is a
:class:`~sparrow.storage.DataError` naming the file. Members are sorted, with fixed timestamps and permissions, so
two runs on the same folder give the same bytes.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sparrow.eval.score import read_meta_expressions
from sparrow.storage import DataError, atomic_open

ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip entry can hold: no clock enters the bytes


@dataclass(frozen=True)
class Server:
    key: str
    title: str
    prefix: str  # folder the video folders sit in inside the zip
    where: str


SERVERS = {
    "mevis-valid": Server("mevis-valid", "MeViS valid", "", "Codabench (MeViS valid)"),
    "ref-youtube-vos": Server("ref-youtube-vos", "Ref-YouTube-VOS valid", "Annotations/", "CodaLab (Ref-YouTube-VOS)"),
}


def write_zip(members: Iterable[tuple[str, Path]], zip_path: str | Path) -> Path:
    """A deflated zip of ``(name, file)`` pairs in name order, with fixed dates and permissions, written atomically."""
    members = sorted(members)
    if not members:
        raise ValueError(f"{zip_path}: nothing to zip")
    with atomic_open(zip_path, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, path in members:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3
            zf.writestr(info, Path(path).read_bytes(), compresslevel=6)
    return Path(zip_path)


def _png_header(path: Path) -> tuple[str, tuple[int, int]]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.mode, (img.height, img.width)
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"{path}: not a readable PNG ({exc})") from exc


def _frame_size(roots: list[Path], video: str, frame: str) -> tuple[int, int] | None:
    for root in roots:
        for ext in (".jpg", ".png"):
            path = root / "JPEGImages" / video / f"{frame}{ext}"
            if path.is_file():
                return _png_header(path)[1]
    return None


def _meta_path(gt: Path) -> Path:
    if gt.is_file():
        return gt
    for name in ("meta_expressions.json", "meta_expressions/valid/meta_expressions.json"):
        if (gt / name).is_file():
            return gt / name
    raise DataError(f"{gt}: no meta_expressions.json (the benchmark's expression list)")


def validate(pred: str | Path, gt: str | Path) -> list[tuple[str, Path]]:
    """Every (member name without the server prefix, file) of a complete prediction folder, else DataError."""
    pred, gt = Path(pred), Path(gt)
    if not pred.is_dir():
        raise DataError(f"prediction folder {pred} does not exist")
    if (pred / "Annotations").is_dir() and not any(p.is_dir() and p.name != "Annotations" for p in pred.iterdir()):
        pred = pred / "Annotations"
    meta = _meta_path(gt)
    videos = read_meta_expressions(meta)
    roots = [meta.parent] + ([gt, gt / "valid"] if gt.is_dir() else [])
    members = []
    for video, info in videos.items():
        frames = [str(f) for f in info["frames"]]
        expected = _frame_size(roots, video, frames[0])
        for exp in info["expressions"]:
            folder = pred / video / str(exp)
            if not folder.is_dir():
                raise DataError(f"{folder}: missing (video {video}, expression {exp} of {meta.name})")
            names = {p.name for p in folder.iterdir()}
            wanted = {f"{f}.png" for f in frames}
            extra, absent = sorted(names - wanted), sorted(wanted - names)
            if absent:
                raise DataError(f"{folder}: missing frames {', '.join(absent[:5])}{' ...' if len(absent) > 5 else ''}")
            if extra:
                raise DataError(
                    f"{folder}: {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''} are not frames of {video}"
                )
            for f in frames:
                path = folder / f"{f}.png"
                mode, size = _png_header(path)
                if mode not in ("L", "P", "1"):
                    raise DataError(f"{path}: mode {mode}; masks must be single-channel (0/255 grayscale) PNGs")
                if expected is None:
                    expected = size
                elif size != expected:
                    raise DataError(f"{path}: size {size[1]}x{size[0]} differs from {expected[1]}x{expected[0]}")
                members.append((f"{video}/{exp}/{f}.png", path))
    return members


def package(benchmark: str, pred: str | Path, gt: str | Path, out: str | Path) -> Path:
    """Validate ``pred`` against ``gt``'s expression list and write the server zip ``out``."""
    if benchmark not in SERVERS:
        raise ValueError(f"unknown server benchmark {benchmark!r}; choose from {', '.join(SERVERS)}")
    prefix = SERVERS[benchmark].prefix
    return write_zip(((prefix + name, path) for name, path in validate(pred, gt)), out)
