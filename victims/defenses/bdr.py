"""bdr: bit-depth reduction of every training image (Liu et al., "Image Shortcut Squeezing:
Countering Perturbative Availability Poisons with Compression", ICML 2023,
https://arxiv.org/abs/2301.13838).

Defaults: 2 bits per channel, the paper's, APBench's (torchvision ``RandomPosterize(bits=2,
p=1)``) and the MTL-UE release's setting: each uint8 value keeps its ``bits`` most significant
bits (2 bits: 0, 64, 128, 192). A deterministic split transform, applied once to the split.
"""

from __future__ import annotations

import torch

from .base import DefenseError, SplitTransform
from .registry import register_defense

__all__ = ["BitDepthReduction"]


@register_defense("bdr")
class BitDepthReduction(SplitTransform):
    def __init__(self, *, bits: int = 2) -> None:
        super().__init__()
        if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
            raise DefenseError(f"bdr bits is an integer in 1..8, got {bits!r}")
        self.bits = bits

    def transform(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise DefenseError(f"bdr takes uint8 images, got {images.dtype}")
        return images & (0xFF << (8 - self.bits) & 0xFF)
