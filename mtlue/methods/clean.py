"""``clean``: the no-poison baseline (the "Clean" rows of MTL-UE's tables).

A store of zeros, written, checked and evaluated through exactly the path every other method
takes, so the victims' clean scores and the poisoned ones differ in the perturbation and
nothing else.
"""

from __future__ import annotations

import numpy as np

from mtlue.data.store import PreparedDataset
from mtlue.poisons import POISONED_SPLIT

from .base import GenerationContext, Requirement, UEMethod
from .registry import register_method

__all__ = ["CleanMethod"]


@register_method("clean")
class CleanMethod(UEMethod):
    """Zero perturbation for every training sample."""

    description = "no perturbation: the clean baseline, run through the same path as every method"
    requires = Requirement.NOTHING
    closed_form = True

    def generate_deltas(self, dataset: PreparedDataset, context: GenerationContext) -> np.ndarray:
        samples = len(dataset.split(POISONED_SPLIT))
        return np.zeros((samples, *dataset.image_shape), dtype=np.int8)
