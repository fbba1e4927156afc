"""Training the MTL-UE generator against surrogates, and exporting its deltas (reference 2.4, 2.5).

Algorithm 1 of the paper, as the release runs it: for each generator epoch, one shuffled pass
over the training set; per batch, delta = G(x, y), the base UE loss L_b of the surrogate(s) on
an augmented view of x + delta, plus 10 * L_Intra + 200 * L_Inter, one Adam step on every
generator parameter (embeddings included); one MultiStepLR step per epoch; for MTL-UE + EM, a
few surrogate steps between generator epochs; then the stopping rule. Finally the generator in
eval mode makes one delta per training sample, in dataset order, at the stored resolution.

Where we differ from the release, and why:

- **Budget, quantisation** (reference 8.1, 9.1): the clamp is exactly epsilon = k/255 (the release:
  0.0314); exported deltas are rounded to the nearest 1/255 step (the release truncates) and then
  clipped so that |delta| <= epsilon and x + delta stays in [0, 255], so the stored int8 delta is
  exactly what the published image differs by.
- **Clipping** (8.2): the loss sees clamp(x + delta, 0, 1), the image that will be published.
- **Augmentation** (8.11, 9.3): every sample draws its own random crop and flip (victims.augment),
  the release one per batch. SEP's release applies none (its ViT surrogate resamples the whole
  image to 64 px); our surrogates are crop-size networks, so SEP takes the same crop and flip
  (``augment=False``: a centre crop for all three).
- **SEP** (8.10, 9.4): one generator forward per batch and the loss of every checkpoint on the same
  view, averaged, plus the regularisers once. The release recomputes the generator for each of its
  15 checkpoints and sums the 15 backward passes, regularisers included; that is 15 x (mean L_b +
  regularisers), which Adam's scale invariance turns into the same step except for how strongly
  the (unscaled) weight decay counts against the gradient.
- **What sees the surrogate between epochs** (EM's surrogate steps, the stopping rule): the images
  as they would be published at that moment, generator in eval mode, deltas quantised, then
  augmented; the stop rule therefore measures what a victim would train on.
- **Stopping** (9.4): the mean error of the binary tasks and that of the multiclass tasks must each
  reach its threshold (release: EM 0.01; TAP clean-label error >= 0.9 binary, i.e. error to the
  flipped labels <= 0.1, and targeted error <= 1e-4 multiclass; SEP >= 0.99, i.e. <= 0.01, and
  1e-4), or the epoch cap ends training (the release's binary EM has none: we cap it like the
  multiclass run). Only classification tasks have an error; a dataset with none runs to the cap.
  SEP's rule uses the last checkpoint, as the release does. **Mode of the checked surrogate**:
  MTL-UE + EM checks its surrogate in train mode (``stop_check_mode: train``, the default): batch
  norm uses batch statistics and refreshes its running ones on the published set, as the release,
  which sets ``model.train()`` for the surrogate steps (``perturbation_MTL_binary_DAE.py:545``) and
  then runs ``samplewise_perturbation_eval`` (``:551``, defined at ``:380-401``) without switching
  to eval (multi-class: ``perturbation_MTL_DAE.py:550``, ``:556``). TAP and SEP check their frozen
  surrogates in eval mode, as the release does (``model.eval()`` in its generator loop).
- **Partial protection** (9.11): the UE loss and the stop rule cover the protected tasks only, so
  the generator is not asked to spoil what the owner wants to stay learnable.
- **Randomness** (8.4): one seed drives initialisation (torch's global generator, seeded here) and,
  through a named stream, data order and crops (a dedicated generator). Same seed, same machine:
  byte-identical deltas.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mtlue.data.store import PreparedDataset
from mtlue.data.tasks import Task, TaskKind
from mtlue.logs import progress_bar
from mtlue.poisons import POISONED_SPLIT
from victims.augment import CenterCrop, RandomCropFlip, to_unit_range
from victims.batches import BatchSource, epoch_batches, prefetched, sequential_batches
from victims.model import MultiTaskModel
from victims.train import train_step

from .mtl_ue_generator import MTLUEGenerator, inter_task_similarity, intra_task_similarity
from .objectives import shifted_targets, ue_loss
from .pgd import generation_device, split_source
from .progress import GenerationMonitor

__all__ = [
    "AlongsideSurrogate",
    "EpochRecord",
    "GeneratorTrainer",
    "StopRule",
    "classification_errors",
    "export_deltas",
    "generate_mtl_ue",
    "publish_batch",
    "quantized_deltas",
    "run_generator_training",
]

# --------------------------------------------------------------------------------------------
# published images


@torch.no_grad()
def quantized_deltas(generator: MTLUEGenerator, images: torch.Tensor, targets: Mapping[str, torch.Tensor], epsilon: int) -> torch.Tensor:
    """int16 steps of 1/255: round(255 G(x, y)), within +-epsilon and keeping x + delta in [0, 255]."""
    steps = torch.round(generator(to_unit_range(images), targets) * 255.0).to(torch.int16)
    clean = images.to(torch.int16)
    low = torch.clamp(-clean, min=-epsilon)
    high = torch.clamp(255 - clean, max=epsilon)
    return torch.minimum(torch.maximum(steps, low), high)


def publish_batch(generator: MTLUEGenerator, images: torch.Tensor, targets: Mapping[str, torch.Tensor], epsilon: int) -> torch.Tensor:
    """The uint8 images as they would be published now (the caller sets the generator's mode)."""
    return (images.to(torch.int16) + quantized_deltas(generator, images, targets, epsilon)).to(torch.uint8)


def export_deltas(generator: MTLUEGenerator, source: BatchSource, epsilon: int, batch_size: int) -> np.ndarray:
    """int8 (N, C, H, W) deltas of every sample of ``source`` in order, generator in eval mode."""
    was_training = generator.training
    generator.eval()
    chunks = []
    for indices in sequential_batches(len(source), batch_size):
        images, targets = source.batch(indices)
        chunks.append(quantized_deltas(generator, images, targets, epsilon).to(torch.int8).cpu().numpy())
    generator.train(was_training)
    return np.concatenate(chunks)


# --------------------------------------------------------------------------------------------
# stopping rule


@dataclass(frozen=True)
class StopRule:
    """Stop when the surrogate's mean error over the binary tasks is <= ``binary`` and over the
    multiclass tasks <= ``multiclass``, measured against the true labels or, with ``targeted``,
    against the shifted targets (TAP, SEP); an absent group counts as reached."""

    binary: float
    multiclass: float
    targeted: bool

    def reached(self, tasks: Sequence[Task], errors: Mapping[str, float]) -> bool:
        groups = {TaskKind.BINARY: self.binary, TaskKind.MULTICLASS: self.multiclass}
        measured = [task for task in tasks if task.kind in groups]
        if not measured:
            return False  # nothing measurable: train to the epoch cap
        for kind, threshold in groups.items():
            values = [errors[task.name] for task in measured if task.kind is kind]
            if values and sum(values) / len(values) > threshold:
                return False
        return True

    def _groups(self, tasks: Sequence[Task]) -> dict[str, tuple[TaskKind, float]]:
        """The rule's statistics present in ``tasks``, by the name they are reported under."""
        groups = {"binary_error": (TaskKind.BINARY, self.binary), "multiclass_error": (TaskKind.MULTICLASS, self.multiclass)}
        return {name: group for name, group in groups.items() if any(task.kind is group[0] for task in tasks)}

    def statistics(self, tasks: Sequence[Task], errors: Mapping[str, float]) -> dict[str, float]:
        """What :meth:`reached` compares, for reports: the mean error of each task group present."""
        means: dict[str, float] = {}
        for name, (kind, _) in self._groups(tasks).items():
            values = [errors[task.name] for task in tasks if task.kind is kind]
            means[name] = sum(values) / len(values)
        return means

    def targets(self, tasks: Sequence[Task]) -> dict[str, float]:
        """The threshold of each statistic of :meth:`statistics`."""
        return {name: threshold for name, (_, threshold) in self._groups(tasks).items()}

    def describe(self, tasks: Sequence[Task]) -> str:
        """The rule in words, for logs and the card."""
        goal = "the shifted labels" if self.targeted else "the true labels"
        parts = [f"{name} <= {threshold}" for name, threshold in self.targets(tasks).items()]
        if not parts:
            return "none measurable: no protected classification task, so only the epoch cap ends the run"
        return f"{' and '.join(parts)} (the surrogate's mean error over the protected tasks of each kind, to {goal}, on the published images)"


def _view(
    images: torch.Tensor, targets: Mapping[str, torch.Tensor], tasks: Sequence[Task], crop_size: int,
    augment: bool, data_generator: torch.Generator,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The surrogate's input: a per-sample random crop + flip (``augment``) or the centre crop."""
    if augment:
        return RandomCropFlip(tasks, crop_size)(images, targets, data_generator)
    return CenterCrop(tasks, crop_size)(images, targets)


@torch.no_grad()
def classification_errors(
    generator: MTLUEGenerator, model: MultiTaskModel, source: BatchSource, tasks: Sequence[Task], *,
    epsilon: int, targeted: bool, crop_size: int, augment: bool, batch_size: int, data_generator: torch.Generator,
    model_train_mode: bool = False,
) -> dict[str, float]:
    """Per classification task of ``tasks``: the surrogate's error on the published training set.

    The generator runs in eval mode (the release: ``model_s.eval()``), the surrogate in train mode
    with ``model_train_mode`` (batch statistics, running statistics refreshed: the release's EM
    check) or else in eval mode (its TAP and SEP checks, on frozen surrogates); modes are restored.
    """
    measured = [task for task in tasks if task.kind.is_classification]
    if not measured:
        return {}
    generator_mode, model_mode = generator.training, model.training
    generator.eval()
    model.train(model_train_mode)
    wrong = {task.name: 0 for task in measured}
    for indices in sequential_batches(len(source), batch_size):
        images, targets = source.batch(indices)
        published = publish_batch(generator, images, targets, epsilon)
        view, view_targets = _view(published, targets, model.tasks, crop_size, augment, data_generator)
        outputs = model(to_unit_range(view))
        goal = shifted_targets(measured, view_targets) if targeted else view_targets
        for task in measured:
            output = outputs[task.name]
            predicted = (output > 0).long() if task.kind is TaskKind.BINARY else output.argmax(dim=1)
            wrong[task.name] += int((predicted != goal[task.name].long()).sum())
    generator.train(generator_mode)
    model.train(model_mode)
    return {name: count / len(source) for name, count in wrong.items()}


# --------------------------------------------------------------------------------------------
# the generator's optimisation


@dataclass
class EpochRecord:
    """One generator epoch: mean loss terms, learning rate, the stop rule's errors, seconds."""

    epoch: int
    lr: float
    loss: float
    base_loss: float
    intra_task: float
    inter_task: float
    errors: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


class GeneratorTrainer:
    """The generator, its Adam optimiser and MultiStepLR schedule, and the loss of Algorithm 1.

    ``surrogates`` are frozen models in eval mode whose losses are averaged (one for EM and TAP,
    the checkpoints for SEP). ``loss_tasks`` are the protected tasks the UE loss covers.
    ``binary_target`` is how the ``"tap"`` objective attacks binary tasks (TAP: ``"untargeted"``,
    SEP: ``"flip"``, as the release; :mod:`mtlue.methods.objectives`).
    """

    def __init__(
        self,
        generator: MTLUEGenerator,
        surrogates: Sequence[MultiTaskModel],
        loss_tasks: Sequence[Task],
        objective: str,
        *,
        crop_size: int,
        augment: bool,
        intra_task_weight: float,
        inter_task_weight: float,
        lr: float,
        weight_decay: float,
        lr_milestones: Sequence[int],
        lr_gamma: float,
        data_generator: torch.Generator,
        binary_target: str = "untargeted",
        amp_dtype: torch.dtype | None = None,
    ) -> None:
        if not surrogates:
            raise ValueError("the generator needs at least one surrogate to compute its loss on")
        if not loss_tasks:
            raise ValueError("every task is unprotected, so the UE loss covers nothing; protect at least one task")
        self.generator = generator
        self.surrogates = list(surrogates)
        self.loss_tasks = tuple(loss_tasks)
        self.objective = objective
        self.binary_target = binary_target
        self.crop_size = crop_size
        self.augment = augment
        self.intra_task_weight = float(intra_task_weight)
        self.inter_task_weight = float(inter_task_weight)
        self.data_generator = data_generator
        self.amp_dtype = amp_dtype
        self.optimizer = torch.optim.Adam(generator.parameters(), lr=lr, weight_decay=weight_decay)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, list(lr_milestones), gamma=lr_gamma)

    def loss(self, images: torch.Tensor, targets: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        """Total loss of one uint8 batch and its terms (base, intra_task, inter_task) as floats."""
        clean = to_unit_range(images)
        # The generator is most of the step; under bf16 autocast (CUDA with bf16 support) its
        # output is clamped in float32, so the budget is the same in either precision.
        with torch.autocast(clean.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            delta = self.generator(clean, targets)
        perturbed = (clean + delta).clamp(0.0, 1.0)
        view, view_targets = _view(perturbed, targets, self.surrogates[0].tasks, self.crop_size, self.augment, self.data_generator)
        base = torch.stack([
            ue_loss(self.objective, model(view), view_targets, self.loss_tasks, binary_target=self.binary_target)
            for model in self.surrogates
        ]).mean()
        embeddings = self.generator.protected_class_embeddings()
        total = base
        intra = inter = base.new_zeros(())
        if self.intra_task_weight and embeddings:
            intra = intra_task_similarity(embeddings)
            total = total + self.intra_task_weight * intra
        if self.inter_task_weight and embeddings:
            inter = inter_task_similarity(embeddings)
            total = total + self.inter_task_weight * inter
        terms = {"base_loss": float(base.detach()), "intra_task": float(intra.detach()), "inter_task": float(inter.detach())}
        return total, terms

    def step(self, images: torch.Tensor, targets: Mapping[str, torch.Tensor]) -> dict[str, float]:
        """One Adam step on the generator; returns the loss terms before the step."""
        self.generator.train()
        total, terms = self.loss(images, targets)
        if not torch.isfinite(total):
            raise FloatingPointError(
                f"the MTL-UE generator's loss is {float(total)} ({terms}); lower lr or check the surrogate"
            )
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        return {"loss": float(total.detach()), **terms}

    def epoch(self, source: BatchSource, batch_size: int) -> dict[str, float]:
        """One shuffled pass of generator steps, then the scheduler step; the mean loss terms."""
        sums: dict[str, float] = {}
        steps = 0
        for images, targets in prefetched(source, epoch_batches(len(source), batch_size, self.data_generator)):
            for key, value in self.step(images, targets).items():
                sums[key] = sums.get(key, 0.0) + value
            steps += 1
        self.scheduler.step()
        return {key: value / steps for key, value in sums.items()}

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])


class AlongsideSurrogate:
    """MTL-UE + EM's surrogate: trained a few mini-batch steps on the published images between
    generator epochs (min-min), with the victim recipe's Adam and gradient clipping."""

    def __init__(self, model: MultiTaskModel, *, steps: int, lr: float, weight_decay: float, clip_norm: float) -> None:
        from victims.weighting import create_weighting

        self.model = model
        self.steps = steps
        self.clip_norm = clip_norm
        self.weighting = create_weighting("ew", len(model.tasks)).to(next(model.parameters()).device)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
        self.freeze()

    def freeze(self) -> None:
        """Eval mode and no parameter gradients: the surrogate as the generator's loss sees it."""
        self.model.eval()
        self.model.requires_grad_(False)

    def train_steps(
        self, generator: MTLUEGenerator, source: BatchSource, *, epsilon: int, batch_size: int, crop_size: int,
        augment: bool, data_generator: torch.Generator, epoch: int,
    ) -> None:
        generator_mode = generator.training
        generator.eval()
        self.model.train()
        self.model.requires_grad_(True)
        batches = epoch_batches(len(source), batch_size, data_generator)
        for step, indices in enumerate(batches, start=1):
            if step > self.steps:
                break
            images, targets = source.batch(indices)
            published = publish_batch(generator, images, targets, epsilon)
            view, view_targets = _view(published, targets, self.model.tasks, crop_size, augment, data_generator)
            train_step(self.model, self.weighting, self.optimizer, view, view_targets, clip_norm=self.clip_norm, epoch=epoch, step=step)
        self.freeze()
        generator.train(generator_mode)


def run_generator_training(
    trainer: GeneratorTrainer,
    source: BatchSource,
    *,
    max_epochs: int,
    batch_size: int,
    epsilon: int,
    stop_rule: StopRule,
    stop_model: MultiTaskModel,
    alongside: AlongsideSurrogate | None = None,
    name: str = "mtl-ue",
    progress: bool | None = None,
    monitor: GenerationMonitor | None = None,
    stop_in_train_mode: bool = False,
) -> list[EpochRecord]:
    """Generator epochs until ``stop_rule`` holds for ``stop_model`` or ``max_epochs`` have run.

    ``stop_in_train_mode``: the stop check runs ``stop_model`` in train mode (MTL-UE + EM, as the
    release; see the module docstring), else in eval mode.

    Each epoch is reported to ``monitor`` (default: a log-only one) with the rule's statistics,
    and the run ends ``stop_rule`` or ``cap``.
    """
    history: list[EpochRecord] = []
    monitor = monitor if monitor is not None else GenerationMonitor()
    monitor.begin(
        rule=stop_rule.describe(trainer.loss_tasks), unit="epoch", cap=max_epochs, cap_hyperparameter="max_epochs",
        target=stop_rule.targets(trainer.loss_tasks), bar=False,
    )
    reached = False
    bar = progress_bar(total=max_epochs, desc=name, unit="epoch", requested=progress)
    try:
        for epoch in range(1, max_epochs + 1):
            started = time.perf_counter()
            lr = trainer.lr
            terms = trainer.epoch(source, batch_size)
            if alongside is not None:
                alongside.train_steps(
                    trainer.generator, source, epsilon=epsilon, batch_size=batch_size, crop_size=trainer.crop_size,
                    augment=trainer.augment, data_generator=trainer.data_generator, epoch=epoch,
                )
            errors = classification_errors(
                trainer.generator, stop_model, source, trainer.loss_tasks, epsilon=epsilon, targeted=stop_rule.targeted,
                crop_size=trainer.crop_size, augment=trainer.augment, batch_size=batch_size,
                data_generator=trainer.data_generator, model_train_mode=stop_in_train_mode,
            )
            record = EpochRecord(epoch=epoch, lr=lr, errors=errors, seconds=time.perf_counter() - started, **terms)
            history.append(record)
            bar.update()
            mean_error = sum(errors.values()) / len(errors) if errors else math.nan
            bar.set_postfix(loss=f"{record.loss:.4f}", error=f"{mean_error:.4f}")
            monitor.step(epoch, {
                "loss": record.loss, "base_loss": record.base_loss, "intra_task": record.intra_task,
                "inter_task": record.inter_task, **stop_rule.statistics(trainer.loss_tasks, errors),
                "lr": record.lr, "seconds": record.seconds, "errors": record.errors,
            })
            if stop_rule.reached(trainer.loss_tasks, errors):
                reached = True
                break
    finally:
        bar.close()
    monitor.end("stop_rule" if reached else "cap")
    return history


# --------------------------------------------------------------------------------------------
# one method run


def generate_mtl_ue(method: Any, dataset: PreparedDataset, context: Any) -> np.ndarray:
    """Train ``method``'s generator on ``dataset`` and return its int8 deltas (``MTLUEMethod``)."""
    from victims.device import autocast_dtype
    from victims.train import seed_everything, stream_seed

    from .base import MethodError

    hp = method.hyperparameters
    name = method.name
    device = generation_device(context)
    _check_dataset(name, dataset, hp.unprotected_tasks)
    loss_tasks = tuple(task for task in dataset.tasks if task.name not in set(hp.unprotected_tasks))

    seed_everything(context.seed)
    generator = MTLUEGenerator(
        dataset.tasks, dataset.image_shape, context.epsilon / 255.0, stem=hp.encoder_stem,
        unprotected=hp.unprotected_tasks, label_priors=hp.label_priors, image_encoder=hp.image_encoder,
        width_multiplier=hp.generator_width,
    ).to(device)
    surrogates, alongside = method.surrogates(dataset, context, device)
    for model in surrogates:
        if model.image_size != dataset.crop_size:
            raise MethodError(
                f"method {name!r}: the surrogate takes {model.image_size} px crops but {dataset.name!r} is cropped "
                f"to {dataset.crop_size} px; train the surrogate on this dataset"
            )
    data_generator = torch.Generator().manual_seed(stream_seed(context.seed, f"{name}-data"))
    trainer = GeneratorTrainer(
        generator, surrogates, loss_tasks, method.objective,
        crop_size=dataset.crop_size, augment=hp.augment,
        intra_task_weight=hp.effective_intra_task_weight, inter_task_weight=hp.effective_inter_task_weight,
        lr=hp.lr, weight_decay=hp.weight_decay, lr_milestones=hp.lr_milestones, lr_gamma=hp.lr_gamma,
        data_generator=data_generator,
        # TAP: untargeted, SEP: flip (the release's); EM's objective has no binary target.
        binary_target=getattr(hp, "binary_target", "untargeted"),
        amp_dtype=autocast_dtype(device, None),
    )
    source = split_source(dataset, device)
    stop_rule = StopRule(hp.stop_error_binary, hp.stop_error_multiclass, targeted=method.targeted_stop)
    history = run_generator_training(
        trainer, source, max_epochs=hp.max_epochs, batch_size=hp.batch_size, epsilon=context.epsilon,
        stop_rule=stop_rule, stop_model=surrogates[-1], alongside=alongside, name=name, monitor=context.monitor,
        # MTL-UE + EM only: its surrogate is checked in train mode, as the release (module docstring).
        stop_in_train_mode=getattr(hp, "stop_check_mode", "eval") == "train",
    )
    method.history = [record.as_dict() for record in history]
    return export_deltas(generator, source, context.epsilon, hp.batch_size)


def _check_dataset(method: str, dataset: PreparedDataset, unprotected: Sequence[str]) -> None:
    """Refuse what would otherwise fail deep inside training with an opaque message."""
    from .base import MethodError

    names = [task.name for task in dataset.tasks]
    unknown = sorted(set(unprotected) - set(names))
    if unknown:
        raise MethodError(
            f"method {method!r}: unprotected_tasks names {', '.join(unknown)}, which dataset {dataset.name!r} "
            f"does not have; its tasks: {', '.join(names)}"
        )
    if set(names) <= set(unprotected):
        raise MethodError(f"method {method!r}: every task is in unprotected_tasks, so nothing would be protected; remove some")
    _, height, width = dataset.image_shape
    if dataset.crop_size > min(height, width):
        raise MethodError(
            f"method {method!r}: crop size {dataset.crop_size} exceeds the {height}x{width} images of {dataset.name!r}"
        )
    train = dataset.split(POISONED_SPLIT)
    if len(train) < 2:
        raise MethodError(f"method {method!r}: the training split has {len(train)} sample(s); the generator's batch norm needs at least 2")
    for task in dataset.tasks:
        if task.kind.is_classification and len(train):
            largest = int(np.max(train.targets[task.name]))
            if largest >= task.num_classes:
                raise MethodError(
                    f"method {method!r}: task {task.name!r} has label {largest} but {task.num_classes} classes; "
                    f"the dataset is inconsistent: prepare it again"
                )
