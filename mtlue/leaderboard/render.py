"""The rendered leaderboard: Markdown, one self-contained HTML page, and the plots.

One board per (dataset, protocol): the clean reference row, then the ranked methods
(:mod:`mtlue.leaderboard.ranking`: tied methods share a rank, shown as ``=2``, and list each
other under "Ties with"; with one seed nothing is ranked), every score as mean ± std over
seeds, the per-defense scores, the methods skipped for missing victims, and two plots (score
per method with the clean score as a line, and the method x defense heat map). A method whose
poison's generation a cap cut off before its stop rule held (entry ``convergence.converged``
false) is marked † after its name and a note under the table names the cap; the mark is only
displayed, ranks and "Ties with" use the plain method names. The HTML page escapes every text
it shows and embeds the plots as data URIs, so it can be opened or mailed as one file.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mtlue.report.collect import CLEAN, defense_order
from mtlue.report.poisons import CUT_OFF_MARK
from mtlue.report.tables import format_number, markdown_table, mean_std
from mtlue.report.ties import NOT_RANKED, RANK_RULE, STD_CONVENTION, TieRank, ties_label

from .entries import Skipped
from .ranking import rank_entries
from .reported import REPORTED_LABEL, SOURCE, reported_applies, reported_score

__all__ = ["Board", "board_figures", "group_boards", "render_html", "render_markdown"]

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


def _header(board: Board) -> list[str]:
    header = ["Rank", "Method", "Score (attacker's best defense)", "Best defense", "Undefended", "Clean", "Δm (%)", "Ties with"]
    header += [f"{defense} ± std" for defense in board.defenses]
    if reported_applies(board.dataset, board.protocol):
        header.append(f"Undefended, {REPORTED_LABEL}")
    return header


def _cut_off(entry: Mapping[str, Any]) -> bool:
    convergence = entry["convergence"]
    return convergence is not None and convergence["converged"] is False


def _cut_off_note(board: Board) -> str:
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


def _cells(board: Board, rank: str, entry: Mapping[str, Any]) -> list[str]:
    method = f"{entry['method']} (reference)" if entry["method"] == CLEAN else entry["method"]
    if _cut_off(entry):
        method = f"{method} {CUT_OFF_MARK}"
    cells = [
        rank, method, _estimate(entry["score"], entry["score_std"]), entry["best_defense"],
        _estimate(entry["undefended_score"], entry["undefended_std"]), _estimate(entry["clean_score"], entry["clean_std"]),
        format_number(entry["delta_m"]), _ties(board, entry),
    ]
    for defense in board.defenses:
        cell = entry["per_defense"][defense]
        cells.append(_estimate(cell["score"], cell["score_std"]))
    if reported_applies(board.dataset, board.protocol):
        reported = reported_score(entry)
        cells.append("" if reported is None else format_number(reported))
    return cells


def _estimate(mean: float | None, std: float | None) -> str:
    """"mean ± std", the mean alone with one seed, "n/a" without a mean."""
    return "n/a" if mean is None else mean_std(mean, math.nan if std is None else std)


def _ties(board: Board, entry: Mapping[str, Any]) -> str:
    if entry["method"] == CLEAN:
        return ""
    ranks = {other["method"]: TieRank(other["rank"], tuple(other["ties_with"])) for _, other in board.ranked}
    return ties_label(entry["method"], ranks)


def _noise_text(board: Board) -> str:
    """How to read the ± and the ranks of ``board``."""
    if board.n_seeds < 2:
        return f"One seed: the mean over backbones x weightings; {STD_CONVENTION}. Not ranked: {NOT_RANKED}."
    return f"Mean ± std over {board.n_seeds} seeds of the mean over backbones x weightings; {STD_CONVENTION}. Ranks: {RANK_RULE}."


def _protocol_text(board: Board) -> str:
    p = board.protocol
    return (
        f"{p['mode']} victims; backbones {', '.join(p['backbones'])}; weightings {', '.join(p['weightings'])}; "
        f"defenses {', '.join(p['defenses'])}; seeds {', '.join(map(str, p['seeds']))}"
    )


def _provenance_text(board: Board) -> str:
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
            lines += [f"{_protocol_text(board)}. Score: {board.label}.", ""]
            lines.append(markdown_table(_header(board), [_cells(board, rank, entry) for rank, entry in board.rows()]))
            if _cut_off_note(board):
                lines += [_cut_off_note(board), ""]
            lines += [_noise_text(board), ""]
            if reported_applies(board.dataset, board.protocol):
                lines += [f"Reported column: {SOURCE}.", ""]
            lines += [f"Provenance: {_provenance_text(board)}.", ""]
            lines += [f"![{board.dataset} {board.protocol['name']}: {name.rsplit('--', 1)[1][:-4]}]({name})" for name in board.plots]
            lines.append("")
        if board.skipped:
            lines += ["Not ranked (incomplete):", ""]
            lines += [f"- {item.method}: {item.reason}" for item in board.skipped]
            lines.append("")
    return "\n".join(lines)


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:72rem;margin:2rem auto;padding:0 1rem;color:#222}"
    "table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}"
    "th{background:#f3f3f3}td:nth-child(2),th:nth-child(2){text-align:left}tr.reference{background:#eef5ff;font-style:italic}"
    "img{max-width:100%;margin:.5rem 1rem .5rem 0}.note{color:#555;font-size:.85rem}"
)


def render_html(boards: Sequence[Board], images: Mapping[str, bytes]) -> str:
    """The page; ``images`` maps each board's plot names to their PNG bytes (embedded)."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{e(TITLE)}</title>",
        f"<style>{_STYLE}</style></head><body>", f"<h1>{e(TITLE)}</h1>", f"<p>{e(INTRODUCTION)}</p>",
    ]
    for board in boards:
        parts.append(f"<h2>{e(board.dataset)}: protocol {e(board.protocol['name'])}</h2>")
        if board.rows():
            parts.append(f"<p>{e(_protocol_text(board))}. Score: {e(board.label)}.</p>")
            parts.append("<table><thead><tr>" + "".join(f"<th>{e(name)}</th>" for name in _header(board)) + "</tr></thead><tbody>")
            for rank, entry in board.rows():
                css = ' class="reference"' if entry["method"] == CLEAN else ""
                parts.append(f"<tr{css}>" + "".join(f"<td>{e(cell)}</td>" for cell in _cells(board, rank, entry)) + "</tr>")
            parts.append("</tbody></table>")
            if _cut_off_note(board):
                parts.append(f'<p class="note">{e(_cut_off_note(board))}</p>')
            parts.append(f'<p class="note">{e(_noise_text(board))}</p>')
            if reported_applies(board.dataset, board.protocol):
                parts.append(f'<p class="note">Reported column: {e(SOURCE)}.</p>')
            parts.append(f'<p class="note">Provenance: {e(_provenance_text(board))}.</p>')
            for name in board.plots:
                data = base64.b64encode(images[name]).decode("ascii")
                parts.append(f'<img alt="{e(name)}" src="data:image/png;base64,{data}">')
        if board.skipped:
            parts.append("<p>Not ranked (incomplete):</p><ul>")
            parts += [f"<li>{e(item.method)}: {e(item.reason)}</li>" for item in board.skipped]
            parts.append("</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


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
    axis.set_title(f"{title}: lower = better protection ({noise})", fontsize=9)

    defenses = defense_order(board.defenses)
    index = pd.MultiIndex.from_tuples(
        [("+".join(board.protocol["backbones"]), "+".join(board.protocol["weightings"]), name) for name in names],
        names=["backbone", "weighting", "method"],
    )
    matrix = pd.DataFrame([[entry["per_defense"][d]["score"] for d in defenses] for _, entry in rows], index=index, columns=defenses)
    try:
        heatmap = attack_defense_heatmap(matrix, board.label, f"{title}: mean over backbones x weightings x seeds")
    except BaseException:
        plt.close(figure)
        raise
    return dict(zip(board.plots, (figure, heatmap)))
