"""Defenses: what an attacker does while training a victim on published data (registry).

``create_defense(spec, **options)`` builds a defense (or a ``+`` composition such as
``jpeg+cutout``) and ``list_defenses()`` names them all; :func:`victims.train.fit` applies it::

    defense = create_defense("ueraser")
    fit(model, weighting, train, test, config, crop_size=..., defense=defense)

Stages (see :mod:`.base`): split transforms applied once to the training split (``jpeg``,
``bdr``, ``grayscale``, ``gaussian``), batch augmentations after the crop (``cutout``), and at
most one training procedure (``mixup``, ``cutmix``, ``ueraser``/``-lite``/``-max``,
``at``/``at-4``/``at-2``). ``none`` is the standard random crop + flip that every defense
includes. Dense targets move with the image wherever pixels move. Each module cites its paper
and the source of its defaults; the reference set is APBench's (Qin et al., 2023). A defense's
module is imported when the defense is first used (see :mod:`.registry`).
"""

from .base import (
    BatchAugmentation,
    Defense,
    DefenseError,
    LossMix,
    SplitTransform,
    StepBatch,
    StepContext,
    StepRandom,
    TrainingProcedure,
)
from .pipeline import DefendedSource, DefensePipeline
from .registry import BUILTIN, create_defense, defense_class, defense_description, list_defenses, register_defense, split_spec

__all__ = [
    "BUILTIN",
    "BatchAugmentation",
    "DefendedSource",
    "Defense",
    "DefenseError",
    "DefensePipeline",
    "LossMix",
    "SplitTransform",
    "StepBatch",
    "StepContext",
    "StepRandom",
    "TrainingProcedure",
    "create_defense",
    "defense_class",
    "defense_description",
    "list_defenses",
    "register_defense",
    "split_spec",
]
