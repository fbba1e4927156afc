"""The whole leaderboard of a results folder: entries for every dataset, then the rendered pages.

``mtlue leaderboard --out DIR`` writes::

    DIR/entries/{dataset}--{protocol}--{method}.json   one validated entry each (clean included)
    DIR/plots/{dataset}--{protocol}--scores.png         score per method, clean as a line
    DIR/plots/{dataset}--{protocol}--defenses.png       method x defense heat map
    DIR/leaderboard.md                                  the ranked tables, linking the plots
    DIR/index.html                                      the page: sortable, filterable, a detail view per
                                                        method; links the plots and entries (mtlue.leaderboard.page)

Every entry and figure is built before anything is written; each file is replaced atomically,
and entries or plots of an earlier run that this run did not produce are removed afterwards, so
the folder always shows one run's leaderboard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtlue.report.collect import ReportError, collect_victims, find_datasets
from mtlue.report.selection import Selection

from .entries import Skipped, build_entries
from .protocol import DEFAULT_PROTOCOL, resolve_protocol
from .page import render_html
from .render import Board, board_figures, entry_file, group_boards, render_markdown

__all__ = ["Leaderboard", "build_leaderboard"]


@dataclass
class Leaderboard:
    entries: list[dict[str, Any]]
    skipped: list[Skipped]
    boards: list[Board]
    figures: dict[str, Any] = field(default_factory=dict)

    def write(self, out: str | Path) -> list[Path]:
        from mtlue.data.preview import save_figure_png
        from mtlue.io import atomic_write, atomic_write_json

        out = Path(out)
        written = []
        for entry in self.entries:
            atomic_write_json(out / entry_file(entry), entry)
            written.append(out / entry_file(entry))
        for name, figure in self.figures.items():
            written.append(save_figure_png(figure, out / name))
        self.figures.clear()
        for name, text in (("leaderboard.md", render_markdown(self.boards)), ("index.html", render_html(self.boards))):
            with atomic_write(out / name) as handle:
                handle.write(text)
            written.append(out / name)
        keep = {path.resolve() for path in written}
        for folder, pattern in (("entries", "*.json"), ("plots", "*.png")):
            for stale in (out / folder).glob(pattern):
                if stale.resolve() not in keep:
                    stale.unlink()
        return written


def build_leaderboard(
    results: str | Path,
    selection: Selection | None = None,
    protocol: str = DEFAULT_PROTOCOL,
    config_hash: str | None = None,
    datasets: Sequence[str] | None = None,
) -> Leaderboard:
    """Entries and figures of every dataset (``datasets``, else the selection's, else all found)."""
    selection = selection or Selection()
    names = list(datasets or selection.datasets or find_datasets(results))
    if not names:
        raise ReportError(f"no dataset under {results} has victim results; run the workflow's victims first")
    entries: list[dict[str, Any]] = []
    skipped: list[Skipped] = []
    for dataset in names:
        records = collect_victims(results, dataset)
        resolved = resolve_protocol(protocol, records, selection)
        found, missing = build_entries(results, records, resolved, selection.methods, config_hash)
        entries += found
        skipped += missing
    boards = group_boards(entries, skipped)
    figures: dict[str, Any] = {}
    try:
        for board in boards:
            if board.rows():
                figures.update(board_figures(board))
    except BaseException:
        import matplotlib.pyplot as plt

        for figure in figures.values():
            plt.close(figure)
        raise
    return Leaderboard(entries, skipped, boards, figures)
