"""``shapes``: the embedded default dataset, procedurally generated multi-task scenes.

Each image is a small 3-D scene rendered in one vectorised pass: a tilted, textured background
plane and one to four objects (spheres, squares and triangles, some striped), each in its own
quadrant of the image at a random depth, nearly upright, lit by a directional light and seen
through distance fog. All objects have the same physical size, so the apparent size tells the
depth; an object coloured like the background gets the opposite colour.
The same scene gives every label, so the tasks are consistent with the image and with each
other, mirroring the three kinds of multi-task data in the MTL-UE paper:

- binary attributes, as CelebA has: ``has_circle``, ``has_square``, ``has_triangle``,
  ``has_stripes``, ``near_object`` (an object closer than 2.5 m), ``top_heavy`` (more object
  pixels in the top half than in the bottom);
- multiclass tasks, as UTKFace has: ``count`` (1-4 visible objects), ``largest_shape``
  (shape of the object covering most pixels), ``largest_size`` (the share of the image that
  object covers: under 8.2 %, 8.2-10.8 %, over 10.8 %, close to thirds);
- dense tasks, as NYUv2 has: ``segmentation`` (background, circle, square, triangle), ``depth``
  (metres) and ``normal`` (unit vectors, x right, y down, z towards the camera).

Why these scenes make a fair default: colours, positions and depths are drawn independently of
the labels, so no single pixel or global colour statistic predicts a task; the labels are
carried by shape outlines, texture, shading (normals), fog and apparent size (depth). Every
label is decidable from the image: objects do not hide each other (one per quadrant), do not
blend into the background, and keep their shape readable at 32 px (at least 4 px in radius,
rotated by at most 15 degrees, stripes no finer than 3.5 px), so a small CNN learns every task
within minutes on a CPU instead of plateauing on ambiguous labels. Every label survives the
victims' standard augmentation: a horizontal flip changes no label (a left/right task would be
coin-flip noise under it) and a random crop moves the scene by a few pixels only. Everything is
a deterministic function of the seed, so the dataset needs no download and is identical on every
machine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .registry import DatasetBuilder, register_dataset
from .tasks import Task, TaskKind

__all__ = ["ShapesDataset", "ShapesOptions", "render_scenes", "SHAPES_TASKS"]

SHAPE_NAMES = ("circle", "square", "triangle")
SIZE_CLASSES = ("small", "medium", "large")
#: Upper bounds of the small and medium classes of ``largest_size``, as shares of the image.
SIZE_BOUNDS = (0.082, 0.108)
MAX_OBJECTS = 4
DEPTH_RANGE = (2.1, 3.6)  # metres: objects 4.2-7.2 px in radius at 32 px
NEAR_DEPTH = 2.5  # metres; chosen so that ``near_object`` is close to balanced
CELL_JITTER = 0.07  # how far an object's centre strays from its quadrant's centre
MAX_ROTATION = 0.25  # radians
OBJECT_RADIUS = 0.47  # in image widths at 1 m
WORLD_WIDTH = 4.0  # metres spanned by the image at the objects' distance (orthographic shading)
LIGHT = np.array([-0.4, -0.5, 1.0]) / np.linalg.norm([-0.4, -0.5, 1.0])
FOG_RGB = np.array([0.62, 0.64, 0.68])

SHAPES_TASKS: tuple[Task, ...] = (
    Task("has_circle", TaskKind.BINARY, 2),
    Task("has_square", TaskKind.BINARY, 2),
    Task("has_triangle", TaskKind.BINARY, 2),
    Task("has_stripes", TaskKind.BINARY, 2),
    Task("near_object", TaskKind.BINARY, 2),
    Task("top_heavy", TaskKind.BINARY, 2),
    Task("count", TaskKind.MULTICLASS, MAX_OBJECTS, class_names=("1", "2", "3", "4")),
    Task("largest_shape", TaskKind.MULTICLASS, len(SHAPE_NAMES), class_names=SHAPE_NAMES),
    Task("largest_size", TaskKind.MULTICLASS, len(SIZE_CLASSES), class_names=SIZE_CLASSES),
    Task("segmentation", TaskKind.SEGMENTATION, 1 + len(SHAPE_NAMES), class_names=("background", *SHAPE_NAMES)),
    Task("depth", TaskKind.DEPTH, 1),
    Task("normal", TaskKind.NORMAL, 3),
)


@dataclass(frozen=True)
class ShapesOptions:
    """Options of the ``shapes`` dataset (all have defaults sized for a laptop CPU)."""

    image_size: int = 32
    crop_size: int = 28
    train_size: int = 2048
    test_size: int = 512
    seed: int = 0
    #: Drop the dense tasks, for a classification-only benchmark (as CelebA / UTKFace).
    dense_tasks: bool = True

    def __post_init__(self) -> None:
        if not 16 <= self.image_size <= 512:
            raise ValueError(f"image_size must be in 16..512, got {self.image_size}")
        if not 8 <= self.crop_size <= self.image_size:
            raise ValueError(f"crop_size must be in 8..image_size ({self.image_size}), got {self.crop_size}")
        for name in ("train_size", "test_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")


@dataclass
class Scenes:
    """A rendered batch: images (N, 3, S, S) uint8 and every task's targets."""

    images: np.ndarray
    targets: dict[str, np.ndarray]


def _sample_scene_parameters(rng: np.random.Generator, count: int) -> dict[str, np.ndarray]:
    shape = (count, MAX_OBJECTS)
    depth = rng.uniform(*DEPTH_RANGE, shape)
    # Each object gets its own quadrant (in random order), jittered within it: objects rarely
    # overlap, so what a label counts is visible in the image instead of hidden behind a
    # nearer object.
    cell = rng.permuted(np.broadcast_to(np.arange(MAX_OBJECTS), shape), axis=1)
    jitter = rng.uniform(-CELL_JITTER, CELL_JITTER, (*shape, 2))
    background_colour = rng.uniform(0.2, 0.9, (count, 3))
    colour = rng.uniform(0.15, 1.0, (*shape, 3))
    # An object whose colour is close to the background's gets the opposite colour instead, so
    # every object stands out; (0.15, 1) is symmetric under c -> 1.15 - c.
    camouflaged = np.abs(colour - background_colour[:, None]).mean(axis=-1, keepdims=True) < 0.2
    colour = np.where(camouflaged, 1.15 - colour, colour)
    return {
        "active": np.arange(MAX_OBJECTS)[None, :] < rng.integers(1, MAX_OBJECTS + 1, count)[:, None],
        "kind": rng.integers(0, len(SHAPE_NAMES), shape),
        "cx": 0.25 + 0.5 * (cell % 2) + jitter[..., 0],
        "cy": 0.25 + 0.5 * (cell // 2) + jitter[..., 1],
        "depth": depth,
        # Perspective: every object has the same physical size, so its apparent size tells its
        # depth exactly (the cue ``near_object`` and the depth task rest on).
        "radius": OBJECT_RADIUS / depth,
        # Nearly upright: at 3-7 px a freely rotated square and triangle are hard to tell apart.
        "angle": rng.uniform(-MAX_ROTATION, MAX_ROTATION, shape),
        "tilt": rng.uniform(-0.6, 0.6, (*shape, 2)),
        "striped": rng.random(shape) < 0.3,
        "stripe_angle": rng.uniform(0.0, np.pi, shape),
        "stripe_phase": rng.uniform(0.0, 2 * np.pi, shape),
        "colour": colour,
        "background_depth": rng.uniform(6.5, 8.5, count),
        "background_tilt": rng.uniform(-0.5, 0.5, (count, 2)),
        "background_colour": background_colour,
        "background_wave": rng.uniform(-1.0, 1.0, (count, 2, 3)),
    }


def _object_masks(p: dict[str, np.ndarray], dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """(N, M, S, S) coverage of every object; dx, dy are pixel offsets from each object's centre."""
    radius = p["radius"][..., None, None]
    cos, sin = np.cos(p["angle"])[..., None, None], np.sin(p["angle"])[..., None, None]
    circle = dx**2 + dy**2 <= radius**2
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    square = np.maximum(np.abs(u), np.abs(v)) <= 0.8 * radius
    # Equilateral triangle with circumradius 1.35 r: three half-planes at the inradius.
    triangle = np.ones_like(circle)
    for corner in range(3):
        phi = p["angle"][..., None, None] + 2 * np.pi * corner / 3
        triangle &= dx * np.cos(phi) + dy * np.sin(phi) <= 0.675 * radius
    kind = p["kind"][..., None, None]
    mask = np.where(kind == 0, circle, np.where(kind == 1, square, triangle))
    return mask & p["active"][..., None, None]


def _object_geometry(p: dict[str, np.ndarray], dx: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Surface depth (N, M, S, S) and normals (N, M, 3, S, S): spheres bulge, polygons are tilted planes."""
    radius = p["radius"][..., None, None]
    height = np.sqrt(np.clip(radius**2 - dx**2 - dy**2, 0.0, None))
    sphere_depth = p["depth"][..., None, None] - WORLD_WIDTH * height
    sphere_normal = np.stack([dx, dy, height], axis=2) / radius[:, :, None]
    tilt_x, tilt_y = p["tilt"][..., 0][..., None, None], p["tilt"][..., 1][..., None, None]
    plane_depth = p["depth"][..., None, None] + WORLD_WIDTH * (tilt_x * dx + tilt_y * dy)
    # A surface z = f(X, Y) facing the camera has normal (df/dX, df/dY, 1), normalised.
    plane_normal = np.stack(np.broadcast_arrays(tilt_x, tilt_y, np.ones_like(tilt_x)), axis=2)
    plane_normal = plane_normal / np.linalg.norm(plane_normal, axis=2, keepdims=True)
    is_sphere = (p["kind"] == 0)[..., None, None]
    depth = np.where(is_sphere, sphere_depth, plane_depth)
    normal = np.where(is_sphere[:, :, None], sphere_normal, plane_normal)
    return depth, normal


def _pixel_centres(size: int) -> np.ndarray:
    """Pixel centres in image widths, (0.5 / size ... 1 - 0.5 / size)."""
    return (np.arange(size) + 0.5) / size


def _object_offsets(p: dict[str, np.ndarray], coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """dx, dy (N, M, S, S): every pixel's offset from every object's centre, in image widths."""
    dx = coords[None, None, None, :] - p["cx"][..., None, None]
    dy = coords[None, None, :, None] - p["cy"][..., None, None]
    return np.broadcast_arrays(dx, dy)


def _visible_pixels(front: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """(N, M) pixels each object shows after the z-buffer (``front``: nearest object per pixel)."""
    owner = np.where(covered, front, -1)  # (N, S, S), -1 = background
    return np.stack([(owner == m).sum(axis=(1, 2)) for m in range(MAX_OBJECTS)], axis=1)


def render_scenes(rng: np.random.Generator, count: int, size: int) -> Scenes:
    """Render ``count`` scenes of ``size`` x ``size`` pixels and derive all labels from them."""
    p = _sample_scene_parameters(rng, count)
    coords = _pixel_centres(size)
    dx, dy = _object_offsets(p, coords)

    mask = _object_masks(p, dx, dy)
    object_depth, object_normal = _object_geometry(p, dx, dy)

    # Z-buffer: the nearest covering object wins each pixel.
    zbuffer = np.where(mask, object_depth, np.inf)
    front = zbuffer.argmin(axis=1)  # (N, S, S)
    covered = mask.any(axis=1)
    rows = np.arange(count)[:, None, None]

    bg_tilt = p["background_tilt"]
    bg_depth = p["background_depth"][:, None, None] + WORLD_WIDTH * (
        bg_tilt[:, 0, None, None] * (coords[None, None, :] - 0.5) + bg_tilt[:, 1, None, None] * (coords[None, :, None] - 0.5)
    )
    depth = np.where(covered, np.take_along_axis(zbuffer, front[:, None], axis=1)[:, 0], bg_depth)
    bg_normal = np.concatenate([bg_tilt, np.ones((count, 1))], axis=1)
    bg_normal /= np.linalg.norm(bg_normal, axis=1, keepdims=True)
    front_normal = np.take_along_axis(object_normal, front[:, None, None].repeat(3, axis=2), axis=1)[:, 0]
    normal = np.where(covered[:, None], front_normal, bg_normal[:, :, None, None])

    segmentation = np.where(covered, p["kind"][rows, front] + 1, 0).astype(np.uint8)

    # Albedo: object colours with optional stripes; a background with a gentle two-wave texture.
    stripe_coord = dx * np.cos(p["stripe_angle"])[..., None, None] + dy * np.sin(p["stripe_angle"])[..., None, None]
    # At least 3.5 pixels per stripe period: finer stripes alias into noise at 32 px.
    period = np.maximum(0.6 * p["radius"], 3.5 / size)[..., None, None]
    stripes = np.sin(2 * np.pi * stripe_coord / period + p["stripe_phase"][..., None, None])
    stripe_factor = np.where(p["striped"][..., None, None], 0.5 + 0.5 * (stripes > 0), 1.0)
    front_stripes = np.take_along_axis(stripe_factor, front[:, None], axis=1)[:, 0]
    front_colour = p["colour"][rows, front].transpose(0, 3, 1, 2)  # (N, 3, S, S)
    wave = p["background_wave"]
    texture = 1.0 + 0.12 * np.sin(2 * np.pi * (2 * coords[None, None, :] * wave[:, 0, 0, None, None] + coords[None, :, None] * wave[:, 0, 1, None, None] + wave[:, 0, 2, None, None]))
    background = p["background_colour"][:, :, None, None] * texture[:, None]
    albedo = np.where(covered[:, None], front_colour * front_stripes[:, None], background)

    lambert = np.clip(np.einsum("ncij,c->nij", normal, LIGHT), 0.0, 1.0)
    shaded = albedo * (0.3 + 0.7 * lambert[:, None])
    fog = np.clip((depth - 1.5) / 9.0, 0.0, 0.75)[:, None]
    image = shaded * (1 - fog) + fog * FOG_RGB[None, :, None, None]
    image += rng.normal(0.0, 0.015, image.shape)
    images = np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)

    targets = _classification_labels(p, front, covered, size)
    targets["segmentation"] = segmentation
    targets["depth"] = depth.astype(np.float16)
    targets["normal"] = normal.astype(np.float16)
    return Scenes(images=images, targets=targets)


def _classification_labels(p: dict[str, np.ndarray], front: np.ndarray, covered: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Labels from what is visible, so an object hidden behind another does not count."""
    count = front.shape[0]
    owner = np.where(covered, front, -1)  # (N, S, S), -1 = background
    pixels = _visible_pixels(front, covered)
    visible = pixels >= max(2, round(0.004 * size * size))
    kind = p["kind"]
    half = size // 2
    top = (owner[:, :half] >= 0).sum(axis=(1, 2))
    bottom = (owner[:, size - half :] >= 0).sum(axis=(1, 2))

    largest = pixels.argmax(axis=1)
    largest_share = pixels.max(axis=1) / (size * size)
    rows = np.arange(count)
    labels = {
        "has_circle": (visible & (kind == 0)).any(axis=1),
        "has_square": (visible & (kind == 1)).any(axis=1),
        "has_triangle": (visible & (kind == 2)).any(axis=1),
        "has_stripes": (visible & p["striped"]).any(axis=1),
        "near_object": (visible & (p["depth"] < NEAR_DEPTH)).any(axis=1),
        "top_heavy": top > bottom,
        "count": np.clip(visible.sum(axis=1), 1, MAX_OBJECTS) - 1,
        "largest_shape": kind[rows, largest],
        "largest_size": np.digitize(largest_share, SIZE_BOUNDS),
    }
    return {name: value.astype(np.uint8) for name, value in labels.items()}


@register_dataset("shapes")
class ShapesDataset(DatasetBuilder):
    """Synthetic multi-task scenes, generated from a seed; no download (the embedded default)."""

    description = "synthetic 3-D scenes: 6 binary, 3 multiclass, segmentation, depth, normal (embedded, no download)"
    Options = ShapesOptions
    #: Scenes rendered per vectorised pass; bounds peak memory at about 60 MB for 32 px images.
    chunk = 512

    def tasks(self) -> tuple[Task, ...]:
        return SHAPES_TASKS if self.options.dense_tasks else tuple(t for t in SHAPES_TASKS if not t.is_dense)

    def prepare(self, out_dir: Path, raw_dir: Path) -> None:
        options = self.options
        size = options.image_size
        tasks = self.tasks()
        with self.writer(
            out_dir,
            tasks=tasks,
            image_shape=(3, size, size),
            crop_size=options.crop_size,
        ) as writer:
            for split_index, (split, total) in enumerate((("train", options.train_size), ("test", options.test_size))):
                # Independent streams per split: the test set does not change when train_size does.
                rng = np.random.default_rng([options.seed, split_index])
                target = writer.split(split, total)
                chunk = max(1, self.chunk * 1024 // (size * size))
                for start in range(0, total, chunk):
                    stop = min(start + chunk, total)
                    scenes = render_scenes(rng, stop - start, size)
                    target.images[start:stop] = scenes.images
                    for task in tasks:
                        target.targets[task.name][start:stop] = scenes.targets[task.name]
                target.set_ids(f"{split}-{index:06d}" for index in range(total))
