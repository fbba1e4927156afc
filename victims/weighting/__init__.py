"""Multi-task weighting strategies: how the K task losses of a batch become one update.

Configs name a strategy; ``create_weighting(name, num_tasks, **hyperparameters)`` builds it and
``list_weightings()`` names them all. The training loop uses every strategy the same way::

    weighting = create_weighting("upgrad", num_tasks).to(device)
    optimizer = torch.optim.Adam([*model.parameters(), *weighting.parameters()], ...)
    ...
    optimizer.zero_grad()
    weights = weighting.backward(losses, shared_parameters, features)
    torch.nn.utils.clip_grad_norm_(..., 5.0)
    optimizer.step()
    ...
    weighting.epoch_end(epoch_mean_losses)   # once per epoch

Two families: loss scaling (``ew``, ``uw``, ``dwa``, ``rlw``, ``gls``, ``gradnorm``) minimises
one weighted scalar; gradient aggregation (``pcgrad``, ``mgda``, ``cagrad``, ``imtl``,
``graddrop``, ``gradvac``, ``aligned_mtl``, ``fairgrad``, ``nash_mtl``, ``upgrad``, ``dualproj``,
``config``) combines the per-task gradients of the shared parameters, mostly through torchjd.
Each strategy's module cites its paper and the source of its defaults.

Importing this package is light (no torch): a strategy's module, and torchjd for most
gradient-aggregation strategies, is imported when the strategy is first used (see
:mod:`.registry`), and the base classes load when first named, so ``mtlue list weightings``
answers without torch and a victim trained with ``ew`` never imports torchjd.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import WeightingError
from .registry import (
    BUILTIN,
    create_weighting,
    list_weightings,
    register_weighting,
    weighting_class,
    weighting_description,
    weighting_family,
)

__all__ = [
    "BUILTIN",
    "GradientAggregation",
    "JacobianAggregation",
    "LossScaling",
    "Weighting",
    "WeightingError",
    "create_weighting",
    "list_weightings",
    "register_weighting",
    "weighting_class",
    "weighting_description",
    "weighting_family",
]

#: Classes loaded when first named: :mod:`.base` imports torch, :mod:`.aggregation` torchjd.
_HOMES = {
    "LossScaling": "base",
    "Weighting": "base",
    "GradientAggregation": "aggregation",
    "JacobianAggregation": "aggregation",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
