"""Referring expressions, questions and captions written from a scene's ground truth.

Every object gets *facts* read off the rendered video (appearance from its spec, motion label, whether it
appears later, leaves, or disappears and comes back, whether it is occluded). A description is a conjunction of
*cues* (``("colour", "red")``, ``("motion", "left")``, ``("relation", ("left_of", 2))``, ...). Each cue has two
readings:

- *strict*: the cue is certainly true of the object;
- *loose*: a reader could plausibly take the phrase to cover the object (a "circle" might be the ring, "moving
  right" might be the object bouncing left and right, "small" is relative, ...).

A description of the target set S is accepted only if every target satisfies it strictly and nothing outside S
satisfies it even loosely, so every expression written is unambiguous given the video. Which cues a source
prefers is its *style*: motion and time for MeViS, appearance for Ref-YouTube-VOS, four annotator slots for
Ref-DAVIS17, relations over a time span for VidSTG, phrase-grounded captions for VideoGCG, reasoning questions
for ReVOS. An expression also records which cue families it *needs* (dropping them makes it ambiguous), which
is how "the square moving left" beside an identical static square is recognised as a motion-dependent
expression.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sparrow.data.synthetic.scene import COLOURS, LINEAR_MOTIONS, SHAPES, RenderedVideo, SceneSpec

Cue = tuple[str, object]

APPEARANCE_KEYS = ("size", "colour", "texture", "shape")
# Cue families whose necessity is recorded on each expression.
FAMILIES = ("motion", "time", "relation", "position")
EXPRESSION_HARD_CASES = ("multi_object", "motion_needed", "temporal_expression")

_SHAPE_LOOSE = {"circle": {"circle", "ring"}, "square": {"square", "diamond"}, "diamond": {"diamond", "square"}}
_MOTION_LOOSE = {
    "static": {"static"},
    "left": {"left", "zigzag", "bounce_h", "out_and_back"},
    "right": {"right", "zigzag", "bounce_h", "out_and_back"},
    "up": {"up", "bounce_v"},
    "down": {"down", "bounce_v"},
}
_TIME_LOOSE = {
    "always": {"always"},
    "appears_later": {"appears_later", "mixed"},
    "leaves": {"leaves", "mixed"},
    "reappears": {"reappears", "mixed"},
}
_SIZE_LOOSE = {"small": {"small", "medium"}, "large": {"large", "medium"}}
_PLURAL = {
    "square": "squares",
    "circle": "circles",
    "triangle": "triangles",
    "star": "stars",
    "ring": "rings",
    "diamond": "diamonds",
    "object": "objects",
    "shape": "shapes",
}
_COUNT = {2: "two", 3: "three", 4: "four", 5: "five"}
RELATIONS = ("left_of", "right_of", "above", "below")


@dataclass(frozen=True)
class ObjectFacts:
    index: int
    shape: str
    colour: str
    texture: str
    size: str
    motion: str
    speed: str
    time: str  # always | appears_later | leaves | reappears | mixed
    occluded: bool
    visible: tuple[bool, ...]
    centers: tuple[tuple[float, float], ...]  # sprite centre per frame (meaningful where visible)


@dataclass(frozen=True)
class Expression:
    """One sentence about a set of objects of a scene (object indices into ``SceneSpec.objects``)."""

    text: str
    targets: tuple[int, ...]
    kind: str  # referring | reasoning | declarative | interrogative | caption
    cues: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    span: tuple[int, int] | None = None  # [start, end) frames where the sentence holds; None = whole video

    @property
    def hard_cases(self) -> tuple[str, ...]:
        tags = []
        if len(self.targets) > 1:
            tags.append("multi_object")
        if "motion" in self.needs:
            tags.append("motion_needed")
        if "time" in self.cues:
            tags.append("temporal_expression")
        return tuple(tags)


def _time_label(visible: np.ndarray) -> str:
    idx = np.flatnonzero(visible)
    if idx.size == 0:
        return "mixed"
    late = idx[0] > 0
    leaves = idx[-1] < visible.size - 1
    gap = (idx[-1] - idx[0] + 1) > idx.size
    if not (late or leaves or gap):
        return "always"
    if late and not leaves and not gap:
        return "appears_later"
    if leaves and not late and not gap:
        return "leaves"
    if gap and not late and not leaves:
        return "reappears"
    return "mixed"


def object_facts(scene: SceneSpec, video: RenderedVideo) -> list[ObjectFacts]:
    facts = []
    for k, obj in enumerate(scene.objects):
        visible = video.visible_area[:, k] > 0
        seen = video.in_frame_area[:, k] > 0
        occluded = bool((seen & (video.visible_area[:, k] <= 0.5 * video.in_frame_area[:, k])).any())
        facts.append(
            ObjectFacts(
                index=k,
                shape=obj.shape,
                colour=obj.colour,
                texture=obj.texture,
                size=obj.size,
                motion=obj.motion,
                speed=obj.speed,
                time=_time_label(visible),
                occluded=occluded,
                visible=tuple(bool(v) for v in visible),
                centers=tuple(obj.center(t) for t in range(scene.num_frames)),
            )
        )
    return facts


# -- cue semantics -----------------------------------------------------------------------------------------------


class World:
    """The facts of one scene plus the geometry needed to evaluate relation and position cues."""

    def __init__(self, scene: SceneSpec, video: RenderedVideo):
        self.scene = scene
        self.video = video
        self.facts = object_facts(scene, video)
        self.n = len(self.facts)
        self.T = scene.num_frames
        self.width, self.height = scene.width, scene.height

    # relations -------------------------------------------------------------------------------------------------
    def relation_frames(self, a: int, b: int, rel: str) -> np.ndarray:
        """Frames where ``a rel b`` holds visibly (both objects visible)."""
        fa, fb = self.facts[a], self.facts[b]
        both = np.array(fa.visible) & np.array(fb.visible)
        ca, cb = np.array(fa.centers), np.array(fb.centers)
        mx, my = 0.12 * self.width, 0.12 * self.height
        if rel == "left_of":
            holds = ca[:, 0] < cb[:, 0] - mx
        elif rel == "right_of":
            holds = ca[:, 0] > cb[:, 0] + mx
        elif rel == "above":
            holds = ca[:, 1] < cb[:, 1] - my
        elif rel == "below":
            holds = ca[:, 1] > cb[:, 1] + my
        elif rel in ("toward", "away"):
            # The subject's own step must change the distance: a static subject never "moves toward" anything.
            now = np.hypot(*(ca[:-1] - cb[:-1]).T)
            after = np.hypot(*(ca[1:] - cb[:-1]).T)
            step = after - now
            eps = 0.01 * max(self.width, self.height)
            moving = step < -eps if rel == "toward" else step > eps
            pair = both[:-1] & both[1:] & moving
            holds = np.zeros(self.T, dtype=bool)
            holds[:-1] |= pair
            holds[1:] |= pair
            return holds
        elif rel == "in_front_of":
            sa, sb = self.scene.objects[a], self.scene.objects[b]
            if sa.z <= sb.z or sa.motion == "static":
                return np.zeros(self.T, dtype=bool)
            xs_a, ys_a, xs_b, ys_b = (np.array(v) for v in (sa.xs, sa.ys, sb.xs, sb.ys))
            holds = (
                (xs_a < xs_b + sb.side) & (xs_b < xs_a + sa.side) & (ys_a < ys_b + sb.side) & (ys_b < ys_a + sa.side)
            )
            occluding = self.video.visible_area[:, b] < self.video.in_frame_area[:, b]
            holds = holds & occluding
        else:
            raise ValueError(f"unknown relation {rel!r}")
        return holds & both

    def _relation_any(self, a: int, b: int, rel: str) -> bool:
        """Loose reading: the relation holds at least roughly in some frame where both are visible."""
        fa, fb = self.facts[a], self.facts[b]
        both = np.array(fa.visible) & np.array(fb.visible)
        ca, cb = np.array(fa.centers), np.array(fb.centers)
        if rel == "left_of":
            holds = ca[:, 0] < cb[:, 0]
        elif rel == "right_of":
            holds = ca[:, 0] > cb[:, 0]
        elif rel == "above":
            holds = ca[:, 1] < cb[:, 1]
        elif rel == "below":
            holds = ca[:, 1] > cb[:, 1]
        else:
            raise ValueError(rel)
        return bool((holds & both).any())

    # cue evaluation --------------------------------------------------------------------------------------------
    def strict(self, k: int, cue: Cue) -> bool:
        key, value = cue
        f = self.facts[k]
        if key == "relation":
            rel, anchor = value
            if anchor == k:
                return False
            both = np.array(f.visible) & np.array(self.facts[anchor].visible)
            return bool(both.any()) and bool(self.relation_frames(k, anchor, rel)[both].all())
        if key == "occluded":
            return f.occluded
        if key == "size" and value == "medium":
            return False
        return getattr(f, key) == value

    def loose(self, k: int, cue: Cue) -> bool:
        key, value = cue
        f = self.facts[k]
        if key == "shape":
            return f.shape in _SHAPE_LOOSE.get(value, {value})
        if key == "motion":
            return f.motion in _MOTION_LOOSE.get(value, {value})
        if key == "time":
            return f.time in _TIME_LOOSE.get(value, {value})
        if key == "size":
            return f.size in _SIZE_LOOSE.get(value, {value})
        if key == "relation":
            rel, anchor = value
            return anchor != k and self._relation_any(k, anchor, rel)
        if key == "occluded":
            seen = self.video.in_frame_area[:, k] > 0
            return bool((seen & (self.video.visible_area[:, k] < self.video.in_frame_area[:, k])).any())
        return getattr(f, key) == value

    def is_valid(self, targets: tuple[int, ...], cues: tuple[Cue, ...]) -> bool:
        """Every target strictly satisfies ``cues`` and no other object loosely does."""
        if not targets:
            return False
        plain = tuple(c for c in cues if c[0] != "position")
        strict = {k for k in range(self.n) if all(self.strict(k, c) for c in plain)}
        loose = {k for k in range(self.n) if all(self.loose(k, c) for c in plain)}
        if not set(targets) <= strict:
            return False
        position = [c for c in cues if c[0] == "position"]
        if not position:
            return loose <= set(targets)
        if len(targets) != 1 or len(position) != 1:
            return False
        return self._extreme(targets[0], loose, str(position[0][1]))

    def _extreme(self, k: int, group: set[int], where: str) -> bool:
        """``k`` is clearly the left/right/top/bottom one of ``group`` in the first frame."""
        if not all(self.facts[j].visible[0] for j in group):
            return False
        axis = 0 if where in ("left", "right") else 1
        sign = -1.0 if where in ("left", "top") else 1.0
        margin = 0.12 * (self.width if axis == 0 else self.height)
        mine = sign * self.facts[k].centers[0][axis]
        return all(mine > sign * self.facts[j].centers[0][axis] + margin for j in group if j != k)

    def needs(self, targets: tuple[int, ...], cues: tuple[Cue, ...]) -> tuple[str, ...]:
        out = []
        for family in FAMILIES:
            if any(c[0] == family for c in cues):
                rest = tuple(c for c in cues if c[0] != family)
                if not rest or not self.is_valid(targets, rest):
                    out.append(family)
        return tuple(out)

    # description search ----------------------------------------------------------------------------------------
    def describe(self, targets: tuple[int, ...], keys: tuple[str, ...]) -> tuple[Cue, ...] | None:
        """Cues on ``keys`` with the targets' values, if they make an unambiguous description."""
        first = self.facts[targets[0]]
        base: list[Cue] = []
        special = []
        for key in keys:
            if key in ("position", "relation"):
                special.append(key)
                continue
            if key == "occluded":
                base.append(("occluded", True))
                continue
            value = getattr(first, key)
            if key == "size" and value == "medium":
                return None
            if key == "time" and value == "mixed":
                return None  # no phrase says "appears late, leaves and comes back"
            base.append((key, value))
        options: list[tuple[Cue, ...]] = [tuple(base)]
        if "position" in special:
            options = [o + (("position", w),) for o in options for w in ("left", "right", "top", "bottom")]
        if "relation" in special:
            anchors = [a for a in range(self.n) if a not in targets and self.anchor_description(a) is not None]
            options = [o + (("relation", (rel, a)),) for o in options for a in anchors for rel in RELATIONS]
        for cues in options:
            if self.is_valid(targets, cues):
                return cues
        return None

    def anchor_description(self, k: int) -> tuple[Cue, ...] | None:
        for keys in (("colour", "shape"), ("shape",), ("colour", "texture", "shape"), ("size", "colour", "shape")):
            cues = self.describe((k,), keys)
            if cues is not None:
                return cues
        return None

    def first_description(self, targets: tuple[int, ...], key_sets) -> tuple[Cue, ...] | None:
        for keys in key_sets:
            cues = self.describe(targets, keys)
            if cues is not None:
                return cues
        return None

    def groups(self, keys: tuple[str, ...], sizes=(2, 3)) -> list[tuple[int, ...]]:
        """Sets of objects that share their values on ``keys`` (candidate multi-object referents)."""
        cells: dict[tuple, list[int]] = {}
        for f in self.facts:
            cells.setdefault(tuple(getattr(f, key) for key in keys), []).append(f.index)
        return [tuple(v) for _, v in sorted(cells.items(), key=lambda kv: kv[1]) if len(v) in sizes]


# -- realisation -------------------------------------------------------------------------------------------------

_MOTION_PARTICIPLE = {
    "static": ["standing still", "staying still", "not moving", "remaining in place"],
    "left": ["moving left", "moving to the left", "heading left", "going left"],
    "right": ["moving right", "moving to the right", "heading right", "going right"],
    "up": ["moving up", "moving upward", "rising", "going up"],
    "down": ["moving down", "moving downward", "sinking", "going down"],
    "bounce_h": ["bouncing left and right", "bouncing back and forth", "bouncing from side to side"],
    "bounce_v": ["bouncing up and down", "bouncing vertically"],
    "zigzag": ["zig-zagging", "moving in a zig-zag"],
    "out_and_back": ["going out of view and coming back", "leaving the frame and returning"],
}
_MOTION_VERB = {  # singular, plural
    "static": [
        ("stays still", "stay still"),
        ("does not move", "do not move"),
        ("remains in place", "remain in place"),
    ],
    "left": [("moves to the left", "move to the left"), ("moves left", "move left"), ("heads left", "head left")],
    "right": [
        ("moves to the right", "move to the right"),
        ("moves right", "move right"),
        ("heads right", "head right"),
    ],
    "up": [("moves up", "move up"), ("rises", "rise")],
    "down": [("moves down", "move down"), ("sinks", "sink")],
    "bounce_h": [
        ("bounces left and right", "bounce left and right"),
        ("bounces back and forth", "bounce back and forth"),
    ],
    "bounce_v": [("bounces up and down", "bounce up and down")],
    "zigzag": [("zig-zags across the frame", "zig-zag across the frame"), ("moves in a zig-zag", "move in a zig-zag")],
    "out_and_back": [("leaves the frame and comes back", "leave the frame and come back")],
}
_TIME_CLAUSE = {  # singular, plural
    "always": [
        ("stays in view the whole time", "stay in view the whole time"),
        ("is visible throughout the video", "are visible throughout the video"),
    ],
    "appears_later": [
        ("appears later", "appear later"),
        ("shows up later", "show up later"),
        ("enters the scene later", "enter the scene later"),
    ],
    "leaves": [
        ("leaves the scene", "leave the scene"),
        ("disappears before the end", "disappear before the end"),
        ("goes out of view", "go out of view"),
    ],
    "reappears": [
        ("disappears and comes back", "disappear and come back"),
        ("vanishes and then reappears", "vanish and then reappear"),
    ],
}
_POSITION = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom"}
_RELATION_TEXT = {
    "left_of": ["to the left of", "left of"],
    "right_of": ["to the right of", "right of"],
    "above": ["above", "over"],
    "below": ["below", "beneath", "under"],
}
_REASONING = {  # (cue, singular question predicate, plural question predicate)
    ("motion", "static"): ("stays in the same place for the whole video", "stay in the same place for the whole video"),
    ("motion", "left"): (
        "is heading toward the left edge of the frame",
        "are heading toward the left edge of the frame",
    ),
    ("motion", "right"): (
        "is heading toward the right edge of the frame",
        "are heading toward the right edge of the frame",
    ),
    ("motion", "up"): ("is heading toward the top of the frame", "are heading toward the top of the frame"),
    ("motion", "down"): ("is heading toward the bottom of the frame", "are heading toward the bottom of the frame"),
    ("motion", "bounce_h"): (
        "keeps reversing its direction from side to side",
        "keep reversing direction from side to side",
    ),
    ("motion", "bounce_v"): ("keeps reversing its direction up and down", "keep reversing direction up and down"),
    ("motion", "zigzag"): ("follows a zig-zag path", "follow zig-zag paths"),
    ("motion", "out_and_back"): ("leaves the frame and later returns", "leave the frame and later return"),
    ("time", "appears_later"): ("was not there when the video started", "were not there when the video started"),
    ("time", "leaves"): (
        "is no longer visible at the end of the video",
        "are no longer visible at the end of the video",
    ),
    ("time", "reappears"): (
        "goes missing for a while before showing up again",
        "go missing for a while before showing up again",
    ),
    ("occluded", True): (
        "gets hidden behind another object at some point",
        "get hidden behind other objects at some point",
    ),
}


class Realiser:
    """Turns cue sets into English; word choices go through ``rng``."""

    def __init__(self, world: World, rng: np.random.Generator):
        self.world = world
        self.rng = rng

    def choice(self, options):
        return options[int(self.rng.integers(len(options)))]

    def noun_group(self, cues: tuple[Cue, ...], n: int, with_static_adjective: bool = False) -> str:
        d = dict(cues)
        words = []
        if "size" in d:
            words.append("small" if d["size"] == "small" else self.choice(["big", "large"]))
        if with_static_adjective:
            words.append(self.choice(["static", "motionless"]))
        if "texture" in d:
            words.append(
                {"striped": "striped", "dotted": self.choice(["dotted", "spotted"]), "solid": "plain"}[
                    str(d["texture"])
                ]
            )
        if "colour" in d:
            words.append(str(d["colour"]))
        noun = str(d["shape"]) if "shape" in d else self.choice(["object", "shape"])
        words.append(_PLURAL[noun] if n > 1 else noun)
        return " ".join(words)

    def determiner(self, n: int, definite: bool = True) -> str:
        if n == 1:
            return "the" if definite else "a"
        count = _COUNT.get(n, str(n))
        if not definite:
            return count
        return self.choice([f"the {count}", "both" if n == 2 else f"all {count}"])

    def anchor_phrase(self, k: int) -> str:
        cues = self.world.anchor_description(k)
        assert cues is not None
        return "the " + self.noun_group(cues, 1)

    def modifiers(self, cues: tuple[Cue, ...], n: int) -> list[str]:
        d = dict(cues)
        parts = []
        motion, time = d.get("motion"), d.get("time")
        if motion is not None and not (motion == "out_and_back" and time is not None):
            phrase = self.choice(_MOTION_PARTICIPLE[str(motion)])
            if motion in LINEAR_MOTIONS and n == 1:
                speed = self.world.facts[self._any_target(cues)].speed
                if speed in ("slow", "fast") and self.rng.random() < 0.3:
                    adverb = "quickly" if speed == "fast" else "slowly"
                    phrase = phrase.replace("moving", f"moving {adverb}", 1) if phrase.startswith("moving") else phrase
            parts.append(phrase)
        if time is not None:
            sing, plur = self.choice(_TIME_CLAUSE[str(time)])
            parts.append("that " + (sing if n == 1 else plur))
        if "position" in d:
            parts.append(_POSITION[str(d["position"])])
        if "relation" in d:
            rel, anchor = d["relation"]
            parts.append(f"{self.choice(_RELATION_TEXT[rel])} {self.anchor_phrase(anchor)}")
        return parts

    def _any_target(self, cues: tuple[Cue, ...]) -> int:
        for k in range(self.world.n):
            if all(self.world.strict(k, c) for c in cues if c[0] != "position"):
                return k
        return 0

    def referring(self, cues: tuple[Cue, ...], n: int, definite: bool = True) -> str:
        d = dict(cues)
        static_adj = d.get("motion") == "static" and n == 1 and self.rng.random() < 0.3
        if static_adj:
            cues = tuple(c for c in cues if c[0] != "motion")
        head = f"{self.determiner(n, definite)} {self.noun_group(cues, n, with_static_adjective=static_adj)}"
        return " ".join([head] + self.modifiers(cues, n))

    def verb_phrase(self, motion: str, time: str | None, n: int) -> str:
        sing, plur = self.choice(_MOTION_VERB[motion])
        phrase = sing if n == 1 else plur
        if time in _TIME_CLAUSE and time != "always" and motion != "out_and_back":
            t_sing, t_plur = self.choice(_TIME_CLAUSE[time])
            clause = t_sing if n == 1 else t_plur
            # Tell the events in the order they happen: appearing comes before moving, leaving after.
            phrase = f"{clause} and {phrase}" if time == "appears_later" else f"{phrase} and {clause}"
        return phrase

    def question(self, cues: tuple[Cue, ...], n: int) -> str | None:
        """A reasoning-style question about the objects selected by ``cues`` (None if no template fits)."""
        keyed = [c for c in cues if (c[0], c[1]) in _REASONING]
        if not keyed:
            return None
        main = keyed[0]
        rest = tuple(c for c in cues if c != main)
        noun = self.noun_group(tuple(c for c in rest if c[0] in APPEARANCE_KEYS), n)
        sing, plur = _REASONING[(main[0], main[1])]
        extra = self.modifiers(tuple(c for c in rest if c[0] not in APPEARANCE_KEYS), n)
        words = ["which", noun] + extra + [sing if n == 1 else plur]
        return " ".join(words) + "?"


# -- styles ------------------------------------------------------------------------------------------------------

MOTION_KEY_SETS: tuple[tuple[str, ...], ...] = (
    ("shape", "motion"),
    ("colour", "shape", "motion"),
    ("motion",),
    ("colour", "motion"),
    ("shape", "time"),
    ("colour", "shape", "time"),
    ("shape", "motion", "time"),
    ("size", "shape", "motion"),
    ("texture", "shape", "motion"),
    ("colour", "shape", "texture", "motion"),
    ("colour", "shape", "motion", "time"),
    ("colour", "shape", "size", "texture", "motion"),
    ("shape", "motion", "relation"),
    ("colour", "shape", "motion", "relation"),
)
APPEARANCE_KEY_SETS: tuple[tuple[str, ...], ...] = (
    ("colour", "shape"),
    ("shape",),
    ("colour", "texture", "shape"),
    ("size", "colour", "shape"),
    ("size", "shape"),
    ("texture", "shape"),
    ("size", "colour", "texture", "shape"),
)
FIRST_FRAME_KEY_SETS: tuple[tuple[str, ...], ...] = APPEARANCE_KEY_SETS + (
    ("colour", "shape", "position"),
    ("shape", "position"),
    ("colour", "texture", "shape", "position"),
)
FULL_VIDEO_KEY_SETS: tuple[tuple[str, ...], ...] = (
    ("colour", "shape", "motion"),
    ("shape", "motion"),
    ("colour", "shape", "texture", "motion"),
    ("size", "colour", "shape", "motion"),
    ("colour", "shape", "time"),
    ("colour", "shape", "motion", "time"),
    ("colour", "shape", "relation"),
) + APPEARANCE_KEY_SETS
TIME_KEY_SETS: tuple[tuple[str, ...], ...] = (
    ("shape", "time"),
    ("colour", "shape", "time"),
    ("time",),
    ("shape", "motion", "time"),
    ("colour", "shape", "motion", "time"),
    ("colour", "shape", "texture", "time"),
)
MULTI_KEY_SETS: tuple[tuple[str, ...], ...] = (
    ("shape", "motion"),
    ("colour", "motion"),
    ("shape",),
    ("colour", "shape"),
    ("motion",),
    ("shape", "time"),
)
REASONING_KEY_SETS: tuple[tuple[str, ...], ...] = (
    ("motion",),
    ("time",),
    ("occluded",),
    ("shape", "motion"),
    ("shape", "time"),
    ("colour", "motion"),
    ("shape", "occluded"),
    ("colour", "shape", "motion"),
    ("colour", "shape", "time"),
)


def _indefinite(phrase: str) -> str:
    """``a orange star`` -> ``an orange star``."""
    if phrase.startswith("a ") and phrase[2:3] and phrase[2:3] in "aeiou":
        return "an " + phrase[2:]
    return phrase


def _make(
    world: World,
    realiser: Realiser,
    targets: tuple[int, ...],
    cues: tuple[Cue, ...],
    kind: str = "referring",
    text: str | None = None,
) -> Expression:
    text = realiser.referring(cues, len(targets)) if text is None else text
    return Expression(
        text=text,
        targets=tuple(sorted(targets)),
        kind=kind,
        cues=tuple(c[0] for c in cues),
        needs=world.needs(targets, cues),
    )


def _dedupe(expressions: list[Expression]) -> list[Expression]:
    seen, out = set(), []
    for e in expressions:
        if e.text not in seen:
            seen.add(e.text)
            out.append(e)
    return out


def motion_expressions(world: World, rng: np.random.Generator, limit: int) -> list[Expression]:
    """MeViS style: motion and time first, multi-object referents, hard-case referents before the rest."""
    realiser = Realiser(world, rng)
    singles, timed = [], []
    for k in range(world.n):
        cues = world.first_description((k,), MOTION_KEY_SETS)
        if cues is not None:
            singles.append(_make(world, realiser, (k,), cues))
        if world.facts[k].time in ("appears_later", "leaves", "reappears"):
            cues = world.first_description((k,), TIME_KEY_SETS)
            if cues is not None:
                timed.append(_make(world, realiser, (k,), cues))
    multis = []
    for keys in MULTI_KEY_SETS:
        for group in world.groups(keys):
            cues = world.describe(group, keys)
            if cues is not None and not any(m.targets == group for m in multis):
                multis.append(_make(world, realiser, group, cues))
    order = rng.permutation(len(singles)) if singles else []
    singles = [singles[i] for i in order]
    hard = [e for e in singles if e.needs]
    easy = [e for e in singles if not e.needs]
    chosen = hard[: max(1, limit // 2)] + timed[:1] + multis[: max(1, limit // 3)]
    chosen += [e for e in easy + hard + timed if e not in chosen]
    return _dedupe(chosen)[:limit]


def appearance_expressions(world: World, rng: np.random.Generator, per_object: int = 2) -> list[Expression] | None:
    """Ref-YouTube-VOS style: one object per expression, appearance first; None if an object is indescribable."""
    realiser = Realiser(world, rng)
    out = []
    fallback = APPEARANCE_KEY_SETS + MOTION_KEY_SETS
    for k in range(world.n):
        found = []
        for keys in fallback:
            cues = world.describe((k,), keys)
            if cues is not None:
                found.append(cues)
            if len(found) >= per_object:
                break
        if not found:
            return None
        out.extend(_make(world, realiser, (k,), cues) for cues in found)
    return _dedupe(out)


def davis_expressions(world: World, rng: np.random.Generator) -> list[list[Expression]] | None:
    """Ref-DAVIS17 style: per object [annotator 1 first-frame, a1 full-video, a2 first-frame, a2 full-video]."""
    out = []
    for k in range(world.n):
        first = [c for keys in FIRST_FRAME_KEY_SETS if (c := world.describe((k,), keys)) is not None]
        full = [c for keys in FULL_VIDEO_KEY_SETS if (c := world.describe((k,), keys)) is not None]
        if not first or not full:
            return None
        realiser = Realiser(world, rng)
        slots: list[Expression] = []
        for annotator in range(2):
            for options in (first, full):
                # Annotators word things differently: try other cue sets and wordings before repeating a text.
                for attempt in range(8):
                    cues = options[(annotator + attempt) % len(options)]
                    expression = _make(world, realiser, (k,), cues)
                    if expression.text not in {e.text for e in slots}:
                        break
                slots.append(expression)
        out.append(slots)
    return out


def single_caption(world: World, rng: np.random.Generator, k: int) -> Expression | None:
    """A tracking caption for one object (GOT-10k / LaSOT ``nlp.txt``)."""
    realiser = Realiser(world, rng)
    cues = world.first_description((k,), (("colour", "shape", "motion"),) + MOTION_KEY_SETS + APPEARANCE_KEY_SETS)
    return None if cues is None else _make(world, realiser, (k,), cues)


def reasoning_expressions(world: World, rng: np.random.Generator, limit: int) -> list[Expression]:
    """ReVOS-style reasoning questions (``type_id`` 1)."""
    realiser = Realiser(world, rng)
    out = []
    for k in rng.permutation(world.n):
        k = int(k)
        for keys in REASONING_KEY_SETS:
            cues = world.describe((k,), keys)
            if cues is None:
                continue
            text = realiser.question(cues, 1)
            if text is not None:
                out.append(_make(world, realiser, (k,), cues, kind="reasoning", text=text))
                break
    for keys in (("motion",), ("shape", "motion"), ("time",)):
        for group in world.groups(keys):
            cues = world.describe(group, keys)
            if cues is not None:
                text = realiser.question(cues, len(group))
                if text is not None:
                    out.append(_make(world, realiser, group, cues, kind="reasoning", text=text))
    return _dedupe(out)[:limit]


def absent_expression(world: World, rng: np.random.Generator) -> str | None:
    """A fluent referring expression that matches no object of the video (ReVOS no-target instructions)."""
    realiser = Realiser(world, rng)
    present = {(f.colour, f.shape) for f in world.facts}
    for _ in range(30):
        colour = realiser.choice(list(COLOURS))
        shape = realiser.choice(list(SHAPES))
        loose_shapes = _SHAPE_LOOSE.get(shape, {shape}) | {s for s, v in _SHAPE_LOOSE.items() if shape in v}
        if any((colour, s) in present for s in loose_shapes):
            continue
        motion = realiser.choice(["static", "left", "right", "up", "down"])
        return f"the {colour} {shape} {realiser.choice(_MOTION_PARTICIPLE[motion])}"
    return None


def _marked_clause(world: World, realiser: Realiser, k: int, slot: int) -> tuple[str, bool] | None:
    """``[phrase](slot) verb phrase`` for object k, and whether it has a verb.

    The phrase is the shortest unambiguous description; when it already needs motion (``the square moving
    left``) the clause stays a noun phrase, as A2D-Sentences captions often are.
    """
    keys = (("colour", "shape"),) + APPEARANCE_KEY_SETS + MOTION_KEY_SETS
    cues = world.first_description((k,), keys)
    if cues is None:
        return None
    f = world.facts[k]
    if all(c[0] in APPEARANCE_KEYS for c in cues):
        phrase = realiser.determiner(1) + " " + realiser.noun_group(cues, 1)
        return f"[{phrase}]({slot}) {realiser.verb_phrase(f.motion, f.time, 1)}", True
    return f"[{realiser.referring(cues, 1)}]({slot})", False


def marked_caption(world: World, rng: np.random.Generator, k: int) -> str | None:
    """``[the red square](1) moves to the left``: a tracking caption with object ``k`` marked as 1."""
    clause = _marked_clause(world, Realiser(world, rng), k, 1)
    return None if clause is None else clause[0]


def tracking_pair_caption(world: World, rng: np.random.Generator, a: int, b: int) -> str | None:
    """A2D-style caption with markup, ``[phrase](1) ... [phrase](2)``, for objects ``a`` (1) and ``b`` (2)."""
    realiser = Realiser(world, rng)
    first, second = _marked_clause(world, realiser, a, 1), _marked_clause(world, realiser, b, 2)
    if first is None or second is None:
        return None
    joiner = realiser.choice([" while ", " and ", ", and "]) if first[1] and second[1] else " and "
    return first[0] + joiner + second[0]


def gcg_caption(world: World, rng: np.random.Generator) -> tuple[str, list[tuple[int, ...]]]:
    """A grounded caption covering every object, ``[phrase](id, id)``; ids are object indices.

    Objects that look the same and move the same way share one phrase (a multi-id phrase). Returns the caption
    and the phrase groups in caption order.
    """
    realiser = Realiser(world, rng)
    cells: dict[tuple, list[int]] = {}
    for f in world.facts:
        cells.setdefault((f.shape, f.colour, f.texture, f.size, f.motion, f.time), []).append(f.index)
    groups = sorted((tuple(v) for v in cells.values()), key=lambda g: g[0])
    # One wording per look; look-alikes that behave differently get their own phrase: "another red square".
    words: dict[tuple, str] = {}
    nouns = []
    for g in groups:
        f = world.facts[g[0]]
        look = (f.size, f.colour, f.texture, f.shape)
        fresh = look not in words
        if fresh:
            cues: list[Cue] = [("colour", f.colour), ("shape", f.shape)]
            if f.texture != "solid":
                cues.insert(1, ("texture", f.texture))
            if f.size != "medium":
                cues.insert(0, ("size", f.size))
            words[look] = realiser.noun_group(tuple(cues), 1)
        head = words[look] if len(g) == 1 else " ".join(words[look].split(" ")[:-1] + [_PLURAL[f.shape]])
        if fresh:
            nouns.append(_indefinite(f"{realiser.determiner(len(g), definite=False)} {head}"))
        else:
            nouns.append(f"another {head}" if len(g) == 1 else f"{_COUNT.get(len(g), str(len(g)))} other {head}")
    clauses = []
    for g, noun in zip(groups, nouns):
        f = world.facts[g[0]]
        ids = ", ".join(str(k) for k in g)
        clauses.append(f"[{noun}]({ids}) {realiser.verb_phrase(f.motion, f.time, len(g))}")
    if len(clauses) == 1:
        body = clauses[0]
    else:
        body = ", ".join(clauses[:-1]) + realiser.choice([" and ", " while "]) + clauses[-1]
    return body + ".", groups


@dataclass(frozen=True)
class RelationEvent:
    """A VidSTG relation instance: ``subject predicate object`` holds on frames [begin, end)."""

    subject: int
    object: int
    predicate: str
    begin: int
    end: int
    declarative: str
    interrogative: tuple[tuple[str, int], ...]  # (question, target index)


_REL_DECL = {
    "toward": ["moves toward", "approaches"],
    "away": ["moves away from", "drifts away from"],
    "left_of": ["is to the left of"],
    "right_of": ["is to the right of"],
    "above": ["is above"],
    "below": ["is below"],
    "in_front_of": ["passes in front of"],
}
_REL_Q_SUBJECT = {
    "toward": "what moves toward {o}?",
    "away": "what moves away from {o}?",
    "left_of": "what is to the left of {o}?",
    "right_of": "what is to the right of {o}?",
    "above": "what is above {o}?",
    "below": "what is below {o}?",
    "in_front_of": "what passes in front of {o}?",
}
_REL_Q_OBJECT = {
    "toward": "what does {s} move toward?",
    "away": "what does {s} move away from?",
    "left_of": "what is {s} to the left of?",
    "right_of": "what is {s} to the right of?",
    "above": "what is {s} above?",
    "below": "what is {s} below?",
    "in_front_of": "what does {s} pass in front of?",
}


def _longest_run(flags: np.ndarray) -> tuple[int, int]:
    best, start = (0, 0), None
    for t, flag in enumerate(list(flags) + [False]):
        if flag and start is None:
            start = t
        elif not flag and start is not None:
            if t - start > best[1] - best[0]:
                best = (start, t)
            start = None
    return best


def relation_events(world: World, rng: np.random.Generator, limit: int = 2) -> list[RelationEvent]:
    """VidSTG-style relation instances with their temporal span, a declarative caption and questions."""
    realiser = Realiser(world, rng)
    min_len = max(3, world.T // 4)
    candidates = []
    for a in range(world.n):
        for b in range(world.n):
            if a == b or world.anchor_description(a) is None or world.anchor_description(b) is None:
                continue
            for rel in ("in_front_of", "toward", "away", "left_of", "right_of", "above", "below"):
                begin, end = _longest_run(world.relation_frames(a, b, rel))
                if end - begin >= min_len:
                    candidates.append((a, b, rel, begin, end))
    # Sub-spans make temporal localisation matter, so they come before whole-video relations; predicates take
    # turns (in_front_of first when a crossing shows one, the others in random order) so they stay varied.
    order = rng.permutation(len(candidates)) if candidates else []
    candidates = [candidates[i] for i in order]
    present = sorted({c[2] for c in candidates})  # sorted first: set order varies with PYTHONHASHSEED
    shuffled = [present[i] for i in rng.permutation(len(present))] if present else []
    predicates = sorted(shuffled, key=lambda p: p != "in_front_of")
    turn: dict[str, int] = {}
    ranked = []
    for c in candidates:
        whole = c[4] - c[3] == world.T
        turn[c[2], whole] = turn.get((c[2], whole), -1) + 1
        ranked.append(((whole, turn[c[2], whole], predicates.index(c[2])), c))
    ranked.sort(key=lambda item: item[0])
    events: list[RelationEvent] = []
    used_pairs = set()
    for _, (a, b, rel, begin, end) in ranked:
        if (a, b) in used_pairs or (b, a) in used_pairs:
            continue
        span = slice(begin, end)
        need = (end - begin) / 4.0  # another object may share the relation only briefly
        others = [o for o in range(world.n) if o not in (a, b)]
        subject_unique = all(world.relation_frames(o, b, rel)[span].sum() < need for o in others)
        object_unique = all(world.relation_frames(a, o, rel)[span].sum() < need for o in others)
        s_np, o_np = realiser.anchor_phrase(a), realiser.anchor_phrase(b)
        declarative = f"{s_np} {realiser.choice(_REL_DECL[rel])} {o_np}"
        questions = []
        if subject_unique:
            questions.append((_REL_Q_SUBJECT[rel].format(o=o_np), a))
        if object_unique:
            questions.append((_REL_Q_OBJECT[rel].format(s=s_np), b))
        events.append(
            RelationEvent(
                subject=a,
                object=b,
                predicate=rel,
                begin=begin,
                end=end,
                declarative=declarative,
                interrogative=tuple(questions),
            )
        )
        used_pairs.add((a, b))
        if len(events) >= limit:
            break
    return events


# -- question/answer pairs ---------------------------------------------------------------------------------------

QUESTION_TEMPLATES = (
    "Can you segment {phrase} in this video?",
    "Please locate {phrase} in this video.",
    "What is {phrase} in this video? Please respond with segmentation masks.",
    "Perform spatial segmentation of {phrase}.",
)
ANSWER_TEMPLATES = (
    "It is [BOX] [SEG].",
    "Sure, [BOX] [SEG].",
    "Sure, it is [BOX] [SEG].",
    "Sure, the segmentation result is [BOX] [SEG].",
    "[BOX] [SEG].",
)
PLURAL_ANSWER_TEMPLATES = (
    "They are [BOX] [SEG].",
    "Sure, [BOX] [SEG].",
    "Sure, the segmentation result is [BOX] [SEG].",
)


def qa_pair(expression: Expression, rng: np.random.Generator) -> tuple[str, str]:
    """A question about ``expression`` and an answer whose grounding tokens are ``[BOX] [SEG]``.

    Referring phrases go into a segmentation request; questions (reasoning, interrogative) are asked as they
    are with a request for masks. One ``[BOX] [SEG]`` stands for the union of a multi-object referent, the
    way MeViS scores it.
    """
    text = expression.text.strip()
    if text.endswith("?"):
        question = text[0].upper() + text[1:] + " Please respond with segmentation masks."
    else:
        template = QUESTION_TEMPLATES[int(rng.integers(len(QUESTION_TEMPLATES)))]
        question = template.format(phrase=text.rstrip("."))
    answers = PLURAL_ANSWER_TEMPLATES if len(expression.targets) > 1 else ANSWER_TEMPLATES
    return question, answers[int(rng.integers(len(answers)))]


__all__ = [
    "Expression",
    "ObjectFacts",
    "World",
    "Realiser",
    "RelationEvent",
    "motion_expressions",
    "appearance_expressions",
    "davis_expressions",
    "single_caption",
    "reasoning_expressions",
    "absent_expression",
    "tracking_pair_caption",
    "marked_caption",
    "gcg_caption",
    "relation_events",
    "qa_pair",
    "EXPRESSION_HARD_CASES",
]
