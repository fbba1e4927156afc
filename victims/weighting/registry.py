"""Weighting registry: configs name a strategy, the registry finds the class.

Modelled on timm's model registry: ``register_weighting`` adds a class, ``list_weightings`` names
what is available and ``create_weighting`` is the one entry point, so nothing downstream
dispatches on strategy names.

The built-in strategies are listed in ``BUILTIN`` (name -> module and family) and their modules
are imported only when a strategy is used, as ``mtlue.methods`` does for plugins: most
gradient-aggregation modules import torchjd, which pulls cvxpy and scipy.stats (about a second
of CPU), and a victim trained with ``ew`` has no use for them. Listing and describing the
strategies (``mtlue list weightings --json``) reads the first line of each module's docstring
from its source, without importing it. A module's class is checked against its ``BUILTIN`` row
when it registers, so the table cannot drift from the code.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from .errors import WeightingError

if TYPE_CHECKING:
    from .base import Weighting

__all__ = [
    "BUILTIN",
    "BuiltinWeighting",
    "create_weighting",
    "list_weightings",
    "register_weighting",
    "weighting_class",
    "weighting_description",
    "weighting_family",
]


class BuiltinWeighting(NamedTuple):
    """Where a built-in strategy lives, and its family (checked when the module registers it)."""

    module: str
    family: str


_LOSS_SCALING = "loss scaling"
_AGGREGATION = "gradient aggregation"

#: The built-in strategies, imported on first use. A new strategy module adds its row here.
BUILTIN: dict[str, BuiltinWeighting] = {
    "ew": BuiltinWeighting("victims.weighting.ew", _LOSS_SCALING),
    "uw": BuiltinWeighting("victims.weighting.uw", _LOSS_SCALING),
    "dwa": BuiltinWeighting("victims.weighting.dwa", _LOSS_SCALING),
    "rlw": BuiltinWeighting("victims.weighting.rlw", _LOSS_SCALING),
    "gls": BuiltinWeighting("victims.weighting.gls", _LOSS_SCALING),
    "gradnorm": BuiltinWeighting("victims.weighting.gradnorm", _LOSS_SCALING),
    "pcgrad": BuiltinWeighting("victims.weighting.pcgrad", _AGGREGATION),
    "mgda": BuiltinWeighting("victims.weighting.mgda", _AGGREGATION),
    "cagrad": BuiltinWeighting("victims.weighting.cagrad", _AGGREGATION),
    "imtl": BuiltinWeighting("victims.weighting.imtl", _AGGREGATION),
    "graddrop": BuiltinWeighting("victims.weighting.graddrop", _AGGREGATION),
    "gradvac": BuiltinWeighting("victims.weighting.gradvac", _AGGREGATION),
    "aligned_mtl": BuiltinWeighting("victims.weighting.aligned_mtl", _AGGREGATION),
    "fairgrad": BuiltinWeighting("victims.weighting.fairgrad", _AGGREGATION),
    "nash_mtl": BuiltinWeighting("victims.weighting.nash_mtl", _AGGREGATION),
    "upgrad": BuiltinWeighting("victims.weighting.upgrad", _AGGREGATION),
    "dualproj": BuiltinWeighting("victims.weighting.dualproj", _AGGREGATION),
    "config": BuiltinWeighting("victims.weighting.conflict_free", _AGGREGATION),
}

_STRATEGIES: dict[str, type[Weighting]] = {}

W = TypeVar("W", bound="type[Weighting]")


def register_weighting(name: str) -> Callable[[W], W]:
    """Class decorator adding a ``Weighting`` subclass under ``name``.

    A built-in name belongs to its ``BUILTIN`` module: another class taking it is refused even
    before that module is imported, and the built-in class must have the family listed there.
    """

    def decorator(cls: W) -> W:
        builtin = BUILTIN.get(name)
        if builtin is not None and cls.__module__ != builtin.module:
            raise ValueError(f"weighting {name!r} is registered twice ({builtin.module}, {cls})")
        if name in _STRATEGIES and _STRATEGIES[name] is not cls:
            raise ValueError(f"weighting {name!r} is registered twice ({_STRATEGIES[name]}, {cls})")
        if builtin is not None and cls.family != builtin.family:
            raise ValueError(
                f"weighting {name!r}: {cls.__qualname__} is in the {cls.family!r} family but "
                f"victims.weighting.registry.BUILTIN lists {builtin.family!r}; correct the table"
            )
        cls.name = name
        _STRATEGIES[name] = cls
        return cls

    return decorator


def list_weightings() -> list[str]:
    """Built-in and registered strategies, sorted (nothing is imported)."""
    return sorted(set(BUILTIN) | set(_STRATEGIES))


def weighting_family(name: str) -> str:
    """``"loss scaling"`` or ``"gradient aggregation"``, without importing a built-in's module."""
    if name in _STRATEGIES:
        return _STRATEGIES[name].family
    if name in BUILTIN:
        return BUILTIN[name].family
    raise _unknown(name)


def weighting_description(name: str) -> str:
    """One line for ``mtlue list weightings --json``: the first line of the strategy's module
    docstring (which cites its paper) and its family, read without importing a built-in."""
    if name in _STRATEGIES:
        cls = _STRATEGIES[name]
        module = importlib.import_module(cls.__module__)
        text = module.__doc__ or cls.__doc__
    elif name in BUILTIN:
        text = _module_docstring(BUILTIN[name].module)
    else:
        raise _unknown(name)
    summary = (text or name).strip().splitlines()[0]
    return f"{summary} [{weighting_family(name)}]"


def weighting_class(name: str) -> type[Weighting]:
    """The class of strategy ``name``, importing its module on first use."""
    if name not in _STRATEGIES and name in BUILTIN:
        importlib.import_module(BUILTIN[name].module)
        if name not in _STRATEGIES:
            raise WeightingError(
                f"module {BUILTIN[name].module} registers no weighting {name!r}; "
                f"fix its @register_weighting or victims.weighting.registry.BUILTIN"
            )
    try:
        return _STRATEGIES[name]
    except KeyError:
        raise _unknown(name) from None


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


def _unknown(name: str) -> WeightingError:
    return WeightingError(f"unknown weighting {name!r}; available: {', '.join(list_weightings())}")


def _module_docstring(module: str) -> str | None:
    """The docstring of ``module``, parsed from its source file instead of imported."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return importlib.import_module(module).__doc__
    with open(spec.origin, encoding="utf-8") as handle:
        return ast.get_docstring(ast.parse(handle.read(), spec.origin))
