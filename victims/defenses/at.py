"""at: PGD adversarial training (Madry et al., "Towards Deep Learning Models Resistant to
Adversarial Attacks", ICLR 2018, https://arxiv.org/abs/1706.06083).

Defaults: L-inf, epsilon 8/255, 10 steps of 2/255 (Madry et al.'s CIFAR-10 budget), each step
projected onto the epsilon ball and clamped to [0, 1]. The **random start** is the one of the
MTL-UE release and APBench, not Madry et al.'s uniform draw in the epsilon ball: Gaussian noise
times the step size, ``x + step_size * N(0, I)``, neither projected nor clamped before the first
gradient (release ``madrys.py:121``, ``BCEMadrysLoss`` of CelebA/ChestX, and ``:83``,
``MultiMadrysLoss`` of UTKFace; APBench ``mardrys.py:35-37``, ``MadrysLoss``; both inherited from
the EM release's ``madrys.py``). Variants as in the MTL-UE release: ``at-4`` (epsilon 4/255, step
1/255, ``configs/UTKFace/resnet18_madrys_e4.yaml``) and ``at-2`` (epsilon 2/255, step 0.5/255,
``resnet18_madrys_e2.yaml``).

**Training schedule.** The release trains its AT victim with a recipe of its own
(``configs/CelebA/resnet18_madrys.yaml``, likewise UTKFace's): 60 epochs, Adam 1e-3, weight
decay 1e-4, MultiStepLR milestones [45, 54, 60] (gamma 0.1), batch 128, clipping 5.0, where its
plain victims use [36, 48] and, on CelebA, batch 512. The schedule belongs to the training
recipe, not to this defense: with ``victims.train_per_defense: {at: {milestones: [0.75, 0.9],
batch_size: 128}}`` a preset gives AT victims the release's recipe (the milestone at epoch 60
of 60 would act after the last epoch, so it changes nothing and is left out).

Every training step first maximises, by PGD on the cropped (and otherwise augmented) batch, the
**equal-weighted sum of the task losses** (sum_k L_k: every task's loss is raised, whatever the
victim's weighting strategy, since the weighting is a property of the learner, not of the
threat), then takes the normal training step on the adversarial images, where the weighting
strategy gets the K losses as usual.

The inner maximisation runs with the model in **eval mode** (as APBench's ``MadrysLoss``, taken
from the EM release): batch norm uses its running statistics and does not update them during the 10
attack passes, so only the training step itself moves them; dropout is off. Parameter
gradients are never accumulated by the attack (``torch.autograd.grad`` on the input only). The
attack's forward passes use the run's autocast setting.
"""

from __future__ import annotations

import math

import torch

from victims.losses import task_loss

from .base import DefenseError, StepBatch, StepContext, StepRandom, Targets, TrainingProcedure
from .registry import register_defense

__all__ = ["AdversarialTraining", "pgd_linf"]


def pgd_linf(
    images: torch.Tensor,
    targets: Targets,
    context: StepContext,
    *,
    epsilon: float,
    step_size: float,
    steps: int,
    random: StepRandom | None,
) -> torch.Tensor:
    """Images within ``epsilon`` (L-inf) of ``images`` and in [0, 1] that raise sum_k L_k of the model."""
    model = context.model
    if model is None:
        raise DefenseError("adversarial training needs the model in the step context")
    tasks = context.tasks
    device_type = images.device.type
    images = images.detach()
    if random is not None:
        # The release's start (module docstring): x + step_size * N(0, I), unprojected and
        # unclamped until the first step's projection.
        noise = torch.randn(images.shape, generator=random.device, device=images.device, dtype=images.dtype)
        adversarial = images + step_size * noise
    else:
        adversarial = images.clone()
    was_training = model.training
    model.eval()
    try:
        for _ in range(steps):
            adversarial.requires_grad_(True)
            with torch.autocast(device_type, dtype=context.amp_dtype or torch.float32, enabled=context.amp_dtype is not None):
                outputs = model(adversarial)
                loss = sum(task_loss(task)(outputs[task.name], targets[task.name]) for task in tasks)
            (gradient,) = torch.autograd.grad(loss, adversarial)
            with torch.no_grad():
                adversarial = adversarial + step_size * gradient.sign()
                adversarial = torch.minimum(torch.maximum(adversarial, images - epsilon), images + epsilon).clamp_(0.0, 1.0)
    finally:
        model.train(was_training)
    return adversarial.detach()


@register_defense("at")
@register_defense("at-4", epsilon=4 / 255, step_size=1 / 255)
@register_defense("at-2", epsilon=2 / 255, step_size=0.5 / 255)
class AdversarialTraining(TrainingProcedure):
    def __init__(self, *, epsilon: float = 8 / 255, step_size: float = 2 / 255, steps: int = 10, random_start: bool = True) -> None:
        super().__init__()
        for label, value in (("epsilon", epsilon), ("step_size", step_size)):
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and 0 < value <= 1):
                raise DefenseError(f"at {label} is in image units (8/255 = {8 / 255:.4f}), in (0, 1], got {value!r}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise DefenseError(f"at steps is a positive integer, got {steps!r}")
        self.epsilon = float(epsilon)
        self.step_size = float(step_size)
        self.steps = steps
        self.random_start = bool(random_start)

    def prepare(self, images: torch.Tensor, targets: Targets, random: StepRandom, context: StepContext) -> StepBatch:
        adversarial = pgd_linf(
            images, targets, context, epsilon=self.epsilon, step_size=self.step_size, steps=self.steps,
            random=random if self.random_start else None,
        )
        return StepBatch(adversarial, targets)
