"""The interface every task-weighting strategy implements, and the loss-scaling family.

A strategy turns the K per-task losses of one batch into gradients: the shared parameters get the
strategy's combined update, each task's own parameters (its head or decoder) get the gradient of
its own loss, and the strategy's own learnable parameters (UW's log-variances, GradNorm's
weights) get theirs. The training loop only ever calls ``backward`` and, once per epoch,
``epoch_end``.

Task weights returned by ``backward`` follow one convention for every strategy, so logs compare
across methods: ``w`` such that the update of the shared parameters is
``(1/K) * sum_k w_k * grad(L_k)``. Equal weighting (``ew``) is all ones, so a weight reads as
"relative to equal weighting".
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from victims.hyperparameters import KeywordHyperparameters

from .errors import WeightingError

__all__ = [
    "Features",
    "LossScaling",
    "Weighting",
    "WeightingError",
]

#: The shared encoder's output(s) that every task head consumes.
Features = Tensor | Sequence[Tensor]


class Weighting(KeywordHyperparameters, nn.Module, abc.ABC):
    """A multi-task weighting strategy (see the module docstring for the contract).

    Hyperparameters are the keyword-only arguments of ``__init__`` (across the class hierarchy);
    each is stored as an attribute of the same name, which is what ``hyperparameters()`` and the
    repr read.
    """

    #: Registry name, set by ``register_weighting``.
    name: ClassVar[str] = ""
    #: "loss scaling" or "gradient aggregation", for listings and benchmarks.
    family: ClassVar[str] = ""

    def __init__(self, num_tasks: int) -> None:
        super().__init__()
        if isinstance(num_tasks, bool) or not isinstance(num_tasks, int) or num_tasks < 1:
            raise WeightingError(f"num_tasks must be a positive integer, got {num_tasks!r}")
        self.num_tasks = num_tasks

    @abc.abstractmethod
    def backward(
        self,
        losses: Tensor,
        shared_parameters: Sequence[nn.Parameter],
        features: Features,
    ) -> Tensor:
        """Accumulate this strategy's gradients into ``.grad`` and return the task weights used.

        ``losses`` is the 1-D tensor of the K per-task scalar losses of one batch, still attached
        to the graph; ``features`` are the shared encoder's output(s) that all task heads consume.
        The returned weights are detached and follow the module's convention.
        """

    def epoch_end(self, mean_losses: Tensor) -> None:
        """Called once per epoch with the epoch's mean per-task training losses (shape ``[K]``)."""

    def extra_repr(self) -> str:
        settings = {"num_tasks": self.num_tasks, **self.hyperparameters()}
        return ", ".join(f"{key}={value!r}" for key, value in settings.items())

    def _check_losses(self, losses: Tensor) -> None:
        if losses.shape != (self.num_tasks,):
            raise WeightingError(
                f"{self.name}: expected a 1-D tensor of {self.num_tasks} task losses, "
                f"got shape {tuple(losses.shape)}"
            )
        if not losses.requires_grad:
            raise WeightingError(f"{self.name}: the task losses are not attached to a graph")


class LossScaling(Weighting):
    """Strategies that minimise one scalar built from the task losses.

    A single ordinary backward pass serves every parameter: task heads receive their loss's
    gradient times the task's coefficient, exactly like the shared parameters.
    """

    family: ClassVar[str] = "loss scaling"

    @abc.abstractmethod
    def objective(self, losses: Tensor) -> tuple[Tensor, Tensor]:
        """Return the scalar to minimise and the task weights (module convention, detached)."""

    def backward(
        self,
        losses: Tensor,
        shared_parameters: Sequence[nn.Parameter],
        features: Features,
    ) -> Tensor:
        self._check_losses(losses)
        objective, weights = self.objective(losses)
        objective.backward()
        return weights.detach()


# Hyperparameter checks: each returns the value so that ``__init__`` can assign in one line, and
# each error names the strategy and the hyperparameter.


def check_positive(owner: str, name: str, value: float) -> float:
    if not value > 0:
        raise WeightingError(f"{owner}: hyperparameter {name!r} must be > 0, got {value!r}")
    return float(value)


def check_non_negative(owner: str, name: str, value: float) -> float:
    if not value >= 0:
        raise WeightingError(f"{owner}: hyperparameter {name!r} must be >= 0, got {value!r}")
    return float(value)


def check_in_unit_interval(owner: str, name: str, value: float) -> float:
    if not 0 <= value <= 1:
        raise WeightingError(f"{owner}: hyperparameter {name!r} must be in [0, 1], got {value!r}")
    return float(value)


def check_positive_int(owner: str, name: str, value: int | None, *, optional: bool = False) -> Any:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise WeightingError(
            f"{owner}: hyperparameter {name!r} must be a positive integer"
            f"{' or None' if optional else ''}, got {value!r}"
        )
    return value


def check_choice(owner: str, name: str, value: Any, choices: Sequence[Any]) -> Any:
    if value not in choices:
        raise WeightingError(
            f"{owner}: hyperparameter {name!r} must be one of "
            f"{', '.join(map(repr, choices))}; got {value!r}"
        )
    return value


def trainable(parameters: Sequence[nn.Parameter]) -> list[nn.Parameter]:
    """The parameters that take gradients (a frozen stem, say, gets no Jacobian)."""
    return [parameter for parameter in parameters if parameter.requires_grad]


def as_feature_tuple(features: Features) -> tuple[Tensor, ...]:
    items = (features,) if isinstance(features, torch.Tensor) else tuple(features)
    if not items:
        raise WeightingError("features must hold at least one tensor")
    for tensor in items:
        if not tensor.requires_grad:
            raise WeightingError(
                "features must be the (non-detached) shared representation the task heads consume"
            )
    return items
