"""The gradient-aggregation family: strategies that look at every task's gradient separately.

Task heads always get their own task's gradient, unweighted (their parameters serve one task, so
there is nothing to reconcile); only the shared parameters get the strategy's combined update.
Most strategies here are a torchjd aggregator applied to the Jacobian of the shared parameters
(``JacobianAggregation``); GradDrop instead combines gradients at the shared representation.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import ClassVar, cast

import torch
from torch import Tensor, nn
from torchjd import aggregation as jd
from torchjd.autojac import jac_to_grad
from torchjd.linalg import PSDMatrix

from ._backprop import accumulate_shared_jacobian, backward_through_heads
from .base import Features, Weighting, as_feature_tuple, check_positive_int, trainable

__all__ = [
    "GradientAggregation",
    "JacobianAggregation",
    "SolvedOnHost",
    "attach_solver",
    "gramian_aggregator",
]


def attach_solver(owner: nn.Module, attribute: str, solver: nn.Module) -> None:
    """Store a torchjd aggregator or weighting on ``owner`` without registering it as a submodule.

    torchjd's aggregators are solvers, not model parts. Some create state lazily on the CPU
    (GradVac); registered, that state would follow ``.to(device)`` and show up in ``state_dict``
    under torchjd's private names only after the first step. Strategies that have state export
    it explicitly (``get_extra_state``), so checkpoints do not depend on torchjd's internals.
    """
    object.__setattr__(owner, attribute, solver)


class GradientAggregation(Weighting):
    """Backpropagates through the task heads, then lets the strategy update the shared part.

    ``parallel_chunk_size`` is how many task gradients are backpropagated through the encoder at
    once (torchjd's knob, through ``torch.vmap``). ``None`` chooses by device: one at a time on
    the CPU, where vmap was slower, all K together elsewhere. Memory grows with it, so bound it
    for many tasks on a large encoder (e.g. the 40 CelebA attributes).
    """

    family: ClassVar[str] = "gradient aggregation"

    def __init__(self, num_tasks: int, *, parallel_chunk_size: int | None = None) -> None:
        super().__init__(num_tasks)
        self.parallel_chunk_size = check_positive_int(
            self.name, "parallel_chunk_size", parallel_chunk_size, optional=True
        )

    def backward(
        self,
        losses: Tensor,
        shared_parameters: Sequence[nn.Parameter],
        features: Features,
    ) -> Tensor:
        self._check_losses(losses)
        feature_tensors = as_feature_tuple(features)
        shared = trainable(shared_parameters)
        feature_jacobians = backward_through_heads(
            losses, feature_tensors, shared, parallel_chunk_size=self.parallel_chunk_size
        )
        return self.update_shared(feature_tensors, feature_jacobians, shared).detach()

    @abc.abstractmethod
    def update_shared(
        self,
        features: tuple[Tensor, ...],
        feature_jacobians: tuple[Tensor, ...],
        shared_parameters: list[nn.Parameter],
    ) -> Tensor:
        """Accumulate the combined update into the shared ``.grad`` fields from the per-task
        gradients w.r.t. the features; return the task weights (module convention)."""


class JacobianAggregation(GradientAggregation):
    """Shared parameters get ``aggregator(J)`` = w^T J, J the K x P Jacobian of the losses."""

    _aggregator: jd.WeightedAggregator

    def _use_aggregator(self, aggregator: jd.WeightedAggregator) -> None:
        attach_solver(self, "_aggregator", aggregator)

    def update_shared(
        self,
        features: tuple[Tensor, ...],
        feature_jacobians: tuple[Tensor, ...],
        shared_parameters: list[nn.Parameter],
    ) -> Tensor:
        accumulate_shared_jacobian(
            features, feature_jacobians, shared_parameters, self.parallel_chunk_size
        )
        if isinstance(self._aggregator, jd.GramianWeightedAggregator):
            # These never need the K x P Jacobian as one matrix: summing per-parameter Gramians
            # avoids copying it (its memory) and, on CPU, halves the time of this call.
            weights = jac_to_grad(
                shared_parameters, self._aggregator, optimize_gramian_computation=True
            )
        else:
            weights = jac_to_grad(shared_parameters, self._aggregator)
        return self.num_tasks * weights


class SolvedOnHost(jd.Weighting[PSDMatrix]):
    """Runs a Gramian weighting on the CPU in float64.

    The Gramian is only K x K, so moving it is one tiny transfer, whereas the solvers behind these
    weightings (projection loops, QPs, eigendecompositions, least squares) branch on its values at
    every iteration, which on a GPU would cost a device synchronisation each time. float64 keeps
    nearly parallel task gradients (ill-conditioned Gramians) solvable.
    """

    def __init__(self, inner: jd.Weighting[PSDMatrix]) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, gramian: PSDMatrix, /) -> Tensor:
        on_host = gramian.detach().to(device="cpu", dtype=torch.float64)
        weights = self.inner(cast(PSDMatrix, on_host))
        return weights.to(device=gramian.device, dtype=gramian.dtype)


def gramian_aggregator(weighting: jd.Weighting[PSDMatrix]) -> jd.GramianWeightedAggregator:
    """A torchjd aggregator combining the Jacobian's rows with ``weighting``'s weights, solved on
    the host."""
    return jd.GramianWeightedAggregator(SolvedOnHost(weighting))
