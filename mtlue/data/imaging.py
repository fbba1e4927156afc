"""Image decoding, cropping and resizing shared by the dataset builders.

All builders decode with PIL and resize with PIL's bilinear filter (what torchvision's
``Resize`` does on PIL images, and so what the MTL-UE release applied), so one dataset's
preprocessing differs from another's only in the crop and the sizes it names.

``write_images`` streams decoded images into the writer's memory-mapped arrays a chunk at a time
(CelebA has 200k images: they are never held in a Python list). Decoding runs in a thread pool,
since PIL releases the GIL while it decodes and resamples.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np
from PIL import Image

from mtlue.logs import progress_bar

from .store import DatasetError

__all__ = [
    "EncodedImage",
    "ImageJob",
    "ImageSource",
    "center_crop",
    "nearest_resize",
    "open_image",
    "resize",
    "source_name",
    "to_array",
    "write_images",
]

logger = logging.getLogger(__name__)

RESAMPLE = Image.Resampling.BILINEAR
_SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L")


@dataclass(frozen=True)
class EncodedImage:
    """An image file's bytes read from an archive, with the name to report if it fails to decode."""

    name: str
    data: bytes


ImageSource = Path | EncodedImage
#: (split, index in that split, source): where one decoded image goes.
ImageJob = tuple[str, int, ImageSource]


def source_name(source: ImageSource) -> str:
    return source.name if isinstance(source, EncodedImage) else str(source)


def open_image(source: ImageSource, mode: str) -> Image.Image:
    """Decode an image file and convert it to ``mode`` ("L" or "RGB").

    RGBA and palette images are converted by PIL (alpha dropped); 16-bit grayscale is scaled
    to 8 bits by its top byte, where PIL's own conversion would clip everything above 255.
    """
    handle = io.BytesIO(source.data) if isinstance(source, EncodedImage) else source
    try:
        with Image.open(handle) as image:
            image.load()
            if image.mode in _SIXTEEN_BIT_MODES:
                eight_bit = (np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8)
                return Image.fromarray(eight_bit, mode="L").convert(mode)
            return image.convert(mode)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise DatasetError(
            f"cannot decode image {source_name(source)} ({error}); the file is damaged or not an "
            f"image: replace it with a good copy from the dataset's source"
        ) from None


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """The central ``size`` x ``size`` square, with torchvision's ``CenterCrop`` rounding."""
    width, height = image.size
    if size > width or size > height:
        raise DatasetError(f"cannot centre-crop {size}x{size} from a {width}x{height} image")
    top = round((height - size) / 2.0)
    left = round((width - size) / 2.0)
    return image.crop((left, top, left + size, top + size))


def resize(image: Image.Image, height: int, width: int) -> Image.Image:
    """Bilinear (antialiased) resize to ``height`` x ``width``; a no-op at that size already."""
    if image.size == (width, height):
        return image
    return image.resize((width, height), RESAMPLE)


def to_array(image: Image.Image) -> np.ndarray:
    """A PIL image as uint8 (C, H, W)."""
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        return array[None]
    return np.ascontiguousarray(array.transpose(2, 0, 1))


def nearest_resize(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a dense label map (H, W, ...) by nearest neighbour on its first two axes.

    Labels, missing-depth zeros and unit normals must not be interpolated (a blend of two class
    ids or of a depth and a hole is meaningless), so every dense target is sampled at the source
    pixel whose centre is nearest to the target pixel's centre.
    """
    source_height, source_width = array.shape[:2]
    rows = np.minimum(((np.arange(height) + 0.5) * source_height / height).astype(np.int64), source_height - 1)
    cols = np.minimum(((np.arange(width) + 0.5) * source_width / width).astype(np.int64), source_width - 1)
    return array[rows[:, None], cols[None, :]]


def default_workers() -> int:
    """Decoding threads: the CPUs this process may use (a cluster job's allocation), at most 8."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(8, available))


def write_images(
    destinations: Mapping[str, np.ndarray],
    jobs: Iterable[ImageJob],
    transform: Callable[[ImageSource], np.ndarray],
    *,
    description: str,
    chunk_size: int = 256,
    workers: int | None = None,
) -> dict[str, np.ndarray]:
    """Decode every job with ``transform`` and write it to ``destinations[split][index]``.

    ``jobs`` is consumed lazily in the calling thread (so it may read from an open archive),
    ``chunk_size`` at a time; only one chunk of decoded images is in memory at once. Returns,
    per split, a boolean mask of the indices that were written, so a caller whose jobs come from
    an archive can report the images it never found.
    """
    written = {split: np.zeros(len(array), dtype=bool) for split, array in destinations.items()}
    total = sum(len(array) for array in destinations.values())
    done = 0
    next_report = 0
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool, progress_bar(total=total, desc=description, unit="image") as bar:
        for chunk in _chunks(iter(jobs), chunk_size):
            arrays = pool.map(transform, [source for _, _, source in chunk])
            for (split, index, _), array in zip(chunk, arrays, strict=True):
                destinations[split][index] = array
                written[split][index] = True
            done += len(chunk)
            bar.update(len(chunk))
            if done >= next_report:
                logger.info("%s: %d/%d images", description, done, total)
                next_report = done + max(chunk_size, total // 20)
    return written


def _chunks(jobs: Iterator[ImageJob], size: int) -> Iterator[list[ImageJob]]:
    while chunk := list(islice(jobs, size)):
        yield chunk
