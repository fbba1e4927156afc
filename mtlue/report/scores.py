"""The one number a victim is judged by, and its delta-m against the clean victim.

**Headline score** (:func:`headline_score`, the only place it is defined): on a dataset with
classification tasks, ``aggregate["classification_mean"]``, the mean headline metric over its
classification tasks in percent (mean accuracy; mean AUC for ChestX-ray14); dense tasks of
such a dataset count only in delta-m. On a dense-only dataset (NYUv2), the victim's delta-m
against its clean reference, in percent. Either way higher is better for the attacker, so a
lower score means better protection.

**Clean reference** (:func:`clean_reference`): for a victim with backbone B, weighting W and
mode M, the per-metric mean over seeds of the ``clean`` victims with the same B, W and M trained
with defense ``none``: what the attacker would get from unprotected data with standard
training. The defense is fixed to ``none`` so that delta-m also charges a defense for what it
costs on clean data. Averaging the reference over seeds makes the clean victims' own delta-m
average exactly 0.

**Delta-m** (:func:`victim_delta_m`): :func:`victims.summary.delta_m` of the victim's final
metrics against its clean reference, over every metric of every task (Maninis et al., 2019).

**The attacker's best defense** (:func:`attacker_best`): the defense with the highest mean score
over seeds, the one place the choice is made for the tables and the leaderboard. It is chosen on
the seed-mean, not per seed: the attacker commits to a defense before seeing which seed it gets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from mtlue.data.tasks import Task
from victims.summary import MetricError, delta_m

from .collect import CLEAN, NO_DEFENSE, ReportError, VictimRecord

__all__ = [
    "CleanReferences",
    "attacker_best",
    "clean_reference",
    "headline_label",
    "headline_name",
    "headline_score",
    "victim_delta_m",
]

TaskResults = Mapping[str, Mapping[str, float]]
#: (backbone, weighting, mode) -> per-metric mean of the clean victims over seeds.
CleanReferences = dict[tuple[str, str, str], dict[str, dict[str, float]]]


def headline_name(tasks: Sequence[Task]) -> str:
    """``classification_mean`` on datasets with classification tasks, else ``delta_m``."""
    return "classification_mean" if any(task.kind.is_classification for task in tasks) else "delta_m"


def headline_label(tasks: Sequence[Task]) -> str:
    """Human name of the headline score, with its unit."""
    if headline_name(tasks) == "delta_m":
        return "Δm vs clean (%)"
    metrics = {task.headline_metric for task in tasks if task.kind.is_classification}
    names = {"accuracy": "mean accuracy (%)", "auc": "mean AUC (%)"}
    return names[metrics.pop()] if len(metrics) == 1 and next(iter(metrics)) in names else "mean headline metric (%)"


def headline_score(
    tasks: Sequence[Task],
    metrics: TaskResults,
    aggregate: Mapping[str, float],
    clean: TaskResults | None,
) -> float:
    """A victim's headline score (module docstring); ``clean`` is needed on dense-only datasets only."""
    if headline_name(tasks) == "classification_mean":
        return float(aggregate["classification_mean"])
    if clean is None:
        raise ReportError(
            "a dense-only dataset scores victims by delta-m against the clean victim, and there is no clean "
            f"victim (method {CLEAN!r}, defense {NO_DEFENSE!r}) with the same backbone and weighting: run it first"
        )
    return _delta_m(metrics, clean, tasks)


def victim_delta_m(tasks: Sequence[Task], metrics: TaskResults, clean: TaskResults | None) -> float:
    """Delta-m (%) against ``clean``; NaN when there is no clean reference (rendered as n/a)."""
    return float("nan") if clean is None else _delta_m(metrics, clean, tasks)


def clean_reference(records: Iterable[VictimRecord]) -> CleanReferences:
    """The clean reference of every (backbone, weighting, mode) that has clean victims without defense."""
    grouped: dict[tuple[str, str, str], list[VictimRecord]] = {}
    for record in records:
        if record.method == CLEAN and record.defense == NO_DEFENSE:
            grouped.setdefault((record.backbone, record.weighting, record.mode), []).append(record)
    return {
        key: {
            task.name: {metric: float(np.mean([r.metrics[task.name][metric] for r in group])) for metric in task.metrics}
            for task in group[0].tasks
        }
        for key, group in grouped.items()
    }


def attacker_best(mean_scores: Mapping[str, float], defenses: Sequence[str]) -> str:
    """The defense of ``defenses`` with the highest mean score; a tie goes to the one listed first.

    ``mean_scores`` maps each defense to its score's mean over seeds (module docstring).
    """
    missing = [defense for defense in defenses if defense not in mean_scores]
    if not defenses or missing:
        raise ReportError(f"the attacker's best defense needs a score for every defense; missing {missing or 'all'}")
    broken = [defense for defense in defenses if not np.isfinite(mean_scores[defense])]
    if broken:
        raise ReportError(f"defense(s) {broken} have a non-finite mean score; the attacker's best defense is undefined")
    order = list(defenses)
    return max(order, key=lambda defense: (mean_scores[defense], -order.index(defense)))


def _delta_m(metrics: TaskResults, clean: TaskResults, tasks: Sequence[Task]) -> float:
    try:
        return delta_m(metrics, clean, tasks)
    except MetricError as error:
        raise ReportError(str(error)) from None
