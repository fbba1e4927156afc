"""jpeg: JPEG compression of every training image (Liu et al., "Image Shortcut Squeezing: Countering
Perturbative Availability Poisons with Compression", ICML 2023, https://arxiv.org/abs/2301.13838).

Defaults: quality 10, the paper's and the MTL-UE release's setting (PIL quality 10, applied to
every training image before the crop; test images untouched). torchvision's libjpeg encoder
with 4:2:0 chroma subsampling gives byte-identical images to PIL's at the same quality. A
split transform: deterministic per image, so it is applied once to the training split.
Encoding runs on the CPU (one image at a time inside libjpeg); the result returns to the
images' device.
"""

from __future__ import annotations

import torch
from torchvision.io import decode_jpeg, encode_jpeg

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
        encoded = encode_jpeg(list(images.cpu()), quality=self.quality)
        return torch.stack(decode_jpeg(encoded)).to(images.device)
