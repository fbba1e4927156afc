"""GradVac: gradient vaccine.

Wang, Tsvetkov, Firat, Cao, "Gradient Vaccine: Investigating and Improving Multi-task Optimization
in Massively Multilingual Models", ICLR 2021, https://arxiv.org/abs/2010.05874.

Like PCGrad, but each pair of task gradients is pulled towards an adaptive target cosine
similarity, an exponential moving average (decay ``beta``) of the cosines seen so far, instead of
only away from conflicts; the modified gradients are summed. Whole-model granularity (one target
per task pair). Through torchjd's ``GradVac`` weighting; default beta = 0.5 and eps = 1e-8, the
defaults of torchjd and LibMTL (the paper tunes beta for its translation models). The visiting
order uses the global torch RNG.

State: the K x K target cosines. They are exported through ``get_extra_state``, so they are saved
in ``state_dict`` and a resumed run continues from the same targets.
"""

from __future__ import annotations

from typing import Any

import torch
from torchjd.aggregation import GradVacWeighting

from .aggregation import JacobianAggregation, attach_solver, gramian_aggregator
from .base import check_in_unit_interval, check_non_negative
from .registry import register_weighting

__all__ = ["GradVac"]


@register_weighting("gradvac")
class GradVac(JacobianAggregation):
    _gradvac: GradVacWeighting

    def __init__(
        self,
        num_tasks: int,
        *,
        beta: float = 0.5,
        eps: float = 1e-8,
        parallel_chunk_size: int | None = None,
    ) -> None:
        super().__init__(num_tasks, parallel_chunk_size=parallel_chunk_size)
        self.beta = check_in_unit_interval(self.name, "beta", beta)
        self.eps = check_non_negative(self.name, "eps", eps)
        gradvac = GradVacWeighting(beta=self.beta, eps=self.eps)
        attach_solver(self, "_gradvac", gradvac)
        self._use_aggregator(gramian_aggregator(gradvac))

    # torchjd 0.18 keeps the targets in ``_phi_t`` and creates them on the first call, keyed by
    # (number of tasks, dtype) in ``_state_key``; there is no public accessor, and torchjd is pinned
    # to that exact version. The round trip is covered by the tests.

    def get_extra_state(self) -> dict[str, Any]:
        targets = self._gradvac._phi_t
        return {"cosine_targets": None if targets is None else targets.clone()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        targets = state["cosine_targets"]
        if targets is None:
            self._gradvac.reset()
            return
        # The Gramian reaches the weighting on the CPU in float64 (see SolvedOnHost).
        targets = targets.to(device="cpu", dtype=torch.float64)
        self._gradvac._phi_t = targets
        self._gradvac._state_key = (targets.shape[0], targets.dtype)
