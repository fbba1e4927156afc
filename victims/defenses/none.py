"""none: no defense beyond the standard augmentation, a random crop and horizontal flip.

What every victim trains with (MTL-UE Sec. 5, :mod:`victims.augment`); every other defense adds
to it. No hyperparameters; ``none`` cannot be composed (it is already part of every defense).
"""

from __future__ import annotations

from typing import ClassVar

from .base import Defense
from .registry import register_defense

__all__ = ["NoDefense"]


@register_defense("none")
class NoDefense(Defense):
    stage: ClassVar[str] = "none"
