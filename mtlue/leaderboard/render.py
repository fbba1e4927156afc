"""The rendered leaderboard: the tables' columns, the Markdown page and the plots (the HTML page: :mod:`.page`).

One board per (dataset, protocol): the clean reference row, then the ranked methods
(:mod:`mtlue.leaderboard.ranking`: tied methods share a rank, shown as ``=2``, and list each
other under "Ties with"; with one seed nothing is ranked), every score as mean ± std over
seeds, the per-defense scores, the methods skipped for missing victims, and two plots (score
per method with the clean score as a line, and the method x defense heat map). A method whose
poison's generation a cap cut off before its stop rule held (entry ``convergence.converged``
false) is marked † after its name and a note under the table names the cap; the mark is only
displayed, ranks and "Ties with" use the plain method names.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mtlue.report.collect import CLEAN, defense_order
from mtlue.report.poisons import CUT_OFF_MARK
from mtlue.report.tables import format_number, markdown_table, mean_std
from mtlue.report.ties import NOT_RANKED, RANK_RULE, STD_CONVENTION, TieRank, ties_label

from .entries import Skipped
from .ranking import rank_entries
from .reported import REPORTED_LABEL, SOURCE, reported_applies, reported_score

__all__ = [
    "Board", "Column", "board_columns", "board_figures", "cut_off_note", "entry_file", "estimate_text", "group_boards", "noise_text",
    "protocol_text", "provenance_text", "render_markdown",
]

TITLE = "Unlearnable examples against multi-task learning: leaderboard"
INTRODUCTION = (
    "Each row is a UE method protecting a dataset. Score: the victim's headline score (mean accuracy or AUC in "
    "percent over the classification tasks; delta-m against clean in percent on dense-only datasets) under the "
    "defense that suits the attacker best (the highest mean), averaged over the protocol's backbones, weightings and "
    "seeds, shown as mean ± std over seeds. Lower means better protection. Differences within twice the larger std "
    "are ties, not ranks. The clean row is the unprotected reference and is not ranked. "
    "Every number is measured by this benchmark's victims; numbers reported in the paper are only in their own, "
    "labelled column."
)


@dataclass
class Board:
    dataset: str
    protocol: dict[str, Any]
    label: str
    reference: dict[str, Any] | None
    ranked: list[tuple[str, dict[str, Any]]]
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return f"{self.dataset}--{self.protocol['name']}"

    @property
    def plots(self) -> list[str]:
        return [f"plots/{self.slug}--scores.png", f"plots/{self.slug}--defenses.png"]

    @property
    def defenses(self) -> list[str]:
        return list(self.protocol["defenses"])

    def rows(self) -> list[tuple[str, dict[str, Any]]]:
        """(rank label, entry): the reference first, then the ranked entries."""
        first = [("ref", self.reference)] if self.reference is not None else []
        return first + list(self.ranked)

    @property
    def n_seeds(self) -> int:
        return self.rows()[0][1]["n_seeds"]


def group_boards(entries: Sequence[dict[str, Any]], skipped: Sequence[Skipped] = ()) -> list[Board]:
    """One board per (dataset, protocol) of ``entries`` (and of skipped methods), by name."""
    keys = sorted({(e["dataset"]["name"], e["protocol"]["name"]) for e in entries} | {(s.dataset, s.protocol) for s in skipped})
    boards = []
    for dataset, name in keys:
        group = [e for e in entries if (e["dataset"]["name"], e["protocol"]["name"]) == (dataset, name)]
        missing = [s for s in skipped if (s.dataset, s.protocol) == (dataset, name)]
        if not group:
            boards.append(Board(dataset, {"name": name}, "", None, [], missing))
            continue
        reference, ranked = rank_entries(group)
        boards.append(Board(dataset, group[0]["protocol"], group[0]["headline"]["label"], reference, ranked, missing))
    return boards


@dataclass(frozen=True)
class Column:
    """One column of a board's table: its header, a row's text, and the value the page sorts by.

    ``sort`` gives a number (None sorts last) for numeric columns and a string for text ones;
    ``defense`` names the defense of a per-defense column, so the page can hide it by filter.
    """

    key: str
    header: str
    text: Callable[[str, Mapping[str, Any]], str]
    sort: Callable[[str, Mapping[str, Any]], float | str | None]
    numeric: bool = True
    defense: str | None = None


def board_columns(board: Board) -> list[Column]:
    """The columns of ``board``'s table, shared by the Markdown and the HTML page."""
    columns = [
        Column("rank", "Rank", lambda rank, entry: rank, lambda rank, entry: entry["rank"]),
        Column("method", "Method", lambda rank, entry: _method_label(entry), lambda rank, entry: entry["method"], numeric=False),
        Column(
            "score", "Score (attacker's best defense)", lambda rank, entry: estimate_text(entry["score"], entry["score_std"]),
            lambda rank, entry: entry["score"],
        ),
        Column("best_defense", "Best defense", lambda rank, entry: entry["best_defense"], lambda rank, entry: entry["best_defense"], numeric=False),
        Column(
            "undefended", "Undefended", lambda rank, entry: estimate_text(entry["undefended_score"], entry["undefended_std"]),
            lambda rank, entry: entry["undefended_score"],
        ),
        Column("clean", "Clean", lambda rank, entry: estimate_text(entry["clean_score"], entry["clean_std"]), lambda rank, entry: entry["clean_score"]),
        Column("delta_m", "Δm (%)", lambda rank, entry: format_number(entry["delta_m"]), lambda rank, entry: entry["delta_m"]),
        Column("ties", "Ties with", lambda rank, entry: _ties(board, entry), lambda rank, entry: _ties(board, entry), numeric=False),
    ]
    columns += [_defense_column(defense) for defense in board.defenses]
    if reported_applies(board.dataset, board.protocol):
        columns.append(Column("reported", f"Undefended, {REPORTED_LABEL}", lambda rank, entry: _reported_text(entry), lambda rank, entry: reported_score(entry)))
    return columns


def _defense_column(defense: str) -> Column:
    def text(rank: str, entry: Mapping[str, Any]) -> str:
        cell = entry["per_defense"][defense]
        return estimate_text(cell["score"], cell["score_std"])

    return Column(f"defense:{defense}", f"{defense} ± std", text, lambda rank, entry: entry["per_defense"][defense]["score"], defense=defense)


def _reported_text(entry: Mapping[str, Any]) -> str:
    reported = reported_score(entry)
    return "" if reported is None else format_number(reported)


def _method_label(entry: Mapping[str, Any]) -> str:
    method = f"{entry['method']} (reference)" if entry["method"] == CLEAN else entry["method"]
    return f"{method} {CUT_OFF_MARK}" if _cut_off(entry) else method


def entry_file(entry: Mapping[str, Any]) -> str:
    """Where an entry is written, relative to the leaderboard folder (and linked from the page)."""
    return f"entries/{entry['dataset']['name']}--{entry['protocol']['name']}--{entry['method']}.json"


def _cut_off(entry: Mapping[str, Any]) -> bool:
    convergence = entry["convergence"]
    return convergence is not None and convergence["converged"] is False


def cut_off_note(board: Board) -> str:
    """The note under a board's table explaining its † marks; empty when nothing is marked."""
    marked = [entry for _, entry in board.rows() if _cut_off(entry)]
    if not marked:
        return ""
    details = "; ".join(
        f"{entry['method']}: {entry['convergence']['cap_hyperparameter']} = {entry['convergence']['cap']} reached after "
        f"{entry['convergence']['steps']} {entry['convergence']['unit']}(s), rule {entry['convergence']['rule']}"
        for entry in marked
    )
    return (
        f"{CUT_OFF_MARK} Poison generation cut off by its cap before its stop rule held, so the score may understate "
        f"the method; raise the cap and generate it again. {details}"
    )


def estimate_text(mean: float | None, std: float | None) -> str:
    """"mean ± std", the mean alone with one seed, "n/a" without a mean."""
    return "n/a" if mean is None else mean_std(mean, math.nan if std is None else std)


def _ties(board: Board, entry: Mapping[str, Any]) -> str:
    if entry["method"] == CLEAN:
        return ""
    ranks = {other["method"]: TieRank(other["rank"], tuple(other["ties_with"])) for _, other in board.ranked}
    return ties_label(entry["method"], ranks)


def noise_text(board: Board) -> str:
    """How to read the ± and the ranks of ``board``."""
    if board.n_seeds < 2:
        return f"One seed: the mean over backbones x weightings; {STD_CONVENTION}. Not ranked: {NOT_RANKED}."
    return f"Mean ± std over {board.n_seeds} seeds of the mean over backbones x weightings; {STD_CONVENTION}. Ranks: {RANK_RULE}."


def protocol_text(board: Board) -> str:
    p = board.protocol
    return (
        f"{p['mode']} victims; backbones {', '.join(p['backbones'])}; weightings {', '.join(p['weightings'])}; "
        f"defenses {', '.join(p['defenses'])}; seeds {', '.join(map(str, p['seeds']))}"
    )


def provenance_text(board: Board) -> str:
    entries = [entry for _, entry in board.rows()]
    commits = sorted({e["provenance"]["git_commit"] for e in entries})
    configs = sorted({e["provenance"]["config_sha256"] or "not given" for e in entries})
    return (
        f"commit {', '.join(c[:12] for c in commits)}; config sha256 {', '.join(c[:12] for c in configs)}; "
        f"train split {entries[0]['provenance']['train_content_hash'][:12]}; test split {entries[0]['provenance']['test_content_hash'][:12]}"
    )


def render_markdown(boards: Sequence[Board]) -> str:
    lines = [f"# {TITLE}", "", INTRODUCTION, ""]
    for board in boards:
        lines += [f"## {board.dataset}: protocol {board.protocol['name']}", ""]
        if board.rows():
            lines += [f"{protocol_text(board)}. Score: {board.label}.", ""]
            columns = board_columns(board)
            lines.append(markdown_table([c.header for c in columns], [[c.text(rank, entry) for c in columns] for rank, entry in board.rows()]))
            if cut_off_note(board):
                lines += [cut_off_note(board), ""]
            lines += [noise_text(board), ""]
            if reported_applies(board.dataset, board.protocol):
                lines += [f"Reported column: {SOURCE}.", ""]
            lines += [f"Provenance: {provenance_text(board)}.", ""]
            lines += [f"![{board.dataset} {board.protocol['name']}: {name.rsplit('--', 1)[1][:-4]}]({name})" for name in board.plots]
            lines.append("")
        if board.skipped:
            lines += ["Not ranked (incomplete):", ""]
            lines += [f"- {item.method}: {item.reason}" for item in board.skipped]
            lines.append("")
    return "\n".join(lines)


def board_figures(board: Board) -> dict[str, Any]:
    """Unsaved figures of a board with entries, by plot name."""
    import pandas as pd

    from mtlue.report.plots import attack_defense_heatmap, pyplot

    plt = pyplot()
    rows = board.rows()
    title = f"{board.dataset}, protocol {board.protocol['name']}"
    figure, axis = plt.subplots(figsize=(max(4.0, 1.2 + 0.6 * len(rows)), 3.4))
    names = [entry["method"] for _, entry in rows]
    scores = [entry["score"] for _, entry in rows]
    errors = [entry["score_std"] or 0.0 for _, entry in rows]
    colours = ["#888888" if entry["method"] == CLEAN else "#3b75af" for _, entry in rows]
    axis.bar(range(len(rows)), scores, yerr=errors, capsize=2, color=colours)
    if board.reference is not None:
        axis.axhline(board.reference["score"], color="black", linestyle="--", linewidth=1, label="clean")
        axis.legend(fontsize=7)
    axis.axhline(0.0, color="black", linewidth=0.5)
    axis.set_xticks(range(len(rows)), [name if rank in ("ref", "–") else f"{rank}. {name}" for (rank, _), name in zip(rows, names)], rotation=30, ha="right", fontsize=8)
    axis.set_ylabel(f"{board.label}, best defense", fontsize=8)
    seeds = board.n_seeds
    noise = f"± std over {seeds} seeds, =r: tied" if seeds > 1 else "one seed: not ranked"
    axis.set_title(f"{title}\nlower = better protection ({noise})", fontsize=9)

    defenses = defense_order(board.defenses)
    index = pd.MultiIndex.from_tuples(
        [("+".join(board.protocol["backbones"]), "+".join(board.protocol["weightings"]), name) for name in names],
        names=["backbone", "weighting", "method"],
    )
    matrix = pd.DataFrame([[entry["per_defense"][d]["score"] for d in defenses] for _, entry in rows], index=index, columns=defenses)
    try:
        heatmap = attack_defense_heatmap(matrix, board.label, f"{title}\nmean over backbones x\nweightings x seeds")
    except BaseException:
        plt.close(figure)
        raise
    return dict(zip(board.plots, (figure, heatmap)))
