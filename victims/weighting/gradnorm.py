"""GradNorm: learn the task weights so that task gradient norms train at balanced rates.

Chen, Badrinarayanan, Lee, Rabinovich, "GradNorm: Gradient Normalization for Adaptive Loss
Balancing in Deep Multitask Networks", ICML 2018, https://arxiv.org/abs/1711.02257.

Per step, with weights w (positive, sum K) and W the shared parameters:

    G_k = || grad_W (w_k L_k) ||,   r_k = (L_k / L_k(0)) / mean_j (L_j / L_j(0)),
    L_grad = sum_k | G_k - [mean_j G_j * r_k^alpha] |,   the bracket held constant,

L_grad is differentiated w.r.t. the weights only, and the network is trained on
(1/K) * sum_k w_k L_k (the paper's sum_k w_k L_k up to the constant K, so equal weights reproduce
``ew``). L_k(0) is recorded at the first step. Default alpha = 1.5 (the paper's NYUv2 setting, and
LibMTL's default).

Choices, and why:

* W = all shared parameters, not the paper's "last shared layer". Our interface hands strategies
  a flat list of shared parameters with no notion of layers; guessing the last layer from
  parameter order or the autograd graph breaks silently on other encoders (timm, smp). The
  paper introduces the last layer only to save compute, and the whole shared set is what its W
  stands for. The cost is a Jacobian of the shared parameters, as for the aggregation methods.
* w = K * softmax(theta) with theta learnable (as LibMTL), instead of the paper's gradient step
  on w followed by renormalisation: our training loop owns the optimiser step, so there is no
  hook after it to renormalise in; the parametrisation keeps w positive and summing to K at all
  times, with the same fixed point (balanced gradient norms). theta is trained by the training
  loop's optimiser (it is in ``weighting.parameters()``), with the model's learning rate.

``parallel_chunk_size`` is the Jacobian's memory/speed knob, as for the gradient-aggregation
strategies (``aggregation.GradientAggregation``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, cast

import torch
from torch import Tensor, nn
from torchjd import aggregation as jd
from torchjd.autojac import jac_to_grad
from torchjd.linalg import PSDMatrix

from ._backprop import accumulate_shared_jacobian, backward_through_heads
from .aggregation import attach_solver
from .base import (
    Features,
    Weighting,
    as_feature_tuple,
    check_non_negative,
    check_positive_int,
    trainable,
)
from .registry import register_weighting

__all__ = ["GradNorm"]


class _FixedWeightsKeepingGramian(jd.Weighting[PSDMatrix]):
    """Combines the Jacobian's rows with preset weights and keeps the Gramian it was given: its
    diagonal is the squared per-task gradient norms, obtained without a loop over parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.weights: Tensor | None = None
        self.gramian: Tensor | None = None

    def forward(self, gramian: PSDMatrix, /) -> Tensor:
        self.gramian = gramian
        return cast(Tensor, self.weights).to(gramian)


@register_weighting("gradnorm")
class GradNorm(Weighting):
    family: ClassVar[str] = "loss scaling"
    _combine: _FixedWeightsKeepingGramian
    _aggregator: jd.GramianWeightedAggregator
    initial_losses: Tensor

    def __init__(
        self, num_tasks: int, *, alpha: float = 1.5, parallel_chunk_size: int | None = None
    ) -> None:
        super().__init__(num_tasks)
        self.alpha = check_non_negative(self.name, "alpha", alpha)
        self.parallel_chunk_size = check_positive_int(
            self.name, "parallel_chunk_size", parallel_chunk_size, optional=True
        )
        self.weight_logits = nn.Parameter(torch.zeros(num_tasks))
        # NaN until the first step records L_k(0).
        self.register_buffer("initial_losses", torch.full((num_tasks,), float("nan")))
        combine = _FixedWeightsKeepingGramian()
        attach_solver(self, "_combine", combine)
        attach_solver(self, "_aggregator", jd.GramianWeightedAggregator(combine))

    def task_weights(self) -> Tensor:
        """w = K softmax(theta): positive, sums to K."""
        return self.num_tasks * torch.softmax(self.weight_logits, dim=0)

    def backward(
        self,
        losses: Tensor,
        shared_parameters: Sequence[nn.Parameter],
        features: Features,
    ) -> Tensor:
        self._check_losses(losses)
        feature_tensors = as_feature_tuple(features)
        shared = trainable(shared_parameters)
        weights = self.task_weights()
        coefficients = weights.detach().to(losses.dtype) / self.num_tasks

        detached_losses = losses.detach().to(self.initial_losses)
        # Branch-free so that no device synchronisation is needed to know whether it is the first
        # step.
        self.initial_losses.copy_(
            torch.where(self.initial_losses.isnan(), detached_losses, self.initial_losses)
        )

        feature_jacobians = backward_through_heads(
            losses,
            feature_tensors,
            shared,
            head_loss_weights=coefficients,
            parallel_chunk_size=self.parallel_chunk_size,
        )
        accumulate_shared_jacobian(
            feature_tensors, feature_jacobians, shared, self.parallel_chunk_size
        )
        self._combine.weights = coefficients
        jac_to_grad(shared, self._aggregator, optimize_gramian_computation=True)
        gradient_norms = cast(Tensor, self._combine.gramian).diagonal().clamp_min(0).sqrt()
        self._combine.gramian = None

        weighted_norms = weights * gradient_norms.to(weights)  # G_k = w_k ||grad_W L_k||
        loss_ratios = detached_losses / self.initial_losses
        inverse_training_rates = loss_ratios / loss_ratios.mean()
        targets = (weighted_norms.mean() * inverse_training_rates**self.alpha).detach()
        grad_norm_loss = (weighted_norms - targets).abs().sum()
        torch.autograd.backward(grad_norm_loss, inputs=[self.weight_logits])
        return weights.detach().to(losses.dtype)
