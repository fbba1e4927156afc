"""Aligned-MTL: align the principal components of the task gradients.

Senushkin, Patakin, Kuznetsov, Konushin, "Independent Component Alignment for Multi-Task
Learning", CVPR 2023, https://arxiv.org/abs/2305.19000.

With M = G G^T = V diag(lambda) V^T (eigenvalues below torchjd's numerical-rank tolerance
lambda_max * K * machine epsilon dropped), B = sqrt(lambda_min) V diag(lambda)^(-1/2) V^T turns the
task gradients into orthogonal ones of equal norm, and the update is their mean: shared gradient
= sum_k a_k g_k with a = B 1/K. This is the MTL-UE release's (LibMTL-equivalent) form; torchjd's
``AlignedMTL`` weighting with ``scale_mode="min"`` (lambda_min, the paper's choice; "median" and
"rmse" are torchjd's alternatives). Its update has a non-negative inner product with the average
task gradient.
"""

from __future__ import annotations

from torchjd.aggregation import AlignedMTLWeighting

from .aggregation import JacobianAggregation, gramian_aggregator
from .base import check_choice
from .registry import register_weighting

__all__ = ["AlignedMTL"]


@register_weighting("aligned_mtl")
class AlignedMTL(JacobianAggregation):
    def __init__(
        self, num_tasks: int, *, scale_mode: str = "min", parallel_chunk_size: int | None = None
    ) -> None:
        super().__init__(num_tasks, parallel_chunk_size=parallel_chunk_size)
        self.scale_mode = check_choice(
            self.name, "scale_mode", scale_mode, ("min", "median", "rmse")
        )
        self._use_aggregator(gramian_aggregator(AlignedMTLWeighting(scale_mode=self.scale_mode)))
