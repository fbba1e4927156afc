"""cutmix: a box of one training image pasted into another (Yun et al., "CutMix: Regularization
Strategy to Train Strong Classifiers with Localizable Features", ICCV 2019,
https://arxiv.org/abs/1905.04899).

Defaults: lambda ~ Beta(alpha, alpha) with alpha = 1, a box of side ``sqrt(1 - lambda)`` times
the crop's, centred uniformly and clipped, one box and one lambda per batch with a random
pairing, as the paper's implementation; lambda is then recomputed from the clipped box's area.
Applied to every batch (``prob = 1``, APBench's kornia ``RandomCutMixV2`` default; the paper
used 0.5 on CIFAR).

Multi-task targets: dense targets are pasted with the same box, so every pixel's target is the
target of the image it now shows (segmentation labels, including ignored pixels, depth and
normals move exactly; nothing is interpolated), and their losses are the plain losses on the
pasted maps. Classification losses are mixed by the box's area ratio,
``L_t = lam * L_t(out, y_a) + (1 - lam) * L_t(out, y_b)`` with ``lam`` = the share of the
image that is still image a, as in the paper.
"""

from __future__ import annotations

import math

import torch

from .base import DefenseError, LossMix, StepBatch, StepContext, StepRandom, Targets, TrainingProcedure
from .registry import register_defense

__all__ = ["CutMix"]


@register_defense("cutmix")
class CutMix(TrainingProcedure):
    def __init__(self, *, alpha: float = 1.0, prob: float = 1.0) -> None:
        super().__init__()
        if not (isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and math.isfinite(alpha) and alpha > 0):
            raise DefenseError(f"cutmix alpha is a positive number (lambda ~ Beta(alpha, alpha)), got {alpha!r}")
        if not (isinstance(prob, (int, float)) and not isinstance(prob, bool) and 0 <= prob <= 1):
            raise DefenseError(f"cutmix prob is the chance that a batch is mixed, in [0, 1], got {prob!r}")
        self.alpha = float(alpha)
        self.prob = float(prob)

    def box(self, height: int, width: int, random: StepRandom) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) of the clipped box, drawn from the step's numpy stream."""
        lam = random.numpy.beta(self.alpha, self.alpha)
        ratio = math.sqrt(1.0 - lam)
        box_height, box_width = int(height * ratio), int(width * ratio)
        row, column = int(random.numpy.integers(height)), int(random.numpy.integers(width))
        top, bottom = max(row - box_height // 2, 0), min(row + box_height // 2, height)
        left, right = max(column - box_width // 2, 0), min(column + box_width // 2, width)
        return top, bottom, left, right

    def prepare(self, images: torch.Tensor, targets: Targets, random: StepRandom, context: StepContext) -> StepBatch:
        # Both draws happen on every step, so the stream does not depend on whether a batch is mixed.
        mixed_batch = random.numpy.random() < self.prob
        height, width = images.shape[-2:]
        top, bottom, left, right = self.box(height, width, random)
        pairs = torch.randperm(images.shape[0], generator=random.device, device=images.device)
        if not mixed_batch or bottom <= top or right <= left:
            return StepBatch(images, targets)
        window = (..., slice(top, bottom), slice(left, right))
        pasted = images.clone()
        pasted[window] = images[pairs][window]
        dense = {task.name for task in context.tasks if task.is_dense}
        out_targets = dict(targets)
        for name in dense:
            target = targets[name].clone()
            target[window] = targets[name][pairs][window]
            out_targets[name] = target
        lam = 1.0 - (bottom - top) * (right - left) / (height * width)
        classification = {task.name: lam for task in context.tasks if not task.is_dense}
        other = {name: targets[name][pairs] for name in classification}
        return StepBatch(pasted, out_targets, LossMix(other, classification) if classification else None)
