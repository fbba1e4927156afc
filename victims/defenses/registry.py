"""Defense registry: configs name a defense (or a ``+`` composition), the registry builds it.

Modelled on timm's model registry: ``register_defense`` adds a class under a name (several
names may share a class with different defaults: ``at``, ``at-4``, ``at-2``), ``list_defenses``
names what is available and ``create_defense`` is the one entry point::

    create_defense("none")                      # the standard random crop + flip only
    create_defense("jpeg+cutout", quality=20)   # split transforms first, then batch augmentations
    create_defense("bdr+ueraser", **{"ueraser.repeats": 3})

Composition rules (checked by :func:`create_defense`, refused with the fix otherwise): the
components are written in stage order (split transforms, then batch augmentations, then at most
one training procedure), each at most once; ``none`` stands alone. Requiring the written order
to be the applied order keeps one spec per run, so ``cutout+jpeg`` cannot silently duplicate
``jpeg+cutout`` under another results folder.

Options go to the component that has them: ``quality=20`` when exactly one component has a
``quality``, ``jpeg.quality=20`` to name the component.

The built-in defenses are listed in ``BUILTIN`` (name -> module) and a module is imported when
one of its defenses is first used, so a run imports only the defenses it trains with (JPEG
pulls PIL, UEraser its augmentation ops); listing the names imports nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from mtlue.registry import Registry

from .base import STAGES, Defense, DefenseError

__all__ = ["BUILTIN", "DEFENSES", "create_defense", "defense_class", "defense_description", "list_defenses", "register_defense", "split_spec"]

#: The built-in defenses and the module that registers each, imported on first use. A new
#: defense module adds its names here.
BUILTIN: dict[str, str] = {
    "none": "victims.defenses.none",
    "cutout": "victims.defenses.cutout",
    "mixup": "victims.defenses.mixup",
    "cutmix": "victims.defenses.cutmix",
    "gaussian": "victims.defenses.gaussian",
    "jpeg": "victims.defenses.jpeg",
    "bdr": "victims.defenses.bdr",
    "grayscale": "victims.defenses.grayscale",
    "ueraser": "victims.defenses.ueraser",
    "ueraser-lite": "victims.defenses.ueraser",
    "ueraser-max": "victims.defenses.ueraser",
    "at": "victims.defenses.at",
    "at-4": "victims.defenses.at",
    "at-2": "victims.defenses.at",
}

DEFENSES: Registry[type[Defense]] = Registry("defense", base="victims.defenses.base:Defense", error=DefenseError, builtin=BUILTIN)

D = TypeVar("D", bound=type[Defense])


def register_defense(name: str, **defaults: Any) -> Callable[[D], D]:
    """Class decorator adding a ``Defense`` subclass under ``name`` with these default hyperparameters.

    Names follow :data:`mtlue.registry.NAME_RULE` (no '+', which composes, nor '.' or '/'), so a
    spec is a safe path component.
    """
    return DEFENSES.register(name, **defaults)


def list_defenses() -> list[str]:
    """Built-in and registered defenses, sorted (nothing is imported)."""
    return DEFENSES.names()


def defense_class(name: str) -> type[Defense]:
    if name not in DEFENSES.names():
        raise DEFENSES.unknown(name, " (compose with '+')")
    return DEFENSES.get(name)


def defense_description(name: str) -> str:
    """One line for ``mtlue list defenses --json``: the first paragraph of the defense's module
    docstring (which cites its paper), its stage and its defaults."""
    cls = defense_class(name)
    settings = _build(name, {}).hyperparameters()
    shown = ", ".join(f"{key}={value!r}" for key, value in settings.items())
    return f"{DEFENSES.summary(name)} [{cls.stage}{'; ' + shown if shown else ''}]"


def split_spec(spec: str) -> list[str]:
    """The component names of a spec (``"jpeg+cutout"`` -> ``["jpeg", "cutout"]``)."""
    if not isinstance(spec, str) or not spec.strip():
        raise DefenseError(f"a defense spec is a name or names joined by '+', got {spec!r}; see `mtlue list defenses`")
    return [part.strip() for part in spec.split("+")]


def _build(name: str, options: Mapping[str, Any]) -> Defense:
    entry = DEFENSES.entry(name)
    cls, defaults = entry.cls, entry.defaults
    try:
        defense = cls(**{**defaults, **options})
    except TypeError as error:
        raise DefenseError(f"defense {name!r}: {error}") from None
    defense.name = name
    return defense


def _route(names: list[str], options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    valid = {name: defense_class(name).hyperparameter_names() for name in names}
    routed: dict[str, dict[str, Any]] = {name: {} for name in names}
    for key, value in options.items():
        component, dot, option = key.rpartition(".")
        if dot:
            if component not in valid:
                raise DefenseError(f"option {key!r} names component {component!r}, which is not in {'+'.join(names)!r}")
            owners = [component] if option in valid[component] else []
        else:
            owners = [name for name in names if option in valid[name]]
        if not owners:
            listing = "; ".join(f"{name}: {', '.join(params) or 'none'}" for name, params in valid.items())
            raise DefenseError(f"no component of defense {'+'.join(names)!r} has an option {option!r} (options: {listing})")
        if len(owners) > 1:
            raise DefenseError(
                f"option {option!r} belongs to several components of {'+'.join(names)!r} ({', '.join(owners)}); "
                f"name one, e.g. {owners[0]}.{option}={value!r}"
            )
        routed[owners[0]][option] = value
    return routed


def create_defense(spec: str, **options: Any) -> Any:
    """The :class:`~victims.defenses.pipeline.DefensePipeline` of ``spec`` (see the module docstring).

    Unset hyperparameters take the defaults each defense's module documents with their source.
    """
    from .pipeline import DefensePipeline

    names = split_spec(spec)
    for name in names:
        defense_class(name)
    if len(names) > 1 and "none" in names:
        raise DefenseError(
            f"defense {spec!r}: 'none' (the standard crop + flip, which every defense already includes) cannot be composed; "
            f"drop it: {'+'.join(n for n in names if n != 'none')!r}"
        )
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DefenseError(f"defense {spec!r} lists {', '.join(duplicates)} more than once")
    stages = [defense_class(name).stage for name in names]
    procedures = [name for name, stage in zip(names, stages, strict=True) if stage == "procedure"]
    if len(procedures) > 1:
        raise DefenseError(
            f"defense {spec!r} combines the training procedures {', '.join(procedures)}; each changes how the step "
            f"learns (mixed losses, augmentation search or adversarial images) and at most one can be used"
        )
    order = [STAGES.index(stage) for stage in stages if stage in STAGES]
    if order != sorted(order):
        canonical = "+".join(sorted(names, key=lambda n: STAGES.index(defense_class(n).stage) if defense_class(n).stage in STAGES else -1))
        raise DefenseError(
            f"defense {spec!r} is not in stage order (split transforms, then batch augmentations, then one training "
            f"procedure); write {canonical!r}"
        )
    routed = _route(names, options)
    components = [_build(name, routed[name]) for name in names]
    return DefensePipeline("+".join(names), tuple(c for c in components if c.stage in STAGES), options=dict(options))
