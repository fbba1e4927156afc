"""The README summary of one dataset: per method, clean-normalised scores as mean ± std, and the rank.

``summary.md`` is one small table meant to be quoted as it is, ``summary.csv`` the same numbers
at full precision. Both show the leaderboard's numbers (:mod:`mtlue.leaderboard.measure`, default
protocol): the same victims (every backbone x weighting x defense x seed of the grid, methods
with a missing victim listed apart), the attacker's best defense chosen on the mean over seeds,
the std over seeds of the mean over backbones x weightings, and the rank of the scores at the
best defense under the tie rule of :mod:`mtlue.report.ties`.

**Clean-normalised.** On a dataset with classification tasks every score is shown as a
percentage of the clean score (the ``clean`` method's score at its own best defense, the
leaderboard's "Clean"): 100 means the data is as learnable as unprotected data, lower means
better protection. Stds scale by the same factor: the clean score is a fixed reference, and its
own seed noise is in the clean row. The scaling is the same for every method, so it changes no
tie and no rank. On a dense-only dataset the headline is already delta-m against clean
(0 = no protection), and the numbers are shown as they are.

Deterministic for the same victims: rows by rank, then mean, then name; fixed decimals
(:data:`DIGITS`); no dates, hashes or paths.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .collect import CLEAN, NO_DEFENSE, ReportError, VictimRecord
from .scores import headline_label, headline_name
from .selection import Selection
from .tables import estimate_text, markdown_table
from .ties import NOT_RANKED, RANK_RULE, STD_CONVENTION, Estimate, rank_labels, tie_ranks, ties_label

__all__ = ["DIGITS", "SUMMARY_COLUMNS", "DatasetSummary", "SummaryRow", "summarize_dataset"]

#: Decimals of the Markdown summary: the std of a few seeds is rarely known better than 0.1 point.
DIGITS = 1
#: Columns of ``summary.csv``; ``*_pct_of_clean_*`` are empty on dense-only datasets.
SUMMARY_COLUMNS = (
    "method", "rank", "ties_with", "n_seeds", "best_defense",
    "undefended_mean", "undefended_std", "best_mean", "best_std",
    "undefended_pct_of_clean_mean", "undefended_pct_of_clean_std", "best_pct_of_clean_mean", "best_pct_of_clean_std",
)


@dataclass(frozen=True)
class SummaryRow:
    """One method: raw scores (the headline's units), the label of its rank and its ties."""

    method: str
    label: str
    rank: int | None
    ties_with: tuple[str, ...]
    ties_text: str
    best_defense: str
    best: Estimate
    undefended: Estimate | None


@dataclass(frozen=True)
class DatasetSummary:
    """The summary of one dataset; ``factor`` turns raw scores into % of clean (None: shown raw)."""

    dataset: str
    label: str
    protocol_text: str
    rows: tuple[SummaryRow, ...]
    factor: float | None
    skipped: tuple[tuple[str, str], ...]
    problem: str | None = None

    def markdown(self, mark: Callable[[str], str] | None = None, footnote: str = "") -> str:
        """The Markdown summary; ``mark`` gives the method column's text for a method (e.g. with the †
        of :func:`mtlue.report.poisons.mark_method`), ``footnote`` (Markdown) follows the notes."""
        lines = [f"# {self.dataset}: summary", ""]
        if self.problem is not None:
            return "\n".join([*lines, f"No summary: {self.problem}.", ""])
        if self.rows:
            unit = "% of clean" if self.factor is not None else self.label
            header = ["rank", "method", f"undefended ({unit})", f"attacker's best defense ({unit})", "defense", "ties with"]
            lines.append(markdown_table(header, [self._cells(row, mark) for row in self.rows]).rstrip("\n"))
            lines += ["", *self._notes()]
            if footnote:
                lines += ["", footnote.rstrip("\n")]
        else:
            lines.append("No method has every victim of the protocol, clean included.")
        if self.skipped:
            lines += ["", "Not in the summary (incomplete):", ""]
            lines += [f"- {method}: {reason}" for method, reason in self.skipped]
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(SUMMARY_COLUMNS)
        for row in self.rows:
            relative = [self._scaled(row.undefended), self._scaled(row.best)]
            writer.writerow([
                row.method, "" if row.rank is None else row.rank, " ".join(row.ties_with), row.best.n_seeds, row.best_defense,
                *_numbers(row.undefended), *_numbers(row.best), *(number for estimate in relative for number in _numbers(estimate)),
            ])
        return buffer.getvalue()

    def _scaled(self, estimate: Estimate | None) -> Estimate | None:
        return None if estimate is None or self.factor is None else estimate.scaled(self.factor)

    def _shown(self, estimate: Estimate | None) -> str:
        if estimate is None:
            return "n/a"
        return estimate_text(self._scaled(estimate) if self.factor is not None else estimate, DIGITS)

    def _cells(self, row: SummaryRow, mark: Callable[[str], str] | None = None) -> list[str]:
        method = row.method if mark is None else mark(row.method)
        return [row.label, method, self._shown(row.undefended), self._shown(row.best), row.best_defense, row.ties_text]

    def _notes(self) -> list[str]:
        clean = next(row for row in self.rows if row.method == CLEAN)
        seeds = clean.best.n_seeds
        if self.factor is not None:
            scale = (
                f"- Numbers: {self.label} as a percentage of the clean victim's {estimate_text(clean.best, DIGITS)} "
                f"(defense {clean.best_defense}); 100 = no protection, lower = better protection."
            )
        else:
            scale = f"- Numbers: {self.label} (already relative to clean: 0 = no protection), lower = better protection."
        if seeds < 2:
            noise = f"- One seed: the mean over backbones x weightings; {STD_CONVENTION}."
            ranks = f"- Not ranked: {NOT_RANKED}."
        else:
            noise = f"- Mean ± std over {seeds} seeds of the mean over backbones x weightings; {STD_CONVENTION}."
            ranks = f"- Rank at the attacker's best defense: {RANK_RULE}."
        return [
            f"- Victims: {self.protocol_text} (the leaderboard's protocol).",
            scale,
            f"{noise} The attacker's best defense is the one with the highest mean.",
            ranks,
        ]


def summarize_dataset(records: Sequence[VictimRecord], selection: Selection | None = None) -> DatasetSummary:
    """The summary of one dataset's ``records`` over the protocol ``selection`` gives (module docstring)."""
    # Imported here: the leaderboard package imports the report's modules at its top level.
    from mtlue.leaderboard.measure import measure
    from mtlue.leaderboard.protocol import DEFAULT_PROTOCOL, resolve_protocol

    selection = selection or Selection()
    dataset, tasks = records[0].dataset, records[0].tasks
    label = headline_label(tasks)
    try:
        protocol = resolve_protocol(DEFAULT_PROTOCOL, records, selection)
    except ReportError as error:
        return DatasetSummary(dataset, label, "", (), None, (), problem=str(error))
    measured = measure(records, protocol, selection.methods)
    skipped = tuple((item.method, item.reason) for item in measured.skipped)
    clean = measured.clean
    if clean is None:
        return DatasetSummary(dataset, label, protocol.describe(), (), None, skipped)
    factor = None
    if headline_name(tasks) == "classification_mean":
        if not clean.best.score.mean > 0:
            raise ReportError(
                f"{dataset}: the clean score is {clean.best.score.mean}, so scores cannot be shown as a percentage of it; "
                "check the clean victims"
            )
        factor = 100.0 / clean.best.score.mean
    ranks = tie_ranks({method: scores.best.score for method, scores in measured.methods.items() if method != CLEAN})
    labels = rank_labels(ranks)
    rows = []
    for method, scores in measured.methods.items():
        undefended = scores.per_defense.get(NO_DEFENSE)
        ranked = ranks.get(method)
        rows.append(SummaryRow(
            method=method,
            label="ref" if method == CLEAN else labels[method],
            rank=None if ranked is None else ranked.rank,
            ties_with=() if ranked is None else ranked.ties_with,
            ties_text="" if ranked is None else ties_label(method, ranks),
            best_defense=scores.best_defense,
            best=scores.best.score,
            undefended=None if undefended is None else undefended.score,
        ))
    rows.sort(key=lambda row: (row.method != CLEAN, math.inf if row.rank is None else row.rank, row.best.mean, row.method))
    return DatasetSummary(dataset, label, protocol.describe(), tuple(rows), factor, skipped)


def _numbers(estimate: Estimate | None) -> list[str]:
    """Full-precision mean and std for the CSV; empty cells for what is unavailable."""
    if estimate is None:
        return ["", ""]
    return [repr(estimate.mean), "" if estimate.std is None else repr(estimate.std)]
