"""The SPARROW-Mini driver: draws every video of every source and hands it to that source's writer.

Each video gets its own random generator, ``PCG64(SeedSequence([seed, crc32(source), crc32(split), index]))``,
so its random draws do not depend on the videos drawn before it, and the same seed gives byte-identical files
(with the same encoder libraries: Pillow's libjpeg/zlib and PyAV's x264, pinned in ``constraints-cpu.txt``). A
drawn scene is rejected and redrawn (from the same generator, so still deterministically) when an object is
never seen, when the scenario's hard case did not materialise in the rendered video, or when the source's
style cannot describe the scene unambiguously.

A generation is written into a temporary sibling folder and renamed into place at the end; ``manifest.json``
is its last file. :func:`ensure_generated` reuses a complete folder with the same generator version and config.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sparrow.data.synthetic.config import SynthConfig
from sparrow.data.synthetic.expressions import EXPRESSION_HARD_CASES, World, motion_expressions
from sparrow.data.synthetic.scene import (
    SCENE_HARD_CASES,
    SceneRules,
    build_scene,
    hard_case_tags,
    render,
    scene_is_usable,
)
from sparrow.data.synthetic.writers import WRITERS, SourceWriter
from sparrow.data.synthetic.writers.mevis import video_tags
from sparrow.storage import atomic_write_json, read_json

# Bump whenever the written bytes change, so that cached generations (and curations keyed on them) are redone.
GENERATOR_VERSION = 2
HARD_CASES: tuple[str, ...] = SCENE_HARD_CASES + EXPRESSION_HARD_CASES
MAX_ATTEMPTS = 200
EXTRAS = {"davis_eval_root": "ref-davis17/DAVIS"}
GROUND_TRUTH_BEYOND_RELEASE = (
    "mevis/valid/mask_dict.json (and obj_id/anno_id in mevis/valid): the real split is scored on CodaLab",
    "ref-youtube-vos/valid/Annotations: the real split is scored on CodaLab",
)


def video_rng(seed: int, source: str, split: str, index: int) -> np.random.Generator:
    key = [int(seed), zlib.crc32(source.encode()), zlib.crc32(split.encode()), int(index)]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(key)))


@dataclass
class Drawn:
    world: World
    annotation: object
    rng: np.random.Generator


def draw(cfg: SynthConfig, writer: SourceWriter, split: str, index: int, seed: int, cycle: int) -> Drawn:
    """Draw one accepted video for ``writer`` (see the module docstring for what is rejected).

    ``cycle`` is the video's position among all videos of the writer: scenarios are dealt in turn across the
    splits, so even the few videos of ``smoke`` cover a source's first scenarios.
    """
    rng = video_rng(seed, writer.name, split, index)
    scenarios = writer.scenarios_for(split)
    scenario = scenarios[cycle % len(scenarios)]
    rules = writer.rules_for(split)
    for _ in range(MAX_ATTEMPTS):
        num_objects = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
        scene = build_scene(scenario, rng, cfg.height, cfg.width, cfg.num_frames, num_objects, rules)
        video = render(scene)
        if not scene_is_usable(scene, video, rules):
            continue
        if scenario in SCENE_HARD_CASES and scenario not in hard_case_tags(scene, video):
            continue
        world = World(scene, video)
        annotation = writer.annotate(world, rng, split)
        if annotation is not None:
            return Drawn(world, annotation, rng)
    raise RuntimeError(
        f"SPARROW-Mini: no acceptable {scenario!r} scene for {writer.name}/{split}/{index} "
        f"after {MAX_ATTEMPTS} draws (seed {seed}); the scene constraints are too tight for "
        f"{cfg.height}x{cfg.width}"
    )


def _writers(cfg: SynthConfig, out: Path) -> list[SourceWriter]:
    return [cls(out=out, cfg=cfg) for cls in WRITERS]


def _schedule(writer: SourceWriter) -> Iterator[tuple[str, int, int]]:
    """(split, index in split, index among the writer's videos) in writing order."""
    cycle = 0
    for split, count in writer.plan():
        for index in range(count):
            yield split, index, cycle
            cycle += 1


def _generate_into(cfg: SynthConfig, seed: int, out: Path, timings: dict | None = None) -> dict:
    manifest: dict = {
        "name": "SPARROW-Mini",
        "generator_version": GENERATOR_VERSION,
        "profile": cfg.profile,
        "seed": int(seed),
        "config": cfg.to_json(),
        "sources": {},
        "extras": dict(EXTRAS),
        "ground_truth_beyond_release": list(GROUND_TRUTH_BEYOND_RELEASE),
        "counts": {},
        "hard_cases": {},
        "videos": {},
    }
    totals: Counter = Counter()
    for writer in _writers(cfg, out):
        started = time.perf_counter()
        records = []
        for split, index, cycle in _schedule(writer):
            drawn = draw(cfg, writer, split, index, seed, cycle)
            written = writer.write(split, index, drawn.world, drawn.annotation, drawn.rng)
            records.append(
                {
                    "key": written.key,
                    "split": written.split,
                    "scenario": written.scenario,
                    "tags": list(written.tags),
                    "expressions": written.expressions,
                    "objects": written.objects,
                }
            )
            totals.update(written.tags)
        writer.finish()
        manifest["sources"][writer.name] = writer.root
        manifest["counts"][writer.name] = {split: vars(c) for split, c in writer.counts.items()}
        manifest["videos"][writer.name] = records
        if timings is not None:
            timings[writer.name] = time.perf_counter() - started
    manifest["hard_cases"] = {case: totals.get(case, 0) for case in HARD_CASES}
    manifest["complete"] = True
    atomic_write_json(out / "manifest.json", manifest, indent=1)
    return manifest


def generate(profile: str, seed: int, out: str | Path, *, timings: dict | None = None) -> Path:
    """Write every SPARROW-Mini source under ``out`` (which must be absent or empty); returns ``out``.

    The tree is built in a temporary sibling folder and renamed to ``out`` when complete. ``timings``, when
    given, receives the seconds spent per source (kept out of the manifest, which must not depend on the clock).
    """
    cfg = SynthConfig.for_profile(profile)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: exists and is not an empty folder; SPARROW-Mini writes into a fresh one")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        _generate_into(cfg, seed, tmp, timings)
        if out.is_dir():
            out.rmdir()
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def is_complete(root: str | Path, profile: str, seed: int) -> bool:
    """``root`` holds a finished generation of this profile, seed, generator version and config."""
    path = Path(root) / "manifest.json"
    if not path.is_file():
        return False
    try:
        manifest = read_json(path)
    except ValueError:
        return False
    cfg = SynthConfig.for_profile(profile)
    return (
        manifest.get("complete") is True
        and manifest.get("generator_version") == GENERATOR_VERSION
        and manifest.get("profile") == profile
        and manifest.get("seed") == seed
        and manifest.get("config") == cfg.to_json()
    )


def ensure_generated(profile: str, seed: int) -> Path:
    """SPARROW-Mini for ``profile``/``seed`` under ``sparrow.paths.data_dir``, generated once and then reused."""
    from sparrow.paths import data_dir

    target = data_dir(profile, seed)
    if is_complete(target, profile, seed):
        return target
    if target.exists():
        # A stale or foreign folder: move it aside first so that the final rename stays atomic.
        trash = target.parent / f".{target.name}.stale-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            os.rename(target, trash)
        except FileNotFoundError:
            pass
        else:
            shutil.rmtree(trash, ignore_errors=True)
    try:
        return generate(profile, seed, target)
    except (FileExistsError, OSError):
        # Another process finished the same generation first.
        if is_complete(target, profile, seed):
            return target
        raise


def iter_drawn(profile: str, seed: int) -> Iterator[tuple[str, str, int, Drawn]]:
    """Every video of a generation as (source, split, index, drawn scene), without writing files."""
    cfg = SynthConfig.for_profile(profile)
    scratch = Path(os.devnull)
    for writer in _writers(cfg, scratch):
        for split, index, cycle in _schedule(writer):
            yield writer.name, split, index, draw(cfg, writer, split, index, seed, cycle)


def scene_statistics(profile: str, seed: int) -> dict:
    """Hard-case counts of a generation computed from the drawn scenes alone (no file is written).

    Returns ``{"videos": n, "hard_cases": {case: videos}, "by_source": {source: {case: videos}}}``.
    """
    totals: Counter = Counter()
    by_source: dict[str, Counter] = {}
    videos = 0
    for source, _split, _index, drawn in iter_drawn(profile, seed):
        tags = video_tags(drawn.world, _expressions_of(drawn.annotation))
        totals.update(tags)
        by_source.setdefault(source, Counter()).update(tags)
        videos += 1
    return {
        "videos": videos,
        "hard_cases": {c: totals.get(c, 0) for c in HARD_CASES},
        "by_source": {s: {c: n.get(c, 0) for c in HARD_CASES} for s, n in by_source.items()},
    }


def _expressions_of(annotation) -> list:
    from sparrow.data.synthetic.expressions import Expression

    found = []

    def walk(item) -> None:
        if isinstance(item, Expression):
            found.append(item)
        elif isinstance(item, (list, tuple)):
            for sub in item:
                walk(sub)

    walk(annotation)
    return found


# -- the hard-case figure (data only; sparrow.viz draws it) -------------------------------------------------------

WHY_HARD = {
    "motion_distractor": "Two objects look identical; only their motion tells the referent apart, so no single "
    "frame answers the expression.",
    "crossing": "Two objects pass through each other; the referent must be followed through the crossing rather "
    "than re-guessed after it.",
    "occlusion": "The referent slips behind another object; its visible mask shrinks or vanishes and must come "
    "back on the same object.",
    "exit_reenter": "The referent leaves the frame and comes back; frames without it must stay empty and the "
    "returning object must be recognised as the referent.",
    "late_appearance": "The referent is absent at the start; a model that commits to an object in the first "
    "frame segments the wrong one.",
    "leaves": "The referent leaves for good; its masks must stop when it does.",
    "multi_object": "The expression names several objects at once; the target is their union.",
    "motion_needed": "Appearance alone matches several objects; the expression is only unambiguous through motion.",
    "temporal_expression": "The expression refers to when something happens (appears, leaves, comes back).",
}


def _example_fits(case: str, world: World, expression) -> bool:
    targets = expression.targets
    facts = [world.facts[k] for k in targets]
    objs = [world.scene.objects[k] for k in targets]
    if case == "motion_distractor":
        return "motion" in expression.needs
    if case == "motion_needed":
        return "motion" in expression.needs
    if case == "multi_object":
        return len(targets) > 1
    if case == "temporal_expression":
        return "time" in expression.cues
    if case == "late_appearance":
        return "time" in expression.cues and any(f.time == "appears_later" for f in facts)
    if case == "leaves":
        return "time" in expression.cues and any(f.time == "leaves" for f in facts)
    if case == "exit_reenter":
        return any(o.motion == "out_and_back" for o in objs)
    if case == "occlusion":
        return any(f.occluded for f in facts)
    if case == "crossing":
        return any(o.role == "crosser" for o in objs)
    return False


def hard_case_examples(profile: str, seed: int, cases: tuple[str, ...] = HARD_CASES) -> list[dict]:
    """One example per hard case for the figure of notebook 01 (data only; drawing is ``sparrow.viz``'s job).

    Each item: ``case``, ``why`` (one sentence), ``expression``, ``frames`` (T, H, W, 3) uint8, ``target``
    (T, H, W) bool union of the referent's visible masks, ``others`` (T, H, W) bool masks of everything else,
    ``target_visible`` (T,) bool.
    """
    cfg = SynthConfig.for_profile(profile)
    scenario_for = {"motion_needed": "motion_distractor", "temporal_expression": "late_appearance"}
    examples = []
    for case in cases:
        if case not in WHY_HARD:
            raise ValueError(f"unknown hard case {case!r}; choose from {', '.join(WHY_HARD)}")
        scenario = scenario_for.get(case, case)
        found = None
        for attempt in range(MAX_ATTEMPTS):
            rng = video_rng(seed, "figure", case, attempt)
            scene = build_scene(
                scenario,
                rng,
                cfg.height,
                cfg.width,
                cfg.num_frames,
                int(rng.integers(cfg.min_objects, cfg.max_objects + 1)),
            )
            video = render(scene)
            if not scene_is_usable(scene, video, SceneRules()):
                continue
            world = World(scene, video)
            for expression in motion_expressions(world, rng, 12):
                if _example_fits(case, world, expression):
                    found = (world, expression)
                    break
            if found:
                break
        if found is None:
            raise RuntimeError(f"no example of {case!r} found in {MAX_ATTEMPTS} draws")
        world, expression = found
        target = world.video.union_mask(expression.targets)
        examples.append(
            {
                "case": case,
                "why": WHY_HARD[case],
                "expression": expression.text,
                "frames": world.video.frames,
                "target": target,
                "others": (world.video.labels > 0) & ~target,
                "target_visible": target.any(axis=(1, 2)),
            }
        )
    return examples


# -- command line -------------------------------------------------------------------------------------------------


def main_synth(argv: list[str] | None = None) -> int:
    """``sparrow synth --profile PROFILE --seed N --out DIR``: generate SPARROW-Mini into DIR."""
    parser = argparse.ArgumentParser(prog="sparrow synth", description="Generate SPARROW-Mini in the real layouts.")
    parser.add_argument("--profile", default="mini", choices=("smoke", "mini"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output folder (must be absent or empty)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = generate(args.profile, args.seed, args.out)
    elapsed = time.perf_counter() - start
    manifest = read_json(out / "manifest.json")
    for source, splits in manifest["counts"].items():
        parts = ", ".join(f"{split} {c['videos']} videos / {c['expressions']} expr" for split, c in splits.items())
        print(f"{source:16s} {manifest['sources'][source]:24s} {parts}")
    print("hard cases (videos): " + ", ".join(f"{k} {v}" for k, v in manifest["hard_cases"].items()))
    print(f"wrote {out} in {elapsed:.1f} s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main_synth())
