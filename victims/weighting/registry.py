"""Weighting registry: configs name a strategy, the registry finds the class.

Modelled on timm's model registry: ``register_weighting`` adds a class, ``list_weightings`` names
what is available and ``create_weighting`` is the one entry point, so nothing downstream
dispatches on strategy names.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, TypeVar

from .base import Weighting, WeightingError

__all__ = ["create_weighting", "list_weightings", "register_weighting", "weighting_class", "weighting_description"]

_STRATEGIES: dict[str, type[Weighting]] = {}

W = TypeVar("W", bound=type[Weighting])


def register_weighting(name: str) -> Callable[[W], W]:
    """Class decorator adding a ``Weighting`` subclass under ``name``."""

    def decorator(cls: W) -> W:
        if name in _STRATEGIES and _STRATEGIES[name] is not cls:
            raise ValueError(f"weighting {name!r} is registered twice ({_STRATEGIES[name]}, {cls})")
        cls.name = name
        _STRATEGIES[name] = cls
        return cls

    return decorator


def list_weightings() -> list[str]:
    return sorted(_STRATEGIES)


def weighting_description(name: str) -> str:
    """One line for ``mtlue list weightings --json``: the first line of the strategy's module
    docstring (which cites its paper) and its family."""
    cls = weighting_class(name)
    module = sys.modules[cls.__module__]
    summary = (module.__doc__ or cls.__doc__ or name).strip().splitlines()[0]
    return f"{summary} [{cls.family}]"


def weighting_class(name: str) -> type[Weighting]:
    try:
        return _STRATEGIES[name]
    except KeyError:
        raise WeightingError(
            f"unknown weighting {name!r}; available: {', '.join(list_weightings())}"
        ) from None


def create_weighting(name: str, num_tasks: int, **hyperparameters: Any) -> Weighting:
    """The strategy ``name`` for ``num_tasks`` tasks; unset hyperparameters take the defaults
    documented (with their source) in the strategy's module."""
    cls = weighting_class(name)
    valid = cls.hyperparameter_names()
    unknown = sorted(set(hyperparameters) - set(valid))
    if unknown:
        raise WeightingError(
            f"weighting {name!r} has no hyperparameter(s) {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(valid) or 'none'}"
        )
    return cls(num_tasks, **hyperparameters)
