"""The losses that per-sample unlearnable-example methods minimise over the perturbation.

Two objectives, each a scalar to MINIMISE with respect to the perturbed images:

- ``"em"`` -- error-minimizing noise (Huang et al., "Unlearnable Examples: Making Personal Data
  Unexploitable", ICLR 2021, https://arxiv.org/abs/2101.04898): the perturbation makes the
  true targets *easier*, so training finds nothing left to learn. Multi-task form: the mean
  over tasks of each task's training loss (``victims.losses.task_loss``) on the true targets,
  i.e. equal weights, as MTL-UE uses for its EM baseline (Yu et al., ICML 2025, §3).
- ``"tap"`` -- targeted adversarial poisoning (Fowl et al., "Adversarial Examples Make Strong
  Poisons", NeurIPS 2021, https://arxiv.org/abs/2106.10807), also SEP's objective (Chen et
  al., ICLR 2023, https://arxiv.org/abs/2211.12005): the perturbation pushes the clean
  surrogate toward a wrong, fixed target class (a fixed permutation of the classes). We take
  MTL-UE's permutation for multi-class tasks (reference §2.5): every label shifted by half the
  classes, ``y -> (y + floor(C/2)) mod C`` (see :func:`shifted_targets`; release
  ``perturbation_MTL_DAE.py:495-497`` for MTL-UE + TAP, ``:646`` for MTL-UE + SEP,
  ``toolbox.py:157-158`` and ``:179`` for the per-sample routines).

**Binary tasks** (``binary_target``, Yu et al., ICML 2025; reference §9.3). A binary task has
two ways to be attacked, both kept:

- ``"untargeted"`` (the default of :func:`ue_loss`, of ``tap`` and of ``mtlue-tap``): minimise
  minus the BCE on the TRUE labels, i.e. ascend the surrogate's loss. This is the release's TAP:
  the binary MTL-UE + TAP loop takes ``loss = criterion(logits, labels)`` with BCEWithLogits
  (``perturbation_MTL_binary_DAE.py:482-488``) and optimises ``loss_optimization = -loss``
  (``:499-500``, ``attack_type == 'min-max'``); its per-sample routine ``min_max_attack``
  ascends the BCE on the true labels too (``toolbox.py:151-153``, step ``+ eta`` at ``:161-162``).
- ``"flip"``: minimise the BCE toward ``1 - y``. This is the release's SEP, per sample
  (``toolbox.py:176-177``, ``y = (labels + 1) % 2``) and with the MTL-UE generator
  (``perturbation_MTL_binary_DAE.py:965``, minimised at ``:979-980``), so ``sep`` and
  ``mtlue-sep`` default to it.

For a binary task the two stop rules agree: the error to ``1 - y`` is one minus the error to
``y``, so the release's TAP rule "clean-label error >= 0.9" is "error to the flipped labels <=
0.1" (``perturbation_MTL_binary_DAE.py:556-559``); the error statistics below are measured
against :func:`shifted_targets` for both variants.

Depth and surface normals have no class to target. For those tasks the ``"tap"`` objective is
*untargeted* ascent: minus the task loss on the true targets, so PGD moves the surrogate's
prediction away from the truth. This is our decision, not the papers' (TAP and SEP are defined
for classification only); it keeps every task of a dense dataset contributing to the poison
instead of silently dropping two of NYUv2's three tasks. The task losses are averaged with
equal weights, the same for both objectives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch

from mtlue.data.tasks import IGNORE_INDEX, Task, TaskKind
from victims.losses import task_loss

from .binary_targets import BINARY_TARGETS, BinaryTarget, check_binary_target

__all__ = ["BINARY_TARGETS", "OBJECTIVES", "BinaryTarget", "Objective", "check_binary_target", "shifted_targets", "ue_loss"]

Objective = Literal["em", "tap"]
#: The objectives :func:`ue_loss` knows.
OBJECTIVES: tuple[str, ...] = ("em", "tap")


_TARGETED_KINDS = (TaskKind.BINARY, TaskKind.MULTICLASS, TaskKind.SEGMENTATION)


def _check_targets(tasks: Sequence[Task], targets: Mapping[str, torch.Tensor], what: str) -> None:
    missing = [task.name for task in tasks if task.name not in targets]
    if missing:
        raise KeyError(
            f"{what} has no entry for task(s) {', '.join(missing)}; pass one target tensor per task "
            f"of the dataset (got {', '.join(sorted(targets)) or 'none'})"
        )


def shifted_targets(tasks: Sequence[Task], targets: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The wrong targets TAP and SEP push toward, one tensor per task (same dtype and device).

    - multiclass: ``(y + floor(C/2)) mod C``, so every label changes (C >= 2);
    - binary: ``1 - y`` (the goal of ``binary_target="flip"``; with ``"untargeted"`` it is only
      what the targeted error is measured against);
    - segmentation: the multiclass rule per pixel; ``IGNORE_INDEX`` pixels stay ignored;
    - depth and normal: returned unchanged (no class to target; :func:`ue_loss` ascends their
      loss instead).
    """
    _check_targets(tasks, targets, "targets")
    shifted: dict[str, torch.Tensor] = {}
    for task in tasks:
        target = targets[task.name]
        if task.kind is TaskKind.BINARY:
            shifted[task.name] = 1 - target
        elif task.kind is TaskKind.MULTICLASS:
            # Compute in int64 so uint8 labels cannot wrap before the modulo.
            moved = (target.long() + task.num_classes // 2) % task.num_classes
            shifted[task.name] = moved.to(target.dtype)
        elif task.kind is TaskKind.SEGMENTATION:
            moved = (target.long() + task.num_classes // 2) % task.num_classes
            shifted[task.name] = torch.where(target.long() == IGNORE_INDEX, target.long(), moved).to(target.dtype)
        else:
            shifted[task.name] = target
    return shifted


def ue_loss(
    objective: str,
    outputs: Mapping[str, torch.Tensor],
    targets: Mapping[str, torch.Tensor],
    tasks: Sequence[Task],
    *,
    binary_target: str = "untargeted",
) -> torch.Tensor:
    """Scalar loss to minimise over the perturbation: ``"em"`` or ``"tap"`` (module docstring).

    ``outputs`` are a ``MultiTaskModel``'s outputs, ``targets`` the TRUE targets (the ``"tap"``
    objective shifts them itself). ``binary_target`` says how ``"tap"`` treats binary tasks:
    ``"untargeted"`` (minus the BCE on the true labels, the release's TAP) or ``"flip"`` (the
    BCE toward ``1 - y``, the release's SEP); ``"em"`` ignores it.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown UE objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    check_binary_target(binary_target)
    if not tasks:
        raise ValueError("ue_loss needs at least one task")
    _check_targets(tasks, outputs, "outputs")
    _check_targets(tasks, targets, "targets")
    goal = shifted_targets(tasks, targets) if objective == "tap" else targets
    losses = []
    for task in tasks:
        untargeted = objective == "tap" and (
            task.kind not in _TARGETED_KINDS or (task.kind is TaskKind.BINARY and binary_target == "untargeted")
        )
        loss = task_loss(task)(outputs[task.name], (targets if untargeted else goal)[task.name])
        if untargeted:
            loss = -loss
        losses.append(loss)
    return torch.stack(losses).mean()
