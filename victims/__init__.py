"""The victim side of the benchmark: what an attacker trains on published data.

- :mod:`victims.backbones` - shared encoders (timm / segmentation-models-pytorch) and their registry
- :mod:`victims.model` - the hard-parameter-sharing multi-task network
- :mod:`victims.losses`, :mod:`victims.metrics` - per-task losses, test metrics
- :mod:`victims.summary` - the aggregate and Δm of per-task results (torch-free)
- :mod:`victims.augment`, :mod:`victims.batches` - on-device crops/flips and batch gathering
- :mod:`victims.weighting` - task-weighting strategies (registry)
- :mod:`victims.defenses` - the attacker's defenses: split transforms, augmentations, training procedures (registry)
- :mod:`victims.config` - the experiment settings (``VictimConfig``, ``TrainConfig``), torch-free
- :mod:`victims.train`, :mod:`victims.checkpoint` - the training loop and resumable checkpoints
- :mod:`victims.run` - one victim experiment end to end (``metrics.json``)
- :mod:`victims.commands` - the ``mtlue victim`` subcommand

Importing the package is light; torch-heavy modules load when their names are first used.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "BackboneError",
    "MultiTaskModel",
    "TrainConfig",
    "VictimConfig",
    "VictimResult",
    "aggregate",
    "create_backbone",
    "delta_m",
    "evaluate",
    "fit",
    "list_backbones",
    "register_backbone",
    "run_victim",
]

_HOMES = {
    "BackboneError": "backbones",
    "create_backbone": "backbones",
    "list_backbones": "backbones",
    "register_backbone": "backbones",
    "MultiTaskModel": "model",
    "aggregate": "summary",
    "delta_m": "summary",
    "TrainConfig": "config",
    "evaluate": "train",
    "fit": "train",
    "VictimConfig": "config",
    "VictimResult": "run",
    "run_victim": "run",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
