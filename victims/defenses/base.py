"""The interface every defense implements, and what a defense hands the training step.

A defense is what an attacker does while training a victim on published (possibly poisoned)
data. Every defense belongs to one of three stages, applied in this order:

- **split** (:class:`SplitTransform`): a deterministic per-image map of uint8 images, applied
  once to the whole training split when training starts (JPEG, bit-depth reduction, grayscale,
  Gaussian blur). The test split is never transformed.
- **batch** (:class:`BatchAugmentation`): a random map of the cropped float batch in [0, 1] and
  its targets, drawn per sample (Cutout).
- **procedure** (:class:`TrainingProcedure`): changes what the training step learns from: the
  images (UEraser's loss-maximising augmentation search, PGD adversarial training) or how the
  per-task losses are formed (MixUp, CutMix: a :class:`LossMix`). At most one per run.

Every random number comes from a :class:`StepRandom` that the training loop derives from its
data generator once per step, so a resumed run draws exactly what an uninterrupted one draws.
The weighting strategy always receives the K per-task losses of the (defended) batch, so every
strategy works with every defense.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch

from mtlue.data.tasks import Task
from mtlue.errors import DefenseError
from victims.hyperparameters import KeywordHyperparameters

if TYPE_CHECKING:
    from victims.model import MultiTaskModel

__all__ = [
    "STAGES",
    "BatchAugmentation",
    "Defense",
    "DefenseError",
    "LossMix",
    "SplitTransform",
    "StepBatch",
    "StepContext",
    "StepRandom",
    "TrainingProcedure",
    "to_float",
]

Targets = dict[str, torch.Tensor]

#: The stages in the order a composed defense applies them.
STAGES: tuple[str, ...] = ("split", "batch", "procedure")


@dataclass
class StepRandom:
    """The random streams of one training step, both seeded from the run's data generator.

    ``device`` feeds per-sample tensors drawn on the training device; ``numpy`` feeds per-batch
    scalars (MixUp's lambda, CutMix's box) without a host-device synchronisation.
    """

    device: torch.Generator
    numpy: np.random.Generator

    @classmethod
    def derive(cls, data_generator: torch.Generator, device: torch.device) -> StepRandom:
        seed = int(torch.randint(0, 2**62, (1,), generator=data_generator))
        return cls(torch.Generator(device=device).manual_seed(seed), np.random.default_rng(seed))


@dataclass
class StepContext:
    """What a defense may read about the current step (procedures use the model)."""

    tasks: Sequence[Task]
    epoch: int
    epochs: int
    model: MultiTaskModel | None = None
    amp_dtype: torch.dtype | None = None


@dataclass
class LossMix:
    """Per-task loss mixing: task t's loss is ``lam_t * L(out, y_t) + (1 - lam_t) * L(out, other_t)``.

    ``weights`` maps the mixed tasks to their lambda (a 0-d tensor or float); tasks it does not
    name use the batch's targets alone (CutMix's dense tasks, whose pasted maps are exact).
    """

    other: Targets
    weights: Mapping[str, torch.Tensor | float]


@dataclass
class StepBatch:
    """The batch a training step learns from: images uint8 (untouched) or float in [0, 1]."""

    images: torch.Tensor
    targets: Targets
    mix: LossMix | None = None


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float32 in [0, 1]; float images pass through."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images


class Defense(KeywordHyperparameters, abc.ABC):
    """One registered defense (see the module docstring for the stages).

    Hyperparameters are the keyword-only arguments of ``__init__``, stored as attributes of the
    same name; ``hyperparameters()`` and the repr read them. ``name`` is the registry name the
    defense was created under (a variant such as ``at-4`` shares its class with ``at``).
    """

    stage: ClassVar[str] = ""

    def __init__(self) -> None:
        self.name = type(self).__name__

    def check(self, tasks: Sequence[Task], channels: int) -> None:
        """Raise DefenseError if the defense cannot run on this dataset."""

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={value!r}" for key, value in self.hyperparameters().items())
        return f"{self.name}({settings})"


class SplitTransform(Defense):
    """A deterministic per-image map of uint8 (B, C, H, W) images to uint8 images of the same shape."""

    stage: ClassVar[str] = "split"

    @abc.abstractmethod
    def transform(self, images: torch.Tensor) -> torch.Tensor: ...


class BatchAugmentation(Defense):
    """A random map of a cropped float batch in [0, 1] and its targets (dense maps move with pixels)."""

    stage: ClassVar[str] = "batch"

    @abc.abstractmethod
    def augment(
        self, images: torch.Tensor, targets: Targets, random: StepRandom, context: StepContext
    ) -> tuple[torch.Tensor, Targets]: ...


class TrainingProcedure(Defense):
    """Changes what one training step learns from (the images, or how the task losses are formed)."""

    stage: ClassVar[str] = "procedure"

    @abc.abstractmethod
    def prepare(self, images: torch.Tensor, targets: Targets, random: StepRandom, context: StepContext) -> StepBatch: ...
