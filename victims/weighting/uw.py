"""UW: uncertainty weighting with learned homoscedastic task uncertainty.

Kendall, Gal, Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene Geometry
and Semantics", CVPR 2018, https://arxiv.org/abs/1705.07115.

Exact form used (the paper's regression form, applied to every task as the MTL-UE release and
LibMTL do):

    L = sum_k [ L_k / (2 * exp(s_k)) + s_k / 2 ],    s_k = log(sigma_k^2) learnable,

so a task's coefficient is 1 / (2 exp(s_k)) and, at s = 0, L is half the sum of the losses. The
paper's classification form (1/sigma^2 instead of 1/(2 sigma^2)) is not used. Default
``initial_log_variance = -0.5`` as in the MTL-UE release (and LibMTL). The s_k are parameters of
this module: the training loop's optimiser must include ``weighting.parameters()`` (the release
also applies weight decay to them).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import LossScaling
from .registry import register_weighting

__all__ = ["UncertaintyWeighting"]


@register_weighting("uw")
class UncertaintyWeighting(LossScaling):
    def __init__(self, num_tasks: int, *, initial_log_variance: float = -0.5) -> None:
        super().__init__(num_tasks)
        self.initial_log_variance = float(initial_log_variance)
        self.log_variances = nn.Parameter(torch.full((num_tasks,), self.initial_log_variance))

    def objective(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        log_variances = self.log_variances.to(losses.dtype)
        coefficients = 0.5 * torch.exp(-log_variances)
        objective = (coefficients * losses + 0.5 * log_variances).sum()
        return objective, self.num_tasks * coefficients.detach()
