"""RLW: random loss weighting.

Lin, Ye, Xu, Shi, Zhang, Kwok, "Reasonable Effectiveness of Random Weighting: A Litmus Test for
Multi-Task Learning", TMLR 2022, https://arxiv.org/abs/2111.10603.

Per batch, w = K * softmax(xi) with xi ~ N(0, I_K), and L = (1/K) * sum_k w_k L_k, as in the
MTL-UE release (the paper's normal-distribution variant). xi comes from a ``torch.Generator``
owned by this module and seeded by ``seed`` (default 0; pass the run's seed), so runs are
reproducible independently of the global RNG, and its state is part of ``state_dict``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import LossScaling, WeightingError
from .registry import register_weighting

__all__ = ["RandomLossWeighting"]


@register_weighting("rlw")
class RandomLossWeighting(LossScaling):
    def __init__(self, num_tasks: int, *, seed: int = 0) -> None:
        super().__init__(num_tasks)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise WeightingError(
                f"rlw: hyperparameter 'seed' must be an integer >= 0, got {seed!r}"
            )
        self.seed = seed
        # A CPU generator: its state is device-independent, so checkpoints move between machines.
        self._generator = torch.Generator().manual_seed(seed)

    def objective(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        logits = torch.randn(self.num_tasks, generator=self._generator, dtype=torch.float64)
        weights = (self.num_tasks * torch.softmax(logits, dim=0)).to(losses)
        return (weights * losses).mean(), weights

    def get_extra_state(self) -> dict[str, Any]:
        return {"generator_state": self._generator.get_state()}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._generator.set_state(state["generator_state"])
