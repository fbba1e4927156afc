"""Partial poisoning: which training samples carry a perturbation (MTL-UE, poison rate r).

The selection is a pure function of (sample count, ratio, seed), drawn from its own random
stream, so changing a method never changes which samples it poisons, and the indices a store
records can be recomputed and checked.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import PoisonError

__all__ = ["poisoned_count", "poison_mask"]

#: Spawn key of the selection stream: independent of every method's pattern streams.
_SELECTION_STREAM = 0x6D61736B  # "mask"


def poisoned_count(samples: int, ratio: float) -> int:
    """round(ratio * samples), halves rounded up (Python's round would send 2.5 to 2)."""
    if isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1:
        raise PoisonError(f"the sample count must be a positive integer, got {samples!r}")
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.floating)) or not 0.0 <= ratio <= 1.0:
        raise PoisonError(f"the poison ratio must be a number in [0, 1], got {ratio!r}")
    return math.floor(float(ratio) * int(samples) + 0.5)


def poison_mask(samples: int, ratio: float, seed: int) -> np.ndarray:
    """Boolean mask over ``samples`` with exactly ``poisoned_count(samples, ratio)`` True entries."""
    count = poisoned_count(samples, ratio)
    mask = np.zeros(int(samples), dtype=bool)
    if count == samples:
        mask[:] = True
        return mask
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise PoisonError(f"the seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(_SELECTION_STREAM,)))
    mask[rng.choice(int(samples), size=count, replace=False)] = True
    return mask
