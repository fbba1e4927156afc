"""Multi-task adaptations of class-wise perturbations (MTL-UE, reference section 3).

A class-wise method gives one pattern per class of one task. With K classification tasks a
sample has K labels, and the MTL-UE release combines the K patterns of its labels in one of two
ways (its ``perturb_type`` values):

- ``grid`` (``classwise_patch_K``): the image is cut into N x N cells, N = 2^ceil(log2 ceil(sqrt K)),
  and cell k (row-major) holds task k's pattern for the sample's label, subsampled into the cell
  (a pattern drawn at the cell's own size goes in as it is); cells beyond K stay zero. Each task gets 1/N^2 of the image, the "patch shrinks as K grows"
  effect the paper points out.
- ``average`` (``classwise_spatial_K``): delta = (1/K) sum_k p^k_{y^k} over full-image patterns.
  Averaging K independent patterns shrinks the result by about sqrt(K); the release does not
  rescale it, and neither do we.

Patterns come in at the stored resolution (the victim crops later), as floats in units of the
budget (|p| <= 1), and leave as int8 steps of 1/255 within +-epsilon.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from mtlue.poisons import quantize

__all__ = ["ADAPTATIONS", "grid_size", "grid_cells", "subsample", "compose_grid", "compose_average"]

ADAPTATIONS = ("grid", "average")
#: Float elements held at once while averaging (about 32 MB), whatever the dataset's size.
_AVERAGE_CHUNK_ELEMENTS = 1 << 22


def grid_size(tasks: int) -> int:
    """N = 2^ceil(log2(ceil(sqrt(K)))): the smallest power-of-two grid with at least K cells."""
    if isinstance(tasks, bool) or not isinstance(tasks, int) or tasks < 1:
        raise ValueError(f"the grid needs at least one task, got {tasks!r}")
    side = math.isqrt(tasks - 1) + 1  # ceil(sqrt(K)) in exact integer arithmetic
    return 1 << (side - 1).bit_length()  # next power of two >= side


def grid_cells(height: int, width: int, tasks: int) -> list[tuple[slice, slice]]:
    """(rows, columns) of the first ``tasks`` cells of the N x N grid, row-major.

    Cell edges are floor(i * size / N), so cells differ by at most one pixel when N does not
    divide the image (70 px CelebA images in an 8 x 8 grid get cells of 8 and 9 px).
    """
    side = grid_size(tasks)
    if side > min(height, width):
        raise ValueError(
            f"{tasks} tasks need a {side}x{side} grid, more cells than the {height}x{width} image has "
            f"pixels per side; use adaptation='average'"
        )
    rows = [index * height // side for index in range(side + 1)]
    columns = [index * width // side for index in range(side + 1)]
    return [
        (slice(rows[cell // side], rows[cell // side + 1]), slice(columns[cell % side], columns[cell % side + 1]))
        for cell in range(tasks)
    ]


def subsample(patterns: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour subsampling of (..., H, W) patterns to (height, width).

    Picks source pixel floor(i * H / height) (torch's 'nearest'), i.e. every N-th pixel when
    N divides the image, as the release's grid does.
    """
    source_height, source_width = patterns.shape[-2:]
    rows = (np.arange(height) * source_height) // height
    columns = (np.arange(width) * source_width) // width
    return patterns[..., rows[:, None], columns[None, :]]


def compose_grid(
    patterns: Sequence[np.ndarray], labels: Sequence[np.ndarray], image_shape: tuple[int, int, int], epsilon: int
) -> np.ndarray:
    """int8 deltas (N, C, H, W): cell k holds ``patterns[k][labels[k][i]]`` subsampled into it.

    ``patterns[k]`` is (classes of task k, C, h, w) with |p| <= 1, drawn at the image's size or
    at cell k's; ``labels[k]`` is (N,).
    """
    _check_inputs(patterns, labels, image_shape, same_size=False)
    channels, height, width = image_shape
    deltas = np.zeros((len(labels[0]), channels, height, width), dtype=np.int8)
    for (rows, columns), task_patterns, task_labels in zip(
        grid_cells(height, width, len(patterns)), patterns, labels, strict=True
    ):
        cell_height, cell_width = rows.stop - rows.start, columns.stop - columns.start
        # Quantise the few patterns once, then copy int8 cells: no float array of dataset size.
        cells = quantize(subsample(task_patterns, cell_height, cell_width) * (epsilon / 255.0), epsilon)
        deltas[:, :, rows, columns] = cells[np.asarray(task_labels, dtype=np.intp)]
    return deltas


def compose_average(
    patterns: Sequence[np.ndarray], labels: Sequence[np.ndarray], image_shape: tuple[int, int, int], epsilon: int
) -> np.ndarray:
    """int8 deltas (N, C, H, W) = quantize(epsilon/255 * mean_k patterns[k][labels[k][i]])."""
    _check_inputs(patterns, labels, image_shape, same_size=True)
    samples = len(labels[0])
    deltas = np.zeros((samples, *image_shape), dtype=np.int8)
    chunk = max(1, _AVERAGE_CHUNK_ELEMENTS // math.prod(image_shape))
    scale = epsilon / (255.0 * len(patterns))
    for start in range(0, samples, chunk):
        stop = min(start + chunk, samples)
        total = np.zeros((stop - start, *image_shape), dtype=np.float64)
        for task_patterns, task_labels in zip(patterns, labels, strict=True):
            total += task_patterns[np.asarray(task_labels[start:stop], dtype=np.intp)]
        deltas[start:stop] = quantize(total * scale, epsilon)
    return deltas


def _check_inputs(
    patterns: Sequence[np.ndarray], labels: Sequence[np.ndarray], image_shape: tuple[int, int, int], *, same_size: bool
) -> None:
    if not patterns or len(patterns) != len(labels):
        raise ValueError(f"need one pattern set per task: {len(patterns)} pattern sets, {len(labels)} label arrays")
    if len({len(task_labels) for task_labels in labels}) != 1:
        raise ValueError("every task needs one label per sample")
    for task_patterns, task_labels in zip(patterns, labels, strict=True):
        shape = tuple(task_patterns.shape[1:]) if task_patterns.ndim == 4 else ()
        fits = shape == tuple(image_shape) if same_size else shape[:1] == tuple(image_shape[:1])
        if not fits:
            raise ValueError(f"patterns of shape {task_patterns.shape} do not match images of shape {image_shape}")
        if len(task_labels) and int(np.max(task_labels)) >= len(task_patterns):
            raise ValueError(f"label {int(np.max(task_labels))} has no pattern ({len(task_patterns)} classes)")
