"""Method registry: configs name a method, the registry finds its class.

Modelled on timm's model registry: ``register_method`` adds a ``UEMethod`` subclass,
``list_methods`` names what is available and ``create_method`` is the one way to build one.

A method can also live in its own package, declared in that package's ``pyproject.toml``::

    [project.entry-points."mtlue.methods"]
    my_method = "my_package.module:MyMethod"

Entry points are read when a method is listed or created, not at import, and a plugin's code is
imported only when its method is created, so one broken plugin cannot stop the others, and when
it is used the error names the package to fix. A plugin may not take a built-in method's name.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib import metadata
from typing import Any, TypeVar

from .base import MethodError, UEMethod

__all__ = [
    "ENTRY_POINT_GROUP",
    "METHOD_NAME_RULE",
    "is_valid_method_name",
    "register_method",
    "list_methods",
    "method_class",
    "method_description",
    "create_method",
]

ENTRY_POINT_GROUP = "mtlue.methods"
_NAME = re.compile(r"^[a-z][a-z0-9_]*(-[a-z0-9_]+)*$")
#: The rule ``_NAME`` enforces, in words, for error messages.
METHOD_NAME_RULE = "lower case letters, digits, '_' and inner '-', starting with a letter (as in mtlue-em)"

_METHODS: dict[str, type[UEMethod]] = {}

M = TypeVar("M", bound=type[UEMethod])


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator adding a ``UEMethod`` subclass under ``name`` (lower case, digits, '_' and
    inner '-', as in ``mtlue-em``)."""
    if not is_valid_method_name(name):
        raise ValueError(f"method name {name!r} must be {METHOD_NAME_RULE}")

    def decorator(cls: M) -> M:
        if not (isinstance(cls, type) and issubclass(cls, UEMethod)):
            raise TypeError(f"register_method({name!r}) decorates UEMethod subclasses, got {cls!r}")
        if name in _METHODS and _METHODS[name] is not cls:
            raise ValueError(f"method {name!r} is registered twice ({_METHODS[name]} and {cls})")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return decorator


def is_valid_method_name(name: object) -> bool:
    """Whether ``name`` may name a method: it becomes a folder and a Snakemake wildcard value."""
    return isinstance(name, str) and _NAME.fullmatch(name) is not None


def list_methods() -> list[str]:
    """Built-in and installed methods, sorted (plugins are not imported)."""
    return sorted(set(_METHODS) | set(_plugin_entry_points()))


def method_class(name: str) -> type[UEMethod]:
    plugins = _plugin_entry_points()
    if name in _METHODS and name not in plugins:
        return _METHODS[name]
    if name in plugins:
        return _load_plugin(plugins[name])
    raise MethodError(f"unknown method {name!r}; available: {', '.join(list_methods())}")


def method_description(name: str) -> str:
    return method_class(name).description


def create_method(name: str, **hyperparameters: Any) -> UEMethod:
    """The method ``name`` with ``hyperparameters`` (the rest keep their paper defaults)."""
    return method_class(name)(**hyperparameters)


def _is_builtin(cls: type[UEMethod]) -> bool:
    return cls.__module__.startswith("mtlue.")


def _package(entry_point: metadata.EntryPoint) -> str:
    dist = entry_point.dist
    return f"{dist.name} {dist.version}" if dist is not None else "an unidentified package"


def _plugin_entry_points() -> dict[str, metadata.EntryPoint]:
    """Entry points of installed plugins, refusing names claimed twice or taken from a built-in."""
    found: dict[str, metadata.EntryPoint] = {}
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        name = entry_point.name
        if not is_valid_method_name(name):
            raise MethodError(
                f"package {_package(entry_point)} declares a method {name!r} in the {ENTRY_POINT_GROUP!r} "
                f"entry points; method names are {METHOD_NAME_RULE}: rename the plugin's entry point"
            )
        registered = _METHODS.get(name)
        if registered is not None and _is_builtin(registered):
            raise MethodError(
                f"package {_package(entry_point)} declares a method {name!r} in the {ENTRY_POINT_GROUP!r} "
                f"entry points, which is a built-in method's name; rename the plugin's entry point"
            )
        if name in found and found[name].value != entry_point.value:
            raise MethodError(
                f"method {name!r} is declared by two packages, {_package(found[name])} and "
                f"{_package(entry_point)}; uninstall one of them"
            )
        found[name] = entry_point
    return found


def _load_plugin(entry_point: metadata.EntryPoint) -> type[UEMethod]:
    package = _package(entry_point)
    try:
        loaded = entry_point.load()
    except Exception as error:  # any import-time failure of third-party code
        raise MethodError(
            f"method {entry_point.name!r} from package {package} fails to load "
            f"({entry_point.value}: {type(error).__name__}: {error}); reinstall or uninstall that package"
        ) from error
    if not (isinstance(loaded, type) and issubclass(loaded, UEMethod)):
        raise MethodError(
            f"package {package} declares method {entry_point.name!r} as {entry_point.value}, which is "
            f"not a subclass of mtlue.methods.UEMethod; fix that package's entry point"
        )
    registered = _METHODS.get(entry_point.name)
    if registered is None:
        register_method(entry_point.name)(loaded)
    elif registered is not loaded:
        raise MethodError(
            f"package {package} declares method {entry_point.name!r} as {entry_point.value}, but "
            f"{registered.__module__}.{registered.__qualname__} registered that name already; rename one"
        )
    return loaded
