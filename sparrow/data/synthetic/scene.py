"""The procedural world of SPARROW-Mini: scene specifications, hard-case scenarios and the renderer.

A scene is a textured background and a few objects (shape, colour, texture, size) that follow a motion
(static, linear, bouncing, zig-zag, out-and-back) with a fixed z-order. :func:`build_scene` draws a scene for one
*scenario*, i.e. one hard case of referring video segmentation:

- ``motion_distractor``: two identical-looking objects that differ only by how they move;
- ``crossing``: two moving objects that pass through each other (the one in front occludes the other);
- ``occlusion``: a small object passing behind a large static one (tagged when an object is at least half
  hidden in some frame);
- ``exit_reenter``: an object that leaves the frame and comes back;
- ``late_appearance``: an object that is not there at the start (it pops in or enters from a border);
- ``leaves``: an object that leaves the frame for good;
- ``multi_object``: a group of look-alikes that move together (a referent of several objects);
- ``free``: random objects only.

:func:`render` rasterises a scene into RGB frames and an object-index map per frame (the visible pixels after
occlusion), from which every on-disk mask format is derived. :func:`hard_case_tags` reads the hard cases off the
rendered result (not off the scenario's intent), so a tag is only set when the video really shows it.

Everything is driven by a ``numpy.random.Generator`` passed in by the caller; the same generator state gives the
same scene and the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from sparrow.data.boxes import mask_to_box

SHAPES: tuple[str, ...] = ("square", "circle", "triangle", "star", "ring", "diamond")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (222, 40, 40),
    "green": (40, 178, 64),
    "blue": (40, 84, 228),
    "yellow": (238, 214, 36),
    "purple": (152, 62, 210),
    "orange": (248, 136, 24),
    "white": (244, 244, 244),
    "cyan": (36, 206, 220),
}
TEXTURES: tuple[str, ...] = ("solid", "striped", "dotted")
# Side of the object's square sprite as a fraction of the shorter frame side.
SIZES: dict[str, float] = {"small": 0.17, "medium": 0.23, "large": 0.31}
MOTIONS: tuple[str, ...] = (
    "static",
    "left",
    "right",
    "up",
    "down",
    "bounce_h",
    "bounce_v",
    "zigzag",
    "out_and_back",
)
LINEAR_MOTIONS = ("left", "right", "up", "down")
_FAST_PATTERNS = ("bounce_h", "bounce_v", "out_and_back")  # these cover the frame quickly by construction
SCENARIOS: tuple[str, ...] = (
    "motion_distractor",
    "crossing",
    "occlusion",
    "exit_reenter",
    "late_appearance",
    "leaves",
    "multi_object",
    "free",
)
# Scene-level hard cases read off a rendered video (expression-level ones are added by the expression module).
SCENE_HARD_CASES: tuple[str, ...] = (
    "motion_distractor",
    "crossing",
    "occlusion",
    "exit_reenter",
    "late_appearance",
    "leaves",
)


@dataclass(frozen=True)
class ObjectSpec:
    """One object: appearance, motion label and its top-left sprite position in every frame."""

    shape: str
    colour: str
    texture: str
    size: str
    side: int
    motion: str
    speed: str  # "none" | "slow" | "fast"
    z: int
    xs: tuple[int, ...]
    ys: tuple[int, ...]
    appear_at: int = 0  # the object does not exist before this frame ("appears later" by popping in)
    role: str = "filler"

    def present(self, t: int) -> bool:
        return t >= self.appear_at

    def center(self, t: int) -> tuple[float, float]:
        return self.xs[t] + self.side / 2.0, self.ys[t] + self.side / 2.0

    @property
    def appearance(self) -> tuple[str, str, str, str]:
        return self.shape, self.colour, self.texture, self.size


@dataclass(frozen=True)
class BackgroundSpec:
    kind: str  # "noise" | "checker" | "gradient" | "stripes"
    base: tuple[int, int, int]
    accent: tuple[int, int, int]
    scale: int
    noise_seed: int


@dataclass(frozen=True)
class SceneSpec:
    height: int
    width: int
    num_frames: int
    background: BackgroundSpec
    objects: tuple[ObjectSpec, ...]
    scenario: str


@dataclass
class RenderedVideo:
    """Frames and per-frame object-index maps (0 = background, k + 1 = object k, visible pixels only)."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    labels: np.ndarray  # (T, H, W) uint8
    in_frame_area: np.ndarray  # (T, N) pixels of each object inside the frame before occlusion
    visible_area: np.ndarray  # (T, N) pixels of each object after occlusion

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def num_objects(self) -> int:
        return int(self.visible_area.shape[1])

    def mask(self, k: int) -> np.ndarray:
        """(T, H, W) bool visible mask of object k."""
        return self.labels == (k + 1)

    def union_mask(self, ks) -> np.ndarray:
        out = np.zeros(self.labels.shape, dtype=bool)
        for k in ks:
            out |= self.labels == (k + 1)
        return out

    def visible(self, k: int) -> np.ndarray:
        return self.visible_area[:, k] > 0

    def box(self, k: int, t: int) -> list[float] | None:
        """Tight ``[x0, y0, x1, y1]`` of object k in frame t with an exclusive max, or None if absent."""
        return mask_to_box(self.labels[t] == (k + 1))

    def centroid(self, k: int, t: int) -> tuple[float, float] | None:
        ys, xs = np.nonzero(self.labels[t] == (k + 1))
        if xs.size == 0:
            return None
        return float(xs.mean()), float(ys.mean())


# -- sprites and backgrounds -------------------------------------------------------------------------------------


def _polygon_mask(side: int, points: list[tuple[float, float]]) -> np.ndarray:
    canvas = Image.new("L", (side, side), 0)
    ImageDraw.Draw(canvas).polygon([(x * side, y * side) for x, y in points], fill=1)
    return np.asarray(canvas, dtype=bool)


def shape_mask(shape: str, side: int) -> np.ndarray:
    """(side, side) bool mask of a shape centred in its sprite."""
    c = (np.arange(side) + 0.5) / side * 2.0 - 1.0
    u, v = np.meshgrid(c, c)  # u: x, v: y, both in [-1, 1]
    r2 = u * u + v * v
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.92
    if shape == "circle":
        return r2 <= 0.96**2
    if shape == "ring":
        return (r2 <= 0.98**2) & (r2 >= 0.52**2)
    if shape == "diamond":
        return np.abs(u) + np.abs(v) <= 1.0
    if shape == "triangle":
        return _polygon_mask(side, [(0.5, 0.02), (0.98, 0.96), (0.02, 0.96)])
    if shape == "star":
        points = []
        for i in range(10):
            radius = 0.49 if i % 2 == 0 else 0.2
            angle = np.pi * i / 5.0
            points.append((0.5 + radius * np.sin(angle), 0.52 - radius * np.cos(angle)))
        return _polygon_mask(side, points)
    raise ValueError(f"unknown shape {shape!r}")


def _shade(colour: tuple[int, int, int]) -> np.ndarray:
    rgb = np.asarray(colour, dtype=np.float64)
    return np.round(rgb * 0.42).astype(np.uint8)


@lru_cache(maxsize=4096)
def sprite(shape: str, texture: str, colour: str, side: int) -> tuple[np.ndarray, np.ndarray]:
    """RGB pixels and mask of one object sprite; textures alternate the colour with a darker shade of it."""
    mask = shape_mask(shape, side)
    rgb = np.empty((side, side, 3), dtype=np.uint8)
    rgb[:] = np.asarray(COLOURS[colour], dtype=np.uint8)
    ii, jj = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    if texture == "striped":
        width = max(2, side // 6)
        rgb[((ii + jj) // width) % 2 == 1] = _shade(COLOURS[colour])
    elif texture == "dotted":
        period = max(4, side // 4)
        radius = max(1.0, period / 4.0)
        di = (ii % period) - (period - 1) / 2.0
        dj = (jj % period) - (period - 1) / 2.0
        rgb[di * di + dj * dj <= radius * radius] = _shade(COLOURS[colour])
    elif texture != "solid":
        raise ValueError(f"unknown texture {texture!r}")
    mask.setflags(write=False)
    rgb.setflags(write=False)
    return rgb, mask


def make_background(spec: BackgroundSpec, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8 low-contrast textured background."""
    rng = np.random.Generator(np.random.PCG64(spec.noise_seed))
    yy, xx = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    if spec.kind == "noise":
        grid = rng.random((4, 4)).astype(np.float32)
        weight = np.asarray(Image.fromarray(grid, mode="F").resize((width, height), Image.BICUBIC), dtype=np.float64)
        weight = np.clip(weight, 0.0, 1.0)
    elif spec.kind == "checker":
        weight = (((yy // spec.scale) + (xx // spec.scale)) % 2).astype(np.float64)
    elif spec.kind == "gradient":
        angle = rng.uniform(0.0, 2.0 * np.pi)
        proj = np.cos(angle) * xx / max(width - 1, 1) + np.sin(angle) * yy / max(height - 1, 1)
        weight = (proj - proj.min()) / max(proj.max() - proj.min(), 1e-9)
    elif spec.kind == "stripes":
        weight = 0.5 + 0.5 * np.sin(2.0 * np.pi * (xx + yy) / (2.0 * spec.scale))
    else:
        raise ValueError(f"unknown background kind {spec.kind!r}")
    base = np.asarray(spec.base, dtype=np.float64)
    accent = np.asarray(spec.accent, dtype=np.float64)
    image = base + (accent - base) * weight[..., None]
    image += rng.integers(-5, 6, size=(height, width, 1))
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def render(scene: SceneSpec) -> RenderedVideo:
    """Rasterise a scene: objects pasted back to front, so each label map holds only the visible pixels."""
    T, H, W = scene.num_frames, scene.height, scene.width
    n = len(scene.objects)
    if n > 254:
        raise ValueError("a scene holds at most 254 objects (uint8 labels)")
    background = make_background(scene.background, H, W)
    frames = np.empty((T, H, W, 3), dtype=np.uint8)
    frames[:] = background
    labels = np.zeros((T, H, W), dtype=np.uint8)
    in_frame = np.zeros((T, n), dtype=np.int64)
    order = sorted(range(n), key=lambda k: (scene.objects[k].z, k))
    for k in order:
        obj = scene.objects[k]
        rgb, mask = sprite(obj.shape, obj.texture, obj.colour, obj.side)
        for t in range(T):
            if not obj.present(t):
                continue
            x0, y0 = obj.xs[t], obj.ys[t]
            fx0, fy0 = max(x0, 0), max(y0, 0)
            fx1, fy1 = min(x0 + obj.side, W), min(y0 + obj.side, H)
            if fx0 >= fx1 or fy0 >= fy1:
                continue
            sub = mask[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0]
            frames[t, fy0:fy1, fx0:fx1][sub] = rgb[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0][sub]
            labels[t, fy0:fy1, fx0:fx1][sub] = k + 1
            in_frame[t, k] = int(sub.sum())
    visible = np.stack([(labels == k + 1).sum(axis=(1, 2)) for k in range(n)], axis=1) if n else in_frame.copy()
    return RenderedVideo(frames=frames, labels=labels, in_frame_area=in_frame, visible_area=visible.astype(np.int64))


# -- scene construction ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SceneRules:
    """Constraints a source puts on its scenes."""

    first_frame_visible: bool = False  # every object visible in frame 0 (Ref-DAVIS17 first-frame expressions)
    allow_pop_in: bool = True  # filler objects may appear later


class _Builder:
    """Draws objects for one scene; every random choice goes through ``rng``."""

    def __init__(self, rng: np.random.Generator, height: int, width: int, num_frames: int, rules: SceneRules):
        self.rng = rng
        self.H, self.W, self.T = height, width, num_frames
        self.rules = rules
        self.objects: list[ObjectSpec] = []

    # appearance ------------------------------------------------------------------------------------------------
    def side(self, size: str) -> int:
        return max(6, int(round(SIZES[size] * min(self.H, self.W))))

    def pick(self, options, weights=None):
        if weights is not None:
            p = np.asarray(weights, dtype=np.float64)
            return options[int(self.rng.choice(len(options), p=p / p.sum()))]
        return options[int(self.rng.integers(len(options)))]

    def fresh_appearance(self, avoid_shapes: tuple[str, ...] = ()) -> tuple[str, str, str, str]:
        """An appearance that usually differs in (shape, colour) from the objects drawn so far."""
        used = {(o.shape, o.colour) for o in self.objects}
        for _ in range(20):
            shape = self.pick([s for s in SHAPES if s not in avoid_shapes] or list(SHAPES))
            colour = self.pick(list(COLOURS))
            if (shape, colour) not in used or self.rng.random() < 0.15:
                break
        texture = self.pick(list(TEXTURES), [0.5, 0.25, 0.25])
        size = self.pick(list(SIZES), [0.35, 0.4, 0.25])
        return shape, colour, texture, size

    # paths -----------------------------------------------------------------------------------------------------
    def _span(self, side: int, axis_len: int) -> tuple[float, float]:
        return side / 2.0, axis_len - side / 2.0

    def path(self, motion: str, speed: str, side: int) -> tuple[np.ndarray, np.ndarray]:
        """Centre positions (float arrays over frames) keeping the whole sprite inside the frame."""
        T, H, W, rng = self.T, self.H, self.W, self.rng
        steps = max(T - 1, 1)
        xlo, xhi = self._span(side, W)
        ylo, yhi = self._span(side, H)
        t = np.arange(T, dtype=np.float64)
        if motion == "static":
            return np.full(T, rng.uniform(xlo, xhi)), np.full(T, rng.uniform(ylo, yhi))
        if motion in LINEAR_MOTIONS:
            horizontal = motion in ("left", "right")
            lo, hi = (xlo, xhi) if horizontal else (ylo, yhi)
            frac = 0.3 if speed == "slow" else 0.6
            travel = min(frac * (hi - lo + side), hi - lo)
            start = rng.uniform(lo, hi - travel)
            pos = start + travel * t / steps
            if motion in ("left", "up"):
                pos = (lo + hi) - pos
            other = np.full(T, rng.uniform(ylo, yhi) if horizontal else rng.uniform(xlo, xhi))
            return (pos, other) if horizontal else (other, pos)
        if motion in ("bounce_h", "bounce_v"):
            horizontal = motion == "bounce_h"
            lo, hi = (xlo, xhi) if horizontal else (ylo, yhi)
            span = max(hi - lo, 1e-6)
            travel = 1.7 * span  # longer than the span, so at least one reversal is visible
            phase = rng.uniform(0.0, 2.0 * span)
            u = np.mod(phase + travel * t / steps, 2.0 * span)
            pos = lo + np.where(u <= span, u, 2.0 * span - u)
            other = np.full(T, rng.uniform(ylo, yhi) if horizontal else rng.uniform(xlo, xhi))
            return (pos, other) if horizontal else (other, pos)
        if motion == "zigzag":
            amplitude = 0.12 * H
            travel = min(0.45 * W, xhi - xlo)
            start = rng.uniform(xlo, xhi - travel)
            xs = start + travel * t / steps
            if rng.random() < 0.5:
                xs = (xlo + xhi) - xs
            y0 = rng.uniform(ylo + amplitude, max(ylo + amplitude, yhi - amplitude))
            wave = np.where((np.arange(T) // 2) % 2 == 0, 1.0, -1.0)
            return xs, y0 + amplitude * wave
        if motion == "out_and_back":
            direction = 1.0 if rng.random() < 0.5 else -1.0
            t_out = max(1, int(round(0.35 * steps)))
            t_back = min(T - 2, t_out + max(1, T // 6))
            start = rng.uniform(xlo + 0.25 * (xhi - xlo), xhi - 0.25 * (xhi - xlo))
            outside = (W + side) if direction > 0 else -side
            end = rng.uniform(xlo + 0.2 * (xhi - xlo), xhi - 0.2 * (xhi - xlo))
            xs = np.interp(t, [0, t_out, t_back, steps], [start, outside, outside, end])
            return xs, np.full(T, rng.uniform(ylo, yhi))
        raise ValueError(f"unknown motion {motion!r}")

    def add(
        self,
        appearance,
        motion: str,
        speed: str = "none",
        xs=None,
        ys=None,
        role: str = "filler",
        appear_at: int = 0,
        z: int | None = None,
    ) -> ObjectSpec:
        shape, colour, texture, size = appearance
        side = self.side(size)
        if xs is None or ys is None:
            xs, ys = self.path(motion, speed, side)
        obj = ObjectSpec(
            shape=shape,
            colour=colour,
            texture=texture,
            size=size,
            side=side,
            motion=motion,
            speed=speed if motion in LINEAR_MOTIONS else ("fast" if motion in _FAST_PATTERNS else "none"),
            z=int(self.rng.integers(0, 50)) if z is None else z,
            xs=tuple(int(round(x - side / 2.0)) for x in xs),
            ys=tuple(int(round(y - side / 2.0)) for y in ys),
            appear_at=appear_at,
            role=role,
        )
        self.objects.append(obj)
        return obj

    def random_motion(self) -> tuple[str, str]:
        motion = self.pick(
            ["static", "left", "right", "up", "down", "bounce_h", "bounce_v", "zigzag"],
            [0.26, 0.13, 0.13, 0.1, 0.1, 0.1, 0.08, 0.1],
        )
        speed = self.pick(["slow", "fast"]) if motion in LINEAR_MOTIONS else "none"
        return motion, speed

    def filler(self) -> ObjectSpec:
        motion, speed = self.random_motion()
        appear_at = 0
        if self.rules.allow_pop_in and not self.rules.first_frame_visible and self.rng.random() < 0.08:
            appear_at = int(self.rng.integers(max(1, self.T // 4), max(2, self.T // 2) + 1))
        return self.add(self.fresh_appearance(), motion, speed, appear_at=appear_at)

    # scenarios -------------------------------------------------------------------------------------------------
    def motion_distractor(self) -> None:
        appearance = self.fresh_appearance()
        pairs = [
            ("left", "static"),
            ("right", "static"),
            ("left", "right"),
            ("up", "static"),
            ("down", "up"),
            ("bounce_h", "static"),
            ("zigzag", "static"),
            ("right", "bounce_v"),
        ]
        a, b = pairs[int(self.rng.integers(len(pairs)))]
        if self.rng.random() < 0.5:
            a, b = b, a
        for motion, role in ((a, "target"), (b, "distractor")):
            speed = self.pick(["slow", "fast"]) if motion in LINEAR_MOTIONS else "none"
            self.add(appearance, motion, speed, role=role)

    def crossing(self) -> None:
        H, W, T = self.H, self.W, self.T
        horizontal = self.rng.random() < 0.7
        sizes = [self.pick(["small", "medium"]) for _ in range(2)]
        sides = [self.side(s) for s in sizes]
        t = np.arange(T, dtype=np.float64) / max(T - 1, 1)
        axis = W if horizontal else H
        cross = (H if horizontal else W) * self.rng.uniform(0.35, 0.65)
        first = self.fresh_appearance()
        a = (first[0], first[1], first[2], sizes[0])
        second = self.fresh_appearance(avoid_shapes=(first[0],))
        b = (second[0], second[1], second[2], sizes[1])
        z0 = int(self.rng.integers(0, 50))
        for appearance, side, sign, z in ((a, sides[0], 1.0, z0), (b, sides[1], -1.0, z0 + 1)):
            lo, hi = side / 2.0, axis - side / 2.0
            start, end = (lo, hi) if sign > 0 else (hi, lo)
            pos = start + (end - start) * t
            other = np.full(T, cross + self.rng.uniform(-0.05, 0.05) * (H if horizontal else W))
            xs, ys = (pos, other) if horizontal else (other, pos)
            motion = ("right" if sign > 0 else "left") if horizontal else ("down" if sign > 0 else "up")
            self.add(appearance, motion, "fast", xs=xs, ys=ys, role="crosser", z=z)

    def occlusion(self) -> None:
        H, W, T = self.H, self.W, self.T
        occluder = self.fresh_appearance()
        occluder = (
            occluder[0] if occluder[0] not in ("ring", "star", "triangle") else "square",
            occluder[1],
            occluder[2],
            "large",
        )
        side_big = self.side("large")
        cx, cy = W * self.rng.uniform(0.4, 0.6), H * self.rng.uniform(0.35, 0.65)
        self.add(occluder, "static", xs=np.full(T, cx), ys=np.full(T, cy), role="occluder", z=90)
        hidden = self.fresh_appearance()
        hidden = (hidden[0], hidden[1], hidden[2], "small")
        side = self.side(hidden[3])
        direction = 1.0 if self.rng.random() < 0.5 else -1.0
        lo, hi = side / 2.0, W - side / 2.0
        xs = np.linspace(lo, hi, T) if direction > 0 else np.linspace(hi, lo, T)
        ys = np.full(T, cy + self.rng.uniform(-0.15, 0.15) * side_big)
        self.add(hidden, "right" if direction > 0 else "left", "fast", xs=xs, ys=ys, role="occluded", z=10)

    def exit_reenter(self) -> None:
        self.add(self.fresh_appearance(), "out_and_back", role="target")

    def late_appearance(self) -> None:
        T, W = self.T, self.W
        appearance = self.fresh_appearance()
        if self.rng.random() < 0.5:
            motion, speed = self.random_motion()
            if motion in ("bounce_h", "bounce_v"):
                motion = "static"
            self.add(
                appearance,
                motion,
                speed,
                role="target",
                appear_at=int(self.rng.integers(max(1, T // 4), max(2, T // 2) + 1)),
            )
            return
        side = self.side(appearance[3])
        hidden_frames = int(self.rng.integers(2, max(3, T // 3) + 1))
        # Fully outside (right edge at -1) up to frame hidden_frames - 1, then entering; it ends 0.55 W further,
        # which keeps the whole sprite inside the frame at the last frame.
        speed_px = (W * 0.55) / max(T - hidden_frames, 1)
        xs_right = -side / 2.0 - 1.0 + speed_px * (np.arange(T) - (hidden_frames - 1))
        direction = "right" if self.rng.random() < 0.5 else "left"
        xs = xs_right if direction == "right" else W - xs_right
        ys = np.full(T, self.rng.uniform(side / 2.0, self.H - side / 2.0))
        self.add(appearance, direction, "fast", xs=xs, ys=ys, role="target")

    def leaves(self) -> None:
        T, W = self.T, self.W
        appearance = self.fresh_appearance()
        side = self.side(appearance[3])
        out_frames = int(self.rng.integers(2, max(3, T // 3) + 1))
        exit_t = T - out_frames  # first frame fully outside
        start = self.rng.uniform(side / 2.0, W * 0.5)
        outside = W + side / 2.0 + 1.0
        speed_px = (outside - start) / max(exit_t, 1)
        xs = start + speed_px * np.arange(T)
        direction = "right" if self.rng.random() < 0.5 else "left"
        if direction == "left":
            xs = W - xs
        ys = np.full(T, self.rng.uniform(side / 2.0, self.H - side / 2.0))
        self.add(appearance, direction, "fast", xs=xs, ys=ys, role="target")

    def multi_object(self) -> None:
        shape = self.pick(list(SHAPES))
        motion, speed = self.random_motion()
        if motion in ("bounce_h", "bounce_v"):
            motion, speed = "right", "slow"
        # Half of the groups are exact look-alikes (a flock), the others share only shape and motion.
        identical = self.rng.random() < 0.5
        look = (
            shape,
            self.pick(list(COLOURS)),
            self.pick(list(TEXTURES), [0.6, 0.2, 0.2]),
            self.pick(["small", "medium"]),
        )
        count = 2 if self.rng.random() < 0.7 else 3
        for _ in range(count):
            appearance = (
                look
                if identical
                else (
                    shape,
                    self.pick(list(COLOURS)),
                    self.pick(list(TEXTURES), [0.6, 0.2, 0.2]),
                    self.pick(["small", "medium"]),
                )
            )
            self.add(appearance, motion, speed, role="group")

    def background(self) -> BackgroundSpec:
        rng = self.rng
        grey = rng.uniform(70, 150)
        tint = rng.uniform(-18, 18, size=3)
        base = np.clip(grey + tint, 0, 255)
        accent = np.clip(base + rng.uniform(-28, 28, size=3), 0, 255)
        return BackgroundSpec(
            kind=self.pick(["noise", "checker", "gradient", "stripes"]),
            base=tuple(int(round(v)) for v in base),
            accent=tuple(int(round(v)) for v in accent),
            scale=int(rng.integers(max(3, min(self.H, self.W) // 12), max(4, min(self.H, self.W) // 5) + 1)),
            noise_seed=int(rng.integers(0, 2**31 - 1)),
        )


def build_scene(
    scenario: str,
    rng: np.random.Generator,
    height: int,
    width: int,
    num_frames: int,
    num_objects: int,
    rules: SceneRules = SceneRules(),
) -> SceneSpec:
    """Draw one scene showing ``scenario`` plus random filler objects up to ``num_objects``."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    builder = _Builder(rng, height, width, num_frames, rules)
    background = builder.background()
    if scenario == "late_appearance" and rules.first_frame_visible:
        raise ValueError("late_appearance contradicts first_frame_visible")
    if scenario != "free":
        getattr(builder, scenario)()
    while len(builder.objects) < num_objects:
        builder.filler()
    return SceneSpec(
        height=height,
        width=width,
        num_frames=num_frames,
        background=background,
        objects=tuple(builder.objects),
        scenario=scenario,
    )


def scene_is_usable(scene: SceneSpec, video: RenderedVideo, rules: SceneRules) -> bool:
    """Every object is seen in at least two frames (in frame 0 too when the rules ask for it)."""
    counts = (video.visible_area > 0).sum(axis=0)
    if (counts < 2).any():
        return False
    if rules.first_frame_visible and (video.visible_area[0] == 0).any():
        return False
    return True


def _gaps(flags: np.ndarray) -> bool:
    idx = np.flatnonzero(flags)
    return idx.size > 0 and (idx[-1] - idx[0] + 1) > idx.size


def hard_case_tags(scene: SceneSpec, video: RenderedVideo) -> tuple[str, ...]:
    """The scene-level hard cases the rendered video actually shows (see the module docstring)."""
    tags: set[str] = set()
    objs = scene.objects
    T = video.num_frames
    visible = video.visible_area > 0
    in_frame = video.in_frame_area > 0
    for i in range(len(objs)):
        for j in range(i + 1, len(objs)):
            if objs[i].appearance == objs[j].appearance and objs[i].motion != objs[j].motion:
                tags.add("motion_distractor")
            if objs[i].motion == "static" or objs[j].motion == "static":
                continue
            both = np.flatnonzero(in_frame[:, i] & in_frame[:, j])
            if both.size < 2:
                continue
            overlap = False
            for t in both:
                a, b = objs[i], objs[j]
                if (
                    a.xs[t] < b.xs[t] + b.side
                    and b.xs[t] < a.xs[t] + a.side
                    and a.ys[t] < b.ys[t] + b.side
                    and b.ys[t] < a.ys[t] + a.side
                ):
                    overlap = True
                    break
            if not overlap:
                continue
            first, last = both[0], both[-1]
            dx0 = objs[i].center(first)[0] - objs[j].center(first)[0]
            dx1 = objs[i].center(last)[0] - objs[j].center(last)[0]
            dy0 = objs[i].center(first)[1] - objs[j].center(first)[1]
            dy1 = objs[i].center(last)[1] - objs[j].center(last)[1]
            if dx0 * dx1 < 0 or dy0 * dy1 < 0:
                tags.add("crossing")
    for k in range(len(objs)):
        vis, inf = visible[:, k], in_frame[:, k]
        seen = video.in_frame_area[:, k] > 0
        if (seen & (video.visible_area[:, k] <= 0.5 * video.in_frame_area[:, k])).any():
            tags.add("occlusion")
        idx = np.flatnonzero(vis)
        if idx.size == 0:
            continue
        if _gaps(vis):
            gap = np.zeros(T, dtype=bool)
            gap[idx[0] : idx[-1] + 1] = ~vis[idx[0] : idx[-1] + 1]
            if (~inf[gap]).any():
                tags.add("exit_reenter")
        if idx[0] > 0:
            tags.add("late_appearance")
        if vis[0] and idx[-1] < T - 1:
            tags.add("leaves")
    return tuple(c for c in SCENE_HARD_CASES if c in tags)
