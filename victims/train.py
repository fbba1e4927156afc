"""Training one victim network: the MTL-UE recipe, resumable, on any device.

The defaults are the paper's victim recipe (MTL-UE Sec. 5 / release configs): Adam with learning
rate 1e-3 and weight decay 1e-4 (L2, as torch's Adam applies it), MultiStepLR dividing the
learning rate by 10 after 60 % and 80 % of the epochs, gradient clipping at global norm 5,
random crop + horizontal flip for training and a centre crop for testing, inputs in [0, 1].
Every step: augment on the device, apply the attacker's defense (:mod:`victims.defenses`: the
default ``none`` leaves the cropped batch as it is), forward through ``encode``/``decode``, one
loss per task (lambda-mixed for MixUp / CutMix), then the task-weighting strategy's
``backward`` (which decides how the per-task gradients reach the shared encoder), clipping and
the optimizer step. A defense's random numbers come from the data generator, so a resumed run
draws what an uninterrupted one does.

A non-finite loss stops training with :class:`~victims.losses.NonFiniteLossError`, naming the
epoch, step and task (a non-finite gradient with :class:`NonFiniteGradientError`): with a
gradient-aggregation strategy before the step reaches the parameters; with a loss-scaling one
at the end of the epoch, naming the first bad step, so that no step waits on the host for a
GPU (the epoch is then neither evaluated nor checkpointed, and a rerun resumes before it). After each epoch the full training state is checkpointed
(:mod:`victims.checkpoint`); ``fit`` resumes from an existing checkpoint. One seed drives
initialisation (torch's global generator) and, through an independent stream, the data order
and augmentation (a dedicated generator saved with the checkpoint).
"""

from __future__ import annotations

import math
import random
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from mtlue.data.tasks import Task
from mtlue.timing import CLOCK, Instant

from .augment import CenterCrop, RandomCropFlip, to_unit_range
from .batches import BatchSource, batches_per_epoch, epoch_batches, prefetched, sequential_batches
from .checkpoint import TrainingState, load_checkpoint, save_checkpoint
from .config import TrainConfig
from .defenses import DefendedSource, DefensePipeline, LossMix, StepContext, create_defense
from .losses import NonFiniteGradientError, NonFiniteLossError, task_loss
from .metrics import MultiTaskMeter, TaskResults, aggregate
from .model import MultiTaskModel

__all__ = ["EpochCallback", "TrainConfig", "evaluate", "fit", "raise_first_non_finite", "seed_everything", "stream_seed", "task_losses", "train_step"]

#: Called after each epoch's checkpoint with the run name and the epoch's history record.
EpochCallback = Callable[[str, dict[str, Any]], None]


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (model initialisation, dropout, ...)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def stream_seed(seed: int, stream: str) -> int:
    """A seed for a named random stream, independent of ``seed``'s global-generator stream."""
    entropy = [seed, zlib.crc32(stream.encode())]
    # torch.Generator.manual_seed takes at most 63 bits.
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)


@dataclass
class FitResult:
    """What :func:`fit` returns: final test metrics and the per-epoch history."""

    metrics: TaskResults
    history: list[dict[str, Any]]
    resumed_from_epoch: int = 0
    train_seconds: float = 0.0
    #: The first training step's start and the final evaluation's end (:mod:`mtlue.timing`);
    #: both None when a resumed run had no epoch left.
    first_step: Instant | None = None
    last_step: Instant | None = None


@torch.no_grad()
def evaluate(
    model: MultiTaskModel,
    source: BatchSource,
    tasks: Sequence[Task],
    *,
    crop_size: int,
    batch_size: int,
    amp_dtype: torch.dtype | None = None,
) -> TaskResults:
    """Test metrics of ``model`` on centre crops of every sample of ``source``."""
    was_training = model.training
    model.eval()
    crop = CenterCrop(tasks, crop_size)
    meter = MultiTaskMeter(tasks)
    device = source.device
    for batch in prefetched(source, sequential_batches(len(source), batch_size)):
        images, targets = crop(*batch)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            outputs = model(to_unit_range(images))
        meter.update({name: output.float() for name, output in outputs.items()}, targets)
    model.train(was_training)
    return meter.compute()


def task_losses(
    tasks: Sequence[Task], outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], mix: LossMix | None = None
) -> torch.Tensor:
    """The (K,) task losses; with ``mix``, task t's is ``lam_t L(out, y) + (1 - lam_t) L(out, y_other)``."""
    if mix is None:
        return torch.stack([task_loss(task)(outputs[task.name], targets[task.name]) for task in tasks])
    losses = []
    for task in tasks:
        loss = task_loss(task)
        value = loss(outputs[task.name], targets[task.name])
        if task.name in mix.weights:
            lam = mix.weights[task.name]
            value = lam * value + (1 - lam) * loss(outputs[task.name], mix.other[task.name])
        losses.append(value)
    return torch.stack(losses)


def train_step(
    model: MultiTaskModel,
    weighting: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    targets: dict[str, torch.Tensor],
    *,
    clip_norm: float | None,
    amp_dtype: torch.dtype | None = None,
    epoch: int = 0,
    step: int = 0,
    mix: LossMix | None = None,
    check_finite: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimisation step on an augmented batch: uint8, or float in [0, 1] after a defense.

    ``mix`` (MixUp / CutMix) mixes the task losses with the paired targets. Returns the detached
    task losses, the task weights the strategy used and the global gradient norm before
    clipping. Raises NonFiniteLossError (naming ``epoch``, ``step`` and the task) or
    NonFiniteGradientError before any parameter is touched; ``check_finite=False`` leaves both
    checks to the caller (:func:`raise_first_non_finite`), so that the step waits for nothing
    on the host and a GPU's queue never drains."""
    tasks = model.tasks
    device_type = images.device.type
    inputs = to_unit_range(images) if images.dtype == torch.uint8 else images
    with torch.autocast(device_type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
        features = model.encode(inputs)
        outputs = model.decode(features)
        losses = task_losses(tasks, outputs, targets, mix)
    values = losses.detach()
    if check_finite:
        raise_first_non_finite(tasks, values[None], epoch=epoch, first_step=step)
    optimizer.zero_grad(set_to_none=True)
    # Autocast stays off here: backward follows the forward pass's dtypes on its own.
    weights = weighting.backward(losses, model.shared_parameters(), features)
    # With clipping off the norm is still computed (an infinite threshold scales nothing), so a
    # non-finite gradient is caught before it reaches the parameters.
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm if clip_norm is not None else math.inf)
    if check_finite:
        raise_first_non_finite(tasks, values[None], norm[None], epoch=epoch, first_step=step)
    optimizer.step()
    return values, weights.detach(), norm.detach()


def raise_first_non_finite(
    tasks: Sequence[Task], losses: torch.Tensor, norms: torch.Tensor | None = None, *, epoch: int, first_step: int = 1
) -> None:
    """Raise for the first step whose losses (row of ``losses``, (S, K)) or gradient norm (``norms``, (S,)) is not finite.

    Row ``i`` is step ``first_step + i`` of ``epoch``. One host synchronisation for all S steps.
    """
    finite = torch.isfinite(losses).all(dim=1)
    if norms is not None:
        finite = finite & torch.isfinite(norms)
    if bool(finite.all()):
        return
    row = int((~finite).nonzero()[0])
    bad_tasks = (~torch.isfinite(losses[row])).nonzero()
    if len(bad_tasks):
        bad = int(bad_tasks[0])
        raise NonFiniteLossError(epoch, first_step + row, tasks[bad].name, float(losses[row, bad]))
    assert norms is not None
    raise NonFiniteGradientError(epoch, first_step + row, float(norms[row]))


def _progress_enabled(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


@dataclass(frozen=True)
class _Training:
    """What every epoch of one :func:`fit` works with."""

    model: MultiTaskModel
    weighting: torch.nn.Module
    optimizer: torch.optim.Optimizer
    train: Any
    test: BatchSource
    config: TrainConfig
    crop_size: int
    amp_dtype: torch.dtype | None
    defense: DefensePipeline
    data_generator: torch.Generator
    #: Random crop + flip, or the centre crop when augmentation is off.
    crop: RandomCropFlip | CenterCrop
    bar: Any


def _train_epoch(training: _Training, epoch: int) -> dict[str, Any]:
    """One epoch of training steps; its history record (losses, weights, gradient norm, time)."""
    model, config, device = training.model, training.config, training.train.device
    tasks = model.tasks
    names = [task.name for task in tasks]
    model.train()
    started = time.perf_counter()
    loss_sums = torch.zeros(len(tasks), device=device)
    weight_sums = torch.zeros(len(tasks), device=device)
    norm_sum = torch.zeros((), device=device)
    steps = 0
    # Loss-scaling strategies keep the whole step on the device; their finite checks wait for
    # the epoch's end (one synchronisation, before anything is evaluated or checkpointed).
    # Gradient aggregation reads the losses on the host anyway, and a non-finite loss must not
    # reach its solvers.
    deferred: list[tuple[torch.Tensor, torch.Tensor]] | None = [] if getattr(training.weighting, "family", "") == "loss scaling" else None
    batches = prefetched(training.train, epoch_batches(len(training.train), config.batch_size, training.data_generator))
    for step, (images, targets) in enumerate(batches, start=1):
        if isinstance(training.crop, RandomCropFlip):
            images, targets = training.crop(images, targets, training.data_generator)
        else:
            images, targets = training.crop(images, targets)
        context = StepContext(tasks, epoch, config.epochs, model, training.amp_dtype)
        defended = training.defense.step(images, targets, training.data_generator, context)
        values, weights, norm = train_step(
            model, training.weighting, training.optimizer, defended.images, defended.targets,
            clip_norm=config.clip_norm, amp_dtype=training.amp_dtype, epoch=epoch, step=step, mix=defended.mix,
            check_finite=deferred is None,
        )
        if deferred is not None:
            deferred.append((values, norm))
        loss_sums += values
        weight_sums += weights.to(device=device, dtype=weight_sums.dtype)
        norm_sum += norm.to(device)
        steps += 1
        training.bar.update()
    if deferred:
        raise_first_non_finite(tasks, torch.stack([v for v, _ in deferred]), torch.stack([n for _, n in deferred]), epoch=epoch)
    mean_losses = loss_sums / steps
    training.weighting.epoch_end(mean_losses)
    return {
        "epoch": epoch,
        "lr": training.optimizer.param_groups[0]["lr"],
        "train_loss": dict(zip(names, mean_losses.tolist(), strict=True)),
        "task_weights": dict(zip(names, (weight_sums / steps).tolist(), strict=True)),
        "grad_norm": float(norm_sum / steps),
        "seconds": time.perf_counter() - started,
    }


def _evaluate_epoch(training: _Training, epoch: int, record: dict[str, Any]) -> None:
    """Add the test metrics of an evaluated epoch to its record, and the train fit after the last."""
    config, tasks = training.config, training.model.tasks
    options = {"crop_size": training.crop_size, "batch_size": config.eval_batch_size, "amp_dtype": training.amp_dtype}
    if epoch == config.epochs or (config.eval_every and epoch % config.eval_every == 0):
        started = time.perf_counter()
        record["test"] = evaluate(training.model, training.test, tasks, **options)
        record["test_aggregate"] = aggregate(record["test"], tasks)
        record["eval_seconds"] = time.perf_counter() - started
    if epoch == config.epochs:
        # Whether the victim fits what it was given: a poison that the victim cannot fit and one
        # it fits without learning the clean features read alike on the test set.
        record["train_fit"] = evaluate(training.model, training.train, tasks, **options)
        record["train_fit_aggregate"] = aggregate(record["train_fit"], tasks)


def fit(
    model: MultiTaskModel,
    weighting: torch.nn.Module,
    train: BatchSource,
    test: BatchSource,
    config: TrainConfig,
    *,
    crop_size: int,
    amp_dtype: torch.dtype | None = None,
    name: str = "mtl",
    checkpoint_path: Path | None = None,
    fingerprint: dict[str, Any] | None = None,
    progress: bool | None = None,
    callbacks: Sequence[EpochCallback] = (),
    defense: DefensePipeline | str = "none",
) -> FitResult:
    """Train ``model`` on ``train`` with ``config`` and evaluate it on ``test``.

    ``model`` and ``weighting`` must be freshly built (under :func:`seed_everything`) and on
    ``train.device``. With ``checkpoint_path``, the state is saved there after every epoch and
    restored from it when it exists (``fingerprint`` identifies the run and must match; put the
    defense in it, as :func:`victims.run.run_victim` does). ``defense`` (a spec or a
    ``create_defense`` pipeline) is applied to the training split and batches, never to ``test``.
    The epochs run, from the first step to the final evaluation, are one work span of the
    process's :data:`mtlue.timing.CLOCK`.
    """
    tasks = model.tasks
    optimizer = torch.optim.Adam([*model.parameters(), *weighting.parameters()], lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, config.milestone_epochs(), gamma=config.gamma)
    data_generator = torch.Generator().manual_seed(stream_seed(config.seed, "data"))
    state = TrainingState(model, optimizer, scheduler, weighting, data_generator)
    fingerprint = dict(fingerprint or {})
    if isinstance(defense, str):
        defense = create_defense(defense)
    channels = train.split.images.shape[1] if hasattr(train, "split") else None
    if channels is not None:
        defense.check(tasks, channels)

    start_epoch, history = 0, []
    if checkpoint_path is not None and checkpoint_path.exists():
        start_epoch, history = load_checkpoint(checkpoint_path, state, fingerprint=fingerprint)

    if defense.split_transforms:
        train = DefendedSource(train, defense)
    steps_per_epoch = batches_per_epoch(len(train), config.batch_size)
    bar = tqdm(
        total=config.epochs * steps_per_epoch,
        initial=start_epoch * steps_per_epoch,
        desc=name,
        unit="batch",
        disable=not _progress_enabled(progress),
        leave=False,
    )
    training = _Training(
        model, weighting, optimizer, train, test, config, crop_size, amp_dtype, defense, data_generator,
        RandomCropFlip(tasks, crop_size) if config.augment else CenterCrop(tasks, crop_size), bar,
    )
    first_step = last_step = None
    try:
        if start_epoch < config.epochs:
            first_step = CLOCK.work_started()
        for epoch in range(start_epoch + 1, config.epochs + 1):
            record = _train_epoch(training, epoch)
            scheduler.step()
            _evaluate_epoch(training, epoch, record)
            history.append(record)
            if checkpoint_path is not None:
                save_checkpoint(checkpoint_path, state, epoch=epoch, history=history, fingerprint=fingerprint)
            bar.set_postfix(loss=f"{sum(record['train_loss'].values()) / len(tasks):.4f}")
            for callback in callbacks:
                callback(name, record)
    finally:
        if first_step is not None:
            last_step = CLOCK.work_ended()
        bar.close()
    return FitResult(
        metrics=history[-1]["test"],
        history=history,
        resumed_from_epoch=start_epoch,
        train_seconds=sum(record["seconds"] for record in history),
        first_step=first_step,
        last_step=last_step,
    )
