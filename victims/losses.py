"""Per-task training losses, chosen by ``Task.loss``.

- ``bce``: binary cross-entropy with logits (the release's BCEWithLogits; averaging each
  task's mean gives the release's mean over the B x K logit matrix under equal weights);
- ``cross_entropy``: multiclass cross-entropy; for segmentation per pixel, ignoring
  ``IGNORE_INDEX`` (255) pixels;
- ``l1``: mean absolute depth error over valid pixels (target > 0; 0 marks a missing reading);
- ``cosine``: mean of 1 - cos(predicted, target normal) over valid pixels (target norm > 0),
  the normal loss of MTAN (Liu et al., 2019).

Dense losses average over the valid pixels of the whole batch; a batch with no valid pixel
gives a zero loss that is still attached to the graph, so that a weighting strategy sees a
defined value and a zero gradient rather than NaN.

``per_sample_loss(task)`` gives the same losses per sample, shape (B,) (dense ones averaged over
each sample's own valid pixels, 0 where it has none), for defenses that rank samples by loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from mtlue.data.tasks import IGNORE_INDEX, Task
from mtlue.errors import VictimError

__all__ = ["LOSSES", "NonFiniteGradientError", "NonFiniteLossError", "per_sample_loss", "task_loss"]

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class NonFiniteLossError(VictimError, FloatingPointError):
    """Training produced a NaN or infinite loss; the message names epoch, step and task."""

    def __init__(self, epoch: int, step: int, task: str, value: float) -> None:
        self.epoch, self.step, self.task, self.value = epoch, step, task, value
        super().__init__(
            f"loss of task {task!r} is {value} at epoch {epoch}, step {step}: training diverged; "
            f"lower the learning rate (--lr) or keep gradient clipping on, and check the data for "
            f"invalid targets"
        )


class NonFiniteGradientError(VictimError, FloatingPointError):
    """The losses were finite but their gradients were not; raised before the optimizer step."""

    def __init__(self, epoch: int, step: int, norm: float) -> None:
        self.epoch, self.step, self.norm = epoch, step, norm
        super().__init__(
            f"gradient norm is {norm} at epoch {epoch}, step {step} although every task loss was finite: "
            f"a numerically unstable operation in the backward pass; train in float32 (--amp off) or lower "
            f"the learning rate (--lr)"
        )


def _masked_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    # clamp(min=1) turns "no valid pixel" into a zero loss without a host-device sync.
    return torch.where(valid, values, 0.0).sum() / valid.sum().clamp(min=1)


def binary_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float())


def cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    targets = targets.long()
    if logits.ndim == 2:
        return F.cross_entropy(logits.float(), targets)
    per_pixel = F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX, reduction="none")
    return _masked_mean(per_pixel, targets != IGNORE_INDEX)


def depth_l1(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    target = target.float()
    return _masked_mean((prediction.float() - target).abs(), target > 0)


def normal_cosine(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    target = target.float()
    valid = target.norm(dim=1) > 0
    cosine = F.cosine_similarity(prediction.float(), target, dim=1)
    return _masked_mean(1.0 - cosine, valid)


LOSSES: dict[str, LossFunction] = {
    "bce": binary_cross_entropy,
    "cross_entropy": cross_entropy,
    "l1": depth_l1,
    "cosine": normal_cosine,
}


def task_loss(task: Task) -> LossFunction:
    """The loss function of ``task``: ``(output, target) -> scalar``."""
    try:
        return LOSSES[task.loss]
    except KeyError:
        raise ValueError(f"task {task.name!r} asks for loss {task.loss!r}; known losses: {', '.join(LOSSES)}") from None


def _per_sample_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    dims = tuple(range(1, values.ndim))
    return torch.where(valid, values, 0.0).sum(dim=dims) / valid.sum(dim=dims).clamp(min=1)


def _binary_cross_entropy_per_sample(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")


def _cross_entropy_per_sample(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    targets = targets.long()
    if logits.ndim == 2:
        return F.cross_entropy(logits.float(), targets, reduction="none")
    per_pixel = F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX, reduction="none")
    return _per_sample_mean(per_pixel, targets != IGNORE_INDEX)


def _depth_l1_per_sample(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    target = target.float()
    return _per_sample_mean((prediction.float() - target).abs(), target > 0)


def _normal_cosine_per_sample(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    target = target.float()
    cosine = F.cosine_similarity(prediction.float(), target, dim=1)
    return _per_sample_mean(1.0 - cosine, target.norm(dim=1) > 0)


_PER_SAMPLE: dict[str, LossFunction] = {
    "bce": _binary_cross_entropy_per_sample,
    "cross_entropy": _cross_entropy_per_sample,
    "l1": _depth_l1_per_sample,
    "cosine": _normal_cosine_per_sample,
}


def per_sample_loss(task: Task) -> LossFunction:
    """``(output, target) -> (B,)``: the loss of ``task`` per sample (see the module docstring)."""
    task_loss(task)  # the same error for an unknown loss
    return _PER_SAMPLE[task.loss]
