"""``mtlue-em``, ``mtlue-tap``, ``mtlue-sep``: MTL-UE with each of its three base UE objectives.

Yi Yu, Song Xia, Siyuan Yang, Chenqi Kong, Wenhan Yang, Shijian Lu, Yap-Peng Tan, Alex C. Kot.
"MTL-UE: Learning to Learn Nothing for Multi-Task Learning". ICML 2025.
https://arxiv.org/abs/2505.05279 (code: github.com/yuyi-sd/MTL-UE; reference sections 2.4, 2.5).

One generator (:mod:`mtlue.methods.mtl_ue_generator`) is trained over the whole training set
against a surrogate multi-task model and then makes every sample's delta
(:mod:`mtlue.methods.mtl_ue_training`). The three methods differ in the surrogate and the base
loss (:mod:`mtlue.methods.objectives`):

- ``mtlue-em`` (min-min): a fresh victim-architecture surrogate, trained alternately, 2 mini-batch
  steps after each generator epoch; the generator minimises the surrogate's loss on the true
  labels. Stops when the surrogate's error on the perturbed training set is <= 1 %.
- ``mtlue-tap``: the clean surrogate's final model, frozen; the generator minimises its loss toward
  the shifted labels (C classes (y + floor(C/2)) mod C; depth and normals: minus their loss) and,
  on binary tasks, minus the BCE on the true labels (``binary_target: untargeted``, the release's
  ``loss_optimization = -loss`` on ``criterion(logits, labels)``, ``perturbation_MTL_binary_DAE.py:482-488``,
  ``:499-500``; ``binary_target: flip`` targets 1 - y instead). Stops when the error to the shifted
  labels is <= 0.1 (binary; = clean-label error >= 0.9, the release's rule at ``:556-559``) /
  1e-4 (multiclass).
- ``mtlue-sep``: the same loss, binary tasks targeted to 1 - y by default (``binary_target: flip``,
  the release's ``y = (labels + 1) % 2``, ``perturbation_MTL_binary_DAE.py:965``), averaged over the snapshots of one clean run (after epochs 1, 5, ..., 57 of 60;
  the release's ``_epoch0`` .. ``_epoch56``, see :mod:`mtlue.methods.surrogate`).

Defaults are the release's CelebA settings (its main table); where UTKFace's differ the field
comment says so. This module imports no torch: ``mtlue.methods`` is loaded by the command line
to list methods, and torch is loaded only when a method runs.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from mtlue.data.store import PreparedDataset

from .base import GenerationContext, MethodError, Requirement, UEMethod
from .binary_targets import check_binary_target
from .registry import register_method

if TYPE_CHECKING:
    from .mtl_ue_training import AlongsideSurrogate

__all__ = [
    "MTLUEEMHyperparameters",
    "MTLUEEMMethod",
    "MTLUEHyperparameters",
    "MTLUEMethod",
    "MTLUESEPHyperparameters",
    "MTLUESEPMethod",
    "MTLUETAPHyperparameters",
    "MTLUETAPMethod",
]


@dataclass(frozen=True)
class MTLUEHyperparameters:
    """What every MTL-UE variant shares (release: perturbation_MTL_DAE*.py, configs/*/resnet18DAE.yaml)."""

    #: Epoch cap of the generator (release: 100 for EM and TAP; binary EM has none, reference 9.4).
    max_epochs: int = 100
    #: Generator batch (release: CelebA 512; UTKFace 128).
    batch_size: int = 512
    #: Adam on every generator parameter, embeddings included (release).
    lr: float = 1e-3
    weight_decay: float = 1e-4
    #: MultiStepLR, one step per generator epoch (release: [60, 80], gamma 0.1).
    lr_milestones: tuple[int, ...] = (60, 80)
    lr_gamma: float = 0.1
    #: Stop when the surrogate's mean error over the binary / multiclass tasks reaches these.
    stop_error_binary: float = 0.01
    stop_error_multiclass: float = 0.01
    #: Per-sample random crop (to the victim's crop size) + horizontal flip inside the loss;
    #: False: the centre crop.
    augment: bool = True
    #: The embedding regularisers (paper: both on) and their weights lambda1, lambda2 (release: 10, 200).
    intra_task_term: bool = True
    inter_task_term: bool = True
    intra_task_weight: float = 10.0
    inter_task_weight: float = 200.0
    #: Ablations: False = decoder sees z only (--z_only) / the label embeddings only (--classwise).
    label_priors: bool = True
    image_encoder: bool = True
    #: Partial protection: tasks whose labels the perturbation must not encode (release CelebA
    #: setting: the first 10 attributes; default: none, every task protected).
    unprotected_tasks: tuple[str, ...] = ()
    #: Encoder stem: auto (the release's choice by image size: ImageNet stem from 141 px on),
    #: small (3x3 s1, CelebA/UTKFace) or imagenet (7x7 s2 + max-pool, ChestX-ray14).
    encoder_stem: Literal["auto", "small", "imagenet"] = "auto"
    #: Multiplier of the generator's encoder and decoder channels (1 = the release's ResNet-18
    #: part and decoder; smaller for CPU runs, e.g. 0.25 on the embedded default).
    generator_width: float = 1.0

    def __post_init__(self) -> None:
        if not (isinstance(self.generator_width, (int, float)) and self.generator_width > 0):
            raise ValueError(f"generator_width is a positive channel multiplier (1 = the release's), got {self.generator_width!r}")
        positive_ints = {"max_epochs": self.max_epochs, "batch_size": self.batch_size}
        for name, value in positive_ints.items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if self.batch_size < 2:
            raise ValueError("batch_size must be at least 2: the encoder's batch norm cannot train on single samples")
        for name in ("lr", "lr_gamma"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("weight_decay", "intra_task_weight", "inter_task_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("stop_error_binary", "stop_error_multiclass"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} is an error rate in [0, 1], got {getattr(self, name)}")
        milestones = _int_tuple("lr_milestones", self.lr_milestones)
        if any(m < 1 for m in milestones) or list(milestones) != sorted(set(milestones)):
            raise ValueError(f"lr_milestones must be increasing epochs >= 1, e.g. [60, 80]; got {list(milestones)}")
        object.__setattr__(self, "lr_milestones", milestones)
        unprotected = self.unprotected_tasks
        if isinstance(unprotected, str) or not all(isinstance(name, str) for name in unprotected):
            raise ValueError(f"unprotected_tasks is a list of task names, e.g. [smiling, male]; got {unprotected!r}")
        object.__setattr__(self, "unprotected_tasks", tuple(unprotected))
        if not (self.label_priors or self.image_encoder):
            raise ValueError("label_priors and image_encoder cannot both be false: the decoder would see nothing")
        if self.unprotected_tasks and not self.label_priors:
            raise ValueError("unprotected_tasks needs label_priors: without label embeddings no task's labels are used anyway")

    @property
    def effective_intra_task_weight(self) -> float:
        return self.intra_task_weight if self.intra_task_term else 0.0

    @property
    def effective_inter_task_weight(self) -> float:
        return self.inter_task_weight if self.inter_task_term else 0.0


@dataclass(frozen=True)
class MTLUEEMHyperparameters(MTLUEHyperparameters):
    #: Network of the alternately trained surrogate (release: the victim, MTL ResNet-18).
    surrogate_backbone: str = "resnet18"
    #: Multiplier of the surrogate's dense-task decoder widths, as the victims' decoder_width
    #: (1 = segmentation-models-pytorch's; smaller for CPU runs of dense data).
    surrogate_decoder_width: float = 1.0
    #: Surrogate mini-batch steps after each generator epoch (release: train_step 2).
    surrogate_steps: int = 2
    #: The victim recipe's Adam and clipping (reference 2.5, 5).
    surrogate_lr: float = 1e-3
    surrogate_weight_decay: float = 1e-4
    surrogate_clip_norm: float = 5.0
    #: Mode of the surrogate during the stop check: "train" (the release: batch statistics,
    #: running statistics refreshed) or "eval"; see mtl_ue_training's module docstring.
    stop_check_mode: str = "train"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.stop_check_mode not in ("train", "eval"):
            raise ValueError(f"stop_check_mode is train (the release) or eval, got {self.stop_check_mode!r}")
        if self.surrogate_steps < 1:
            raise ValueError(f"surrogate_steps must be at least 1 (min-min needs the surrogate to learn), got {self.surrogate_steps}")
        if not (self.surrogate_lr > 0 and self.surrogate_clip_norm > 0 and self.surrogate_weight_decay >= 0):
            raise ValueError("surrogate_lr and surrogate_clip_norm must be positive and surrogate_weight_decay >= 0")
        if not self.surrogate_decoder_width > 0:
            raise ValueError(f"surrogate_decoder_width multiplies decoder widths and must be > 0, got {self.surrogate_decoder_width}")


@dataclass(frozen=True)
class MTLUETAPHyperparameters(MTLUEHyperparameters):
    #: Error to the shifted labels: binary 0.1 (release: clean-label error >= 0.9), multiclass 1e-4.
    stop_error_binary: float = 0.1
    stop_error_multiclass: float = 1e-4
    #: Binary tasks: "untargeted" (minus the BCE on the true labels, the release's TAP) or "flip"
    #: (the BCE toward 1 - y); mtlue.methods.objectives.
    binary_target: str = "untargeted"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_binary_target(self.binary_target)


@dataclass(frozen=True)
class MTLUESEPHyperparameters(MTLUEHyperparameters):
    #: Release: 200 // 4 = 50 for binary data (UTKFace: 100 // 4 = 25).
    max_epochs: int = 50
    #: Release: 1024 for CelebA SEP.
    batch_size: int = 1024
    #: Release: milestones 60, 80 of a scheduler stepped twice per epoch = epochs 30, 40 (UTKFace 15, 20).
    lr_milestones: tuple[int, ...] = (30, 40)
    #: Release: clean-label error >= 0.99 (binary), targeted error <= 1e-4 (multiclass).
    stop_error_binary: float = 0.01
    stop_error_multiclass: float = 1e-4
    #: Binary tasks: "flip" (the BCE toward 1 - y, the release's SEP) or "untargeted" (TAP's).
    binary_target: str = "flip"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_binary_target(self.binary_target)


class MTLUEMethod(UEMethod):
    """Shared run of the three variants; subclasses say which surrogates and objective."""

    #: ``objectives.ue_loss`` objective of the base loss.
    objective: ClassVar[str] = ""
    #: Whether the stop rule measures error to the shifted labels (TAP, SEP) or the true ones (EM).
    targeted_stop: ClassVar[bool] = False
    Hyperparameters: ClassVar[type] = MTLUEHyperparameters

    def __init__(self, **hyperparameters: Any) -> None:
        super().__init__(**hyperparameters)
        #: Per-epoch records of the last ``generate`` (loss terms, stop-rule errors, seconds).
        self.history: list[dict[str, Any]] = []

    def generate_deltas(self, dataset: PreparedDataset, context: GenerationContext) -> np.ndarray:
        from .mtl_ue_training import generate_mtl_ue

        return generate_mtl_ue(self, dataset, context)

    @abstractmethod
    def surrogates(self, dataset: PreparedDataset, context: GenerationContext, device: Any) -> tuple[list[Any], AlongsideSurrogate | None]:
        """The models the loss is averaged over (the last one runs the stop rule) and, for EM,
        the alongside trainer. Called after the generator is built, under the method's seed."""

    def _load(self, paths: Any, dataset: PreparedDataset, device: Any) -> list[Any]:
        from .surrogate import load_surrogate

        return [load_surrogate(path, dataset, device) for path in paths]


@register_method("mtlue-em")
class MTLUEEMMethod(MTLUEMethod):
    """MTL-UE + error-minimising noise: generator and surrogate trained in turn (min-min)."""

    description = "MTL-UE generator (label embeddings + image encoder) with the EM min-min objective (Yu et al., ICML 2025)"
    requires = Requirement.SURROGATE_ALONGSIDE
    objective = "em"
    targeted_stop = False
    Hyperparameters = MTLUEEMHyperparameters

    def surrogates(self, dataset: PreparedDataset, context: GenerationContext, device: Any) -> tuple[list[Any], AlongsideSurrogate | None]:
        from victims.backbones import BackboneError
        from victims.model import MultiTaskModel

        from .mtl_ue_training import AlongsideSurrogate

        hp = self.hyperparameters
        try:
            model = MultiTaskModel(
                dataset.tasks, hp.surrogate_backbone, image_size=dataset.crop_size, in_chans=dataset.image_shape[0],
                decoder_width=hp.surrogate_decoder_width,
            ).to(device)
        except BackboneError as error:
            raise MethodError(f"method {self.name!r}: surrogate_backbone {hp.surrogate_backbone!r}: {error}") from None
        alongside = AlongsideSurrogate(
            model, steps=hp.surrogate_steps, lr=hp.surrogate_lr, weight_decay=hp.surrogate_weight_decay,
            clip_norm=hp.surrogate_clip_norm,
        )
        return [model], alongside


@register_method("mtlue-tap")
class MTLUETAPMethod(MTLUEMethod):
    """MTL-UE + targeted adversarial poisoning against the frozen clean surrogate."""

    description = "MTL-UE generator with the TAP objective against a clean surrogate (Yu et al., ICML 2025)"
    requires = Requirement.SURROGATE
    objective = "tap"
    targeted_stop = True
    Hyperparameters = MTLUETAPHyperparameters

    def surrogates(self, dataset: PreparedDataset, context: GenerationContext, device: Any) -> tuple[list[Any], AlongsideSurrogate | None]:
        return self._load([context.surrogate], dataset, device), None


@register_method("mtlue-sep")
class MTLUESEPMethod(MTLUEMethod):
    """MTL-UE + self-ensemble protection: the TAP loss averaged over a clean run's snapshots."""

    description = "MTL-UE generator with the SEP objective over clean-run snapshots (Yu et al., ICML 2025)"
    requires = Requirement.SURROGATE_CHECKPOINTS
    objective = "tap"
    targeted_stop = True
    Hyperparameters = MTLUESEPHyperparameters

    def surrogates(self, dataset: PreparedDataset, context: GenerationContext, device: Any) -> tuple[list[Any], AlongsideSurrogate | None]:
        return self._load(context.surrogate_checkpoints, dataset, device), None


def _int_tuple(name: str, value: Any) -> tuple[int, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise ValueError(f"{name} is a list of whole numbers, got {value!r}")
    items = tuple(value)
    if not all(isinstance(item, (int, np.integer)) and not isinstance(item, bool) for item in items):
        raise ValueError(f"{name} is a list of whole numbers, got {list(items)!r}")
    return tuple(int(item) for item in items)
