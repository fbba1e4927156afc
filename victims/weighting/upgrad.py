"""UPGrad: unconflicting projection of gradients.

Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", 2024,
https://arxiv.org/abs/2406.16232 (the torchjd paper).

Each task gradient is projected onto the dual cone of all task gradients (the set of directions
with a non-negative inner product with every one of them) and the projections are averaged, so
the update never conflicts with any task. torchjd's ``UPGrad`` weighting with its defaults: mean
preference vector and the quadprog dual-cone projector (the ``quadprog-projector`` extra). No
hyperparameters.
"""

from __future__ import annotations

from torchjd.aggregation import UPGradWeighting

from .aggregation import JacobianAggregation, gramian_aggregator
from .registry import register_weighting

__all__ = ["UPGrad"]


@register_weighting("upgrad")
class UPGrad(JacobianAggregation):
    def __init__(self, num_tasks: int, *, parallel_chunk_size: int | None = None) -> None:
        super().__init__(num_tasks, parallel_chunk_size=parallel_chunk_size)
        self._use_aggregator(gramian_aggregator(UPGradWeighting()))
