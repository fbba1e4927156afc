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
  MTL-UE's permutation for multi-task data (reference §2.5): every label shifted by half the
  classes, ``y -> (y + floor(C/2)) mod C``, and ``1 - y`` for binary tasks (see
  :func:`shifted_targets`). MTL-UE's release attacks binary tasks untargeted for TAP (-BCE on
  the true labels) and targets ``1 - y`` only for SEP; we target ``1 - y`` for both.

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

__all__ = ["OBJECTIVES", "Objective", "shifted_targets", "ue_loss"]

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
    - binary: ``1 - y``;
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
) -> torch.Tensor:
    """Scalar loss to minimise over the perturbation: ``"em"`` or ``"tap"`` (module docstring).

    ``outputs`` are a ``MultiTaskModel``'s outputs, ``targets`` the TRUE targets (the ``"tap"``
    objective shifts them itself).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown UE objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    if not tasks:
        raise ValueError("ue_loss needs at least one task")
    _check_targets(tasks, outputs, "outputs")
    _check_targets(tasks, targets, "targets")
    goal = shifted_targets(tasks, targets) if objective == "tap" else targets
    losses = []
    for task in tasks:
        loss = task_loss(task)(outputs[task.name], goal[task.name])
        if objective == "tap" and task.kind not in _TARGETED_KINDS:
            loss = -loss
        losses.append(loss)
    return torch.stack(losses).mean()
