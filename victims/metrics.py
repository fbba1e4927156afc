"""Test metrics of every task kind, accumulated batch by batch over a whole split.

Each task gets a meter (``update`` per batch on the device, ``compute`` once at the end), so a
metric is a statistic of the whole evaluated set, never an average of per-batch values.

**Units** (one convention everywhere): scores that are shares of samples, pixels or pairs are
percentages in [0, 100]: ``accuracy``, ``auc``, ``miou``, ``pixel_accuracy`` and
``within_<t>``. Errors keep their natural units: ``abs_err`` in the depth unit (metres),
``rel_err`` a unitless ratio (as in MTAN's tables, Liu et al., 2019), angles in degrees.

- ``accuracy``: binary tasks predict positive when the logit is > 0; multiclass tasks argmax.
- ``auc``: area under the ROC curve of a binary task from its logits, computed exactly from
  ranks (Mann-Whitney U, ties counted half); the dataset aggregate averages per-task AUCs, as
  the ChestX-ray14 literature does (Wang et al., 2017).
- ``miou`` / ``pixel_accuracy``: from one confusion matrix over all valid pixels of the set
  (label 255 ignored); the mean IoU runs over the classes present in the target or the
  prediction.
- ``abs_err`` / ``rel_err``: mean |d - d*| and mean |d - d*| / d* over pixels with d* > 0.
- ``mean_angle`` / ``median_angle`` / ``within_<t>``: angle between predicted and target normal
  over pixels with a non-zero target. The median comes from a histogram with
  :data:`ANGLE_BIN_DEGREES` wide bins, so its memory is fixed (18,000 counters) whatever the
  set's size, and it is within half a bin (0.005 degrees) of the exact median; mean and
  within-threshold shares are exact.

``delta_m`` is the multi-task performance change of Maninis et al. (2019) averaged over every
metric of every task, the form the NYUv2 tables of CAGrad (Liu et al., 2021) and Nash-MTL
(Navon et al., 2022) report. LibMTL averages within each task first; the two agree whenever
every task reports as many metrics as every other, as on each classification-only dataset.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np
import torch

from mtlue.data.tasks import IGNORE_INDEX, Task, TaskKind

# Re-exported: the torch-free summaries live in victims.summary so reports can use them without torch.
from .summary import MetricError, TaskResults, aggregate, delta_m

__all__ = [
    "ANGLE_BIN_DEGREES",
    "Meter",
    "MetricError",
    "MultiTaskMeter",
    "aggregate",
    "create_meter",
    "delta_m",
    "roc_auc",
]

#: Width of the histogram bins behind the median normal angle (degrees): 18,000 counters.
ANGLE_BIN_DEGREES = 0.01
NORMAL_THRESHOLDS = (11.25, 22.5, 30.0)
SUPPORTED_METRICS: dict[TaskKind, tuple[str, ...]] = {
    TaskKind.BINARY: ("accuracy", "auc"),
    TaskKind.MULTICLASS: ("accuracy",),
    TaskKind.SEGMENTATION: ("miou", "pixel_accuracy"),
    TaskKind.DEPTH: ("abs_err", "rel_err"),
    TaskKind.NORMAL: ("mean_angle", "median_angle", *(f"within_{t:g}" for t in NORMAL_THRESHOLDS)),
}

class Meter(Protocol):
    def update(self, output: torch.Tensor, target: torch.Tensor) -> None: ...

    def compute(self) -> dict[str, float]: ...


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``, ties sharing their average rank (scipy's rankdata "average",
    without importing scipy.stats, which costs every victim job seconds of start-up)."""
    distinct, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last_rank = np.cumsum(counts)
    return (last_rank - (counts - 1) / 2.0)[inverse]


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Exact ROC AUC in [0, 1] from ranks; raises MetricError when one class is absent."""
    labels = np.asarray(labels).astype(bool)
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        raise MetricError(
            f"AUC needs both classes in the evaluated set, got {positives} positive and "
            f"{negatives} negative samples; evaluate on a larger test split"
        )
    ranks = average_ranks(np.asarray(scores, dtype=np.float64))
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _to_host(batch_sums: torch.Tensor) -> torch.Tensor:
    """Per-batch float32 reductions, accumulated across batches in float64 on the host: exact
    enough for millions of pixels, and safe on devices without float64 (Apple MPS)."""
    return batch_sums.detach().cpu().double()


class ClassificationMeter:
    """Accuracy (and, for binary tasks, AUC) of one classification task."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.binary = task.kind is TaskKind.BINARY
        self.counts = torch.zeros(2, dtype=torch.int64)  # correct, evaluated
        self.keep_scores = "auc" in task.metrics
        self.scores: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        prediction = (output > 0).long() if self.binary else output.argmax(dim=1)
        correct = (prediction == target.long()).sum()
        self.counts = self.counts.to(correct.device) + torch.stack([correct, correct.new_tensor(target.numel())])
        if self.keep_scores:
            self.scores.append(output.detach().float().cpu())
            self.labels.append(target.detach().cpu())

    def compute(self) -> dict[str, float]:
        correct, count = (int(v) for v in self.counts)
        if count == 0:
            raise MetricError(f"task {self.task.name!r}: no samples were evaluated")
        values = {"accuracy": 100.0 * correct / count}
        if self.keep_scores:
            try:
                values["auc"] = 100.0 * roc_auc(torch.cat(self.scores).numpy(), torch.cat(self.labels).numpy())
            except MetricError as error:
                raise MetricError(f"task {self.task.name!r}: {error}") from None
        return values


class SegmentationMeter:
    """Confusion matrix over every valid pixel of the set -> mIoU and pixel accuracy."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.classes = task.num_classes
        self.confusion: torch.Tensor | None = None

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        target = target.long()
        valid = target != IGNORE_INDEX
        prediction = output.argmax(dim=1)
        pairs = target[valid] * self.classes + prediction[valid]
        counts = torch.bincount(pairs, minlength=self.classes**2).reshape(self.classes, self.classes)
        self.confusion = counts if self.confusion is None else self.confusion + counts

    def compute(self) -> dict[str, float]:
        if self.confusion is None or int(self.confusion.sum()) == 0:
            raise MetricError(f"task {self.task.name!r}: no labelled pixels were evaluated")
        confusion = self.confusion.double().cpu()
        hits = confusion.diagonal()
        union = confusion.sum(dim=0) + confusion.sum(dim=1) - hits
        present = union > 0
        return {
            "miou": float(100.0 * (hits[present] / union[present]).mean()),
            "pixel_accuracy": float(100.0 * hits.sum() / confusion.sum()),
        }


class DepthMeter:
    """Mean absolute and relative depth error over pixels with a measurement (target > 0)."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.sums = torch.zeros(3, dtype=torch.float64)  # abs error, rel error, pixel count

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        target = target.float()
        valid = target > 0
        error = (output.float() - target).abs()[valid]
        batch = torch.stack([error.sum(), (error / target[valid]).sum(), valid.sum().float()])
        self.sums += _to_host(batch)

    def compute(self) -> dict[str, float]:
        abs_sum, rel_sum, count = (float(v) for v in self.sums)
        if count == 0:
            raise MetricError(f"task {self.task.name!r}: no pixel with a depth measurement was evaluated")
        return {"abs_err": abs_sum / count, "rel_err": rel_sum / count}


class NormalMeter:
    """Angular error of surface normals: mean, median (histogram) and within-threshold shares."""

    bins = round(180.0 / ANGLE_BIN_DEGREES)

    def __init__(self, task: Task) -> None:
        self.task = task
        self.histogram: torch.Tensor | None = None
        # angle sum, pixel count, then one count per threshold
        self.sums = torch.zeros(2 + len(NORMAL_THRESHOLDS), dtype=torch.float64)

    def update(self, output: torch.Tensor, target: torch.Tensor) -> None:
        target = target.float()
        valid = target.norm(dim=1) > 0
        prediction = torch.nn.functional.normalize(output.float(), dim=1)
        target = torch.nn.functional.normalize(target, dim=1)
        # atan2(|a x b|, a . b) stays accurate for small angles, where acos(a . b) does not.
        cross = torch.linalg.cross(prediction, target, dim=1).norm(dim=1)
        dot = (prediction * target).sum(dim=1)
        angles = torch.rad2deg(torch.atan2(cross, dot))[valid]
        bins = (angles / ANGLE_BIN_DEGREES).long().clamp_(0, self.bins - 1)
        counts = torch.bincount(bins, minlength=self.bins)
        self.histogram = counts if self.histogram is None else self.histogram + counts
        batch = torch.stack(
            [angles.sum(), valid.sum().float()] + [(angles < threshold).sum().float() for threshold in NORMAL_THRESHOLDS]
        )
        self.sums += _to_host(batch)

    def compute(self) -> dict[str, float]:
        sums = [float(v) for v in self.sums]
        angle_sum, count = sums[0], sums[1]
        if count == 0 or self.histogram is None:
            raise MetricError(f"task {self.task.name!r}: no pixel with a target normal was evaluated")
        values = {"mean_angle": angle_sum / count, "median_angle": self._median(count)}
        for threshold, within in zip(NORMAL_THRESHOLDS, sums[2:], strict=True):
            values[f"within_{threshold:g}"] = 100.0 * within / count
        return values

    def _median(self, count: float) -> float:
        """Midpoint of the bin(s) holding the middle order statistic(s): the two middle ones
        averaged for an even count, as ``numpy.median`` does; within half a bin of the exact value."""
        assert self.histogram is not None
        cumulative = self.histogram.cpu().cumsum(0)
        total = int(count)
        ranks = torch.tensor([(total + 1) // 2, total // 2 + 1], dtype=cumulative.dtype)  # 1-based
        bins = torch.searchsorted(cumulative, ranks).double()
        return float(((bins + 0.5) * ANGLE_BIN_DEGREES).mean())


_METERS = {
    TaskKind.BINARY: ClassificationMeter,
    TaskKind.MULTICLASS: ClassificationMeter,
    TaskKind.SEGMENTATION: SegmentationMeter,
    TaskKind.DEPTH: DepthMeter,
    TaskKind.NORMAL: NormalMeter,
}


def create_meter(task: Task) -> Meter:
    """A fresh meter for ``task``; raises MetricError for a metric its kind cannot report."""
    unsupported = [name for name in task.metrics if name not in SUPPORTED_METRICS[task.kind]]
    if unsupported:
        raise MetricError(
            f"task {task.name!r} ({task.kind.value}) asks for metric(s) {unsupported}; "
            f"{task.kind.value} tasks support {', '.join(SUPPORTED_METRICS[task.kind])}"
        )
    return _METERS[task.kind](task)


class MultiTaskMeter:
    """One meter per task; ``compute`` returns ``{task: {metric: value}}`` in ``task.metrics`` order."""

    def __init__(self, tasks: Sequence[Task]) -> None:
        self.tasks = tuple(tasks)
        self.meters = {task.name: create_meter(task) for task in self.tasks}

    @torch.no_grad()
    def update(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor]) -> None:
        for name, meter in self.meters.items():
            meter.update(outputs[name], targets[name])

    def compute(self) -> TaskResults:
        results: TaskResults = {}
        for task in self.tasks:
            values = self.meters[task.name].compute()
            results[task.name] = {name: values[name] for name in task.metrics}
        return results
