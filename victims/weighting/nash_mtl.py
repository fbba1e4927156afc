"""Nash-MTL: the Nash bargaining solution among tasks.

Navon, Shamsian, Achituve, Maron, Kawaguchi, Chechik, Fetaya, "Multi-Task Learning as a
Bargaining Game", ICML 2022, https://arxiv.org/abs/2202.01017.

The weights a > 0 solve (G G^T) a = 1 / a elementwise, by the paper's sequence of convex
approximations (Algorithm 1, cvxpy + ECOS), and the update sum_k a_k g_k is clipped to norm
``max_norm``. torchjd's ``NashMTL`` aggregator; defaults are the official implementation's:
max_norm = 1.0, update_weights_every = 1, optim_niter = 20.

Needs torchjd's ``nash-mtl`` extra (cvxpy and ecos), which mtlue's dependencies include; in an
environment without it, creating this strategy raises ImportError naming the line to install.

State: the previous solution (the solver's warm start) and the step counter, exported through
``get_extra_state``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torchjd.aggregation import NashMTL as TorchjdNashMTL

from .aggregation import JacobianAggregation
from .base import check_non_negative, check_positive_int
from .registry import register_weighting

__all__ = ["NashMTL"]

INSTALL_HINT = 'pip install "torchjd[quadprog-projector,nash-mtl]==0.18.0"'


@register_weighting("nash_mtl")
class NashMTL(JacobianAggregation):
    _aggregator: TorchjdNashMTL

    def __init__(
        self,
        num_tasks: int,
        *,
        max_norm: float = 1.0,
        update_weights_every: int = 1,
        optim_niter: int = 20,
        parallel_chunk_size: int | None = None,
    ) -> None:
        super().__init__(num_tasks, parallel_chunk_size=parallel_chunk_size)
        self.max_norm = check_non_negative(self.name, "max_norm", max_norm)
        self.update_weights_every = check_positive_int(
            self.name, "update_weights_every", update_weights_every
        )
        self.optim_niter = check_positive_int(self.name, "optim_niter", optim_niter)
        try:
            aggregator = TorchjdNashMTL(
                n_tasks=num_tasks,
                max_norm=self.max_norm,
                update_weights_every=self.update_weights_every,
                optim_niter=self.optim_niter,
            )
        except ImportError as error:
            raise ImportError(f"nash_mtl needs cvxpy and ecos: {INSTALL_HINT}") from error
        # Not a Gramian weighting: the norm clipping needs the Jacobian itself.
        self._use_aggregator(aggregator)

    # torchjd 0.18 keeps the warm start in ``prvs_alpha`` and the counter in ``step``, and builds
    # its cvxpy problem on the first call (``_init_optim_problem``); torchjd is pinned to that
    # exact version and the round trip is covered by the tests.

    def get_extra_state(self) -> dict[str, Any]:
        solver = self._aggregator.weighting
        return {
            "previous_weights": torch.from_numpy(np.array(solver.prvs_alpha, dtype=np.float64)),
            "step": int(solver.step),
        }

    def set_extra_state(self, state: dict[str, Any]) -> None:
        solver = self._aggregator.weighting
        solver.prvs_alpha = state["previous_weights"].double().numpy()
        solver.step = state["step"]
        if solver.step > 0:
            solver._init_optim_problem()
