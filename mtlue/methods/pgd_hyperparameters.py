"""The hyperparameters every per-sample PGD method shares (TAP, SEP, EM), beside :mod:`.pgd`.

Apart from :mod:`.pgd` because that module imports torch, and registering the methods (importing
:mod:`mtlue.methods`) must not: ``mtlue list methods`` and config validation stay torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PGDHyperparameters"]


@dataclass(frozen=True)
class PGDHyperparameters:
    """Hyperparameters of the PGD-based methods (defaults: MTL-UE's per-sample baselines, §3)."""

    #: PGD steps per sample (Fowl et al.: 250; MTL-UE's baselines: 20).
    steps: int = 20
    #: Step size in units of 1/255 (MTL-UE: 0.8/255).
    step_size: float = 0.8
    #: Samples perturbed at once. Batch norm is frozen, so a sample's delta does not depend on
    #: its batch, except through the order in which random starts and crops are drawn.
    batch_size: int = 128
    #: Optimise through the victim's random crop + flip, drawn per sample and step (True), or on
    #: the centre crop (False).
    augment: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if not 0 < self.step_size <= 255:
            raise ValueError(f"step_size is in units of 1/255 and must be in (0, 255], got {self.step_size}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
