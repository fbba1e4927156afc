"""gaussian: Gaussian blur of every training image (the blur defense of APBench, Qin et al.,
"APBench: A Unified Benchmark for Availability Poisoning Attacks and Defenses", 2023,
https://arxiv.org/abs/2306.03528).

Defaults: a 3 x 3 kernel with sigma 1.0 applied to the uint8 image before the crop (reflect
padding, result rounded to uint8). APBench's own setting is torchvision's ``GaussianBlur(3,
sigma=0.1)``; we do not default to it because at sigma 0.1 the off-centre taps weigh
exp(-50) ~ 2e-22, so on uint8 images it changes no pixel and its "gaussian" row is plain
training. ``--defense-set sigma=0.1`` reproduces it. A deterministic split transform, applied
once to the training split."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import DefenseError, SplitTransform
from .registry import register_defense

__all__ = ["GaussianBlur"]


@register_defense("gaussian")
class GaussianBlur(SplitTransform):
    def __init__(self, *, kernel_size: int = 3, sigma: float = 1.0) -> None:
        super().__init__()
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise DefenseError(f"gaussian kernel_size is a positive odd integer, got {kernel_size!r}")
        if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
            raise DefenseError(f"gaussian sigma is a positive number, got {sigma!r}")
        self.kernel_size = kernel_size
        self.sigma = float(sigma)

    def kernel(self) -> torch.Tensor:
        offsets = torch.arange(self.kernel_size, dtype=torch.float64) - self.kernel_size // 2
        weights = torch.exp(-0.5 * (offsets / self.sigma) ** 2)
        return weights / weights.sum()

    def transform(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise DefenseError(f"gaussian takes uint8 (B, C, H, W) images, got {images.dtype} {tuple(images.shape)}")
        half = self.kernel_size // 2
        if half >= min(images.shape[-2:]):
            raise DefenseError(f"gaussian kernel_size {self.kernel_size} is too large for {tuple(images.shape[-2:])} images")
        channels = images.shape[1]
        weights = self.kernel().float().to(images.device)
        blurred = F.pad(images.float(), (half, half, half, half), mode="reflect")
        # Separable: rows, then columns, each a depthwise convolution.
        blurred = F.conv2d(blurred, weights.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
        blurred = F.conv2d(blurred, weights.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
        return blurred.round_().clamp_(0, 255).to(torch.uint8)
