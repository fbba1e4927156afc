"""Figures of one dataset's victims (matplotlib, Agg backend).

Each function returns an unsaved figure, so that a report draws everything first and writes
the PNGs (atomically, with :func:`mtlue.data.preview.save_figure_png`) only once all succeeded.

- :func:`score_bars`: the headline score per method, one bar per (backbone, weighting,
  defense), error bars one standard deviation over seeds (none with one seed).
- :func:`attack_defense_heatmap`: the attack x defense matrix, one panel per (backbone, weighting).
- :func:`training_curves`: per (backbone, weighting) without defense, the mean task loss and the
  test headline score per epoch of every method, averaged over seeds (clean in black). Only
  multi-task victims record one history; single-task (``stl``) victims are left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from .collect import CLEAN, NO_DEFENSE, ReportError, VictimRecord, method_order
from .scores import CleanReferences, headline_score

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["attack_defense_heatmap", "pyplot", "score_bars", "training_curves"]


def pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def score_bars(summary: pd.DataFrame, label: str, title: str) -> Any:
    """Grouped bars: methods on the x axis, one bar per setting (module docstring)."""
    plt = pyplot()
    methods = method_order(summary["method"])
    settings = list(dict.fromkeys(zip(summary["backbone"], summary["weighting"], summary["defense"])))
    figure, axis = plt.subplots(figsize=(max(4.0, 1.0 + 0.5 * len(methods) * max(1, len(settings)) ** 0.5), 3.4))
    width = 0.8 / len(settings)
    indexed = summary.set_index(["method", "backbone", "weighting", "defense"])
    for offset, setting in enumerate(settings):
        means, errors = [], []
        for method in methods:
            key = (method, *setting)
            mean = indexed.at[key, "score_mean"] if key in indexed.index else math.nan
            std = indexed.at[key, "score_std"] if key in indexed.index else math.nan
            means.append(mean)
            errors.append(0.0 if math.isnan(std) else std)
        positions = np.arange(len(methods)) + (offset - (len(settings) - 1) / 2) * width
        axis.bar(positions, means, width, yerr=errors, capsize=2, label=" / ".join(setting))
    axis.set_xticks(np.arange(len(methods)), methods, rotation=30, ha="right", fontsize=8)
    axis.set_ylabel(label, fontsize=8)
    axis.set_title(title, fontsize=9)
    axis.axhline(0.0, color="black", linewidth=0.5)
    if len(settings) > 1:
        axis.legend(fontsize=6, title="backbone / weighting / defense", title_fontsize=6)
    return figure


def attack_defense_heatmap(matrix: pd.DataFrame, label: str, title: str) -> Any:
    """One panel per (backbone, weighting): methods x defenses, cells annotated with the score."""
    plt = pyplot()
    panels = list(dict.fromkeys((backbone, weighting) for backbone, weighting, _ in matrix.index))
    defenses = list(matrix.columns)
    methods = max(len(matrix.loc[panel]) for panel in panels)
    figure, axes = plt.subplots(
        1, len(panels), figsize=(1.6 + 0.9 * len(defenses) * len(panels), 1.0 + 0.35 * methods), squeeze=False
    )
    values = matrix.to_numpy(dtype=float)
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    image = None
    for axis, panel in zip(axes[0], panels):
        block = matrix.loc[panel]
        data = block.to_numpy(dtype=float)
        image = axis.imshow(np.ma.masked_invalid(data), cmap="viridis", vmin=low, vmax=high if high > low else low + 1, aspect="auto")
        for row, column in np.ndindex(data.shape):
            text = "n/a" if math.isnan(data[row, column]) else f"{data[row, column]:.1f}"
            axis.text(column, row, text, ha="center", va="center", fontsize=6, color="white" if math.isnan(data[row, column]) or data[row, column] < (low + high) / 2 else "black")
        axis.set_xticks(range(len(defenses)), defenses, rotation=30, ha="right", fontsize=7)
        axis.set_yticks(range(len(block.index)), list(block.index), fontsize=7)
        axis.set_title(" / ".join(panel), fontsize=8)
        axis.set_xlabel("defense", fontsize=7)
    bar = figure.colorbar(image, ax=axes[0, -1])
    bar.set_label(label, fontsize=7)
    bar.ax.tick_params(labelsize=7)
    figure.suptitle(title, fontsize=9)
    return figure


def training_curves(records: Sequence[VictimRecord], references: CleanReferences, label: str, title: str) -> Any:
    """Train loss and test headline score per epoch, clean vs poisoned victims (module docstring)."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    with_history = [r for r in records if r.mode == "mtl" and r.history]
    if not with_history:
        raise ReportError("no victim has a training history (multi-task victims record one per epoch); rerun the victims")
    undefended = [r for r in with_history if r.defense == NO_DEFENSE] or with_history
    panels = sorted({(r.backbone, r.weighting) for r in undefended})
    figure, axes = plt.subplots(len(panels), 2, figsize=(8.0, 2.8 * len(panels)), squeeze=False)
    for (loss_axis, score_axis), (backbone, weighting) in zip(axes, panels):
        group = [r for r in undefended if (r.backbone, r.weighting) == (backbone, weighting)]
        clean = references.get((backbone, weighting, "mtl"))
        for method in method_order(r.method for r in group):
            runs = [r for r in group if r.method == method]
            style = {"color": "black", "linewidth": 2.0} if method == CLEAN else {"linewidth": 1.2}
            loss = _mean_curve([{e["epoch"]: float(np.mean(list(e["train_loss"].values()))) for e in r.history if e.get("train_loss")} for r in runs])
            score = _mean_curve([
                {e["epoch"]: headline_score(r.tasks, e["test"], e.get("test_aggregate", {}), clean) for e in r.history if "test" in e}
                for r in runs
            ])
            if loss:
                loss_axis.plot(*zip(*loss), marker=".", label=method, **style)
            if score:
                score_axis.plot(*zip(*score), marker=".", label=method, **style)
        defense = group[0].defense
        loss_axis.set_title(f"{backbone} / {weighting} / {defense}: train loss", fontsize=8)
        loss_axis.set_ylabel("mean task loss", fontsize=7)
        score_axis.set_title(f"{backbone} / {weighting} / {defense}: test score", fontsize=8)
        score_axis.set_ylabel(label, fontsize=7)
        for axis in (loss_axis, score_axis):
            axis.set_xlabel("epoch", fontsize=7)
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
            axis.tick_params(labelsize=7)
        score_axis.legend(fontsize=6)
    figure.suptitle(title, fontsize=9)
    return figure


def _mean_curve(curves: list[dict[int, float]]) -> list[tuple[int, float]]:
    """Mean over runs at the epochs every run recorded."""
    if not curves:
        return []
    epochs = sorted(set.intersection(*(set(curve) for curve in curves)))
    return [(epoch, float(np.mean([curve[epoch] for curve in curves]))) for epoch in epochs]
