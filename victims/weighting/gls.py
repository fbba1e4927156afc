"""GLS: geometric loss strategy, the geometric mean of the task losses.

Chennupati, Sistu, Yogamani, Rawashdeh, "MultiNet++: Multi-Stream Feature Aggregation and
Geometric Loss Strategy for Multi-Task Learning", CVPR Workshops 2019,
https://arxiv.org/abs/1904.08492.

L = (prod_k L_k)^(1/K), computed as exp(mean_k log L_k) so that it neither overflows nor
underflows for many tasks. Task k's effective weight is L / L_k: tasks whose loss is already
small pull harder. Requires positive losses (cross-entropy, L1, 1 - cosine all are). No
hyperparameters.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import LossScaling
from .registry import register_weighting

__all__ = ["GeometricLossStrategy"]


@register_weighting("gls")
class GeometricLossStrategy(LossScaling):
    def objective(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        geometric_mean = torch.exp(torch.log(losses).mean())
        # d(geometric_mean)/dL_k = geometric_mean / (K L_k); times K for the module convention.
        return geometric_mean, (geometric_mean / losses).detach()
