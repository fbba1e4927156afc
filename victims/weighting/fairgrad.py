"""FairGrad: alpha-fair resource allocation among tasks.

Ban & Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024,
https://arxiv.org/abs/2402.15638.

The weights w >= 0 solve (G G^T) w = w^(-1/alpha) elementwise, by least squares (scipy's
``least_squares``, as the authors' code and the MTL-UE release do), and the shared update is
sum_k w_k g_k. When solved exactly, g_k . update = w_k^(-1/alpha) > 0 for every task. torchjd's
``FairGrad`` weighting. Default alpha = 1 (proportional fairness), the MTL-UE release's value;
``max_iters=None`` keeps scipy's default budget.
"""

from __future__ import annotations

from torchjd.aggregation import FairGradWeighting

from .aggregation import JacobianAggregation, gramian_aggregator
from .base import check_positive, check_positive_int
from .registry import register_weighting

__all__ = ["FairGrad"]


@register_weighting("fairgrad")
class FairGrad(JacobianAggregation):
    def __init__(
        self,
        num_tasks: int,
        *,
        alpha: float = 1.0,
        max_iters: int | None = None,
        parallel_chunk_size: int | None = None,
    ) -> None:
        super().__init__(num_tasks, parallel_chunk_size=parallel_chunk_size)
        self.alpha = check_positive(self.name, "alpha", alpha)
        self.max_iters = check_positive_int(self.name, "max_iters", max_iters, optional=True)
        self._use_aggregator(
            gramian_aggregator(FairGradWeighting(alpha=self.alpha, max_iters=self.max_iters))
        )
