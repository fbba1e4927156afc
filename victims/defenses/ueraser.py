"""ueraser: adversarial augmentations (Qin et al., "Learning the Unlearnable: Adversarial
Augmentations Suppress Unlearnable Example Attacks", 2023, https://arxiv.org/abs/2303.15127).

Each training image goes through plasma brightness (roughness in [0.1, 0.7], intensity in
[0, 1]), plasma contrast (roughness in [0.1, 0.7]), a channel shuffle with probability 1/2 and
TrivialAugment (the release's kornia pipeline; the ops are implemented in :mod:`.ops`, batched
on the device, every parameter drawn per sample). During the first ``adversarial_epochs`` share
of the epochs, ``repeats`` (K) draws are made per batch and, per sample, the draw with the
highest loss is trained on (the adversarial augmentation, "max over K"); afterwards one draw.

Variants (K and the share of epochs with K draws, from the release, ``LSP/cifar_train.py`` and
APBench's ``train.py``: K = 5 repeated samplings; adversarial epochs 0 for -lite, 50 of 200 for
the standard one, all of them for -max (APBench's ``repeat_epoch`` 0 / 50 / 300)):

- ``ueraser-lite``: K = 1 (augmentation only, no search);
- ``ueraser``: K = 5 during the first 25 % of the epochs;
- ``ueraser-max``: K = 5 during every epoch.

How the search fits the multi-task training step: the K draws are scored **without gradients**
(per sample, the equal-weighted sum over tasks of the per-sample task losses), the highest-loss
draw of each sample is kept and the normal training step then runs on that batch, so the
weighting strategy receives the K task losses as with any other batch (the release instead
back-propagates the max of the K losses directly; with one task and a batch-independent model
the two give the same gradient). The draws are scored in the model's current (training) mode,
as the release does, and batch-norm running statistics are restored after the search, so only
the training step updates them.

Dense tasks: TrivialAugment's geometric operations (rotate, shear, translate) are **excluded**
when the task set has a dense task; every remaining operation is photometric, so segmentation,
depth and normal targets stay aligned with their pixels unchanged. (Warping the targets along
would need nearest-neighbour resampling of labels and a physically meaningless "sheared"
normal field.) Classification-only task sets keep the full operation set.
"""

from __future__ import annotations

import math

import torch

from victims.losses import per_sample_loss

from .base import DefenseError, StepBatch, StepContext, StepRandom, Targets, TrainingProcedure
from .ops import channel_shuffle, plasma_brightness, plasma_contrast, trivial_augment
from .registry import register_defense

__all__ = ["UEraser"]


@register_defense("ueraser", repeats=5, adversarial_epochs=0.25)
@register_defense("ueraser-lite", repeats=1, adversarial_epochs=0.0)
@register_defense("ueraser-max", repeats=5, adversarial_epochs=1.0)
class UEraser(TrainingProcedure):
    def __init__(
        self,
        *,
        repeats: int = 5,
        adversarial_epochs: float = 0.25,
        roughness: tuple[float, float] = (0.1, 0.7),
        intensity: tuple[float, float] = (0.0, 1.0),
        shuffle_prob: float = 0.5,
    ) -> None:
        super().__init__()
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise DefenseError(f"ueraser repeats (K, draws per sample) is a positive integer, got {repeats!r}")
        if not (isinstance(adversarial_epochs, (int, float)) and 0 <= adversarial_epochs <= 1):
            raise DefenseError(f"ueraser adversarial_epochs is the share of epochs with K draws, in [0, 1], got {adversarial_epochs!r}")
        for label, bounds in (("roughness", roughness), ("intensity", intensity)):
            if len(bounds) != 2 or not all(math.isfinite(v) for v in bounds) or not 0 <= bounds[0] <= bounds[1] <= 1:
                raise DefenseError(f"ueraser {label} is a range [low, high] within [0, 1], got {bounds!r}")
        if not 0 <= shuffle_prob <= 1:
            raise DefenseError(f"ueraser shuffle_prob is a probability, got {shuffle_prob!r}")
        self.repeats = repeats
        self.adversarial_epochs = float(adversarial_epochs)
        self.roughness = tuple(float(v) for v in roughness)
        self.intensity = tuple(float(v) for v in intensity)
        self.shuffle_prob = float(shuffle_prob)

    def draws_at(self, epoch: int, epochs: int) -> int:
        """K at 1-based ``epoch`` of ``epochs``: ``repeats`` during the adversarial share, then 1."""
        return self.repeats if epoch <= round(self.adversarial_epochs * epochs) else 1

    def augment(self, images: torch.Tensor, generator: torch.Generator, *, geometric: bool) -> torch.Tensor:
        """One UEraser draw per sample of a float batch in [0, 1]."""
        batch, device = images.shape[0], images.device

        def uniform(bounds: tuple[float, float]) -> torch.Tensor:
            return bounds[0] + (bounds[1] - bounds[0]) * torch.rand(batch, generator=generator, device=device)

        images = plasma_brightness(images, uniform(self.roughness), uniform(self.intensity), generator)
        images = plasma_contrast(images, uniform(self.roughness), generator)
        shuffled = torch.rand(batch, generator=generator, device=device) < self.shuffle_prob
        images = channel_shuffle(images, shuffled, generator)
        return trivial_augment(images, generator, geometric=geometric)

    @torch.no_grad()
    def search(self, images: torch.Tensor, targets: Targets, random: StepRandom, context: StepContext, draws: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-sample highest-loss of ``draws`` augmentations, and the (draws, B) losses they scored."""
        model = context.model
        if model is None:
            raise DefenseError("ueraser's adversarial augmentation needs the model in the step context")
        geometric = not any(task.is_dense for task in context.tasks)
        buffers = {name: buffer.clone() for name, buffer in model.named_buffers()}
        candidates, losses = [], []
        try:
            for _ in range(draws):
                candidate = self.augment(images, random.device, geometric=geometric)
                with torch.autocast(images.device.type, dtype=context.amp_dtype or torch.float32, enabled=context.amp_dtype is not None):
                    outputs = model(candidate)
                total = sum(per_sample_loss(task)(outputs[task.name], targets[task.name]) for task in context.tasks)
                candidates.append(candidate)
                losses.append(total)
        finally:
            for name, buffer in model.named_buffers():
                buffer.copy_(buffers[name])
        scored = torch.stack(losses)
        hardest = scored.argmax(dim=0)
        stacked = torch.stack(candidates)
        chosen = stacked[hardest, torch.arange(images.shape[0], device=images.device)]
        return chosen, scored

    def prepare(self, images: torch.Tensor, targets: Targets, random: StepRandom, context: StepContext) -> StepBatch:
        draws = self.draws_at(context.epoch, context.epochs)
        if draws == 1:
            geometric = not any(task.is_dense for task in context.tasks)
            return StepBatch(self.augment(images, random.device, geometric=geometric), targets)
        chosen, _ = self.search(images, targets, random, context, draws)
        return StepBatch(chosen, targets)
