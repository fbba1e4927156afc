"""mixup: convex combinations of pairs of training images (Zhang et al., "mixup: Beyond Empirical
Risk Minimization", ICLR 2018, https://arxiv.org/abs/1710.09412).

Defaults: lambda ~ Beta(alpha, alpha) with alpha = 1 (the paper's CIFAR setting; a uniform
lambda, as APBench's kornia ``RandomMixUpV2`` default), one lambda per batch and a random
pairing (a permutation of the batch), as in the paper's implementation; applied to every batch.

Multi-task losses: the images are mixed, ``x = lam * x_a + (1 - lam) * x_b``, and so is every
task's loss, ``L_t = lam * L_t(out, y_a) + (1 - lam) * L_t(out, y_b)``. Mixing the loss rather
than the target is well defined for every task kind (a mixed segmentation label or normal
would not be), and for classification it equals the paper's mixed-label cross-entropy. The
weighting strategy receives these K mixed losses.
"""

from __future__ import annotations

import math

import torch

from .base import DefenseError, LossMix, StepBatch, StepContext, StepRandom, Targets, TrainingProcedure
from .registry import register_defense

__all__ = ["MixUp"]


@register_defense("mixup")
class MixUp(TrainingProcedure):
    def __init__(self, *, alpha: float = 1.0) -> None:
        super().__init__()
        if not (isinstance(alpha, (int, float)) and not isinstance(alpha, bool) and math.isfinite(alpha) and alpha > 0):
            raise DefenseError(f"mixup alpha is a positive number (lambda ~ Beta(alpha, alpha)), got {alpha!r}")
        self.alpha = float(alpha)

    def prepare(self, images: torch.Tensor, targets: Targets, random: StepRandom, context: StepContext) -> StepBatch:
        lam = float(random.numpy.beta(self.alpha, self.alpha))
        pairs = torch.randperm(images.shape[0], generator=random.device, device=images.device)
        mixed = images.mul(lam).add_(images[pairs], alpha=1.0 - lam)
        other = {name: target[pairs] for name, target in targets.items()}
        return StepBatch(mixed, targets, LossMix(other, {task.name: lam for task in context.tasks}))
