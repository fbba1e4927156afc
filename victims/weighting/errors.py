"""The strategies' error type, importable without torch so that the registry can raise it
before any strategy (or torch) is imported. Defined in :mod:`mtlue.errors`."""

from __future__ import annotations

from mtlue.errors import WeightingError

__all__ = ["WeightingError"]
