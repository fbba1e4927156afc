"""``photodigits``: handwritten digits drawn over photographs, the embedded default dataset.

Real images that an installed package ships, so the dataset needs no download: the 1,797
handwritten digits of scikit-learn (``sklearn.datasets.load_digits``: 8 x 8 scans of 43 writers,
UCI "Optical Recognition of Handwritten Digits") drawn in a random colour over random crops of
scikit-learn's two sample photographs (``load_sample_images``: a Chinese temple and a flower,
427 x 640). This is the construction of MNIST-M (Ganin & Lempitsky, "Unsupervised Domain
Adaptation by Backpropagation", ICML 2015), which blends MNIST digits into BSDS500 photo crops.

Why this and not the ``shapes`` scenes: an unlearnable example works when its perturbation is a
feature the victim learns faster than the real one. Plain digits on a black background are learned
in a few dozen steps (a linear model reaches 96 %), as fast as any 8/255 shortcut, and the shapes'
large saturated cues likewise; then no method protects anything. Over photographs, with colours
drawn independently of the background, a network must separate the stroke from natural-image
clutter, which takes it hundreds of steps (as on SVHN or CIFAR-10), and the literature's effect
appears: class-wise and error-minimizing noise at 8/255 bring a fitted victim far below its clean
accuracy while the clean victim reaches 85-95 % (see the README's sanity table).

Rendering, per image: a square crop of a random photograph, 1-3 times the image size, resized to
the image (bilinear); the digit scan scaled to 55-80 % of the image side (bilinear) at a random
position; the stroke's colour uniform in RGB; pixel = background * (1 - a) + colour * a, with a
the scan's ink (0-16 mapped to [0, 1]). A flip changes no label's meaning (a mirrored digit is
still that digit for the victim, as for every flip-augmented digit model); a crop of 28 of 32 px
never cuts more than a sliver of the stroke.

Tasks (the same digit gives every label, as CelebA's attributes share a face):

- ``digit``: the class, 10 classes (as UTKFace's multiclass tasks);
- binary attributes of the digit (as CelebA's 40): ``even``; ``large`` (5-9); ``loop`` (a closed
  loop in the usual glyph: 0, 6, 8, 9); ``prime`` (2, 3, 5, 7).

Splits: the digits are split once, by ``seed``, into ``test_digits`` test digits and the rest
for training, so no test digit was ever seen in training, whatever its background. Every
training digit is rendered ``renders`` times (new photo crop, position, size and colour each
time), every test digit once. Everything is a deterministic function of the seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .registry import DatasetBuilder, register_dataset
from .store import DatasetError
from .tasks import Task, TaskKind

__all__ = ["PHOTODIGITS_TASKS", "PhotoDigitsDataset", "PhotoDigitsOptions", "render_digits"]

#: The scans' ink levels run from 0 to this.
INK_LEVELS = 16.0
#: Side of the photo crop, as a multiple of the image side.
BACKGROUND_SCALE = (1.0, 3.0)
#: Side of the digit, as a share of the image side.
DIGIT_SCALE = (0.55, 0.80)

PHOTODIGITS_TASKS: tuple[Task, ...] = (
    Task("digit", TaskKind.MULTICLASS, 10, class_names=tuple(str(digit) for digit in range(10))),
    Task("even", TaskKind.BINARY, 2),
    Task("large", TaskKind.BINARY, 2),
    Task("loop", TaskKind.BINARY, 2),
    Task("prime", TaskKind.BINARY, 2),
)
_ATTRIBUTES = {
    "digit": lambda digits: digits,
    "even": lambda digits: digits % 2 == 0,
    "large": lambda digits: digits >= 5,
    "loop": lambda digits: np.isin(digits, (0, 6, 8, 9)),
    "prime": lambda digits: np.isin(digits, (2, 3, 5, 7)),
}


@dataclass(frozen=True)
class PhotoDigitsOptions:
    """Options of the ``photodigits`` dataset (defaults: the embedded default's)."""

    image_size: int = 32
    crop_size: int = 28
    #: Training images per training digit, each drawn anew.
    renders: int = 4
    #: Digits held out for the test split (of the 1,797), each rendered once.
    test_digits: int = 597
    seed: int = 0

    def __post_init__(self) -> None:
        if not 16 <= self.image_size <= 256:
            raise ValueError(f"image_size must be in 16..256, got {self.image_size}")
        if not 8 <= self.crop_size <= self.image_size:
            raise ValueError(f"crop_size must be in 8..image_size ({self.image_size}), got {self.crop_size}")
        if self.renders < 1:
            raise ValueError(f"renders must be at least 1, got {self.renders}")
        if not 1 <= self.test_digits <= 1000:
            raise ValueError(f"test_digits must be in 1..1000 (of 1,797 digits, the rest train), got {self.test_digits}")


def _load_sources() -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """The digit scans (N, 8, 8) in [0, 16], their classes, and the sample photographs."""
    try:
        from sklearn.datasets import load_digits, load_sample_images
    except ImportError as error:  # a core dependency; only a broken install lands here
        raise DatasetError(f"photodigits needs scikit-learn ({error}); reinstall mtlue: pip install -e .") from None
    digits = load_digits()
    return np.asarray(digits.images), np.asarray(digits.target), list(load_sample_images().images)


def render_digits(scans: np.ndarray, photos: list[np.ndarray], size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 images (N, 3, size, size): each scan in a random colour over a random photo crop."""
    from PIL import Image

    out = np.empty((len(scans), 3, size, size), dtype=np.uint8)
    bilinear = Image.Resampling.BILINEAR
    for index, scan in enumerate(scans):
        photo = photos[rng.integers(len(photos))]
        side = int(size * rng.uniform(*BACKGROUND_SCALE))
        top = rng.integers(0, photo.shape[0] - side + 1)
        left = rng.integers(0, photo.shape[1] - side + 1)
        crop = Image.fromarray(photo[top : top + side, left : left + side])
        background = np.asarray(crop.resize((size, size), bilinear), dtype=np.float32)
        glyph_side = int(rng.integers(round(size * DIGIT_SCALE[0]), round(size * DIGIT_SCALE[1]) + 1))
        ink = Image.fromarray(np.round(scan / INK_LEVELS * 255).astype(np.uint8))
        glyph = np.asarray(ink.resize((glyph_side, glyph_side), bilinear), dtype=np.float32) / 255.0
        alpha = np.zeros((size, size, 1), dtype=np.float32)
        row, column = rng.integers(0, size - glyph_side + 1, 2)
        alpha[row : row + glyph_side, column : column + glyph_side, 0] = glyph
        colour = rng.uniform(0.0, 255.0, 3).astype(np.float32)
        image = background * (1.0 - alpha) + colour * alpha
        out[index] = np.clip(np.round(image), 0, 255).astype(np.uint8).transpose(2, 0, 1)
    return out


@register_dataset("photodigits")
class PhotoDigitsDataset(DatasetBuilder):
    """scikit-learn's handwritten digits in random colours over photo crops (MNIST-M style)."""

    description = "handwritten digits over photographs (scikit-learn's digits and sample images, MNIST-M style): digit + 4 binary attributes"
    Options = PhotoDigitsOptions

    def prepare(self, out_dir: Path, raw_dir: Path) -> None:
        options = self.options
        scans, classes, photos = _load_sources()
        order = np.random.default_rng([options.seed, 0]).permutation(len(scans))
        test_index, train_index = order[: options.test_digits], order[options.test_digits :]
        splits = {"train": np.repeat(train_index, options.renders), "test": test_index}
        size = options.image_size
        with self.writer(out_dir, tasks=PHOTODIGITS_TASKS, image_shape=(3, size, size), crop_size=options.crop_size) as writer:
            for split_number, (split, index) in enumerate(splits.items(), start=1):
                # One stream per split: the test images do not change when `renders` does.
                rng = np.random.default_rng([options.seed, split_number])
                target = writer.split(split, len(index))
                target.images[:] = render_digits(scans[index], photos, size, rng)
                for task in PHOTODIGITS_TASKS:
                    target.targets[task.name][:] = _ATTRIBUTES[task.name](classes[index])
                copies = np.arange(len(index)) % options.renders if split == "train" else np.zeros(len(index), int)
                target.set_ids(f"digit{digit:04d}-render{copy}" for digit, copy in zip(index, copies))
