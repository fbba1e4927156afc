"""IMTL-G: impartial multi-task learning, gradient part.

Liu, Li, Kuang, Xue, Chen, Yang, Liao, Zhang, "Towards Impartial Multi-task Learning", ICLR 2021,
https://openreview.net/forum?id=IMPnRXEWpvr.

The shared update d = sum_k a_k g_k with sum_k a_k = 1 has equal projections onto every unit task
gradient (d . g_k / ||g_k|| is the same for all k). Through torchjd's ``IMTLG`` weighting, the
generalisation of the paper's closed form to linearly dependent gradients (pseudo-inverse of the
Gramian; "Jacobian Descent for Multi-Objective Optimization", arXiv 2406.16232). IMTL-L, the
paper's loss-scale part, is not included. No hyperparameters.

Note: the common projection is not guaranteed to be positive; with three or more tasks some
Gramians give an update that makes every task's loss worse to first order.
"""

from __future__ import annotations

from torchjd.aggregation import IMTLGWeighting

from .aggregation import JacobianAggregation, gramian_aggregator
from .registry import register_weighting

__all__ = ["IMTLG"]


@register_weighting("imtl")
class IMTLG(JacobianAggregation):
    def __init__(self, num_tasks: int, *, parallel_chunk_size: int | None = None) -> None:
        super().__init__(num_tasks, parallel_chunk_size=parallel_chunk_size)
        self._use_aggregator(gramian_aggregator(IMTLGWeighting()))
