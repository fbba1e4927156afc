"""Per-sample L-inf PGD on image batches, for the surrogate-dependent UE objectives.

Projected gradient descent with signed steps (Madry et al., "Towards Deep Learning Models
Resistant to Adversarial Attacks", ICLR 2018, https://arxiv.org/abs/1706.06083), used to
*minimise* an objective of :mod:`mtlue.methods.objectives` over a per-sample perturbation:
error-minimizing noise (EM, Huang et al., ICLR 2021, https://arxiv.org/abs/2101.04898),
targeted adversarial poisons (TAP, Fowl et al., NeurIPS 2021, https://arxiv.org/abs/2106.10807)
and their checkpoint ensemble (SEP, Chen et al., ICLR 2023, https://arxiv.org/abs/2211.12005).

The methods' step counts and sizes live in their hyperparameters
(:class:`mtlue.methods.pgd_hyperparameters.PGDHyperparameters`: MTL-UE's 20 steps of 0.8/255 at 8/255).

Conventions, chosen so that what is optimised is what gets published:

- perturbations are in units of 1/255 (pixel levels), on the uint8 images at the *stored*
  resolution; the model sees ``(x + delta) / 255``, in [0, 1] as the victims do;
- every step keeps ``|delta| <= epsilon`` and ``0 <= x + delta <= 255`` (the release did not
  clip, reference §8.2), and :func:`quantize_delta` ends on the 1/255 grid: round to the nearest
  level, then clip to the budget and the pixel range, so the published ``clip(x + delta)``
  differs from the clean image by exactly ``delta`` and never by more than epsilon;
- when ``augment`` is on, each step draws a fresh random crop and horizontal flip *per sample*
  (the victim's ``RandomCropFlip``, dense targets moving with the image), so the perturbation
  works on whatever crop the victim takes (the release drew one crop per batch, §8.11); off,
  the model sees the centre crop;
- several models (SEP's checkpoints) see the same view in a step and their input gradients are
  averaged before the sign; the sign of a mean equals the sign of the sum SEP's release takes,
  so averaging versus summing does not change the step (reference §9.4);
- models run in eval mode (batch-norm statistics frozen, so a sample's perturbation does not
  depend on the others in its batch) and only the input gradient is computed.

Randomness comes from caller-owned CPU ``torch.Generator`` s (random start, crops), so the
result is the same on every device given the generators' seeds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from mtlue.data.store import PreparedDataset
from mtlue.data.tasks import IGNORE_INDEX, Task, TaskKind
from mtlue.poisons import POISONED_SPLIT
from victims.augment import CenterCrop, RandomCropFlip
from victims.batches import BatchSource, SplitArrays, sequential_batches

from .base import GenerationContext, MethodError
from .objectives import OBJECTIVES, shifted_targets, ue_loss

if TYPE_CHECKING:
    from .pgd_hyperparameters import PGDHyperparameters

__all__ = [
    "generation_device",
    "perturb_split",
    "published_statistics",
    "split_source",
    "augmented_view",
    "objective_value",
    "pgd_minimize",
    "project_delta",
    "quantize_delta",
    "random_start",
    "torch_generator",
]


def torch_generator(rng: np.random.Generator) -> torch.Generator:
    """A CPU torch generator seeded from a numpy stream (e.g. ``GenerationContext.rng(...)``)."""
    # torch.Generator.manual_seed takes at most 63 bits.
    return torch.Generator().manual_seed(int(rng.integers(0, 2**63 - 1)))


def project_delta(delta: torch.Tensor, pixels: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``delta`` clipped to ``[-epsilon, epsilon]`` and to ``0 <= pixels + delta <= 255`` (levels)."""
    return torch.minimum(torch.maximum(delta.clamp(-epsilon, epsilon), -pixels), 255.0 - pixels)


def quantize_delta(delta: torch.Tensor, images: torch.Tensor, epsilon: int) -> torch.Tensor:
    """Float ``delta`` (levels) -> int8 levels: round to nearest, clip to the budget and the pixel range."""
    if images.dtype != torch.uint8:
        raise TypeError(f"quantize_delta expects the uint8 images, got {images.dtype}")
    if not bool(torch.isfinite(delta).all()):
        raise FloatingPointError("the perturbation holds NaN or infinite values: the surrogate's gradients diverged")
    pixels = images.to(torch.int16)
    levels = torch.round(delta).to(torch.int16).clamp(-epsilon, epsilon)
    levels = torch.minimum(torch.maximum(levels, -pixels), 255 - pixels)
    return levels.to(torch.int8)


def random_start(images: torch.Tensor, epsilon: float, generator: torch.Generator) -> torch.Tensor:
    """Uniform noise in ``[-epsilon, epsilon]`` levels, projected onto the pixel range (float32, on ``images``' device)."""
    noise = (torch.rand(images.shape, generator=generator) * 2.0 - 1.0) * epsilon
    return project_delta(noise.to(images.device), images.float(), epsilon)


def augmented_view(
    inputs: torch.Tensor,
    targets: Mapping[str, torch.Tensor],
    tasks: Sequence[Task],
    crop_size: int,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """What the model sees: a per-sample random crop + flip from ``generator``, or the centre crop if None."""
    if generator is None:
        return CenterCrop(tasks, crop_size)(inputs, targets)
    return RandomCropFlip(tasks, crop_size)(inputs, targets, generator)


def _input_gradient(
    models: Sequence[nn.Module],
    images: torch.Tensor,
    delta: torch.Tensor,
    targets: Mapping[str, torch.Tensor],
    tasks: Sequence[Task],
    objective: str,
    crop_size: int,
    generator: torch.Generator | None,
    binary_target: str = "untargeted",
) -> torch.Tensor:
    delta = delta.detach().requires_grad_(True)
    view, view_targets = augmented_view((images + delta) / 255.0, targets, tasks, crop_size, generator)
    # Each model backpropagates to the cropped view on its own, so only one model's graph is
    # alive at a time (SEP holds 15); the crop is differentiated once, at the end.
    leaf = view.detach().requires_grad_(True)
    total = torch.zeros_like(leaf)
    for model in models:
        loss = ue_loss(objective, model(leaf), view_targets, tasks, binary_target=binary_target)
        (gradient,) = torch.autograd.grad(loss, leaf)
        total += gradient
    (gradient,) = torch.autograd.grad(view, delta, grad_outputs=total / len(models))
    return gradient


def pgd_minimize(
    models: Sequence[nn.Module],
    images: torch.Tensor,
    targets: Mapping[str, torch.Tensor],
    tasks: Sequence[Task],
    *,
    objective: str,
    epsilon: int,
    step_size: float,
    steps: int,
    crop_size: int,
    start: torch.Tensor,
    generator: torch.Generator | None,
    binary_target: str = "untargeted",
) -> torch.Tensor:
    """``steps`` signed-gradient steps from ``start`` minimising ``objective``; float delta in levels.

    ``binary_target`` is how ``"tap"`` attacks binary tasks (:func:`mtlue.methods.objectives.ue_loss`).

    ``images`` are the uint8 batch (B, C, H, W) on the models' device, ``targets`` the TRUE
    targets at the stored resolution, ``start`` a float delta (e.g. :func:`random_start`, or
    the previous round's delta in EM). ``generator`` draws the per-step crops (None: centre
    crop). The models must be in eval mode. The result is projected but not rounded; finish
    with :func:`quantize_delta`.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown UE objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    if not models:
        raise ValueError("PGD needs at least one surrogate model")
    if images.dtype != torch.uint8:
        raise TypeError(f"PGD perturbs the uint8 images of a split, got {images.dtype}")
    if start.shape != images.shape:
        raise ValueError(f"the start delta has shape {tuple(start.shape)}, the images {tuple(images.shape)}")
    pixels = images.float()
    delta = project_delta(start.to(device=images.device, dtype=torch.float32), pixels, epsilon)
    with torch.enable_grad():
        for _ in range(steps):
            gradient = _input_gradient(models, pixels, delta, targets, tasks, objective, crop_size, generator, binary_target)
            delta = project_delta(delta - step_size * gradient.sign(), pixels, epsilon)
    return delta.detach()


@torch.no_grad()
def objective_value(
    models: Sequence[nn.Module],
    images: torch.Tensor,
    delta: torch.Tensor,
    targets: Mapping[str, torch.Tensor],
    tasks: Sequence[Task],
    *,
    objective: str,
    crop_size: int,
    generator: torch.Generator | None = None,
    binary_target: str = "untargeted",
) -> float:
    """The objective at ``images + delta``, averaged over ``models`` (one view drawn from ``generator``)."""
    view, view_targets = augmented_view((images.float() + delta.float()) / 255.0, targets, tasks, crop_size, generator)
    values = [float(ue_loss(objective, model(view), view_targets, tasks, binary_target=binary_target)) for model in models]
    return float(np.mean(values))


@torch.no_grad()
def published_statistics(
    models: Sequence[nn.Module],
    images: torch.Tensor,
    levels: torch.Tensor,
    targets: Mapping[str, torch.Tensor],
    tasks: Sequence[Task],
    *,
    objective: str,
    crop_size: int,
    binary_target: str = "untargeted",
) -> tuple[float, dict[str, tuple[int, int]]]:
    """How far a batch's published images got: the objective (mean over ``models``) and, per task
    with an error rate, (wrong, counted) predictions of the LAST model against the objective's
    goal (``"tap"``: the shifted labels, i.e. the targeted error; ``"em"``: the true ones).

    ``levels`` are the quantised int deltas; the models see the centre crop, so no random number
    is drawn and the generation's streams are untouched. Segmentation counts valid pixels.
    """
    view, view_targets = augmented_view((images.float() + levels.float()) / 255.0, targets, tasks, crop_size, None)
    values = []
    for model in models:
        outputs = model(view)
        values.append(float(ue_loss(objective, outputs, view_targets, tasks, binary_target=binary_target)))
    goal = shifted_targets(tasks, view_targets) if objective == "tap" else view_targets
    counts: dict[str, tuple[int, int]] = {}
    for task in tasks:
        if task.kind not in (TaskKind.BINARY, TaskKind.MULTICLASS, TaskKind.SEGMENTATION):
            continue
        output, wanted = outputs[task.name], goal[task.name].long()
        if task.kind is TaskKind.BINARY:
            predicted, valid = (output > 0).long(), torch.ones_like(wanted, dtype=torch.bool)
        else:
            predicted, valid = output.argmax(dim=1), wanted != IGNORE_INDEX
        counts[task.name] = (int(((predicted != wanted) & valid).sum()), int(valid.sum()))
    return float(np.mean(values)), counts


def _mean_error(counts: Mapping[str, tuple[int, int]]) -> float | None:
    """Mean over tasks of wrong / counted; None when no task has an error rate."""
    rates = [wrong / counted for wrong, counted in counts.values() if counted]
    return float(np.mean(rates)) if rates else None


def generation_device(context: GenerationContext) -> torch.device:
    """``context.device`` prepared as for any training (:func:`victims.setup.prepare_device`),
    refused with the fix if it is not available here."""
    from victims.device import DeviceError
    from victims.setup import prepare_device

    try:
        return prepare_device(context.device)
    except DeviceError as error:
        raise MethodError(str(error)) from None


def split_source(dataset: PreparedDataset, device: torch.device) -> BatchSource:
    """Batches of the clean training split (the one a poison perturbs) on ``device``, resident
    there within the default data budget (:func:`victims.setup.data_budget_bytes`)."""
    from victims.setup import data_budget_bytes

    split = dataset.split(POISONED_SPLIT)
    return BatchSource(SplitArrays(split.images, split.targets), device, data_budget_bytes(device))


def perturb_split(
    models: Sequence[nn.Module],
    dataset: PreparedDataset,
    context: GenerationContext,
    hyperparameters: PGDHyperparameters,
    *,
    objective: str,
    stream: str,
) -> np.ndarray:
    """One PGD pass over the training split against frozen ``models``: int8 deltas (N, C, H, W).

    Batches run in sample order; the random starts and the crops come from the streams
    ``context.rng(stream, "start")`` and ``context.rng(stream, "crops")``. ``stream`` names the
    objective rather than the method, so that methods sharing an objective (TAP, and SEP with a
    single checkpoint) make identical perturbations at the same seed.

    Progress goes to ``context.monitor``, one record per batch: the objective and the last
    model's error toward the objective's goal (``"tap"``: the targeted error) on the published
    batch (:func:`published_statistics`). The papers set a number of steps and no stop rule, so
    the run ends by ``fixed_steps`` and the card's final values say how far the attack got.
    ``hyperparameters.binary_target`` says how ``"tap"`` attacks binary tasks (TAP: untargeted,
    SEP: flip, as the release; :mod:`mtlue.methods.objectives`).
    """
    binary_target = getattr(hyperparameters, "binary_target", "untargeted")
    device = next(iter(models[0].parameters())).device
    source = split_source(dataset, device)
    start_generator = torch_generator(context.rng(stream, "start"))
    crop_generator = torch_generator(context.rng(stream, "crops")) if hyperparameters.augment else None
    deltas = np.empty((len(source), *dataset.image_shape), dtype=np.int8)
    error_name = "targeted_error" if objective == "tap" else "error"
    judge = f"the last of the {len(models)} surrogates" if len(models) > 1 else "the surrogate"
    labels = f"the shifted labels (binary tasks attacked {binary_target})" if objective == "tap" else "the true labels"
    context.monitor.begin(
        rule=(
            f"no stop rule (the papers fix the steps): {hyperparameters.steps} PGD steps of {hyperparameters.step_size}/255 "
            f"per sample; {error_name}: the mean task error of {judge} toward {labels} on the published images (centre crop)"
        ),
        unit="batch", planned=-(-len(source) // hyperparameters.batch_size),
    )
    objective_sum = 0.0
    totals: dict[str, tuple[int, int]] = {}
    for batch, indices in enumerate(sequential_batches(len(source), hyperparameters.batch_size), start=1):
        started = time.perf_counter()
        images, targets = source.batch(indices)
        delta = pgd_minimize(
            models, images, targets, dataset.tasks,
            objective=objective, epsilon=context.epsilon, step_size=hyperparameters.step_size,
            steps=hyperparameters.steps, crop_size=dataset.crop_size,
            start=random_start(images, context.epsilon, start_generator), generator=crop_generator,
            binary_target=binary_target,
        )
        levels = quantize_delta(delta, images, context.epsilon)
        deltas[indices.numpy()] = levels.cpu().numpy()
        value, counts = published_statistics(
            models, images, levels, targets, dataset.tasks, objective=objective, crop_size=dataset.crop_size, binary_target=binary_target,
        )
        objective_sum += value * len(indices)
        for name, (wrong, counted) in counts.items():
            total_wrong, total_counted = totals.get(name, (0, 0))
            totals[name] = (total_wrong + wrong, total_counted + counted)
        context.monitor.step(batch, {
            "samples": len(indices), "objective": value, error_name: _mean_error(counts), "seconds": time.perf_counter() - started,
        })
    mean_objective = objective_sum / len(source) if len(source) else None
    context.monitor.end("fixed_steps", final={"objective": mean_objective, error_name: _mean_error(totals)})
    return deltas
