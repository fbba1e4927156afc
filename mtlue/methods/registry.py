"""Method registry: configs name a method, the registry finds its class (see :mod:`mtlue.registry`).

``register_method`` adds a ``UEMethod`` subclass, ``list_methods`` names what is available and
``create_method`` is the one way to build one.

A method can also live in its own package, declared in that package's ``pyproject.toml``::

    [project.entry-points."mtlue.methods"]
    my_method = "my_package.module:MyMethod"

Entry points are read when a method is listed or created, not at import, and a plugin's code is
imported only when its method is created, so one broken plugin cannot stop the others, and when
it is used the error names the package to fix. A plugin may not take a built-in method's name.

This module imports no method (nor :mod:`.base`), so the poison stores can check a submission's
name against it without importing the methods' machinery.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from mtlue.errors import MethodError
from mtlue.registry import NAME_RULE, Registry, is_valid_name

if TYPE_CHECKING:
    from .base import UEMethod

__all__ = [
    "ENTRY_POINT_GROUP",
    "METHODS",
    "METHOD_NAME_RULE",
    "is_valid_method_name",
    "register_method",
    "list_methods",
    "method_class",
    "method_description",
    "create_method",
]

ENTRY_POINT_GROUP = "mtlue.methods"
#: Kept under its historical name: every registry follows the same rule.
METHOD_NAME_RULE = NAME_RULE
is_valid_method_name = is_valid_name

#: The built-in methods register when :mod:`mtlue.methods` is imported (they are light: torch
#: loads only when a method runs).
METHODS: Registry[type[UEMethod]] = Registry(
    "method", base="mtlue.methods.base:UEMethod", error=MethodError, entry_point_group=ENTRY_POINT_GROUP
)

M = TypeVar("M", bound="type[UEMethod]")


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator adding a ``UEMethod`` subclass under ``name`` (see :data:`METHOD_NAME_RULE`)."""
    return METHODS.register(name)


def list_methods() -> list[str]:
    """Built-in and installed methods, sorted (plugins are not imported)."""
    _import_builtins()
    return METHODS.names()


def method_class(name: str) -> type[UEMethod]:
    _import_builtins()
    return METHODS.get(name)


def method_description(name: str) -> str:
    _import_builtins()
    return METHODS.summary(name)


def create_method(name: str, **hyperparameters: Any) -> UEMethod:
    """The method ``name`` with ``hyperparameters`` (the rest keep their paper defaults)."""
    return method_class(name)(**hyperparameters)


def _import_builtins() -> None:
    # Importing the package registers the built-in methods; a caller that imported only this
    # module (the poison stores) still sees them.
    importlib.import_module("mtlue.methods")
