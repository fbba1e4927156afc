"""GradDrop: gradient sign dropout at the shared representation.

Chen, Ngiam, Huang, Luong, Kretzschmar, Chai, Anguelov, "Just Pick a Sign: Optimizing Deep
Multitask Models with Gradient Sign Dropout", NeurIPS 2020, https://arxiv.org/abs/2010.06808.

Applied where the paper applies it, at the activations that every head consumes (our
``features``), not at the parameters: for each feature unit, with the task gradients of the
batch summed after multiplying by sign(activation) (the paper's batch-separated form, as in
LibMTL), the positive-sign purity P = (1 + sum_k G_k / sum_k |G_k|) / 2 is compared with
U ~ Uniform(0, 1); each task's gradient at that unit is kept only if its sign is the one picked
(positive if P > U, negative otherwise), and the kept gradients are summed and backpropagated
through the encoder. ``leak`` in [0, 1] lets that fraction of every gradient through regardless
(default 0, the paper's setting for plain multi-task learning); f is the identity.

Working at the representation also makes it cheap: one ordinary backward pass through the
encoder, no Jacobian of the shared parameters. U is drawn from the global torch RNG of the
features' device. GradDrop masks coordinates rather than weighting tasks, so the returned task
weights are ones.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .aggregation import GradientAggregation
from .base import check_in_unit_interval
from .registry import register_weighting

__all__ = ["GradDrop"]


@register_weighting("graddrop")
class GradDrop(GradientAggregation):
    def __init__(
        self, num_tasks: int, *, leak: float = 0.0, parallel_chunk_size: int | None = None
    ) -> None:
        super().__init__(num_tasks, parallel_chunk_size=parallel_chunk_size)
        self.leak = check_in_unit_interval(self.name, "leak", leak)

    def update_shared(
        self,
        features: tuple[Tensor, ...],
        feature_jacobians: tuple[Tensor, ...],
        shared_parameters: list[nn.Parameter],
    ) -> Tensor:
        combined = [
            self._drop_signs(feature.detach(), jacobian)
            for feature, jacobian in zip(features, feature_jacobians, strict=True)
        ]
        torch.autograd.backward(features, grad_tensors=combined, inputs=shared_parameters)
        return torch.ones(self.num_tasks, device=features[0].device)

    def _drop_signs(self, activations: Tensor, task_gradients: Tensor) -> Tensor:
        """task_gradients: [K, batch, *unit]; returns the combined gradient [batch, *unit]."""
        signed = (task_gradients * activations.sign()).sum(dim=1)  # [K, *unit]
        purity = 0.5 * (1 + signed.sum(dim=0) / (signed.abs().sum(dim=0) + 1e-7))
        threshold = torch.rand_like(purity)
        kept = ((purity > threshold) & (signed > 0)) | ((purity < threshold) & (signed < 0))
        mask = self.leak + (1 - self.leak) * kept.to(task_gradients.dtype)
        return (task_gradients * mask.unsqueeze(1)).sum(dim=0)
