"""EW: equal weighting, the mean of the task losses.

The MTL-UE release's default ("LS", linear scalarisation): L = (1/K) * sum_k L_k (Yu et al.,
"MTL-UE: Learning to Learn Nothing for Multi-Task Learning", ICML 2025,
https://arxiv.org/abs/2505.05279). No hyperparameters.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import LossScaling
from .registry import register_weighting

__all__ = ["EqualWeighting"]


@register_weighting("ew")
class EqualWeighting(LossScaling):
    def objective(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        return losses.mean(), torch.ones_like(losses)
