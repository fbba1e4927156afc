"""The leaderboard's HTML page: one static file beside its entries and plots, no network at view time.

Everything is in the HTML: one section per (dataset, protocol), each with its own ranked table,
so two protocols never share a ranking, and under each table a detail view per method
(``<details>``: per-task scores, the attack x defense matrix, undefended vs best defense, the
poison card, provenance, the paper's number where one exists, a link to the entry JSON). With
JavaScript off every table and detail is there and readable. With it, the inlined script
(``page.js``) sorts a table by any column header and filters by dataset, protocol, backbone,
weighting and defense. A backbone, weighting or defense filter narrows a protocol's grid, so
it shows the score over the chosen settings in an extra column (the attacker's best defense
among those chosen, from the entry's ``per_setting``) and leaves the ranks alone: they belong
to the whole protocol. The plots are linked files under ``plots/``, not embedded, so the page
stays small; the page reads nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from html import escape
from importlib import resources
from typing import Any

from mtlue.report.collect import CLEAN, NO_DEFENSE

from .render import (
    INTRODUCTION,
    TITLE,
    Board,
    board_columns,
    cut_off_note,
    entry_file,
    estimate_text,
    noise_text,
    protocol_text,
    provenance_text,
)
from .reported import REPORTED_LABEL, SOURCE, reported_applies, reported_score

__all__ = ["FILTERS", "render_html"]

#: The page's filters: form field name -> (label, the protocol's values it selects among).
FILTERS: dict[str, tuple[str, str]] = {
    "dataset": ("Dataset", "dataset"),
    "protocol": ("Protocol", "name"),
    "backbone": ("Backbone", "backbones"),
    "weighting": ("Weighting", "weightings"),
    "defense": ("Defense", "defenses"),
}


@cache
def _asset(name: str) -> str:
    return resources.files("mtlue.leaderboard").joinpath(name).read_text(encoding="utf-8")


def render_html(boards: Sequence[Board]) -> str:
    """The page of ``boards`` (module docstring); links resolve inside the leaderboard folder."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(TITLE)}</title>",
        f"<style>{_asset('page.css')}</style>",
        "</head><body>",
        f"<h1>{escape(TITLE)}</h1>",
        f"<p>{escape(INTRODUCTION)}</p>",
        _filter_form(boards),
        '<noscript><p class="note">JavaScript is off: every table and detail is shown in full; sorting and filtering need it.</p></noscript>',
    ]
    for board in boards:
        parts.append(_section(board))
    parts.append(f"<script>{_asset('page.js')}</script>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _axes(board: Board) -> dict[str, Any]:
    protocol = board.protocol
    return {
        "dataset": board.dataset, "name": protocol["name"], "backbones": protocol.get("backbones", []),
        "weightings": protocol.get("weightings", []), "defenses": protocol.get("defenses", []),
    }


def _filter_form(boards: Sequence[Board]) -> str:
    fields = []
    for name, (label, axis) in FILTERS.items():
        values: list[str] = []
        for board in boards:
            found = _axes(board)[axis]
            for value in [found] if isinstance(found, str) else found:
                if value not in values:
                    values.append(value)
        options = '<option value="">all</option>' + "".join(f'<option value="{escape(v)}">{escape(v)}</option>' for v in sorted(values))
        fields.append(f'<label>{escape(label)} <select name="{escape(name)}">{options}</select></label>')
    return (
        '<form id="filters" class="filters" hidden>' + "".join(fields)
        + '<p id="filter-status" class="note" aria-live="polite"></p></form>'
    )


def _section(board: Board) -> str:
    parts = [
        f'<section class="board" id="board-{escape(board.slug)}" data-axes="{escape(json.dumps(_axes(board)))}">',
        f"<h2>{escape(board.dataset)}: protocol {escape(board.protocol['name'])}</h2>",
    ]
    if board.rows():
        parts.append(f"<p>{escape(protocol_text(board))}. Score: {escape(board.label)}.</p>")
        parts.append(_table(board))
        if cut_off_note(board):
            parts.append(f'<p class="note">{escape(cut_off_note(board))}</p>')
        parts.append(f'<p class="note">{escape(noise_text(board))}</p>')
        if reported_applies(board.dataset, board.protocol):
            parts.append(f'<p class="note">Reported column: {escape(SOURCE)}.</p>')
        parts.append(f'<p class="note">Provenance: {escape(provenance_text(board))}.</p>')
        parts.append('<div class="plots">' + "".join(
            f'<a href="{escape(name)}"><img src="{escape(name)}" alt="{escape(board.dataset)} {escape(board.protocol["name"])}: {escape(name.rsplit("--", 1)[1][:-4])}" loading="lazy"></a>'
            for name in board.plots
        ) + "</div>")
        parts.append("<h3>Per method</h3>")
        parts += [_detail(board, entry) for _, entry in board.rows()]
    if board.skipped:
        parts.append("<p>Not ranked (incomplete):</p><ul>")
        parts += [f"<li>{escape(item.method)}: {escape(item.reason)}</li>" for item in board.skipped]
        parts.append("</ul>")
    parts.append("</section>")
    return "\n".join(parts)


def _detail_id(board: Board, entry: Mapping[str, Any]) -> str:
    return f"detail-{board.slug}--{entry['method']}"


def _sort_value(value: float | str | None) -> str:
    return "" if value is None else str(value)


def _table(board: Board) -> str:
    columns = board_columns(board)
    head = []
    for column in columns:
        defense = "" if column.defense is None else f' data-defense="{escape(column.defense)}"'
        head.append(f'<th scope="col" data-key="{escape(column.key)}" data-numeric="{int(column.numeric)}"{defense}>{escape(column.header)}</th>')
    head.append('<th scope="col" class="selected-col" data-key="selected" data-numeric="1" hidden>Selected settings</th>')
    rows = []
    for order, (rank, entry) in enumerate(board.rows()):
        css = ' class="reference"' if entry["method"] == CLEAN else ""
        settings = [[s["backbone"], s["weighting"], s["defense"], s["score"]] for s in entry["per_setting"]]
        cells = []
        for column in columns:
            defense = "" if column.defense is None else f' data-defense="{escape(column.defense)}"'
            text = escape(column.text(rank, entry))
            if column.key == "method":
                text = f'<a href="#{escape(_detail_id(board, entry))}">{text}</a>'
            cells.append(f'<td data-sort="{escape(_sort_value(column.sort(rank, entry)))}"{defense}>{text}</td>')
        cells.append('<td class="selected-col" data-sort="" hidden></td>')
        rows.append(
            f'<tr{css} data-order="{order}" data-method="{escape(entry["method"])}" data-settings="{escape(json.dumps(settings))}">'
            + "".join(cells) + "</tr>"
        )
    return (
        '<div class="scroll"><table class="ranking"><thead><tr>' + "".join(head) + "</tr></thead><tbody>"
        + "".join(rows) + "</tbody></table></div>"
    )


def _small_table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    head = "".join(f'<th scope="col">{escape(cell)}</th>' for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f'<div class="scroll"><table class="small"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _detail(board: Board, entry: Mapping[str, Any]) -> str:
    method = entry["method"]
    title = f"{method} (reference)" if method == CLEAN else method
    parts = [
        (
            f'<details class="detail" id="{escape(_detail_id(board, entry))}"><summary>{escape(title)}: '
            f"{escape(estimate_text(entry['score'], entry['score_std']))} at {escape(entry['best_defense'])}</summary>"
        ),
        f'<p><a href="{escape(entry_file(entry))}">Entry JSON</a> ({escape(entry["format"])})</p>',
        "<h4>Undefended vs best defense</h4>",
        _small_table(
            ["Undefended (none)", "Best defense", "Score there", "Clean"],
            [[estimate_text(entry["undefended_score"], entry["undefended_std"]), entry["best_defense"],
              estimate_text(entry["score"], entry["score_std"]), estimate_text(entry["clean_score"], entry["clean_std"])]],
        ),
        "<h4>Per task</h4>",
        _per_task(board, entry),
        "<h4>Attack x defense</h4>",
        _matrix(board, entry),
        "<h4>Poison</h4>",
        _poison(entry),
        "<h4>Provenance</h4>",
        _provenance(entry),
        _reported(board, entry),
        "</details>",
    ]
    return "\n".join(part for part in parts if part)


def _per_task(board: Board, entry: Mapping[str, Any]) -> str:
    defenses = board.defenses
    reference = board.reference if board.reference is not None and entry["method"] != CLEAN else None
    # The clean victims as the reference: undefended, or at their best defense when the protocol has no `none`.
    clean_defense = None if reference is None else (NO_DEFENSE if NO_DEFENSE in reference["per_defense"] else reference["best_defense"])
    clean_cells = None if reference is None else reference["per_defense"][clean_defense]
    header = ["Task", "Metric", *(f"{d} ± std" for d in defenses)] + ([] if clean_cells is None else [f"Clean ({clean_defense})"])
    rows = []
    for task in entry["dataset"]["tasks"]:
        first = entry["per_defense"][defenses[0]]["per_task"][task]
        row = [task, first["metric"]]
        row += [estimate_text(entry["per_defense"][d]["per_task"][task]["score"], entry["per_defense"][d]["per_task"][task]["score_std"]) for d in defenses]
        if clean_cells is not None:
            row.append(estimate_text(clean_cells["per_task"][task]["score"], clean_cells["per_task"][task]["score_std"]))
        rows.append(row)
    return _small_table(header, rows)


def _matrix(board: Board, entry: Mapping[str, Any]) -> str:
    """Rows backbone / weighting, columns the defenses: the method's score per setting."""
    cells = {(s["backbone"], s["weighting"], s["defense"]): s for s in entry["per_setting"]}
    rows = []
    for backbone in board.protocol["backbones"]:
        for weighting in board.protocol["weightings"]:
            row = [f"{backbone} / {weighting}"]
            for defense in board.defenses:
                cell = cells[(backbone, weighting, defense)]
                row.append(estimate_text(cell["score"], cell["score_std"]))
            rows.append(row)
    return _small_table(["Backbone / weighting", *board.defenses], rows)


def _definitions(items: Iterable[tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{escape(name)}</dt><dd>{escape(value)}</dd>" for name, value in items) + "</dl>"


def _converged_text(entry: Mapping[str, Any]) -> str:
    convergence = entry["convergence"]
    if convergence is None:
        return "not recorded (no store, or a submitted file: not generated here)"
    if convergence["converged"] is None:
        return f"not reported by the method (rule: {convergence['rule']})"
    if convergence["converged"]:
        return f"yes ({convergence['stopped_by'].replace('_', ' ')}; rule: {convergence['rule']})"
    return (
        f"no: cut off by its cap, {convergence['cap_hyperparameter']} = {convergence['cap']}, after {convergence['steps']} "
        f"{convergence['unit']}(s) (rule: {convergence['rule']})"
    )


def _poison(entry: Mapping[str, Any]) -> str:
    poison = entry["poison"]
    if poison is None:
        return "<p>No poison store: the victims trained on the unmodified training split.</p>"
    seconds = poison["generation_seconds"]
    items = [
        ("Budget", f"{poison['norm']} ≤ {poison['epsilon']}/255 (largest stored |delta| {poison['max_abs_delta']}/255)"),
        ("Poisoned fraction", f"{poison['ratio']:g}"),
        ("Generation seed", str(poison["seed"])),
        ("Converged", _converged_text(entry)),
        ("Generation time", "not recorded" if seconds is None else f"{seconds:.1f} s (sum of its recorded steps; surrogate training not included)"),
        ("Created", poison["created"]),
        ("Store sha256", entry["provenance"]["poison_sha256"] or "n/a"),
    ]
    if poison["surrogate_sha256"]:
        items.append(("Surrogates (sha256)", ", ".join(poison["surrogate_sha256"])))
    if poison["submission"] is not None:
        submission = poison["submission"]
        items.append(("Submitted file", f"{submission['file']} ({submission['layout']}, {submission['bytes']} bytes, sha256 {submission['sha256']})"))
    hyperparameters = poison["hyperparameters"]
    table = (
        _small_table(["Hyperparameter", "Value"], [[name, json.dumps(value)] for name, value in sorted(hyperparameters.items())])
        if hyperparameters else "<p>No hyperparameters.</p>"
    )
    return _definitions(items) + table


def _provenance(entry: Mapping[str, Any]) -> str:
    provenance = entry["provenance"]
    return _definitions([
        ("Commit", provenance["git_commit"]),
        ("Config sha256", provenance["config_sha256"] or "not given"),
        ("Train split", provenance["train_content_hash"]),
        ("Test split", provenance["test_content_hash"]),
        ("Seeds", ", ".join(map(str, provenance["seeds"]))),
        ("Victims", str(provenance["victims"])),
        ("Built", provenance["date"]),
        ("mtlue", provenance["mtlue_version"]),
    ])


def _reported(board: Board, entry: Mapping[str, Any]) -> str:
    if not reported_applies(board.dataset, board.protocol):
        return ""
    reported = reported_score(entry)
    if reported is None:
        return "<p class=\"note\">The paper reports no number for this method in this setting.</p>"
    return (
        f'<p class="reported"><strong>{reported:.2f}</strong>: undefended score {escape(REPORTED_LABEL)} '
        f"(measured here: {escape(estimate_text(entry['undefended_score'], entry['undefended_std']))}). {escape(SOURCE)}.</p>"
    )
