"""What a UE method is: its requirements, its hyperparameters, and one call that makes the deltas.

A method turns a prepared dataset into one int8 perturbation per training sample. It declares
what it needs beyond the data (``requires``), so the workflow knows which surrogate to train
first, and its hyperparameters as a dataclass whose defaults come from the method's paper, so a
config can change them by name and a misspelt name is refused with the valid ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mtlue.data.store import PreparedDataset
from mtlue.errors import MethodError
from mtlue.hyperparameters import build_settings
from mtlue.poisons import (
    DEFAULT_EPSILON,
    POISONED_SPLIT,
    PoisonError,
    check_deltas,
    check_epsilon,
)

from .progress import GenerationMonitor
from .registry import METHODS

__all__ = [
    "MethodError",
    "Requirement",
    "GenerationContext",
    "NoHyperparameters",
    "UEMethod",
]


class Requirement(str, Enum):
    """What a method needs besides the clean training data."""

    #: Surrogate-free (clean, LSP, AR).
    NOTHING = "nothing"
    #: A clean surrogate trained beforehand (TAP: its final checkpoint).
    SURROGATE = "surrogate"
    #: Checkpoints of one clean surrogate run (SEP: after epochs 1, 5, ..., 57 of 60).
    SURROGATE_CHECKPOINTS = "surrogate_checkpoints"
    #: A surrogate the method trains itself while it optimises (EM's min-min, MTL-UE + EM).
    SURROGATE_ALONGSIDE = "surrogate_alongside"


@dataclass(frozen=True)
class GenerationContext:
    """Everything a method run may use that is not a hyperparameter of the method.

    ``epsilon`` is the L-inf budget in 1/255 steps; ``device`` a torch device string for
    methods that train; ``surrogate`` / ``surrogate_checkpoints`` the model files of the
    ``surrogate`` stage, given to the methods that declare they need them. ``monitor`` receives
    the method's progress and keeps how its run ended (:mod:`mtlue.methods.progress`; default:
    log lines only, ``mtlue poison`` adds its MLflow run).
    """

    seed: int = 0
    epsilon: int = DEFAULT_EPSILON
    device: str = "cpu"
    surrogate: Path | None = None
    surrogate_checkpoints: tuple[Path, ...] = ()
    monitor: GenerationMonitor = field(default_factory=GenerationMonitor, compare=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise MethodError(f"the seed must be a non-negative integer, got {self.seed!r}")
        try:
            object.__setattr__(self, "epsilon", check_epsilon(self.epsilon))
        except PoisonError as error:
            raise MethodError(str(error)) from None
        if not isinstance(self.device, str) or not self.device:
            raise MethodError(f"device must be a torch device name such as 'cpu' or 'cuda:0', got {self.device!r}")
        if self.surrogate is not None:
            object.__setattr__(self, "surrogate", Path(self.surrogate))
        object.__setattr__(self, "surrogate_checkpoints", tuple(Path(path) for path in self.surrogate_checkpoints))
        if not isinstance(self.monitor, GenerationMonitor):
            raise MethodError(f"monitor must be a mtlue.methods.progress.GenerationMonitor, got {type(self.monitor).__name__}")

    def rng(self, *keys: str | int) -> np.random.Generator:
        """A random stream for (seed, *keys), e.g. ``rng("lsp", "smiling")``.

        Keyed by name rather than drawn in sequence, so a task's patterns do not change when
        another task is added, removed or reordered.
        """
        return np.random.default_rng(np.random.SeedSequence(int(self.seed), spawn_key=tuple(_stable_key(k) for k in keys)))

    def surrogate_files(self, requirement: Requirement) -> tuple[Path, ...]:
        """The model files ``requirement`` reads (empty for surrogate-free methods)."""
        if requirement is Requirement.SURROGATE and self.surrogate is not None:
            return (self.surrogate,)
        if requirement is Requirement.SURROGATE_CHECKPOINTS:
            return self.surrogate_checkpoints
        return ()

    def check_provides(self, requirement: Requirement, method: str) -> None:
        """Raise ``MethodError`` naming the missing input if this context cannot run ``method``."""
        if requirement is Requirement.SURROGATE:
            if self.surrogate is None:
                raise MethodError(
                    f"method {method!r} needs a clean surrogate model: train one with `mtlue surrogate` "
                    f"(the workflow's surrogate stage) and pass its folder with --surrogate-dir DIR "
                    f"(or its final model with --surrogate PATH)"
                )
            paths: tuple[Path, ...] = (self.surrogate,)
        elif requirement is Requirement.SURROGATE_CHECKPOINTS:
            if not self.surrogate_checkpoints:
                raise MethodError(
                    f"method {method!r} needs the checkpoints of a clean surrogate run: train one with "
                    f"`mtlue surrogate` and pass its folder with --surrogate-dir DIR (or each snapshot "
                    f"with --surrogate-checkpoint PATH)"
                )
            paths = self.surrogate_checkpoints
        else:
            return
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            raise MethodError(
                f"method {method!r}: surrogate file(s) {', '.join(missing)} do not exist; "
                f"train the surrogate first"
            )


@dataclass(frozen=True)
class NoHyperparameters:
    """This method has no hyperparameters."""


class UEMethod(ABC):
    """Base class of every UE method; register subclasses with ``register_method``."""

    #: Registry name, set by ``register_method``.
    name: ClassVar[str] = ""
    #: One line for ``mtlue list methods --json``.
    description: ClassVar[str] = ""
    requires: ClassVar[Requirement] = Requirement.NOTHING
    #: Frozen dataclass of the hyperparameters, each with its paper's default.
    Hyperparameters: ClassVar[type] = NoHyperparameters
    #: True for methods that compute their deltas in one go (clean, LSP, AR): their card records
    #: ``closed_form``. A method that iterates reports its steps to ``context.monitor`` instead;
    #: one that does neither is recorded as ``unreported`` (see mtlue.methods.progress).
    closed_form: ClassVar[bool] = False

    def __init__(self, **hyperparameters: Any) -> None:
        cls = type(self)
        self.hyperparameters = build_settings(cls.Hyperparameters, hyperparameters, registry=METHODS, name=cls.name, noun="hyperparameter", widen=True)

    def __repr__(self) -> str:
        values = ", ".join(f"{key}={value!r}" for key, value in self.hyperparameters_dict().items())
        return f"{type(self).__name__}({values})"

    def hyperparameters_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.hyperparameters)

    def generate(self, dataset: PreparedDataset, context: GenerationContext) -> np.ndarray:
        """int8 deltas (N, C, H, W) in 1/255 steps for the training split, checked against the budget.

        How the run ended is then ``context.monitor.convergence`` (what ``make_poison`` puts in the card).
        """
        context.check_provides(self.requires, self.name)
        context.monitor.reset(self.name)
        deltas = self.generate_deltas(dataset, context)
        samples = len(dataset.split(POISONED_SPLIT))
        try:
            check_deltas(
                deltas,
                epsilon=context.epsilon,
                shape=(samples, *dataset.image_shape),
                what=f"the output of method {self.name!r}",
            )
        except PoisonError as error:
            raise MethodError(f"{error} (a bug in the method, not in the data)") from None
        context.monitor.result(closed_form=self.closed_form)
        return deltas

    @abstractmethod
    def generate_deltas(self, dataset: PreparedDataset, context: GenerationContext) -> np.ndarray:
        """Compute the deltas; ``generate`` checks shape, dtype and budget afterwards."""


def _stable_key(key: str | int) -> int:
    # Python's hash() of a str changes between processes; a digest does not.
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool) and key >= 0:
        return int(key)
    if isinstance(key, str):
        return int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "little")
    raise TypeError(f"random stream keys are strings or non-negative integers, got {key!r}")
