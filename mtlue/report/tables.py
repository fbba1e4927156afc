"""Paper-style tables of one dataset's victims, every number a mean ± std over seeds.

- :func:`summarize`: one row per (method, backbone, weighting, defense), with ``n_seeds``, the
  seeds, and the mean and standard deviation over seeds of the headline score (``score_mean``,
  ``score_std``), of delta-m and of each task's headline metric (``<task>/<metric>_mean`` and
  ``_std``). The std convention is :data:`mtlue.report.ties.STD_CONVENTION`: the sample std
  (ddof=1); with a single seed it is unavailable, an empty CSV cell, and the Markdown shows the
  mean alone ("61.20" instead of "61.20 ± 1.30"), never "± 0.00".
- :func:`score_table`: methods x (backbone, weighting, defense) of "mean ± std" strings;
  :func:`task_table`: the same for every task's headline metric.
- :func:`attack_defense_matrix`: rows (backbone, weighting, method), columns the defenses, cells
  the mean headline score over seeds, as APBench (Qin et al., 2023) reports attacks x defenses
  (the heat map's numbers).
- :func:`attack_defense_ranks`: the same cells in long form with their std, number of seeds and
  tie-aware rank (:func:`mtlue.report.ties.tie_ranks`) among the poisoned methods, per defense
  and at each method's best defense (:func:`mtlue.report.scores.attacker_best`, over the
  defenses every method of the (backbone, weighting) panel was measured under);
  :func:`attack_defense_markdown` renders it, rows ordered by the rank at the best defense.

Whenever the cells of one table have different numbers of seeds, each cell says its own
("61.20 ± 1.30 (n=3)"); otherwise the table's note gives the one number.
Delta-m and the headline score are defined in :mod:`mtlue.report.scores`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from mtlue.data.tasks import Task

from .collect import CLEAN, defense_order, method_order
from .frame import metric_columns
from .scores import attacker_best
from .ties import NOT_RANKED, RANK_RULE, STD_CONVENTION, Estimate, TieRank, rank_labels, tie_ranks, ties_label

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "SETTING",
    "attack_defense_markdown",
    "attack_defense_matrix",
    "attack_defense_ranks",
    "estimate_text",
    "format_number",
    "frame_markdown",
    "markdown_table",
    "mean_std",
    "score_table",
    "seeds_note",
    "summarize",
    "task_columns",
    "task_table",
]

#: The attacker's choice of victim, without the seed.
SETTING = ["backbone", "weighting", "defense"]
_KEYS = ["method", *SETTING]


def summarize(frame: pd.DataFrame, tasks: Sequence[Task]) -> pd.DataFrame:
    """Mean and std over seeds per (method, backbone, weighting, defense) (module docstring)."""
    import pandas as pd

    per_task = metric_columns(frame, tasks)
    rows = []
    for key, group in frame.groupby(_KEYS, sort=False, observed=True):
        row = dict(zip(_KEYS, key))
        row["n_seeds"] = len(group)
        row["seed_list"] = " ".join(str(seed) for seed in sorted(group["seed"]))
        for column, name in [("score", "score"), ("delta_m", "delta_m"), *((c, c.removeprefix("metrics/")) for c in per_task)]:
            row[f"{name}_mean"], row[f"{name}_std"] = _mean_std(group[column])
        rows.append(row)
    return _ordered(pd.DataFrame(rows))


def task_columns(summary: pd.DataFrame, tasks: Sequence[Task]) -> list[str]:
    """The ``<task>/<metric>`` names of ``summary``'s per-task columns, in task order."""
    return [f"{task.name}/{task.headline_metric}" for task in tasks if f"{task.name}/{task.headline_metric}_mean" in summary]


def score_table(summary: pd.DataFrame, column: str = "score") -> pd.DataFrame:
    """Methods (rows) x "backbone / weighting / defense" (columns) of "mean ± std" of ``column``."""
    import pandas as pd

    per_cell = _varying_seeds(summary)
    cells = {
        (row.method, _setting(row)): estimate_cell(getattr(row, f"{column}_mean"), getattr(row, f"{column}_std"), row.n_seeds, per_cell)
        for row in summary.itertuples()
    }
    methods = method_order(summary["method"])
    settings = list(dict.fromkeys(_setting(row) for row in summary.itertuples()))
    table = pd.DataFrame([[cells.get((method, setting), "") for setting in settings] for method in methods], index=methods, columns=settings)
    table.index.name = "method"
    return table


def task_table(summary: pd.DataFrame, tasks: Sequence[Task], label: str = "score") -> pd.DataFrame:
    """Rows (method, backbone, weighting, defense): seeds, the score and every task's headline metric, "mean ± std"."""
    import pandas as pd

    per_cell = _varying_seeds(summary)
    names = task_columns(summary, tasks)
    rows = []
    for row in summary.to_dict("records"):
        rows.append({
            **{key: row[key] for key in _KEYS}, "n_seeds": row["n_seeds"],
            label: estimate_cell(row["score_mean"], row["score_std"], row["n_seeds"], per_cell),
            **{name: estimate_cell(row[f"{name}_mean"], row[f"{name}_std"], row["n_seeds"], per_cell) for name in names},
        })
    return pd.DataFrame(rows, columns=[*_KEYS, "n_seeds", label, *names]).set_index(_KEYS)


def attack_defense_matrix(summary: pd.DataFrame) -> pd.DataFrame:
    """Rows (backbone, weighting, method), columns the defenses, cells the mean headline score."""
    matrix = summary.pivot_table(index=["backbone", "weighting", "method"], columns="defense", values="score_mean", aggfunc="first", observed=True, dropna=False)
    matrix = matrix.reindex(columns=defense_order(summary["defense"]))
    order = {method: rank for rank, method in enumerate(method_order(summary["method"]))}
    matrix = matrix.sort_index(key=lambda index: index.map(order) if index.name == "method" else index)
    matrix.columns.name = "defense"
    return matrix


def attack_defense_ranks(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per (backbone, weighting, method, defense): the score's ``mean``, ``std``, ``n_seeds``,
    and its tie-aware ``rank`` and ``ties_with`` among the poisoned methods under that defense;
    ``attacker_best`` marks each method's best defense, where ``best_rank`` and ``best_ties_with``
    rank the methods by the score at their own best defense. ``clean`` (the reference) and results
    of one seed have no rank; ``ties_with`` lists methods by name, separated by spaces."""
    import pandas as pd

    rows = []
    for (backbone, weighting), panel in summary.groupby(["backbone", "weighting"], sort=True):
        estimates = {(row.method, row.defense): Estimate.from_columns(row.score_mean, row.score_std, row.n_seeds) for row in panel.itertuples()}
        methods = method_order(panel["method"])
        defenses = defense_order(panel["defense"])
        per_defense = {
            defense: tie_ranks({m: estimates[(m, defense)] for m in methods if m != CLEAN and (m, defense) in estimates})
            for defense in defenses
        }
        # The attacker picks among the defenses every method of the panel was measured under, so
        # that methods with extra (robustness) defenses are compared on the same choice.
        common = [d for d in defenses if all((m, d) in estimates for m in methods)]
        complete = {m: attacker_best({d: estimates[(m, d)].mean for d in common}, common) for m in methods} if common else {}
        at_best = tie_ranks({m: estimates[(m, d)] for m, d in complete.items() if m != CLEAN})
        for method in methods:
            for defense in defenses:
                if (method, defense) not in estimates:
                    continue
                estimate, ranked = estimates[(method, defense)], per_defense[defense].get(method)
                is_best = complete.get(method) == defense
                best_ranked = at_best.get(method) if is_best else None
                rows.append({
                    "backbone": backbone, "weighting": weighting, "method": method, "defense": defense,
                    "mean": estimate.mean, "std": math.nan if estimate.std is None else estimate.std, "n_seeds": estimate.n_seeds,
                    "rank": _rank_value(ranked), "ties_with": _ties_text(ranked),
                    "attacker_best": is_best, "best_rank": _rank_value(best_ranked), "best_ties_with": _ties_text(best_ranked),
                })
    frame = pd.DataFrame(rows)
    for column in ("rank", "best_rank"):
        frame[column] = frame[column].astype("Int64")
    return frame


def attack_defense_markdown(ranks: pd.DataFrame, mark: Callable[[str], str] | None = None) -> str:
    """The attack x defense table of :func:`attack_defense_ranks`, with its notes.

    Per (backbone, weighting): clean first, then the methods by their rank at the attacker's best
    defense (then mean, then name). Each cell is "mean ± std (rank under that defense)".
    ``mark`` gives the method column's text for a method (e.g. with the † of
    :func:`mtlue.report.poisons.mark_method`); ordering and ties use the plain names.
    """
    defenses = defense_order(ranks["defense"])
    per_cell = _varying_seeds(ranks)
    header = ["backbone", "weighting", "method", *defenses, "best defense", "rank at best", "ties at best"]
    lines = []
    for (backbone, weighting), panel in ranks.groupby(["backbone", "weighting"], sort=True):
        cells = {(row.method, row.defense): row for row in panel.itertuples()}
        labels = {d: _labels(panel[panel["defense"] == d]) for d in defenses}
        best = panel[panel["attacker_best"]]
        best_labels = _labels(best, "best_rank")
        best_ties = {
            row.method: TieRank(None, tuple(row.best_ties_with.split()) if row.best_ties_with else ())
            for row in best.itertuples() if row.method != CLEAN
        }
        order = {row.method: (_sort_rank(row.best_rank), row.mean, row.method) for row in best.itertuples()}
        methods = sorted(set(panel["method"]), key=lambda m: (m != CLEAN, order.get(m, (math.inf, math.inf, m))))
        for method in methods:
            row = [backbone, weighting, method if mark is None else mark(method)]
            for defense in defenses:
                cell = cells.get((method, defense))
                if cell is None:
                    row.append("")
                    continue
                text = estimate_cell(cell.mean, cell.std, cell.n_seeds, per_cell)
                label = labels[defense].get(method)
                row.append(f"{text} ({label})" if label not in (None, "–") else text)
            at_best = best[best["method"] == method]
            if at_best.empty:
                row += ["n/a", "", ""]
            else:
                chosen = at_best.iloc[0]
                rank_text = "ref" if method == CLEAN else best_labels[method]
                row += [chosen["defense"], rank_text, "" if method == CLEAN else ties_label(method, best_ties)]
            lines.append(row)
    notes = [
        f"- Cells: the score, {seeds_note(ranks['n_seeds'])}; {STD_CONVENTION}.",
        "- (r): the method's rank among the poisoned methods under that defense; rank at best: among the poisoned "
        "methods, each at its own best defense (the attacker's choice: the highest mean score over seeds); clean is "
        "the reference (ref).",
        f"- Ties: {RANK_RULE}.",
    ]
    if (ranks["n_seeds"] < 2).any():
        notes.append(f"- One seed: {NOT_RANKED}.")
    return markdown_table(header, lines) + "\n" + "\n".join(notes) + "\n"


def seeds_note(counts: Iterable[int]) -> str:
    """What a table's cells are: "mean ± std over 3 seeds", "one seed, no std", or, when the
    cells differ, "mean ± std over the seeds given as (n=k) in each cell"."""
    unique = sorted({int(count) for count in counts})
    if unique == [1]:
        return "one seed, no std"
    if len(unique) == 1:
        return f"mean ± std over {unique[0]} seeds"
    return "mean ± std over the seeds given as (n=k) in each cell"


def estimate_text(estimate: Estimate, digits: int = 2) -> str:
    """"mean ± std", or the mean alone when the std is unavailable (one seed)."""
    return mean_std(estimate.mean, math.nan if estimate.std is None else estimate.std, digits)


def estimate_cell(mean: float, std: float | None, n_seeds: int, with_seeds: bool, digits: int = 2) -> str:
    """A table cell: ``mean_std``, followed by "(n=k)" when the table's cells have different seeds."""
    text = mean_std(mean, math.nan if std is None else std, digits)
    return f"{text} (n={int(n_seeds)})" if with_seeds and text else text


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


def _mean_std(values: pd.Series) -> tuple[float, float]:
    """Mean and sample std of one value per seed; NaN std with one seed, NaN both when a value is missing."""
    if values.isna().any():
        return math.nan, math.nan
    estimate = Estimate.of(values.to_numpy(dtype=float))
    return estimate.mean, math.nan if estimate.std is None else estimate.std


def _setting(row) -> str:
    return f"{row.backbone} / {row.weighting} / {row.defense}"


def _varying_seeds(frame: pd.DataFrame) -> bool:
    return frame["n_seeds"].nunique() > 1


def _rank_value(ranked) -> int | None:
    return None if ranked is None else ranked.rank


def _ties_text(ranked) -> str:
    return "" if ranked is None else " ".join(ranked.ties_with)


def _labels(rows: pd.DataFrame, column: str = "rank") -> dict[str, str]:
    """``=2``-style labels of the ranked rows, via :func:`mtlue.report.ties.rank_labels`."""
    ranked = {row.method: TieRank(None if _missing(getattr(row, column)) else int(getattr(row, column)), ()) for row in rows.itertuples() if row.method != CLEAN}
    return rank_labels(ranked)


def _sort_rank(rank) -> float:
    return math.inf if _missing(rank) else float(rank)


def _missing(value) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))


def _ordered(summary: pd.DataFrame) -> pd.DataFrame:
    methods = {method: rank for rank, method in enumerate(method_order(summary["method"]))}
    defenses = {defense: rank for rank, defense in enumerate(defense_order(summary["defense"]))}
    keyed = summary.assign(_m=summary["method"].map(methods), _d=summary["defense"].map(defenses))
    return keyed.sort_values(["_m", "backbone", "weighting", "_d"], kind="stable").drop(columns=["_m", "_d"]).reset_index(drop=True)
