"""A composed defense, as the training loop applies it, and the split-transformed training source.

``DefensePipeline.step`` is called by :func:`victims.train.fit` on every cropped (uint8) batch:

1. without batch augmentations or a procedure the batch passes through untouched (still uint8),
   so ``none`` and the split-only defenses leave the training step exactly as it was;
2. otherwise one :class:`StepRandom` is derived from the data generator, the images become
   floats in [0, 1], each batch augmentation runs in order, and the procedure (if any) returns
   the :class:`StepBatch` the step learns from.

Split transforms do not run per step: ``DefendedSource`` applies them to the training split
once when training starts (resident splits are transformed once on the device; a streamed
split is transformed batch by batch, which gives the same images because the transforms are
deterministic per image).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from mtlue.data.tasks import Task

from .base import BatchAugmentation, Defense, SplitTransform, StepBatch, StepContext, StepRandom, Targets, TrainingProcedure, to_float

__all__ = ["DefendedSource", "DefensePipeline"]

#: Images transformed per chunk when a whole split is transformed.
SPLIT_CHUNK = 512


class DefensePipeline:
    """The components of one defense spec, grouped by stage (build with ``create_defense``)."""

    def __init__(self, spec: str, components: Sequence[Defense], *, options: dict[str, Any] | None = None) -> None:
        self.spec = spec
        self.components = tuple(components)
        self.options = dict(options or {})
        self.split_transforms = tuple(c for c in self.components if isinstance(c, SplitTransform))
        self.augmentations = tuple(c for c in self.components if isinstance(c, BatchAugmentation))
        procedures = [c for c in self.components if isinstance(c, TrainingProcedure)]
        self.procedure: TrainingProcedure | None = procedures[0] if procedures else None

    @property
    def changes_steps(self) -> bool:
        """Whether ``step`` does anything (batch augmentations or a procedure)."""
        return bool(self.augmentations) or self.procedure is not None

    def check(self, tasks: Sequence[Task], channels: int) -> None:
        for component in self.components:
            component.check(tasks, channels)

    def to_json(self) -> dict[str, Any]:
        """``{"name": spec, "options": {as given}, "components": [{"name", "stage", "hyperparameters"}]}``."""
        return {
            "name": self.spec,
            "options": dict(self.options),
            "components": [{"name": c.name, "stage": c.stage, "hyperparameters": c.hyperparameters()} for c in self.components],
        }

    def transform_images(self, images: torch.Tensor) -> torch.Tensor:
        """The split transforms, in order, on uint8 (B, C, H, W) images."""
        for transform in self.split_transforms:
            images = transform.transform(images)
        return images

    def step(
        self, images: torch.Tensor, targets: Targets, data_generator: torch.Generator, context: StepContext
    ) -> StepBatch:
        if not self.changes_steps:
            return StepBatch(images, targets)
        random = StepRandom.derive(data_generator, images.device)
        images = to_float(images)
        for augmentation in self.augmentations:
            images, targets = augmentation.augment(images, targets, random, context)
        if self.procedure is None:
            return StepBatch(images, targets)
        return self.procedure.prepare(images, targets, random, context)

    def __repr__(self) -> str:
        return f"DefensePipeline({self.spec!r}: {', '.join(map(repr, self.components)) or 'crop + flip only'})"


class DefendedSource:
    """A :class:`~victims.batches.BatchSource` whose images pass through ``pipeline``'s split transforms."""

    def __init__(self, source: Any, pipeline: DefensePipeline) -> None:
        self.source = source
        self.pipeline = pipeline
        self.device = source.device
        self.resident = bool(getattr(source, "resident", False))
        self._images: torch.Tensor | None = None
        if self.resident:
            chunks = []
            for start in range(0, len(source), SPLIT_CHUNK):
                indices = torch.arange(start, min(start + SPLIT_CHUNK, len(source)))
                chunks.append(pipeline.transform_images(source.batch(indices)[0]))
            self._images = torch.cat(chunks)

    def __len__(self) -> int:
        return len(self.source)

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, Targets]:
        images, targets = self.source.batch(indices)
        if self._images is not None:
            return self._images[indices.to(self.device)], targets
        return self.pipeline.transform_images(images), targets
