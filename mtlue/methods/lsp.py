"""``lsp``: linearly separable synthetic perturbations.

Da Yu, Huishuai Zhang, Wei Chen, Jian Yin, Tie-Yan Liu. "Availability Attacks Create Shortcuts".
KDD 2022. https://arxiv.org/abs/2111.00898 (code: github.com/dayu11/Availability-Attacks-Create-Shortcuts,
synthetic_perturbations/cifar_train.py).

The paper's recipe: draw low-dimensional points from Gaussian clusters, one cluster per class,
with ``sklearn.datasets.make_classification`` (every feature informative, one cluster per class,
``class_sep=10``, no label noise); the feature vector of a point is a grid of ``patch_size`` x
``patch_size`` blocks per channel, upsampled to the image by repeating each value over its block;
then the noise is scaled into the budget. Data shaped like this is linearly separable, which is
the shortcut a network learns instead of the task.

Per (task, class) we draw one point, as the class-wise tensors MTL-UE consumes hold one pattern
per class:

- the class mean is ``class_sep`` times a random vertex of the hypercube {-1, +1}^d, distinct
  for every class of the task (make_classification's cluster centroids);
- the point is drawn from N(mean, I). make_classification also mixes the features with a random
  d x d matrix; we leave that out: one point per class needs no cluster shape, and d is 1,024
  for ChestX-ray14's 256 px images;
- upsampled by repetition and cropped to the stored image size, as the release does.

Defaults from the paper: ``patch_size`` 8 (CIFAR, 32 px images) and ``class_sep`` 10. The release
scales each noise to the L2 norm of an L-inf ball's corner (sqrt(d) * 6/255), which can exceed
the L-inf bound; this benchmark's budget is L-inf 8/255, so each pattern is scaled to max |p| = 1
and the multi-task adaptation multiplies by epsilon and rounds (``quantize``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .base import MethodError
from .classwise import ClasswiseHyperparameters, ClasswiseMethod
from .registry import register_method

__all__ = ["LSPHyperparameters", "LSPMethod"]


@dataclass(frozen=True)
class LSPHyperparameters(ClasswiseHyperparameters):
    #: Side of the constant blocks, in stored pixels (paper: 8 at 32 px).
    patch_size: int = 8
    #: Distance of the class means from the origin along every feature (make_classification's class_sep).
    class_sep: float = 10.0

    def __post_init__(self) -> None:
        if self.patch_size < 1:
            raise ValueError(f"patch_size must be at least 1 pixel, got {self.patch_size}")
        if not self.class_sep > 0:
            raise ValueError(f"class_sep must be positive, got {self.class_sep}")


@register_method("lsp")
class LSPMethod(ClasswiseMethod):
    """Class-wise block patterns from well separated Gaussian clusters (Yu et al., KDD 2022)."""

    description = "linearly separable synthetic patches, one per task and class (Yu et al., KDD 2022)"
    Hyperparameters = LSPHyperparameters

    def class_patterns(self, rng: np.random.Generator, classes: int, shape: tuple[int, int, int], epsilon: int) -> np.ndarray:
        channels, height, width = shape
        size = self.hyperparameters.patch_size
        block_rows, block_columns = math.ceil(height / size), math.ceil(width / size)
        features = channels * block_rows * block_columns
        if features < math.log2(classes):
            raise MethodError(
                f"method 'lsp': {features} block value(s) per pattern cannot separate {classes} classes "
                f"(patch_size {size} on {height}x{width} images); lower patch_size"
            )
        vertices = _distinct_vertices(rng, classes, features)
        points = self.hyperparameters.class_sep * vertices + rng.standard_normal((classes, features))
        blocks = points.reshape(classes, channels, block_rows, block_columns)
        patterns = np.repeat(np.repeat(blocks, size, axis=2), size, axis=3)[:, :, :height, :width]
        return patterns / np.abs(patterns).max(axis=(1, 2, 3), keepdims=True)


def _distinct_vertices(rng: np.random.Generator, count: int, dimension: int) -> np.ndarray:
    """``count`` distinct random vertices of {-1, +1}^dimension (the caller checks 2^d >= count)."""
    while True:
        vertices = rng.choice(np.array([-1.0, 1.0]), size=(count, dimension))
        if len(np.unique(vertices, axis=0)) == count:
            return vertices
