"""Settings declared as a frozen dataclass, checked one way: a method's ``Hyperparameters``, a
dataset's ``Options``.

A config or a command line gives plain values (YAML scalars, lists, mappings); each is checked
against its field's annotation without coercion (``maybe`` is no boolean, ``abc`` no integer,
``true`` no integer either), then the dataclass is built, so its ``__post_init__`` checks ranges.
Unknown names go through the kind's registry (:meth:`mtlue.registry.Registry.check_hyperparameters`).
The weightings and defenses declare theirs as keyword-only ``__init__`` arguments instead
(:mod:`victims.hyperparameters`); their names are checked by the same registry method.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mtlue.registry import Registry

__all__ = ["build_settings", "describe_type", "fits"]

_INTEGERS = (int, np.integer)
_NUMBERS = (int, float, np.integer, np.floating)


def fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` has the type ``hint`` names (an integer fits a float)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin is Literal:
        return value in typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, arm) for arm in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, _INTEGERS) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, _NUMBERS) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is Path:
        return isinstance(value, (str, os.PathLike))
    if origin in (tuple, list, Sequence):
        arms = [arm for arm in typing.get_args(hint) if arm is not Ellipsis]
        return isinstance(value, (list, tuple)) and all(fits(item, arms[0] if arms else Any) for item in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    return True


def describe_type(hint: Any) -> str:
    """``hint`` in words, for error messages: "an integer", "one of 'grid', 'average'", ..."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        return f"one of {', '.join(map(repr, typing.get_args(hint)))}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(arm) for arm in typing.get_args(hint))
    names = {bool: "a boolean (true or false)", int: "an integer", float: "a number", str: "a string", Path: "a path", type(None): "null"}
    if hint in names:
        return names[hint]
    if origin in (tuple, list, Sequence):
        return "a list"
    if origin is dict or hint is dict:
        return "a mapping"
    return str(hint)


def _example(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin is Literal:
        return str(typing.get_args(hint)[0])
    arms = [arm for arm in typing.get_args(hint) if arm is not type(None)] if origin in (typing.Union, types.UnionType) else [hint]
    examples = {bool: "true", int: "64", float: "0.5", str: "name", Path: "/data/folder"}
    return examples.get(arms[0], "[a, b]") if arms else "null"


def _widen(value: Any, hint: Any) -> Any:
    """numpy scalars become Python ones, and an integer given for a float a float."""
    if hint is float and isinstance(value, _NUMBERS):
        return float(value)
    if hint is int and isinstance(value, np.integer):
        return int(value)
    return value


def build_settings(
    schema: type, given: Mapping[str, Any], *, registry: Registry, name: str, noun: str, widen: bool = False
) -> Any:
    """The ``schema`` dataclass of ``given``, or the registry's error naming the entry, the field,
    what it must be and an example. ``widen`` makes integers given for floats floats (a
    method's card records ``1.0``, not ``1``)."""
    fields = [item.name for item in dataclasses.fields(schema)]
    registry.check_hyperparameters(name, given, fields, noun=noun)
    hints = typing.get_type_hints(schema)
    for key, value in given.items():
        if not fits(value, hints[key]):
            raise registry.error(
                f"{registry.kind} {name!r}: {noun} {key} must be {describe_type(hints[key])}, got {value!r} "
                f"({type(value).__name__}); e.g. {key}={_example(hints[key])}"
            )
    values = {key: _widen(value, hints[key]) if widen else value for key, value in given.items()}
    try:
        return schema(**values)
    except (TypeError, ValueError) as error:
        raise registry.error(f"{registry.kind} {name!r}: {error}") from None
