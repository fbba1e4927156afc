"""One dataset's report: every table and plot, built in memory, then written at once.

``mtlue report`` writes these files into its ``--out`` folder (:data:`REPORT_FILES`):

- ``victims.csv``: one row per victim (:func:`mtlue.report.frame.victim_frame`)
- ``scores.csv`` / ``scores.md``: per (method, backbone, weighting, defense) ``n_seeds`` and the
  mean and std over seeds of the headline score, delta-m and each task's headline metric
  (:func:`mtlue.report.tables.summarize`); the CSV also says per method whether its poison's
  generation ``converged`` and what ``stopped_by`` it (from its card, :mod:`mtlue.report.poisons`;
  empty where no record exists)
- ``attack_defense.csv`` / ``attack_defense.md``: the attack x defense table, mean ± std with
  tie-aware ranks per defense and at the attacker's best defense
  (:func:`mtlue.report.tables.attack_defense_ranks`)
- ``summary.md`` / ``summary.csv``: the README summary, per method clean-normalised scores and
  rank on the leaderboard's protocol (:mod:`mtlue.report.summary`)
- ``scores.png``, ``attack_defense.png``, ``training_curves.png``

Every number of a table is a mean ± std over seeds (:mod:`mtlue.report.ties`: sample std, none
with one seed), with the number of seeds in a column or in the table's notes.

In the Markdown tables (summary.md included) a method whose generation a cap cut off before its
stop rule held is marked † and a footnote names the cap to raise; the CSV files keep the plain
method names. Nothing is written unless every table and figure was built; each file is replaced
atomically.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from .collect import ReportError, VictimRecord, collect_victims
from .frame import victim_frame
from .poisons import cut_off_footnote, mark_method, poison_convergence
from .scores import clean_reference, headline_label, headline_name
from .selection import Selection
from .summary import summarize_dataset
from .tables import (
    attack_defense_markdown,
    attack_defense_matrix,
    attack_defense_ranks,
    frame_markdown,
    score_table,
    seeds_note,
    summarize,
    task_table,
)
from .ties import STD_CONVENTION

__all__ = ["REPORT_FILES", "DatasetReport", "build_dataset_report"]

REPORT_FILES = (
    "victims.csv",
    "scores.csv",
    "scores.md",
    "attack_defense.csv",
    "attack_defense.md",
    "summary.csv",
    "summary.md",
    "scores.png",
    "attack_defense.png",
    "training_curves.png",
)


@dataclass
class DatasetReport:
    """Texts and unsaved figures of one dataset's report, by file name."""

    dataset: str
    records: list[VictimRecord]
    texts: dict[str, str] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)

    def write(self, out: str | Path) -> list[Path]:
        """Write every file into ``out`` (each atomically) and close the figures."""
        from mtlue.data.preview import save_figure_png
        from mtlue.io import atomic_write

        out = Path(out)
        written = []
        for name, text in self.texts.items():
            with atomic_write(out / name) as handle:
                handle.write(text)
            written.append(out / name)
        for name, figure in self.figures.items():
            written.append(save_figure_png(figure, out / name))
        self.figures.clear()
        return written


def build_dataset_report(
    results: str | Path,
    dataset: str,
    selection: Selection | None = None,
    config_hash: str | None = None,
    protocol: Selection | None = None,
) -> DatasetReport:
    """Read ``results/dataset/victims`` and build every table and plot (module docstring).

    ``selection`` chooses the victims of the tables; ``protocol`` (default: ``selection``) the
    leaderboard protocol's victims, which the summary covers (``Selection.from_config(...,
    protocol=True)``).
    """
    selection = selection or Selection()
    found = collect_victims(results, dataset)
    records = [record for record in found if selection.keep(record)]
    if not records:
        raise ReportError(
            f"none of the {len(found)} victims of {dataset!r} under {results} match the config's methods, backbones, "
            f"weightings, defenses and seeds; check --config-json"
        )
    tasks = records[0].tasks
    label = headline_label(tasks)
    frame = victim_frame(records)
    convergence = poison_convergence(results, records)
    summary = summarize(frame, tasks)
    generations = [convergence[method] for method in summary["method"]]
    summary["converged"] = [None if record is None else record.converged for record in generations]
    summary["stopped_by"] = [None if record is None else record.stopped_by for record in generations]
    matrix = attack_defense_matrix(summary)
    ranks = attack_defense_ranks(summary)
    readme = summarize_dataset(records, protocol or selection)
    report = DatasetReport(dataset, records)
    report.texts["victims.csv"] = frame.to_csv(index=False)
    report.texts["scores.csv"] = summary.to_csv(index=False)
    report.texts["attack_defense.csv"] = ranks.to_csv(index=False)
    report.texts["summary.csv"] = readme.csv()
    mark = partial(mark_method, convergence=convergence)
    summarized = {row.method: convergence.get(row.method) for row in readme.rows}
    report.texts["summary.md"] = readme.markdown(mark, cut_off_footnote(summarized))
    header = _header(dataset, records, label, headline_name(tasks), config_hash)
    seeds = seeds_note(summary["n_seeds"])
    footnote = cut_off_footnote(convergence)
    footnote = f"\n{footnote}" if footnote else ""
    report.texts["scores.md"] = (
        f"{header}\n## {label}: {seeds}\n\n{frame_markdown(_marked(score_table(summary), convergence))}\n"
        f"## Δm vs clean (%): {seeds}\n\n{frame_markdown(_marked(score_table(summary, 'delta_m'), convergence))}\n"
        f"## Per-task headline metrics: {seeds}\n\n{frame_markdown(_marked(task_table(summary, tasks, label), convergence))}{footnote}"
    )
    report.texts["attack_defense.md"] = f"{header}\n## Attack x defense: {label}\n\n{attack_defense_markdown(ranks, mark)}{footnote}"

    from .plots import attack_defense_heatmap, score_bars, training_curves

    try:
        report.figures["scores.png"] = score_bars(summary, label, f"{dataset}: {label} (mean ± std over seeds)")
        report.figures["attack_defense.png"] = attack_defense_heatmap(matrix, label, f"{dataset}: attack x defense, {label}")
        report.figures["training_curves.png"] = training_curves(records, clean_reference(records), label, f"{dataset}: clean vs poisoned victims")
    except BaseException:
        _close(report.figures)
        raise
    return report


def _marked(table: Any, convergence: Mapping[str, Any]) -> Any:
    """``table`` with its ``method`` index labels marked where a cap cut the generation short."""
    return table.rename(index=lambda method: mark_method(method, convergence), level="method")


def _header(dataset: str, records: list[VictimRecord], label: str, name: str, config_hash: str | None) -> str:
    seeds = sorted({record.seed for record in records})
    definition = (
        "aggregate classification_mean: the mean headline metric over the classification tasks"
        if name == "classification_mean"
        else "delta-m against the clean reference (dense-only dataset)"
    )
    return (
        f"# {dataset}: {len(records)} victims, seeds {', '.join(map(str, seeds))}\n\n"
        f"- Score: {label}, {definition}. Lower means better protection.\n"
        "- Δm: victims.summary.delta_m over every metric of every task, against the clean reference: the mean over "
        "seeds of the clean victims with the same backbone and weighting and defense `none`.\n"
        f"- {STD_CONVENTION}, and the cell shows the mean alone. n/a: not measured or no clean reference.\n"
        f"- Rendered from the victims' metrics.json files; config sha256: {config_hash or 'not given'}.\n"
    )


def _close(figures: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    for figure in figures.values():
        plt.close(figure)
    figures.clear()
