"""Hyperparameters declared as keyword-only ``__init__`` arguments, stored as attributes.

The weighting strategies and the defenses both describe themselves this way, so configs can
name a hyperparameter, registries can refuse an unknown one, and reprs show the values.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["KeywordHyperparameters"]


class KeywordHyperparameters:
    """Mixin: a class's hyperparameters are the keyword-only arguments of the ``__init__`` of
    every class of its hierarchy below the base that inherits this mixin directly (that base's
    own arguments, such as a weighting's ``num_tasks``, are structural, not hyperparameters).
    Each is stored as an attribute of the same name."""

    @classmethod
    def hyperparameter_names(cls) -> tuple[str, ...]:
        names: list[str] = []
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None or KeywordHyperparameters in klass.__bases__:
                continue
            for parameter in inspect.signature(init).parameters.values():
                if parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.name not in names:
                    names.append(parameter.name)
        return tuple(names)

    def hyperparameters(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.hyperparameter_names()}
