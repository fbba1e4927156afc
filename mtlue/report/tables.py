"""Paper-style tables of one dataset's victims: scores per setting, and the attack x defense matrix.

- :func:`summarize`: one row per (method, backbone, weighting, defense), with the number of
  seeds, the headline score's and delta-m's mean and standard deviation over seeds, and the
  mean of each task's headline metric. The standard deviation is the sample one (ddof=1); with
  a single seed it is undefined, written as an empty CSV cell and left out of the Markdown
  ("61.20" instead of "61.20 ± 1.30").
- :func:`score_table`: methods x (backbone, weighting, defense) of "mean ± std" strings.
- :func:`attack_defense_matrix`: rows (backbone, weighting, method), columns the defenses, cells
  the mean headline score over seeds, as APBench (Qin et al., 2023) reports attacks x defenses.

Delta-m and the headline score are defined in :mod:`mtlue.report.scores`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mtlue.data.tasks import Task

from .collect import defense_order, method_order
from .frame import metric_columns

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "SETTING",
    "attack_defense_matrix",
    "format_number",
    "frame_markdown",
    "markdown_table",
    "mean_std",
    "score_table",
    "summarize",
]

#: The attacker's choice of victim, without the seed.
SETTING = ["backbone", "weighting", "defense"]


def summarize(frame: pd.DataFrame, tasks: Sequence[Task]) -> pd.DataFrame:
    """Mean and std over seeds per (method, backbone, weighting, defense) (module docstring)."""
    import pandas as pd

    keys = ["method", *SETTING]
    per_task = metric_columns(frame, tasks)
    rows = []
    for key, group in frame.groupby(keys, sort=False, observed=True):
        row = dict(zip(keys, key))
        row["seeds"] = len(group)
        row["seed_list"] = " ".join(str(seed) for seed in sorted(group["seed"]))
        for column in ("score", "delta_m"):
            values = group[column]
            row[f"{column}_mean"] = float(values.mean()) if values.notna().all() else math.nan
            row[f"{column}_std"] = float(values.std(ddof=1)) if len(values) > 1 and values.notna().all() else math.nan
        for column in per_task:
            row[column.removeprefix("metrics/")] = float(group[column].mean())
        rows.append(row)
    summary = pd.DataFrame(rows)
    return _ordered(summary)


def score_table(summary: pd.DataFrame, column: str = "score") -> pd.DataFrame:
    """Methods (rows) x "backbone / weighting / defense" (columns) of "mean ± std" of ``column``."""
    import pandas as pd

    cells = {
        (row.method, f"{row.backbone} / {row.weighting} / {row.defense}"): mean_std(getattr(row, f"{column}_mean"), getattr(row, f"{column}_std"))
        for row in summary.itertuples()
    }
    methods = method_order(summary["method"])
    settings = list(dict.fromkeys(f"{row.backbone} / {row.weighting} / {row.defense}" for row in summary.itertuples()))
    table = pd.DataFrame([[cells.get((method, setting), "") for setting in settings] for method in methods], index=methods, columns=settings)
    table.index.name = "method"
    return table


def attack_defense_matrix(summary: pd.DataFrame) -> pd.DataFrame:
    """Rows (backbone, weighting, method), columns the defenses, cells the mean headline score."""
    matrix = summary.pivot_table(index=["backbone", "weighting", "method"], columns="defense", values="score_mean", aggfunc="first", observed=True, dropna=False)
    matrix = matrix.reindex(columns=defense_order(summary["defense"]))
    order = {method: rank for rank, method in enumerate(method_order(summary["method"]))}
    matrix = matrix.sort_index(key=lambda index: index.map(order) if index.name == "method" else index)
    matrix.columns.name = "defense"
    return matrix


def mean_std(mean: float, std: float, digits: int = 2) -> str:
    """"mean ± std", or just the mean when the std is undefined (one seed), or "" without a mean."""
    if math.isnan(mean):
        return ""
    return format_number(mean, digits) if math.isnan(std) else f"{format_number(mean, digits)} ± {format_number(std, digits)}"


def format_number(value: float | None, digits: int = 2) -> str:
    """Fixed-point text of ``value``; "n/a" for a missing or undefined number."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table; ``|`` and line breaks in cells are escaped."""

    def cell(value: object) -> str:
        return str(value).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(name) for name in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines.extend("| " + " | ".join(cell(value) for value in row) + " |" for row in rows)
    return "\n".join(lines) + "\n"


def frame_markdown(frame: pd.DataFrame, digits: int = 2) -> str:
    """``frame`` (index included) as a Markdown table, numbers with ``digits`` decimals."""
    index_names = [name or "" for name in frame.index.names]
    rows = []
    for index, values in zip(frame.index, frame.itertuples(index=False)):
        index = index if isinstance(index, tuple) else (index,)
        rows.append([*index, *(format_number(v, digits) if isinstance(v, float) else v for v in values)])
    return markdown_table([*index_names, *map(str, frame.columns)], rows)


def _ordered(summary: pd.DataFrame) -> pd.DataFrame:
    methods = {method: rank for rank, method in enumerate(method_order(summary["method"]))}
    defenses = {defense: rank for rank, defense in enumerate(defense_order(summary["defense"]))}
    keyed = summary.assign(_m=summary["method"].map(methods), _d=summary["defense"].map(defenses))
    return keyed.sort_values(["_m", "backbone", "weighting", "_d"], kind="stable").drop(columns=["_m", "_d"]).reset_index(drop=True)
