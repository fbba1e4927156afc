"""Summaries of per-task results that need no torch: the dataset aggregate and delta-m.

They live apart from :mod:`victims.metrics` (which re-exports them) so that tables and the
leaderboard, which only read ``metrics.json`` files, start without importing torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from mtlue.data.tasks import LOWER_IS_BETTER, Task
from mtlue.errors import MetricError

__all__ = ["MetricError", "TaskResults", "aggregate", "delta_m"]

TaskResults = dict[str, dict[str, float]]


def aggregate(results: Mapping[str, Mapping[str, float]], tasks: Sequence[Task]) -> dict[str, float]:
    """Per-dataset summary of per-task results.

    ``classification_mean`` is the mean headline metric over the classification tasks (mean
    accuracy for CelebA/UTKFace, mean AUC for ChestX-ray14), ``mean_<metric>`` the mean of
    each classification metric over the tasks reporting it, and ``<task>/<metric>`` the
    headline metric of each dense task.
    """
    summary: dict[str, float] = {}
    classification = [task for task in tasks if task.kind.is_classification]
    if classification:
        summary["classification_mean"] = float(np.mean([results[t.name][t.headline_metric] for t in classification]))
        for metric in dict.fromkeys(m for t in classification for m in t.metrics):
            summary[f"mean_{metric}"] = float(np.mean([results[t.name][metric] for t in classification if metric in t.metrics]))
    for task in tasks:
        if task.is_dense:
            summary[f"{task.name}/{task.headline_metric}"] = float(results[task.name][task.headline_metric])
    return summary


def delta_m(
    results: Mapping[str, Mapping[str, float]],
    clean_results: Mapping[str, Mapping[str, float]],
    tasks: Sequence[Task],
) -> float:
    """Relative change (%) of ``results`` against ``clean_results``, averaged over every metric.

    Δm = (1/M) Σ_j (-1)^{l_j} (M_j - M_clean_j) / M_clean_j * 100, with l_j = 1 when lower is
    better for metric j (Maninis et al., 2019; over metrics rather than tasks, as Navon et al.,
    2022 report it on NYUv2). Positive means better than the clean-trained victim; a poison that
    protects its data drives it negative.
    """
    terms = []
    for task in tasks:
        for metric in task.metrics:
            try:
                value, clean = float(results[task.name][metric]), float(clean_results[task.name][metric])
            except KeyError:
                raise MetricError(f"delta_m: metric {task.name}/{metric} is missing from the results or the clean results") from None
            if clean == 0 or not math.isfinite(clean):
                raise MetricError(f"delta_m: clean {task.name}/{metric} is {clean}; a relative change needs a finite, non-zero baseline")
            sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
            terms.append(sign * (value - clean) / clean * 100.0)
    if not terms:
        raise MetricError("delta_m: no tasks given")
    return float(np.mean(terms))
