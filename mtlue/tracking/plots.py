"""The training-curves PNG of a victim or surrogate run, drawn from ``fit``'s history records."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["training_curves_figure"]

#: Above this many lines a panel has no legend (CelebA's 40 tasks would hide the curves).
_LEGEND_LINES = 12

_PANELS = (
    ("train_loss", "train loss per task", True),
    ("task_weights", "task weights", False),
    ("grad_norm", "gradient norm (before clipping)", False),
    ("lr", "learning rate", True),
    ("test_aggregate", "test aggregate", False),
    ("seconds", "seconds per epoch", False),
)


def _series(history: Sequence[Mapping[str, Any]], key: str) -> dict[str, tuple[list[int], list[float]]]:
    series: dict[str, tuple[list[int], list[float]]] = {}
    for record in history:
        value = record.get(key)
        items = value.items() if isinstance(value, Mapping) else [("", value)] if value is not None else []
        for name, number in items:
            if isinstance(number, (int, float)) and not isinstance(number, bool):
                epochs, values = series.setdefault(name, ([], []))
                epochs.append(int(record["epoch"]))
                values.append(float(number))
    return series


def training_curves_figure(histories: Mapping[str, Sequence[Mapping[str, Any]]], title: str = "") -> Any:
    """A figure of losses, task weights, gradient norm, learning rate, test aggregate and epoch time.

    ``histories`` maps a network's name (``mtl``, ``stl-<task>``, ``surrogate``) to its records;
    with several networks every line is labelled ``network/series``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if not any(histories.values()):
        raise ValueError("no epoch records to plot: the run trained for 0 epochs")
    figure, axes = plt.subplots(2, 3, figsize=(14, 7.5))
    several = len(histories) > 1
    for axis, (key, label, logarithmic) in zip(axes.flat, _PANELS, strict=True):
        lines = 0
        for network, history in histories.items():
            for name, (epochs, values) in _series(history, key).items():
                tag = "/".join(part for part in (network if several else "", name) if part)
                axis.plot(epochs, values, marker="o" if len(epochs) < 3 else None, markersize=3, label=tag or None)
                lines += 1
        axis.set_title(label, fontsize=10)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        if lines == 0:
            axis.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=axis.transAxes, color="grey")
        elif logarithmic and all(value > 0 for history in histories.values() for _, values in _series(history, key).values() for value in values):
            axis.set_yscale("log")
        if 1 < lines <= _LEGEND_LINES or (lines == 1 and key in ("train_loss", "task_weights", "test_aggregate")):
            axis.legend(fontsize=7)
        axis.grid(alpha=0.3)
    if title:
        figure.suptitle(title)
    return figure
