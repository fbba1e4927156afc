"""ConFIG: conflict-free inverse gradients.

Liu, Chu, Thuerey, "ConFIG: Towards Conflict-free Training of Physics Informed Neural Networks",
ICLR 2025, https://arxiv.org/abs/2408.11104 (Eq. 2).

The update direction is pinv(U) 1, U the matrix of unit task gradients, so it has the same cosine
with every task gradient; its length is the sum of the task gradients' projections onto it. With
full-rank task gradients it has a positive inner product with every one of them. No
hyperparameters (equal preference for every task, ConFIG's default).

Computed from the Gramian G = J J^T rather than from U: pinv(U) = U^T (U U^T)^+ gives the update
J^T c (1^T G c) / (c^T G c) with c = D^-1 (D^-1 G D^-1)^+ 1, D = diag(||g_k||). This is the same
update as torchjd's ``ConFIG`` (checked by the tests), which pseudo-inverts the K x P matrix U:
with ResNet-18 its training step took about three times as long as this one's (bench), and the
Gramian form also yields the task weights.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchjd import aggregation as jd
from torchjd.linalg import PSDMatrix

from .aggregation import JacobianAggregation, gramian_aggregator
from .registry import register_weighting

__all__ = ["ConFIGWeighting", "ConflictFreeInverseGradients"]


class ConFIGWeighting(jd.Weighting[PSDMatrix]):
    """Weights a with ConFIG's update = sum_k a_k g_k, from the Gramian."""

    def forward(self, gramian: PSDMatrix, /) -> Tensor:
        norms = gramian.diagonal().clamp_min(0).sqrt()
        # Zero gradients have no direction; like torchjd's ConFIG, they count as zero unit rows.
        inverse_norms = torch.where(norms > 0, 1 / norms, torch.zeros_like(norms))
        unit_gramian = inverse_norms[:, None] * gramian * inverse_norms[None, :]
        ones = torch.ones_like(norms)
        direction = inverse_norms * (torch.linalg.pinv(unit_gramian, hermitian=True) @ ones)
        squared_length = direction @ gramian @ direction
        if squared_length <= 0:
            return torch.zeros_like(norms)
        return direction * (ones @ gramian @ direction) / squared_length


@register_weighting("config")
class ConflictFreeInverseGradients(JacobianAggregation):
    def __init__(self, num_tasks: int, *, parallel_chunk_size: int | None = None) -> None:
        super().__init__(num_tasks, parallel_chunk_size=parallel_chunk_size)
        self._use_aggregator(gramian_aggregator(ConFIGWeighting()))
