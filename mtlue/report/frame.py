"""All victims of a dataset as one pandas DataFrame, one row per victim.

Columns: the axes (``dataset``, ``method``, ``backbone``, ``weighting``, ``defense``, ``seed``,
``mode``), ``train_images``, ``score`` (the headline score, :mod:`mtlue.report.scores`),
``delta_m`` (against the clean reference; NaN without one), every final metric as
``metrics/<task>/<metric>``, every aggregate as ``aggregate/<key>``, and ``path``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .collect import AXES, ReportError, VictimRecord, defense_order, method_order
from .scores import clean_reference, headline_score, victim_delta_m

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["victim_frame", "metric_columns"]


def victim_frame(records: Sequence[VictimRecord]) -> pd.DataFrame:
    """The table of ``records`` (module docstring), sorted by method (clean first), setting and seed."""
    import pandas as pd

    if not records:
        raise ReportError("no victims to tabulate")
    references = clean_reference(records)
    rows = []
    for record in records:
        clean = references.get((record.backbone, record.weighting, record.mode))
        row = {
            "dataset": record.dataset, "method": record.method, "backbone": record.backbone,
            "weighting": record.weighting, "defense": record.defense, "seed": record.seed, "mode": record.mode,
            "train_images": record.train_images,
            "score": _scored(record, headline_score, record.tasks, record.metrics, record.aggregate, clean),
            "delta_m": _scored(record, victim_delta_m, record.tasks, record.metrics, clean),
        }
        for task in record.tasks:
            for metric in task.metrics:
                row[f"metrics/{task.name}/{metric}"] = record.metrics[task.name][metric]
        row.update({f"aggregate/{key}": value for key, value in record.aggregate.items()})
        row["path"] = str(record.path)
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame["method"] = pd.Categorical(frame["method"], categories=method_order(frame["method"]), ordered=True)
    frame["defense"] = pd.Categorical(frame["defense"], categories=defense_order(frame["defense"]), ordered=True)
    frame = frame.sort_values(list(AXES), kind="stable").reset_index(drop=True)
    frame["method"] = frame["method"].astype(str)
    frame["defense"] = frame["defense"].astype(str)
    return frame


def metric_columns(frame: pd.DataFrame, tasks) -> list[str]:
    """The ``metrics/<task>/<headline metric>`` columns of ``frame``, in task order."""
    return [f"metrics/{task.name}/{task.headline_metric}" for task in tasks if f"metrics/{task.name}/{task.headline_metric}" in frame]


def _scored(record: VictimRecord, function, *arguments) -> float:
    try:
        return function(*arguments)
    except ReportError as error:
        raise ReportError(f"{record.path}: {error}") from None
