"""DWA: dynamic weight average.

Liu, Johns, Davison, "End-to-End Multi-Task Learning with Attention", CVPR 2019,
https://arxiv.org/abs/1803.10704.

During epoch t, lambda_k(t) = K * softmax_k( r_k(t-1) / T ) with r_k(t-1) = L_k(t-1) / L_k(t-2),
the ratio of task k's mean training loss over the two previous epochs; lambda = 1 for the first
two epochs. Default temperature T = 2 (the paper's). The weights sum to K and the objective is
(1/K) * sum_k lambda_k L_k, so equal weights reproduce ``ew`` exactly; the paper's
sum_k lambda_k L_k differs by the constant factor K.

The training loop must call ``epoch_end`` with each epoch's mean per-task training losses; the
weights for the next epoch are computed there, and everything lives in buffers, so a checkpoint
taken between epochs resumes exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import LossScaling, WeightingError, check_positive
from .registry import register_weighting

__all__ = ["DynamicWeightAverage"]


@register_weighting("dwa")
class DynamicWeightAverage(LossScaling):
    epoch_mean_losses: Tensor
    task_weights: Tensor

    def __init__(self, num_tasks: int, *, temperature: float = 2.0) -> None:
        super().__init__(num_tasks)
        self.temperature = check_positive(self.name, "temperature", temperature)
        # Rows: mean losses of the epoch before last and of the last epoch; NaN = not seen yet.
        self.register_buffer("epoch_mean_losses", torch.full((2, num_tasks), float("nan")))
        self.register_buffer("task_weights", torch.ones(num_tasks))

    def objective(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        weights = self.task_weights.to(losses.dtype)
        return (weights * losses).mean(), weights

    def epoch_end(self, mean_losses: Tensor) -> None:
        if mean_losses.shape != (self.num_tasks,):
            raise WeightingError(
                f"dwa: expected {self.num_tasks} mean task losses, got shape "
                f"{tuple(mean_losses.shape)}"
            )
        latest = mean_losses.detach().to(self.epoch_mean_losses)
        self.epoch_mean_losses.copy_(torch.stack([self.epoch_mean_losses[1], latest]))
        descent_rates = self.epoch_mean_losses[1] / self.epoch_mean_losses[0]
        weights = self.num_tasks * torch.softmax(descent_rates / self.temperature, dim=0)
        # Fewer than two epochs seen (NaN) keeps equal weights; so does a zero loss (inf), for
        # which the descent rate is undefined.
        self.task_weights.copy_(
            torch.where(torch.isfinite(descent_rates).all(), weights, torch.ones_like(weights))
        )
