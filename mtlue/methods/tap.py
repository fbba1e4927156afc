"""``tap``: targeted adversarial poisoning against a clean surrogate.

Liam Fowl, Micah Goldblum, Ping-yeh Chiang, Jonas Geiping, Wojciech Czaja, Tom Goldstein.
"Adversarial Examples Make Strong Poisons". NeurIPS 2021. https://arxiv.org/abs/2106.10807

Each training image gets a targeted adversarial perturbation against a model trained on the
clean data: a victim trained on such images learns the (non-robust) features of the *target*
classes and fails on clean test data. Multi-task form (MTL-UE, Yu et al., ICML 2025, reference
§3), objective ``"tap"`` of :mod:`mtlue.methods.objectives`: minimise the mean over tasks of the
task loss toward the shifted labels ``(y + floor(C/2)) mod C`` (multiclass; segmentation per
pixel), and, for depth and normals, which have no class to target, maximise the task loss on the
true targets (our decision, documented there).

Binary tasks (hyperparameter ``binary_target``): by default ``"untargeted"``, i.e. maximise the
BCE on the true labels, as the release's TAP does (binary MTL-UE + TAP:
``perturbation_MTL_binary_DAE.py:482-488`` and ``:499-500``; per-sample ``min_max_attack``:
``toolbox.py:151-153``, ascent at ``:161-162``). ``binary_target: flip`` is the targeted variant,
the BCE toward ``1 - y`` minimised (what the release's SEP does, ``toolbox.py:176-177``).

Defaults: epsilon 8/255 (the benchmark's budget, from the context), 20 PGD steps of 0.8/255
with a uniform random start, MTL-UE's baseline settings (§3). Fowl et al. use 250 steps (and
differentiable augmentation); we take MTL-UE's, as the benchmark reproduces its baselines.

The surrogate is the final model of the ``surrogate`` stage (``mtlue surrogate``: MTL-UE's clean
MTL ResNet-18 after 60 epochs), passed as ``--surrogate OUT/final.pt``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtlue.data.store import PreparedDataset

from .base import GenerationContext, Requirement, UEMethod
from .binary_targets import check_binary_target
from .pgd_hyperparameters import PGDHyperparameters
from .registry import register_method

__all__ = ["TAPHyperparameters", "TAPMethod"]


@dataclass(frozen=True)
class TAPHyperparameters(PGDHyperparameters):
    """TAP's PGD settings and how it attacks binary tasks."""

    #: How binary tasks are attacked: "untargeted" (ascend the BCE on the true labels, the
    #: release's TAP) or "flip" (descend toward 1 - y, the release's SEP); see the module docstring.
    binary_target: str = "untargeted"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_binary_target(self.binary_target)


@register_method("tap")
class TAPMethod(UEMethod):
    """PGD toward shifted labels (binary: untargeted by default) on the clean surrogate (Fowl et al., NeurIPS 2021)."""

    description = "adversarial poisons: PGD toward shifted labels (binary tasks untargeted) on a clean surrogate (Fowl et al., NeurIPS 2021)"
    requires = Requirement.SURROGATE
    Hyperparameters = TAPHyperparameters

    def generate_deltas(self, dataset: PreparedDataset, context: GenerationContext) -> np.ndarray:
        from .pgd import generation_device, perturb_split
        from .surrogate import load_surrogate

        assert context.surrogate is not None  # generate() checked it
        model = load_surrogate(context.surrogate, dataset, generation_device(context))
        return perturb_split([model], dataset, context, self.hyperparameters, objective="tap", stream="tap")
