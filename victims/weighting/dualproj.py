"""DualProj: the mean gradient projected onto the dual cone of the task gradients.

The projection of Lopez-Paz & Ranzato, "Gradient Episodic Memory for Continual Learning",
NeurIPS 2017 (https://arxiv.org/abs/1706.08840, Eq. 11), applied to the average task gradient, as
named and studied in Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024
(https://arxiv.org/abs/2406.16232). The update has a non-negative inner product with every task
gradient. torchjd's ``DualProj`` weighting with its defaults. No hyperparameters.
"""

from __future__ import annotations

from torchjd.aggregation import DualProjWeighting

from .aggregation import JacobianAggregation, gramian_aggregator
from .registry import register_weighting

__all__ = ["DualProj"]


@register_weighting("dualproj")
class DualProj(JacobianAggregation):
    def __init__(self, num_tasks: int, *, parallel_chunk_size: int | None = None) -> None:
        super().__init__(num_tasks, parallel_chunk_size=parallel_chunk_size)
        self._use_aggregator(gramian_aggregator(DualProjWeighting()))
