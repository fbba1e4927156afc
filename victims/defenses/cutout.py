"""cutout: a zeroed square per training image (DeVries & Taylor, "Improved Regularization of
Convolutional Neural Networks with Cutout", 2017, https://arxiv.org/abs/1708.04552).

Defaults: a square of half the crop's side (the paper's 16 px on 32 px CIFAR-10, and APBench's
``Cutout(16)``), centred on a uniformly drawn pixel and clipped at the borders (so it may be
partly outside, as in the paper), filled with 0 after the crop, on every image. Each sample
draws its own centre.

Dense tasks: the targets are left as they are. Cutout occludes the input, it does not move any
pixel, so the target of an occluded pixel is still its true value (as a classification label
stays the label of an occluded object); the network learns to infer it from the context.
"""

from __future__ import annotations

import math

import torch

from .base import BatchAugmentation, DefenseError, StepContext, StepRandom, Targets
from .registry import register_defense

__all__ = ["Cutout", "square_masks"]


def square_masks(
    batch: int, height: int, width: int, side: int, random: StepRandom, device: torch.device
) -> torch.Tensor:
    """Boolean (B, H, W) masks of ``side`` x ``side`` squares at per-sample uniform centres, clipped."""
    generator = random.device
    centre_rows = torch.randint(0, height, (batch,), generator=generator, device=device)
    centre_columns = torch.randint(0, width, (batch,), generator=generator, device=device)
    top, left = centre_rows - side // 2, centre_columns - side // 2
    rows = torch.arange(height, device=device)[None, :]
    columns = torch.arange(width, device=device)[None, :]
    inside_rows = (rows >= top[:, None]) & (rows < top[:, None] + side)
    inside_columns = (columns >= left[:, None]) & (columns < left[:, None] + side)
    return inside_rows[:, :, None] & inside_columns[:, None, :]


@register_defense("cutout")
class Cutout(BatchAugmentation):
    def __init__(self, *, size: float = 0.5) -> None:
        super().__init__()
        if not (isinstance(size, (int, float)) and not isinstance(size, bool) and math.isfinite(size) and 0 < size <= 1):
            raise DefenseError(f"cutout size is the square's side as a fraction of the crop's, in (0, 1], got {size!r}")
        self.size = float(size)

    def augment(self, images: torch.Tensor, targets: Targets, random: StepRandom, context: StepContext) -> tuple[torch.Tensor, Targets]:
        batch, _, height, width = images.shape
        side = max(1, round(self.size * min(height, width)))
        masks = square_masks(batch, height, width, side, random, images.device)
        return images.masked_fill(masks[:, None], 0.0), targets
