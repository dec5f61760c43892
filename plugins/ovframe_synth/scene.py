"""One synthetic scene: stuff regions, 2-6 objects on them, the rendered image, its dense label, captions.

A scene is a pure function of (seed, split, index, WorldSpec): `make_scene` can be called for any
index in any order (random access, nothing on disk). Independent random streams are spawned from that
key: layout (regions, classes, object geometry: everything the label depends on), appearance
(textures, colours, lighting), captions, and the variant (close-up or not, drawn only when
`closeups` > 0). So a change to how captions are written or
textures drawn never moves a label, and the label fingerprint in tests pins the geometry alone.

Coordinates: (y, x) in pixels, pixel centres at integer + 0.5. Labels index world.CLASSES.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from . import world
from .captions import Caption, ObjectFacts, StuffFacts, write_captions, write_cutout_captions
from .shapes import EXTENT, rasterise, tilt_range
from .textures import STUFF_TEXTURES, object_surface

SPLITS = {"train": 0, "val": 1}


@dataclass(frozen=True)
class WorldSpec:
    """What varies between uses of the world (the classes never do)."""

    image_size: int = 128
    min_objects: int = 2
    max_objects: int = 6
    min_size: float = 0.06  # nominal object size r as a fraction of the image side (area about 2 r^2)
    max_size: float = 0.24
    captions: int = 5
    closeups: float = 0.0  # share of scenes showing one large object instead (object-centric pictures)
    cutouts: float = 0.0  # share of object photos: one object cut out on a plain backdrop, framed by its box

    def __post_init__(self) -> None:
        if not 32 <= self.image_size <= 2048:
            raise ValueError(f"image_size must be in 32..2048, got {self.image_size}")
        if not 1 <= self.min_objects <= self.max_objects <= 12:
            raise ValueError(f"need 1 <= min_objects <= max_objects <= 12, got {self.min_objects}, {self.max_objects}")
        if not 0.02 <= self.min_size <= self.max_size <= 0.4:
            raise ValueError(f"need 0.02 <= min_size <= max_size <= 0.4, got {self.min_size}, {self.max_size}")
        if self.captions < 0:
            raise ValueError("captions must be >= 0")
        if not 0.0 <= self.closeups <= 1.0:
            raise ValueError(f"closeups must be in 0..1, got {self.closeups}")
        if not 0.0 <= self.cutouts <= 1.0:
            raise ValueError(f"cutouts must be in 0..1, got {self.cutouts}")


# placement rules (fractions of the image area, or of an object's own area)
MIN_REGION = 0.08  # a stuff region covers at least this much of the image before objects ...
MIN_STUFF_VISIBLE = 0.03  # ... and keeps at least this much visible once objects are placed
MIN_OBJECT_VISIBLE = 0.4  # an object keeps this share of its area visible (occlusion and the frame)
MIN_OBJECT_PIXELS = 24  # ... and at least this many visible pixels at 128 x 128 (scaled with area)
REPEAT_CLASS = 0.2  # chance that an object repeats the class of one placed before ("two red circles")
SMALL, LARGE = 0.013, 0.05  # object area fractions below / above which captions may say small / large
CLOSEUP_SIZE = (0.24, 0.36)  # nominal size of the one object of a close-up (12 % to 26 % of the image)
CUTOUT_MARGIN = (0.0, 0.15)  # an object photo's frame: the object's box grown by this share of its side
PATTERN_NAMES = tuple(world.PATTERNS)


@dataclass
class SceneObject:
    """One object. mask: bool [H, W], its whole shape inside the frame; visible: the part not hidden by
    objects in front (z is the drawing order, higher in front)."""

    class_id: int
    pattern: str
    cy: float
    cx: float
    size: float
    angle: float
    z: int
    mask: np.ndarray
    visible: np.ndarray = field(repr=False)
    area: int = 0  # pixels of the whole shape, including any part outside the frame


@dataclass
class StuffRegion:
    """One background region. mask: bool [H, W] of the region as laid out; visible: the part no object covers."""

    class_id: int
    where: str  # all, top, bottom, left, right, middle, patch
    mask: np.ndarray
    visible: np.ndarray = field(repr=False)


@dataclass
class Scene:
    """image: uint8 [H, W, 3] RGB. label: int64 [H, W], world class ids (every pixel labelled, except an
    object photo's backdrop: -1)."""

    key: tuple[int, str, int]  # (seed, split, index)
    image: np.ndarray
    label: np.ndarray
    objects: list[SceneObject]
    stuff: list[StuffRegion]
    layout: str
    captions: list[Caption]
    closeup: bool = False
    cutout: bool = False  # an object photo: one object on a plain backdrop (no stuff)

    def present(self) -> set[int]:
        """Class ids with at least one labelled pixel."""
        return {int(c) for c in np.unique(self.label) if c >= 0}


def scene_rngs(seed: int, split: str, index: int) -> tuple[np.random.Generator, ...]:
    """The layout, appearance, caption and variant (close-up or not) generators of one scene. SeedSequence
    children depend only on their own position, so adding a stream never moves the others."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    if index < 0 or seed < 0:
        raise ValueError(f"seed and index must be >= 0, got {seed}, {index}")
    root = np.random.SeedSequence([world.WORLD_VERSION, seed, SPLITS[split], index])
    return tuple(np.random.Generator(np.random.PCG64(s)) for s in root.spawn(4))


# -- layout ---------------------------------------------------------------------------------


def _wavy_side(rng, ys, xs, size, theta, offset):
    """bool [H, W]: the side of a wavy line (direction theta, shifted `offset` along its normal) the
    normal points to, and the signed distance used to order regions."""
    cx = cy = size / 2
    nx, ny = -np.sin(theta), np.cos(theta)
    px, py = cx + nx * offset, cy + ny * offset
    d = (xs - px) * nx + (ys - py) * ny
    t = (xs - px) * np.cos(theta) + (ys - py) * np.sin(theta)
    amp = rng.uniform(0.0, 0.06) * size
    wave = amp * np.sin(2 * np.pi * t / (rng.uniform(0.3, 0.9) * size) + rng.uniform(0, 2 * np.pi))
    wave += 0.3 * amp * np.sin(2 * np.pi * t / (rng.uniform(0.1, 0.25) * size) + rng.uniform(0, 2 * np.pi))
    return d > wave


def _blob(rng, ys, xs, size):
    cy, cx = rng.uniform(0.3, 0.7, 2) * size
    radius = rng.uniform(0.18, 0.3) * size
    phi = np.arctan2(ys - cy, xs - cx)
    rho = radius * (1 + 0.15 * np.sin(2 * phi + rng.uniform(0, 6.3)) + 0.1 * np.sin(3 * phi + rng.uniform(0, 6.3)))
    return np.hypot(ys - cy, xs - cx) < rho


def _words_by_centroid(regions: np.ndarray, ids: list[int], horizontal: bool) -> list[str]:
    """top/middle/bottom (or left/middle/right) for line-separated regions, by centroid."""
    axis = 0 if horizontal else 1
    centres = [np.nonzero(regions == i)[axis].mean() for i in ids]
    order = np.argsort(centres)
    names = ("top", "middle", "bottom") if horizontal else ("left", "middle", "right")
    if len(ids) == 2:
        names = (names[0], names[2])
    words = [""] * len(ids)
    for rank, j in enumerate(order):
        words[j] = names[rank]
    return words


@lru_cache(maxsize=8)
def _centres(size: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5  # float64: labels must not hinge on rounding
    ys.flags.writeable = False
    xs.flags.writeable = False
    return ys, xs


def sample_regions(rng: np.random.Generator, size: int) -> tuple[np.ndarray, list[str], str]:
    """(region index map int64 [H, W], a where-word per region, layout name)."""
    ys, xs = _centres(size)
    for _ in range(20):
        n = int(rng.choice(3, p=[0.3, 0.45, 0.25])) + 1
        if n == 1:
            return np.zeros((size, size), np.int64), ["all"], "single"
        kind = rng.choice(["lines", "blob"], p=[0.7, 0.3] if n == 2 else [0.6, 0.4])
        horizontal = bool(rng.random() < 0.65)
        theta = (0.0 if horizontal else np.pi / 2) + rng.uniform(-0.3, 0.3)
        if kind == "lines" and n == 2:
            regions = _wavy_side(rng, ys, xs, size, theta, rng.uniform(-0.2, 0.2) * size).astype(np.int64)
            words = _words_by_centroid(regions, [0, 1], horizontal)
            layout = "split-h" if horizontal else "split-v"
        elif kind == "lines":
            a = _wavy_side(rng, ys, xs, size, theta, rng.uniform(-0.3, -0.1) * size)
            b = _wavy_side(rng, ys, xs, size, theta, rng.uniform(0.1, 0.3) * size)
            regions = a.astype(np.int64) + b.astype(np.int64)
            words = _words_by_centroid(regions, [0, 1, 2], horizontal)
            layout = "bands-h" if horizontal else "bands-v"
        elif n == 2:
            regions = _blob(rng, ys, xs, size).astype(np.int64)
            words, layout = ["all", "patch"], "patch"
        else:
            regions = _wavy_side(rng, ys, xs, size, theta, rng.uniform(-0.2, 0.2) * size).astype(np.int64)
            words = _words_by_centroid(regions, [0, 1], horizontal) + ["patch"]
            regions[_blob(rng, ys, xs, size)] = 2
            layout = "split-h+patch" if horizontal else "split-v+patch"
        counts = np.bincount(regions.ravel(), minlength=n)
        if counts.min() >= MIN_REGION * size * size:
            return regions, words, layout
    return np.zeros((size, size), np.int64), ["all"], "single"


@dataclass
class _Placed:
    class_id: int
    pattern: str
    cy: float
    cx: float
    size: float
    angle: float
    raster: object
    mask: np.ndarray  # bool [H, W]
    area: int


def _place(rng, spec: WorldSpec, cls: world.ClassInfo) -> _Placed:
    s = spec.image_size
    r = float(np.exp(rng.uniform(np.log(spec.min_size), np.log(spec.max_size)))) * s
    margin = 0.35 * EXTENT * r  # the centre stays inside; at most about half of the shape leaves the frame
    cy, cx = rng.uniform(margin, s - margin, 2)
    tilt = tilt_range(cls.shape)
    angle = float(rng.uniform(-tilt, tilt))
    pattern = PATTERN_NAMES[int(rng.integers(len(PATTERN_NAMES)))]
    raster = rasterise(cls.shape, float(cy), float(cx), r, angle)
    return _Placed(cls.index, pattern, float(cy), float(cx), r, angle, raster, _in_frame(raster, s), int(raster.mask.sum()))


def _in_frame(raster, size: int) -> np.ndarray:
    """bool [size, size]: the part of a rasterised shape inside the frame."""
    full = raster.mask
    mask = np.zeros((size, size), bool)
    y0, x0 = raster.y0, raster.x0
    ya, xa = max(0, y0), max(0, x0)
    yb, xb = min(size, y0 + full.shape[0]), min(size, x0 + full.shape[1])
    if yb > ya and xb > xa:
        mask[ya:yb, xa:xb] = full[ya - y0 : yb - y0, xa - x0 : xb - x0]
    return mask


def sample_objects(rng: np.random.Generator, spec: WorldSpec, regions: np.ndarray) -> list[_Placed]:
    """Objects in drawing order; every one (and every stuff region) stays visible enough."""
    s = spec.image_size
    n_regions = int(regions.max()) + 1
    min_pixels = MIN_OBJECT_PIXELS * (s / 128) ** 2
    want = int(rng.integers(spec.min_objects, spec.max_objects + 1))
    placed: list[_Placed] = []
    owner = np.full((s, s), -1, np.int64)  # index of the front object at each pixel
    for _ in range(want):
        if placed and rng.random() < REPEAT_CLASS:
            cls = world.CLASSES[placed[int(rng.integers(len(placed)))].class_id]
        else:
            cls = world.CLASSES[world.THING_IDS[int(rng.integers(len(world.THING_IDS)))]]
        for _attempt in range(25):
            cand = _place(rng, spec, cls)
            trial = owner.copy()
            trial[cand.mask] = len(placed)
            visible = np.bincount(trial.ravel() + 1, minlength=len(placed) + 2)[1:]
            areas = [p.area for p in placed] + [cand.area]
            if any(v < MIN_OBJECT_VISIBLE * a or v < min_pixels for v, a in zip(visible, areas)):
                continue
            free = np.bincount(regions[trial < 0], minlength=n_regions)
            if free.min() < MIN_STUFF_VISIBLE * s * s:
                continue
            placed.append(cand)
            owner = trial
            break
    return placed


# -- rendering ------------------------------------------------------------------------------


def _render(rng, spec: WorldSpec, regions: np.ndarray, stuff_ids: list[int], placed: list[_Placed]) -> np.ndarray:
    s = spec.image_size
    scale = s / 128
    image = np.empty((s, s, 3), np.float32)
    for i, class_id in enumerate(stuff_ids):
        texture = STUFF_TEXTURES[world.CLASSES[class_id].name](rng, s, s, scale)
        if len(stuff_ids) == 1:
            image[...] = texture
        else:
            np.copyto(image, texture, where=(regions == i)[..., None])
    for obj in placed:
        cov = obj.raster.coverage
        h, w = cov.shape
        colour = world.COLOURS[world.CLASSES[obj.class_id].colour][0]
        surface = object_surface(rng, obj.pattern, colour, h, w, scale)
        y0, x0 = obj.raster.y0, obj.raster.x0
        ya, xa, yb, xb = max(0, y0), max(0, x0), min(s, y0 + h), min(s, x0 + w)
        if yb <= ya or xb <= xa:
            continue
        alpha = cov[ya - y0 : yb - y0, xa - x0 : xb - x0, None]
        part = surface[ya - y0 : yb - y0, xa - x0 : xb - x0]
        image[ya:yb, xa:xb] = image[ya:yb, xa:xb] * (1 - alpha) + part * alpha
    image *= np.float32(rng.uniform(0.92, 1.06))
    image += np.float32(0.04) * (rng.random((s, s, 3), dtype=np.float32) - np.float32(0.5))  # sensor noise, std 0.012
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def _facts(objects: list[SceneObject], stuff: list[StuffRegion], regions: np.ndarray, size: int):
    """What the caption writer is told: the visible objects and stuff regions (all are visible in a
    scene as sampled; a twin's reshaped objects may hide one)."""
    shown = np.asarray([r.visible.any() for r in stuff])
    obj_facts = []
    for i, obj in enumerate(objects):
        ys, xs = np.nonzero(obj.visible)
        under = int(np.where(shown, np.bincount(regions[obj.mask], minlength=len(stuff)), -1).argmax())
        hidden_by = tuple(
            j for j, other in enumerate(objects) if other.z > obj.z and int((other.mask & obj.mask).sum()) >= max(3, 0.05 * obj.area)
        )
        frac = obj.area / (size * size)
        size_word = "small" if frac < SMALL else "large" if frac > LARGE else ""
        obj_facts.append(
            ObjectFacts(obj.class_id, obj.pattern, size_word, float(ys.mean() + 0.5) / size, float(xs.mean() + 0.5) / size,
                        stuff[int(under)].class_id, hidden_by)
        )
    return obj_facts, [StuffFacts(r.class_id, r.where) for r in stuff if r.visible.any()]


def reshaped(p: _Placed, shift: int, size: int) -> _Placed:
    """The object with its shape moved `shift` places along world.SHAPES (same colour, place, size, turn)."""
    cls = world.CLASSES[p.class_id]
    names = list(world.SHAPES)
    shape = names[(names.index(cls.shape) + shift) % len(names)]
    angle = float(np.clip(p.angle, -tilt_range(shape), tilt_range(shape)))
    raster = rasterise(shape, p.cy, p.cx, p.size, angle)
    return _Placed(world.CLASS_INDEX[f"{cls.colour} {shape}"], p.pattern, p.cy, p.cx, p.size, angle, raster,
                   _in_frame(raster, size), int(raster.mask.sum()))


def make_scene(seed: int, split: str, index: int, spec: WorldSpec = WorldSpec(), shape_shift: int = 0) -> Scene:
    """Scene `index` of `split` under `seed`: the same arguments always give the same scene.

    shape_shift k (1..4) gives its twin: the same picture but every object's shape moved k places along
    world.SHAPES (a red star becomes a red heart ...), placed where the original was. Twins are hard
    negatives for caption pretraining: their captions differ in the shape words only. (An object the
    reshaped ones hide completely is left out, so the label and the captions still agree.)"""
    layout_rng, look_rng, caption_rng, variant_rng = scene_rngs(seed, split, index)
    s = spec.image_size
    closeup = spec.closeups > 0 and bool(variant_rng.random() < spec.closeups)
    cutout = spec.cutouts > 0 and bool(variant_rng.random() < spec.cutouts)
    closeup = closeup or cutout  # an object photo is cut from a close-up
    regions, wheres, layout = sample_regions(layout_rng, s)
    stuff_ids = [int(c) for c in layout_rng.choice(world.STUFF_IDS, len(wheres), replace=False)]
    object_spec = replace(spec, min_objects=1, max_objects=1, min_size=CLOSEUP_SIZE[0], max_size=CLOSEUP_SIZE[1]) if closeup else spec
    placed = sample_objects(layout_rng, object_spec, regions)
    if shape_shift % len(world.SHAPES):
        placed = [reshaped(p, shape_shift, s) for p in placed]

    label = np.asarray(stuff_ids, np.int64)[regions]
    front = np.zeros((s, s), bool)
    for obj in placed:
        label[obj.mask] = obj.class_id
    objects: list[SceneObject] = []
    for z in range(len(placed) - 1, -1, -1):  # front to back: what is in front hides what is behind
        p = placed[z]
        visible = p.mask & ~front
        front |= p.mask
        objects.append(SceneObject(p.class_id, p.pattern, p.cy, p.cx, p.size, p.angle, z, p.mask, visible, p.area))
    objects = [o for o in reversed(objects) if o.visible.any()]
    stuff = [StuffRegion(c, wheres[i], regions == i, (regions == i) & ~front) for i, c in enumerate(stuff_ids)]

    image = _render(look_rng, spec, regions, stuff_ids, placed)
    obj_facts, stuff_facts = _facts(objects, stuff, regions, s)
    if cutout:
        return _cut_out(Scene((seed, split, index), image, label, objects, stuff, layout, [], True), obj_facts[0], variant_rng,
                        caption_rng, spec.captions)
    captions = write_captions(caption_rng, obj_facts, stuff_facts, spec.captions)
    return Scene((seed, split, index), image, label, objects, stuff, layout, captions, closeup)


def _cut_out(scene: Scene, facts: ObjectFacts, rng: np.random.Generator, caption_rng: np.random.Generator, captions: int) -> Scene:
    """The close-up's object as an object photo: its visible part on a plain backdrop (a grey, slightly
    tinted), framed by its box grown by CUTOUT_MARGIN and stretched to the square image, as a region
    classifier frames a region (a box crop resized to its input). The backdrop is labelled -1."""
    (obj,) = scene.objects
    s = scene.label.shape[0]
    ys, xs = np.nonzero(obj.visible)
    grow = rng.uniform(*CUTOUT_MARGIN, size=2)
    h, w = ys.max() + 1 - ys.min(), xs.max() + 1 - xs.min()
    top, left = ys.min() - grow[0] * h / 2, xs.min() - grow[1] * w / 2
    h, w = h * (1 + grow[0]), w * (1 + grow[1])
    grey = rng.uniform(0.2, 0.9)
    backdrop = np.clip(grey + rng.uniform(-0.06, 0.06, 3), 0, 1) * 255
    # output pixel centres -> source pixels (nearest): the mask stays crisp, the object's pixels are the scene's
    centres = (np.arange(s) + 0.5) / s
    sy = np.floor(top + centres * h).astype(np.int64)
    sx = np.floor(left + centres * w).astype(np.int64)
    inside = ((sy >= 0) & (sy < s))[:, None] & ((sx >= 0) & (sx < s))[None, :]
    cy, cx = np.clip(sy, 0, s - 1), np.clip(sx, 0, s - 1)
    mask = obj.visible[cy[:, None], cx[None, :]] & inside
    image = np.where(mask[..., None], scene.image[cy[:, None], cx[None, :]], np.round(backdrop).astype(np.uint8))
    label = np.where(mask, obj.class_id, -1).astype(np.int64)
    my, mx = np.nonzero(mask)
    photo = SceneObject(obj.class_id, obj.pattern, float(my.mean() + 0.5), float(mx.mean() + 0.5), obj.size * s / max(h, w),
                        obj.angle, 0, mask, mask, int(mask.sum()))
    words = write_cutout_captions(caption_rng, replace(facts, size=""), captions)  # no size: it fills the frame
    return Scene(scene.key, image, label, [photo], [], "plain", words, closeup=True, cutout=True)
