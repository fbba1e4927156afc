"""``sep``: self-ensemble protection, targeted PGD against the checkpoints of one training run.

Sizhe Chen, Geng Yuan, Xinwen Cheng, Yifan Gong, Minghai Qin, Yanzhi Wang, Xiaolin Huang.
"Self-Ensemble Protection: Training Checkpoints Are Good Data Protectors". ICLR 2023.
https://arxiv.org/abs/2211.12005

The checkpoints of a single clean training run disagree enough to act as an ensemble: a
perturbation that pushes all of them toward a wrong class transfers to victims better than one
made on the final model alone. Here: the ``"tap"`` objective of :mod:`mtlue.methods.objectives`
(shifted labels; loss ascent for depth and normals), with each PGD step's input gradient
averaged over the checkpoints, every checkpoint seeing the same crop.

Defaults, MTL-UE's (Yu et al., ICML 2025, reference §2.5 and §3): the 15 checkpoints of one
clean surrogate run taken after epochs 1, 5, ..., 57 of 60 (the release's ``_epoch0`` ..
``_epoch56``, ``perturbation_MTL_binary_DAE.py:767-768``; ``mtlue surrogate --every 4``: pass each
``OUT/epoch_*.pt`` with ``--surrogate-checkpoint``), epsilon 8/255, 20 PGD steps of 0.8/255,
uniform random start.

Binary tasks (hyperparameter ``binary_target``): by default ``"flip"``, the BCE toward ``1 - y``
minimised, as the release's SEP does (per sample ``toolbox.py:176-177``, ``y = (labels + 1) % 2``;
with the MTL-UE generator ``perturbation_MTL_binary_DAE.py:965`` and ``:979-980``), whereas its
TAP attacks them untargeted (:mod:`mtlue.methods.tap`). The random streams are the ``tap``
objective's, not named after this method, so SEP with a single checkpoint and the same
``binary_target`` makes exactly TAP's perturbation with that model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtlue.data.store import PreparedDataset

from .base import GenerationContext, Requirement, UEMethod
from .registry import register_method
from .tap import TAPHyperparameters

__all__ = ["SEPHyperparameters", "SEPMethod"]


@dataclass(frozen=True)
class SEPHyperparameters(TAPHyperparameters):
    """TAP's settings; binary tasks default to the targeted flip, the release's SEP."""

    #: "flip" (descend toward 1 - y, the release's SEP) or "untargeted" (TAP's); module docstring.
    binary_target: str = "flip"


@register_method("sep")
class SEPMethod(UEMethod):
    """TAP's objective with the gradient averaged over surrogate checkpoints (Chen et al., ICLR 2023)."""

    description = "self-ensemble protection: targeted PGD averaged over a clean run's checkpoints (Chen et al., ICLR 2023)"
    requires = Requirement.SURROGATE_CHECKPOINTS
    Hyperparameters = SEPHyperparameters

    def generate_deltas(self, dataset: PreparedDataset, context: GenerationContext) -> np.ndarray:
        from .pgd import generation_device, perturb_split
        from .surrogate import load_surrogate

        device = generation_device(context)
        models = [load_surrogate(path, dataset, device) for path in context.surrogate_checkpoints]
        return perturb_split(models, dataset, context, self.hyperparameters, objective="tap", stream="tap")
