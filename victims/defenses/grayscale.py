"""grayscale: every training image to grayscale, kept as 3 channels (Liu et al., "Image Shortcut
Squeezing: Countering Perturbative Availability Poisons with Compression", ICML 2023,
https://arxiv.org/abs/2301.13838).

Defaults: the paper's, APBench's (torchvision ``Grayscale(3)``) and the MTL-UE release's
setting: ITU-R 601-2 luma in PIL's fixed-point arithmetic, ``(19595 R + 38470 G + 7471 B +
2^15) >> 16``, repeated on the 3 channels, so the network is unchanged. Only RGB datasets: on a
1-channel dataset it would do nothing and is refused. A deterministic split transform.
"""

from __future__ import annotations

import torch

from .base import DefenseError, SplitTransform
from .registry import register_defense

__all__ = ["Grayscale"]


@register_defense("grayscale")
class Grayscale(SplitTransform):
    def check(self, tasks, channels: int) -> None:
        if channels != 3:
            raise DefenseError(f"grayscale converts RGB images; the dataset has {channels} channel(s), so it would change nothing")

    def transform(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise DefenseError(f"grayscale takes uint8 (B, 3, H, W) images, got {images.dtype} {tuple(images.shape)}")
        red, green, blue = images.int().unbind(dim=1)
        luma = ((19595 * red + 38470 * green + 7471 * blue + (1 << 15)) >> 16).to(torch.uint8)
        return luma[:, None].expand(-1, 3, -1, -1).contiguous()
