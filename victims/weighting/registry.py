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

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from mtlue.registry import Registry

from .errors import WeightingError

if TYPE_CHECKING:
    from .base import Weighting

__all__ = [
    "BUILTIN",
    "BuiltinWeighting",
    "WEIGHTINGS",
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
    "config": BuiltinWeighting("victims.weighting.config", _AGGREGATION),
}

def _check_family(name: str, cls: type[Weighting]) -> None:
    builtin = BUILTIN.get(name)
    if builtin is not None and cls.family != builtin.family:
        raise WeightingError(
            f"weighting {name!r}: {cls.__qualname__} is in the {cls.family!r} family but "
            f"victims.weighting.registry.BUILTIN lists {builtin.family!r}; correct the table"
        )


WEIGHTINGS: Registry[type[Weighting]] = Registry(
    "weighting",
    base="victims.weighting.base:Weighting",
    error=WeightingError,
    builtin={name: row.module for name, row in BUILTIN.items()},
    check=_check_family,
)

W = TypeVar("W", bound="type[Weighting]")


def register_weighting(name: str) -> Callable[[W], W]:
    """Class decorator adding a ``Weighting`` subclass under ``name``.

    A built-in name belongs to its ``BUILTIN`` module: another class taking it is refused even
    before that module is imported, and the built-in class must have the family listed there.
    """
    return WEIGHTINGS.register(name)


def list_weightings() -> list[str]:
    """Built-in and registered strategies, sorted (nothing is imported)."""
    return WEIGHTINGS.names()


def weighting_family(name: str) -> str:
    """``"loss scaling"`` or ``"gradient aggregation"``, without importing a built-in's module."""
    if name in WEIGHTINGS.entries:
        return WEIGHTINGS.entries[name].cls.family
    if name in BUILTIN:
        return BUILTIN[name].family
    raise WEIGHTINGS.unknown(name)


def weighting_description(name: str) -> str:
    """One line for ``mtlue list weightings --json``: the first line of the strategy's module
    docstring (which cites its paper) and its family, read without importing a built-in."""
    return f"{WEIGHTINGS.summary(name)} [{weighting_family(name)}]"


def weighting_class(name: str) -> type[Weighting]:
    """The class of strategy ``name``, importing its module on first use."""
    return WEIGHTINGS.get(name)


def create_weighting(name: str, num_tasks: int, **hyperparameters: Any) -> Weighting:
    """The strategy ``name`` for ``num_tasks`` tasks; unset hyperparameters take the defaults
    documented (with their source) in the strategy's module."""
    cls = weighting_class(name)
    WEIGHTINGS.check_hyperparameters(name, hyperparameters, cls.hyperparameter_names())
    return cls(num_tasks, **hyperparameters)
