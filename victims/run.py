"""One victim experiment: train on a dataset's train split, score on its test split.

``run_victim`` builds the victim(s) a :class:`VictimConfig` describes and trains them with a
:class:`~victims.train.TrainConfig`: in ``mtl`` mode one multi-task network, in ``stl`` mode one
independent network per task (the paper's single-task victims: a fresh copy of the same
network with that task's head only, trained with the same recipe). The training images may be
replaced by a published (poisoned) copy of the same shape; targets and the test split always
come from the prepared dataset.

``VictimResult.to_json()`` is what ``mtlue victim`` writes as ``metrics.json`` (through
:mod:`mtlue.victim_metrics`; its JSON Schema is ``mtlue/schemas/victim-metrics.schema.json``)::

    {
      "format": "mtlue-victim-metrics/1",
      "dataset": {"name", "path", "tasks": [Task JSON],
                  "train_content_hash", "test_content_hash",   # PreparedDataset split hashes
                  "train_images": "clean" | <id of the published images, e.g. a poison hash>},
      "backbone", "weighting", "weighting_options", "mode" ("mtl"|"stl"), "seed",
      "defense": {"name": spec, e.g. "none" | "jpeg+cutout",
                  "options": {as given with --defense-set},
                  "components": [{"name", "stage" ("split"|"batch"|"procedure"), "hyperparameters"}]},
      "model": {"decoder", "decoder_width", "stem", "pretrained"},
      "train_config": {TrainConfig fields, "milestone_epochs"},
      "metrics": {task: {metric: value}},       # final epoch, units as in victims.metrics
      "aggregate": {"classification_mean", "mean_<metric>", "<dense task>/<metric>"},
      "runs": [{"name": "mtl" | "stl-<task>", "tasks": [names], "parameters": int,
                "resumed_from_epoch": int, "train_seconds": float,
                "history": [{"epoch", "lr", "train_loss": {task: v}, "task_weights": {task: w}, "grad_norm",
                             "seconds", ["test": {task: {metric: v}}, "test_aggregate": {...},
                             "eval_seconds"], last epoch only: "train_fit": {task: {metric: v}},
                             "train_fit_aggregate": {...} (centre crops of the training split as trained on)}]}],
      "device", "amp_dtype" (null | "bfloat16"), "num_threads",
      "wall_time_seconds",                      # this invocation, including evaluation
      "timing": {                               # where this victim's time went (mtlue.timing), Unix times:
          "process_started": float | null,      #   the process that trained it started
          "started": float,                     #   its turn began: the process start for a process's
                                                #   first victim, else the end of the one before
          "first_step": float | null,           #   its first training step (null: resumed after the last epoch)
          "last_step": float | null,            #   the end of its final evaluation
          "finished": float,                    #   metrics computed, just before the file is written
          "startup_seconds": float | null,      #   started -> first_step (imports, data, tracking, model)
          "work_seconds": float | null,         #   first_step -> last_step (training and evaluation)
          "cpu_seconds": {"startup", "work"}},  #   this process's CPU seconds (all threads) in each
      "versions": {"python", "torch", "timm", "segmentation_models_pytorch", "torchjd", "numpy", "mtlue"},
      "created": ISO 8601 UTC
    }

Metrics are the final epoch's (the paper reports the last epoch, not the best).
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtlue.data.store import PreparedDataset
from mtlue.data.tasks import Task
from mtlue.timing import Instant, process_started
from mtlue.tracking.provenance import git_commit
from mtlue.victim_metrics import FORMAT, is_victim_metrics

from .backbones import get_backbone_spec
from .config import TrainConfig, VictimConfig
from .device import DeviceError, autocast_dtype
from .metrics import TaskResults, aggregate
from .model import MultiTaskModel
from .setup import build_model, data_budget_bytes, prepare_device, split_sources
from .train import EpochCallback, FitResult, fit

__all__ = ["RunRecord", "VictimResult", "is_victim_metrics", "run_victim"]

@dataclass
class RunRecord:
    """One trained network of a victim experiment (``model`` is on the CPU)."""

    name: str
    tasks: tuple[str, ...]
    parameters: int
    fit: FitResult
    model: MultiTaskModel

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tasks": list(self.tasks),
            "parameters": self.parameters,
            "resumed_from_epoch": self.fit.resumed_from_epoch,
            "train_seconds": self.fit.train_seconds,
            "history": self.fit.history,
        }


@dataclass
class VictimResult:
    """Everything ``metrics.json`` records (see the module docstring for its layout)."""

    dataset: PreparedDataset
    victim: VictimConfig
    config: TrainConfig
    train_images: str
    metrics: TaskResults
    aggregate: dict[str, float]
    runs: list[RunRecord]
    device: torch.device
    amp_dtype: torch.dtype | None
    wall_time_seconds: float
    defense: dict[str, Any] | None = None
    timing: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        dataset = self.dataset
        return {
            "format": FORMAT,
            "dataset": {
                "name": dataset.name,
                "path": str(dataset.root),
                "tasks": [task.to_json() for task in dataset.tasks],
                "train_content_hash": dataset.manifest["splits"]["train"]["content_hash"],
                "test_content_hash": dataset.manifest["splits"]["test"]["content_hash"],
                "train_images": self.train_images,
            },
            "backbone": self.victim.backbone,
            "weighting": self.victim.weighting,
            "weighting_options": dict(self.victim.weighting_options),
            "mode": self.victim.mode,
            "seed": self.config.seed,
            "defense": self.defense if self.defense is not None else {"name": "none", "options": {}, "components": []},
            "model": {"decoder": self.victim.decoder, "decoder_width": self.victim.decoder_width, "stem": self.victim.stem, "pretrained": self.victim.pretrained},
            "train_config": self.config.to_json(),
            "metrics": self.metrics,
            "aggregate": self.aggregate,
            "runs": [run.to_json() for run in self.runs],
            "device": str(self.device),
            "amp_dtype": None if self.amp_dtype is None else str(self.amp_dtype).removeprefix("torch."),
            "num_threads": torch.get_num_threads(),
            "wall_time_seconds": self.wall_time_seconds,
            "timing": self.timing,
            "versions": versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "git_commit": git_commit(),
        }


def versions() -> dict[str, str]:
    """Versions of the packages that determine a victim's numbers."""
    found = {"python": platform.python_version()}
    for package in ("torch", "timm", "segmentation_models_pytorch", "torchjd", "numpy", "mtlue"):
        try:
            found[package] = metadata.version(package.replace("_", "-"))
        except metadata.PackageNotFoundError:
            found[package] = "not installed"
    return found


def _train_images(dataset: PreparedDataset, clean: np.ndarray, published: np.ndarray | None) -> np.ndarray:
    if published is None:
        return clean
    if published.dtype != np.uint8 or published.shape != clean.shape:
        raise ValueError(
            f"published training images must be uint8 with the clean train split's shape {clean.shape} "
            f"(dataset {dataset.name!r}), got {published.dtype} {published.shape}"
        )
    return published


def _fingerprint(run: str, dataset: PreparedDataset, train_images: str, victim: VictimConfig, config: TrainConfig) -> dict[str, Any]:
    train = {key: value for key, value in config.to_json().items() if key not in TrainConfig.OPERATIONAL}
    return {
        "run": run,
        "dataset": dataset.name,
        "train_content_hash": dataset.manifest["splits"]["train"]["content_hash"],
        "test_content_hash": dataset.manifest["splits"]["test"]["content_hash"],
        "train_images": train_images,
        "victim": asdict(victim),
        "train_config": train,
    }


def _weighting_options(victim: VictimConfig, config: TrainConfig) -> dict[str, Any]:
    """The strategy's options, with the run's seed for strategies that draw random numbers."""
    from .weighting import weighting_class

    options = dict(victim.weighting_options)
    if "seed" in weighting_class(victim.weighting).hyperparameter_names():
        options.setdefault("seed", config.seed)
    return options


def _amp_dtype(device: torch.device, config: TrainConfig, victim: VictimConfig) -> torch.dtype | None:
    """Autocast dtype; gradient-aggregation strategies always train in float32.

    torchjd computes their per-task Jacobians with ``torch.vmap``, which fails on autocast
    graphs (torch 2.14, CPU: "expected scalar type BFloat16 but found Float"); unverified on
    CUDA, so mixed precision is off for them on every device.
    """
    from .weighting import weighting_class

    dtype = autocast_dtype(device, config.amp)
    if dtype is None or weighting_class(victim.weighting).family != "gradient aggregation":
        return dtype
    if config.amp:
        raise DeviceError(
            f"weighting {victim.weighting!r} aggregates per-task gradients with torch.vmap, which does not "
            f"support mixed precision; use --amp off (or auto) with it"
        )
    return None


def _timing(started: Instant, runs: Sequence[RunRecord], finished: Instant) -> dict[str, Any]:
    """The ``timing`` record of ``metrics.json`` (layout in the module docstring)."""
    firsts = [run.fit.first_step for run in runs if run.fit.first_step is not None]
    lasts = [run.fit.last_step for run in runs if run.fit.last_step is not None]
    first = min(firsts, key=lambda instant: instant.wall) if firsts else None
    last = max(lasts, key=lambda instant: instant.wall) if lasts else None

    def span(a: Instant | None, b: Instant | None, field: str) -> float | None:
        return None if a is None or b is None else round(getattr(b, field) - getattr(a, field), 3)

    return {
        "process_started": process_started(),
        "started": started.wall,
        "first_step": None if first is None else first.wall,
        "last_step": None if last is None else last.wall,
        "finished": finished.wall,
        "startup_seconds": span(started, first, "wall"),
        "work_seconds": span(first, last, "wall"),
        "cpu_seconds": {"startup": span(started, first, "cpu"), "work": span(first, last, "cpu")},
    }


def run_victim(
    dataset: PreparedDataset,
    victim: VictimConfig | None = None,
    config: TrainConfig | None = None,
    *,
    train_images: np.ndarray | None = None,
    train_images_id: str = "clean",
    checkpoint_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
    callbacks: Sequence[EpochCallback] = (),
    started: Instant | None = None,
) -> VictimResult:
    """Train the victim(s) of ``victim`` on ``dataset`` (or on ``train_images``) and test them.

    ``victim`` and ``config`` default to the paper's ResNet-18 / equal-weighting MTL victim.
    ``victim.defense`` is built (and checked against the dataset) before any data is loaded; it
    applies to the training images only, the test split is never defended.

    ``train_images`` replaces the train split's images (e.g. a poisoned copy) and
    ``train_images_id`` names it in the result and the checkpoint fingerprint. With
    ``checkpoint_dir``, each network checkpoints to ``<dir>/<run>.pt`` after every epoch and an
    interrupted experiment resumes where it stopped.

    ``started`` is when this victim's turn began, from which the result's ``timing`` measures
    its start-up (default: this call; ``mtlue victim`` passes the process's start for its first
    seed, so that the imports count).
    """
    from .defenses import create_defense
    from .weighting import create_weighting

    victim = victim or VictimConfig()
    config = config or TrainConfig()
    started = started or Instant.now()
    wall_started = time.perf_counter()
    # Names are checked before the data is loaded, so a typo fails at once.
    get_backbone_spec(victim.backbone)
    defense = create_defense(victim.defense, **victim.defense_options)
    defense.check(dataset.tasks, dataset.image_shape[0])
    device = prepare_device(config.device, config.num_threads)
    amp_dtype = _amp_dtype(device, config, victim)
    images = _train_images(dataset, dataset.split("train").images, train_images)
    train_source, test_source = split_sources(dataset, device, data_budget_bytes(device, config.data_budget_mb), train_images=images)

    groups: list[tuple[Task, ...]] = [dataset.tasks] if victim.mode == "mtl" else [(task,) for task in dataset.tasks]
    runs: list[RunRecord] = []
    for tasks in groups:
        name = "mtl" if victim.mode == "mtl" else f"stl-{tasks[0].name}"
        model = build_model(tasks, victim, dataset, device, seed=config.seed, pretrained=victim.pretrained)
        weighting = create_weighting(victim.weighting, len(tasks), **_weighting_options(victim, config)).to(device)
        checkpoint = Path(checkpoint_dir) / f"{name}.pt" if checkpoint_dir is not None else None
        result = fit(
            model, weighting, train_source, test_source, config,
            crop_size=dataset.crop_size, amp_dtype=amp_dtype, name=name, checkpoint_path=checkpoint,
            fingerprint=_fingerprint(name, dataset, train_images_id, victim, config),
            progress=progress, callbacks=callbacks, defense=defense,
        )
        parameters = sum(p.numel() for p in model.parameters())
        # Off the device, so single-task mode does not hold K networks in device memory.
        runs.append(RunRecord(name, tuple(t.name for t in tasks), parameters, result, model.cpu()))

    metrics = {task: values for run in runs for task, values in run.fit.metrics.items()}
    metrics = {task.name: metrics[task.name] for task in dataset.tasks}
    return VictimResult(
        dataset=dataset,
        victim=victim,
        config=config,
        train_images=train_images_id,
        metrics=metrics,
        aggregate=aggregate(metrics, dataset.tasks),
        runs=runs,
        device=device,
        amp_dtype=amp_dtype,
        wall_time_seconds=time.perf_counter() - wall_started,
        defense=defense.to_json(),
        timing=_timing(started, runs, Instant.now()),
    )
