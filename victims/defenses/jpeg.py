"""jpeg: JPEG compression of every training image (Liu et al., "Image Shortcut Squeezing: Countering
Perturbative Availability Poisons with Compression", ICML 2023, https://arxiv.org/abs/2301.13838).

Defaults: quality 10, the paper's and the MTL-UE release's setting (PIL quality 10, applied to
every training image before the crop; test images untouched), encoded with PIL as the release
does (libjpeg, PIL's default 4:2:0 chroma subsampling). A split transform: deterministic per
image, so it is applied once to the training split. Encoding runs on the CPU, one image at a
time; the result returns to the images' device. (torchvision's ``encode_jpeg`` gives the same
bytes but is deprecated since torchvision 0.29.)
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image

from .base import DefenseError, SplitTransform
from .registry import register_defense

__all__ = ["JPEGCompression"]


@register_defense("jpeg")
class JPEGCompression(SplitTransform):
    def __init__(self, *, quality: int = 10) -> None:
        super().__init__()
        if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
            raise DefenseError(f"jpeg quality is an integer in 1..100, got {quality!r}")
        self.quality = quality

    def check(self, tasks, channels: int) -> None:
        if channels not in (1, 3):
            raise DefenseError(f"jpeg compresses 1- or 3-channel images, the dataset has {channels} channels")

    def transform(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise DefenseError(f"jpeg takes uint8 (B, C, H, W) images, got {images.dtype} {tuple(images.shape)}")
        if len(images) == 0:
            return images
        pixels = images.permute(0, 2, 3, 1).cpu().numpy()
        return torch.from_numpy(np.stack([self._compress(pixel) for pixel in pixels])).permute(0, 3, 1, 2).contiguous().to(images.device)

    def _compress(self, pixels: np.ndarray) -> np.ndarray:
        grayscale = pixels.shape[-1] == 1
        image = Image.fromarray(pixels[..., 0] if grayscale else pixels)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=self.quality)
        buffer.seek(0)
        decoded = np.array(Image.open(buffer).convert("L" if grayscale else "RGB"))
        return decoded[..., None] if grayscale else decoded
