"""CAGrad: conflict-averse gradient descent.

Liu, Liu, Jin, Stone, Liu, "Conflict-Averse Gradient Descent for Multi-task Learning",
NeurIPS 2021, https://arxiv.org/abs/2110.14048.

With g0 the average task gradient, the update d maximises the worst task's improvement
min_k g_k . d within the ball ||d - g0|| <= c ||g0||. Solved through its dual over the simplex,
as in the authors' code: w = argmin_{w in simplex} w^T G G^T 1/K + c ||g0|| ||G^T w||, then
d = g0 + (c ||g0|| / ||G^T w||) G^T w, divided by (1 + c^2) (``rescale=1``; 0 = no division,
2 = divide by 1 + c). For c < 1, d . g0 >= (1 - c) ||g0||^2 before rescaling, so the average loss
still decreases.

Defaults c = 0.4 (``--alpha 0.4`` in the authors' NYUv2 run script; LibMTL's default is 0.5) and
rescale = 1 (the official code's and LibMTL's).

Solver: scipy SLSQP on the K x K Gramian, following the official implementation (and LibMTL),
inside a torchjd Gramian weighting. torchjd's own ``CAGrad`` solves the same K-dimensional
problem with cvxpy's Clarabel solver, and cvxpy is installed (for nash_mtl), so the reason for
a solver of our own is fidelity, not a dependency: this one is the official code's, and it keeps
the official answer where the two differ. The tests check that both agree elsewhere. They differ
at Pareto-stationary points (some convex combination of the task gradients is zero): torchjd
then returns a zero update, while the official code, and this module, return the average
gradient g0 (the centre of the ball).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize
from torch import Tensor
from torchjd import aggregation as jd
from torchjd.linalg import PSDMatrix

from .aggregation import JacobianAggregation, gramian_aggregator
from .base import check_choice, check_non_negative
from .registry import register_weighting

__all__ = ["CAGrad", "CAGradWeighting"]

#: Divisor of the update per ``rescale`` mode, as a function of c (official code's options).
_RESCALE_DIVISORS = {0: lambda c: 1.0, 1: lambda c: 1.0 + c**2, 2: lambda c: 1.0 + c}


class CAGradWeighting(jd.Weighting[PSDMatrix]):
    """Weights a with CAGrad's update = sum_k a_k g_k, from the Gramian G G^T."""

    def __init__(self, c: float, rescale: int) -> None:
        super().__init__()
        self.c = c
        self.rescale = rescale

    def forward(self, gramian: PSDMatrix, /) -> Tensor:
        num_tasks = gramian.shape[0]
        # The minimiser is invariant to scaling the Gramian; normalising it keeps SLSQP's
        # absolute tolerances meaningful whatever the gradients' magnitude.
        scale = gramian.diagonal().mean().clamp_min(torch.finfo(gramian.dtype).tiny)
        gram = (gramian / scale).detach().cpu().double().numpy()
        uniform = np.full(num_tasks, 1.0 / num_tasks)
        gram_times_uniform = gram @ uniform
        radius = self.c * float(np.sqrt(max(uniform @ gram_times_uniform, 0.0)))

        def dual_objective(w: np.ndarray) -> float:
            return float(w @ gram_times_uniform + radius * np.sqrt(w @ gram @ w + 1e-8))

        def dual_gradient(w: np.ndarray) -> np.ndarray:
            return gram_times_uniform + radius * (gram @ w) / np.sqrt(w @ gram @ w + 1e-8)

        solution = minimize(
            dual_objective,
            uniform,
            jac=dual_gradient,
            method="SLSQP",
            bounds=[(0.0, 1.0)] * num_tasks,
            constraints=({"type": "eq", "fun": lambda w: 1.0 - w.sum()},),
            # Far tighter than scipy's 1e-6: with one dominant task the dual is flat and the
            # default stops visibly short of the optimum. K variables, so it costs little.
            options={"ftol": 1e-12, "maxiter": 1000},
        ).x
        worst_direction_norm = float(np.sqrt(max(solution @ gram @ solution, 0.0)))
        step = radius / (worst_direction_norm + 1e-8)
        weights = (uniform + step * solution) / _RESCALE_DIVISORS[self.rescale](self.c)
        return torch.from_numpy(weights).to(device=gramian.device, dtype=gramian.dtype)


@register_weighting("cagrad")
class CAGrad(JacobianAggregation):
    def __init__(
        self,
        num_tasks: int,
        *,
        c: float = 0.4,
        rescale: int = 1,
        parallel_chunk_size: int | None = None,
    ) -> None:
        super().__init__(num_tasks, parallel_chunk_size=parallel_chunk_size)
        self.c = check_non_negative(self.name, "c", c)
        self.rescale = check_choice(self.name, "rescale", rescale, tuple(_RESCALE_DIVISORS))
        self._use_aggregator(gramian_aggregator(CAGradWeighting(self.c, self.rescale)))
