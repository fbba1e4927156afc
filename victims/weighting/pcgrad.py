"""PCGrad: projecting conflicting gradients.

Yu, Kumar, Gupta, Levine, Hausman, Finn, "Gradient Surgery for Multi-Task Learning", NeurIPS 2020,
https://arxiv.org/abs/2001.06782.

Each task gradient is projected, in random order, onto the normal plane of every other task
gradient it conflicts with (negative inner product); the projected gradients are summed
(Algorithm 1), so gradients without conflicts are simply summed. Through torchjd's ``PCGrad``
weighting, computed from the Gramian. The projection order uses the global torch RNG (seed it in
the training loop). No hyperparameters.
"""

from __future__ import annotations

from torchjd.aggregation import PCGradWeighting

from .aggregation import JacobianAggregation, gramian_aggregator
from .registry import register_weighting

__all__ = ["PCGrad"]


@register_weighting("pcgrad")
class PCGrad(JacobianAggregation):
    def __init__(self, num_tasks: int, *, parallel_chunk_size: int | None = None) -> None:
        super().__init__(num_tasks, parallel_chunk_size=parallel_chunk_size)
        self._use_aggregator(gramian_aggregator(PCGradWeighting()))
