"""Run a method on a dataset and write its poison store: the library form of ``mtlue poison``."""

from __future__ import annotations

import os

import numpy as np

from mtlue.data.store import PreparedDataset
from mtlue.poisons import (
    POISONED_SPLIT,
    PoisonStore,
    poison_mask,
    poisoned_count,
    write_store,
)
from mtlue.timing import CLOCK

from .base import GenerationContext, UEMethod

__all__ = ["make_poison"]


def make_poison(
    dataset: PreparedDataset,
    method: UEMethod,
    context: GenerationContext,
    out_dir: str | os.PathLike[str],
    ratio: float = 1.0,
) -> PoisonStore:
    """Generate ``method``'s deltas, keep them on a ``ratio`` share of the samples, store them.

    The poisoned samples are chosen by ``poison_mask(samples, ratio, context.seed)``, on a random
    stream of their own, so the selection is the same for every method at a given seed. The card
    records how the generation ended (``context.monitor``). ``method.generate`` is the process's
    work span (:mod:`mtlue.timing`); the imports a method makes when it starts (torch, for most)
    count in it.
    """
    # Check the ratio before a possibly long generation, not after it.
    poisoned_count(len(dataset.split(POISONED_SPLIT)), ratio)
    CLOCK.work_started()
    try:
        deltas = method.generate(dataset, context)
    finally:
        CLOCK.work_ended()
    mask = poison_mask(len(deltas), ratio, context.seed)
    deltas[~mask] = 0
    return write_store(
        out_dir,
        deltas,
        dataset=dataset,
        method=method.name,
        hyperparameters=method.hyperparameters_dict(),
        epsilon=context.epsilon,
        seed=context.seed,
        ratio=ratio,
        poisoned_indices=None if mask.all() else np.flatnonzero(mask),
        surrogates=context.surrogate_files(method.requires),
        convergence=context.monitor.convergence,
    )
