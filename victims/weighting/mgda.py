"""MGDA: the minimum-norm point of the convex hull of the task gradients.

Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018,
https://arxiv.org/abs/1810.04650.

The shared update is d = sum_k a_k g_k with a = argmin_{a in simplex} ||sum_k a_k g_k||^2, the
common descent direction of the multiple-gradient descent algorithm (zero at a Pareto-stationary
point). Exact MGDA on the shared parameters' gradients; the paper's cheaper MGDA-UB (gradients
w.r.t. the shared representation) and its optional gradient normalisations are not implemented.
No hyperparameters.

Solver: the K-variable quadratic program is solved exactly with quadprog (through qpsolvers, the
solver torchjd's UPGrad already depends on), on the trace-normalised Gramian. The paper solves it
with Frank-Wolfe (its Algorithm 2; torchjd's ``MGDA``), which converges sublinearly when the
minimum lies on a face of the simplex, the usual case with three or more tasks: on random 3-5
task problems its optimality gap (||d||^2 - min_k g_k . d) reached 4% of ||d||^2 with torchjd's
defaults and 2% after 250 iterations, against 1e-8 for the QP, which is also about 70 times
faster (0.03 ms against 2 ms).
"""

from __future__ import annotations

import numpy as np
import torch
from qpsolvers import solve_qp
from torch import Tensor
from torchjd import aggregation as jd
from torchjd.linalg import PSDMatrix

from .aggregation import JacobianAggregation, gramian_aggregator
from .registry import register_weighting

__all__ = ["MGDA", "MinNormWeighting"]

#: Added to the trace-normalised Gramian: quadprog needs it positive definite, and task gradients
#: can be linearly dependent (more tasks than directions that separate them).
_REGULARISATION = 1e-9


class MinNormWeighting(jd.Weighting[PSDMatrix]):
    """Simplex weights of the minimum-norm point of the convex hull of the Jacobian's rows."""

    def forward(self, gramian: PSDMatrix, /) -> Tensor:
        num_tasks = gramian.shape[0]
        trace = float(gramian.diagonal().sum())
        if trace <= 0.0:  # every task gradient is zero: every point of the hull is the minimum
            return torch.full((num_tasks,), 1.0 / num_tasks).to(gramian)
        gram = (gramian / trace).detach().cpu().double().numpy()
        shares = solve_qp(
            P=gram + _REGULARISATION * np.eye(num_tasks),
            q=np.zeros(num_tasks),
            G=-np.eye(num_tasks),
            h=np.zeros(num_tasks),
            A=np.ones((1, num_tasks)),
            b=np.ones(1),
            solver="quadprog",
        )
        if shares is None:
            raise RuntimeError(f"mgda: quadprog found no min-norm point for Gramian {gram}")
        shares = np.clip(shares, 0.0, None)  # round-off can leave -1e-17
        return torch.from_numpy(shares / shares.sum()).to(gramian)


@register_weighting("mgda")
class MGDA(JacobianAggregation):
    def __init__(self, num_tasks: int, *, parallel_chunk_size: int | None = None) -> None:
        super().__init__(num_tasks, parallel_chunk_size=parallel_chunk_size)
        self._use_aggregator(gramian_aggregator(MinNormWeighting()))
