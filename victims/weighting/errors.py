"""The strategies' error type, in a torch-free module so that the registry can raise it before
any strategy (or torch) is imported."""

from __future__ import annotations

__all__ = ["WeightingError"]


class WeightingError(ValueError):
    """A strategy name, hyperparameter or input that cannot be used."""
