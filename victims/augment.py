"""Training and test views of a batch, computed on the device, images and dense targets together.

The paper's standard augmentation (MTL-UE Sec. 5): a random crop to the dataset's crop size and
a random horizontal flip for training, a centre crop for testing, no padding and no mean/std
normalisation. Each sample draws its own crop offset and flip (the release draws one per batch
during generation, a defect we do not copy), and every dense target of the sample is cropped
and flipped with its image: segmentation and depth move with the pixels, and a flipped normal
map also negates its x component, since x points to the right.

Images stay uint8 until :func:`to_unit_range` turns the final crop into floats in [0, 1].
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from mtlue.data.tasks import Task, TaskKind

__all__ = ["CenterCrop", "RandomCropFlip", "crop_windows", "to_unit_range"]

Batch = tuple[torch.Tensor, dict[str, torch.Tensor]]


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1] (no normalisation, as in the paper)."""
    return images.float().div_(255.0)


def crop_windows(
    maps: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, flips: torch.Tensor, size: int
) -> torch.Tensor:
    """Per-sample ``size`` x ``size`` windows of ``maps`` (B, ..., H, W), mirrored where ``flips``.

    One gather for the whole batch: sample b takes rows ``tops[b] + i`` and columns
    ``lefts[b] + j`` (or ``lefts[b] + size - 1 - j`` when flipped).
    """
    batch, height, width = maps.shape[0], maps.shape[-2], maps.shape[-1]
    offsets = torch.arange(size, device=maps.device)
    rows = tops[:, None] + offsets
    columns = lefts[:, None] + torch.where(flips[:, None], size - 1 - offsets, offsets)
    flat = maps.reshape(batch, -1, height, width)
    samples = torch.arange(batch, device=maps.device)[:, None, None]
    # Advanced indices around a slice put the indexed dims first: (B, size, size, channels).
    windows = flat[samples, :, rows[:, :, None], columns[:, None, :]]
    # contiguous(): the permuted view is channels-last, which sends CPU batch norm to a slow path.
    return windows.permute(0, 3, 1, 2).reshape(*maps.shape[:-2], size, size).contiguous()


class _Cropper:
    def __init__(self, tasks: Sequence[Task], crop_size: int) -> None:
        if crop_size < 1:
            raise ValueError(f"crop size must be positive, got {crop_size}")
        self.crop_size = crop_size
        self.dense = tuple(task.name for task in tasks if task.is_dense)
        self.normals = tuple(task.name for task in tasks if task.kind is TaskKind.NORMAL)

    def _apply(
        self, images: torch.Tensor, targets: Mapping[str, torch.Tensor], tops: torch.Tensor, lefts: torch.Tensor, flips: torch.Tensor
    ) -> Batch:
        size = self.crop_size
        out_images = crop_windows(images, tops, lefts, flips, size)
        out_targets = dict(targets)
        for name in self.dense:
            out_targets[name] = crop_windows(targets[name], tops, lefts, flips, size)
        for name in self.normals:
            normal = out_targets[name]
            sign = torch.where(flips, -1.0, 1.0).to(normal.dtype)
            out_targets[name] = torch.cat([normal[:, :1] * sign[:, None, None, None], normal[:, 1:]], dim=1)
        return out_images, out_targets

    def _check(self, images: torch.Tensor) -> tuple[int, int]:
        height, width = images.shape[-2:]
        if height < self.crop_size or width < self.crop_size:
            raise ValueError(f"cannot crop {self.crop_size} px from {height}x{width} images")
        return height, width


class RandomCropFlip(_Cropper):
    """Random ``crop_size`` crop and (optionally) horizontal flip, drawn per sample from ``generator``.

    The offsets and flips are drawn on the CPU from the caller's generator (a few integers per
    batch), so the augmentation stream is the same on every device and is saved with checkpoints.
    """

    def __init__(self, tasks: Sequence[Task], crop_size: int, *, flip: bool = True) -> None:
        super().__init__(tasks, crop_size)
        self.flip = flip

    def __call__(self, images: torch.Tensor, targets: Mapping[str, torch.Tensor], generator: torch.Generator) -> Batch:
        height, width = self._check(images)
        batch = images.shape[0]
        tops = torch.randint(0, height - self.crop_size + 1, (batch,), generator=generator)
        lefts = torch.randint(0, width - self.crop_size + 1, (batch,), generator=generator)
        if self.flip:
            flips = torch.rand(batch, generator=generator) < 0.5
        else:
            flips = torch.zeros(batch, dtype=torch.bool)
        device = images.device
        return self._apply(images, targets, tops.to(device), lefts.to(device), flips.to(device))


class CenterCrop(_Cropper):
    """The test view: the central ``crop_size`` window (torchvision's rounding), no flip."""

    def __call__(self, images: torch.Tensor, targets: Mapping[str, torch.Tensor]) -> Batch:
        height, width = self._check(images)
        size = self.crop_size
        top = round((height - size) / 2)
        left = round((width - size) / 2)
        rows, columns = slice(top, top + size), slice(left, left + size)
        out_targets = dict(targets)
        for name in self.dense:
            out_targets[name] = targets[name][..., rows, columns]
        return images[..., rows, columns], out_targets
