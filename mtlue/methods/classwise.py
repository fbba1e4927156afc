"""Class-wise, surrogate-free methods on multi-task data: one pattern per (task, class).

A subclass only says how to draw the patterns of one task's classes; this module applies them to
the classification tasks of a dataset through a multi-task adaptation (``multitask``). Dense
tasks (segmentation, depth, normals) have no class index, so class-wise methods leave them out;
a dataset with only dense tasks is refused.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from mtlue.data.store import PreparedDataset
from mtlue.data.tasks import Task
from mtlue.poisons import POISONED_SPLIT

from .base import GenerationContext, MethodError, Requirement, UEMethod
from .multitask import compose_average, compose_grid, grid_cells

__all__ = ["ClasswiseHyperparameters", "ClasswiseMethod", "classification_tasks"]


@dataclass(frozen=True)
class ClasswiseHyperparameters:
    #: How the K tasks' patterns share one image: ``grid`` (MTL-UE's classwise_patch_K, the
    #: paper's "patch" baseline) or ``average`` (classwise_spatial_K).
    adaptation: Literal["grid", "average"] = "grid"


def classification_tasks(dataset: PreparedDataset, method: str) -> tuple[Task, ...]:
    """The tasks with a class label per sample, in the dataset's order (the grid's cell order)."""
    tasks = tuple(task for task in dataset.tasks if task.kind.is_classification)
    if not tasks:
        kinds = ", ".join(f"{task.name} ({task.kind.value})" for task in dataset.tasks)
        raise MethodError(
            f"dataset {dataset.name!r} has no classification task ({kinds}); class-wise method "
            f"{method!r} needs a class label per sample: choose a per-sample method for dense-only data"
        )
    return tasks


class ClasswiseMethod(UEMethod):
    """Draws ``class_patterns`` per classification task and combines them per sample."""

    requires = Requirement.NOTHING
    Hyperparameters = ClasswiseHyperparameters
    closed_form = True
    #: Where the grid adaptation draws a task's patterns: at the image's size, then subsampled
    #: into the task's cell (False, the release's classwise_patch_K), or at the cell's own size
    #: (True), for patterns whose shortcut is a pixel-scale structure that subsampling destroys.
    draw_in_cell: ClassVar[bool] = False

    @abstractmethod
    def class_patterns(self, rng: np.random.Generator, classes: int, shape: tuple[int, int, int], epsilon: int) -> np.ndarray:
        """(classes, C, H, W) float64 patterns of one task in units of the budget, |p| <= 1.

        The adaptation multiplies by epsilon/255 and rounds to whole levels; a method that
        scales its patterns to another norm (AR's L2) clips them into the budget here.
        """

    def generate_deltas(self, dataset: PreparedDataset, context: GenerationContext) -> np.ndarray:
        tasks = classification_tasks(dataset, self.name)
        train = dataset.split(POISONED_SPLIT)
        channels, height, width = dataset.image_shape
        shapes = [dataset.image_shape] * len(tasks)
        if self.hyperparameters.adaptation == "grid":
            try:
                cells = grid_cells(height, width, len(tasks))
            except ValueError as error:
                raise MethodError(f"method {self.name!r} on {dataset.name!r}: {error}") from None
            if self.draw_in_cell:
                shapes = [(channels, rows.stop - rows.start, columns.stop - columns.start) for rows, columns in cells]
        patterns = [self.task_patterns(task, shape, context) for task, shape in zip(tasks, shapes, strict=True)]
        labels = [np.asarray(train.targets[task.name]) for task in tasks]
        compose = compose_grid if self.hyperparameters.adaptation == "grid" else compose_average
        return compose(patterns, labels, dataset.image_shape, context.epsilon)

    def task_patterns(self, task: Task, shape: tuple[int, int, int], context: GenerationContext) -> np.ndarray:
        """The patterns of ``task``'s classes, drawn from the stream (seed, method, task name)."""
        patterns = self.class_patterns(context.rng(self.name, task.name), task.num_classes, shape, context.epsilon)
        expected = (task.num_classes, *shape)
        # A contract check on the subclass, so that a bug there cannot turn into a silent
        # misplacement or a pattern clipped flat by the budget.
        if patterns.shape != expected:
            raise MethodError(
                f"method {self.name!r} drew patterns of shape {patterns.shape} for task {task.name!r}, "
                f"expected {expected} (a bug in the method)"
            )
        if not np.isfinite(patterns).all() or np.abs(patterns).max() > 1.0 + 1e-9:
            raise MethodError(
                f"method {self.name!r} drew patterns for task {task.name!r} that are not finite or exceed "
                f"the budget, |p| <= 1 (a bug in the method)"
            )
        return patterns
