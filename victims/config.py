"""Settings of a victim experiment, as plain dataclasses without torch.

:class:`VictimConfig` is the attacker's choice of network (backbone, weighting strategy, MTL or
STL, decoder, stem) and of defense; :class:`TrainConfig` the optimisation recipe. Both validate themselves on
construction, with messages that name the field and the fix. This module imports nothing heavy,
so that the ``mtlue`` command line can build its parser (and ``--help``) at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

__all__ = ["DECODERS", "MODES", "STEMS", "TrainConfig", "VictimConfig"]

#: ``mtl``: one multi-task network; ``stl``: one network per task (the paper's STL victims).
MODES: tuple[str, ...] = ("mtl", "stl")
#: Decoders of dense tasks (see :mod:`victims.model`).
DECODERS: tuple[str, ...] = ("unet", "fpn", "deeplabv3plus")
#: Stem policies of classification encoders (see :mod:`victims.backbones`).
STEMS: tuple[str, ...] = ("release", "standard", "cifar")


@dataclass(frozen=True)
class VictimConfig:
    """The attacker's choice of victim: architecture, task weighting, MTL vs STL and defense.

    ``defense`` is a spec of :mod:`victims.defenses` (``none``, ``jpeg``, ``jpeg+cutout``, ...;
    `mtlue list defenses`), checked when the run starts; ``defense_options`` its hyperparameters.
    """

    backbone: str = "resnet18"
    weighting: str = "ew"
    weighting_options: Mapping[str, Any] = field(default_factory=dict)
    mode: Literal["mtl", "stl"] = "mtl"
    decoder: str = "unet"
    #: Multiplier of the dense decoders' default widths (smaller for CPU runs).
    decoder_width: float = 1.0
    stem: str = "release"
    pretrained: str | None = None
    defense: str = "none"
    defense_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose mtl (one multi-task network) or stl (one network per task)")
        if self.mode == "stl" and (self.weighting != "ew" or self.weighting_options):
            raise ValueError(
                f"weighting {self.weighting!r} has no effect in single-task mode (one loss per network); "
                f"use --weighting ew with --mode stl"
            )
        if self.decoder not in DECODERS:
            raise ValueError(f"unknown decoder {self.decoder!r}; choose one of {', '.join(DECODERS)}")
        if not (isinstance(self.decoder_width, (int, float)) and self.decoder_width > 0):
            raise ValueError(f"decoder_width multiplies the decoders' widths and must be > 0, got {self.decoder_width!r}")
        if self.stem not in STEMS:
            raise ValueError(f"unknown stem {self.stem!r}; choose one of {', '.join(STEMS)}")
        object.__setattr__(self, "weighting_options", dict(self.weighting_options))
        if not isinstance(self.defense, str) or not self.defense or "/" in self.defense:
            raise ValueError(f"defense is a name of `mtlue list defenses` or names joined by '+', got {self.defense!r}")
        object.__setattr__(self, "defense_options", dict(self.defense_options))


#: Seeds run from 0 to 2**32 - 1: numpy's global generator takes no more, and none is negative.
SEED_MAX = 2**32 - 1


def check_seed(seed: object, flag: str = "--seed") -> int:
    """``seed`` as an int, or ValueError naming ``flag`` and the valid range."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ValueError(f"{flag} {seed!r} is out of range; give an integer from 0 to {SEED_MAX}")
    return int(seed)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation recipe of a victim (defaults: the paper's MTL victims).

    ``milestones`` are fractions of ``epochs`` after which the learning rate is multiplied by
    ``gamma`` (60 epochs -> [36, 48]); ``clip_norm=None`` disables clipping; ``augment=False``
    trains on centre crops. ``eval_every=k`` records test metrics every k epochs in the history
    (0: only after the last epoch, which is always evaluated). ``amp=None`` uses bf16 autocast
    where the device supports it (see :mod:`victims.device`). ``data_budget_mb`` bounds the
    memory used to keep the train and test splits resident on the device; None (the default)
    sizes it from the device's free memory (:func:`victims.setup.data_budget_bytes`).
    """

    epochs: int = 60
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    milestones: tuple[float, ...] = (0.6, 0.8)
    gamma: float = 0.1
    clip_norm: float | None = 5.0
    augment: bool = True
    seed: int = 0
    device: str = "auto"
    amp: bool | None = None
    num_threads: int | None = None
    eval_every: int = 1
    eval_batch_size: int = 256
    data_budget_mb: float | None = None

    #: Fields that change how a run is executed but not what it computes; a run may resume
    #: with different values of these.
    OPERATIONAL: ClassVar[tuple[str, ...]] = ("device", "num_threads", "eval_every", "eval_batch_size", "data_budget_mb")

    def __post_init__(self) -> None:
        object.__setattr__(self, "milestones", tuple(float(m) for m in self.milestones))
        check_seed(self.seed)
        checks = [
            (self.epochs >= 1, "epochs must be at least 1"),
            # Batch norm cannot train on a single sample.
            (self.batch_size >= 2, "batch_size must be at least 2"),
            (self.lr > 0 and math.isfinite(self.lr), "lr must be a positive number"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (all(0 < m < 1 for m in self.milestones), "milestones are fractions of the epochs, each in (0, 1)"),
            (list(self.milestones) == sorted(self.milestones), "milestones must be increasing"),
            (0 < self.gamma <= 1, "gamma must be in (0, 1]"),
            (self.clip_norm is None or self.clip_norm > 0, "clip_norm must be > 0, or None to disable clipping"),
            (self.eval_every >= 0, "eval_every must be >= 0 (0: evaluate after the last epoch only)"),
            (self.eval_batch_size >= 1, "eval_batch_size must be at least 1"),
            (self.data_budget_mb is None or self.data_budget_mb >= 0, "data_budget_mb must be >= 0, or None to size it from the device's free memory"),
            (self.num_threads is None or self.num_threads >= 1, "num_threads must be at least 1"),
        ]
        problems = [message for ok, message in checks if not ok]
        if problems:
            raise ValueError(f"invalid training config: {'; '.join(problems)}")

    def milestone_epochs(self) -> list[int]:
        return [round(fraction * self.epochs) for fraction in self.milestones]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["milestones"] = list(self.milestones)
        data["milestone_epochs"] = self.milestone_epochs()
        return data
