"""A picture of a poison store: clean images, their perturbations (amplified), the published images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from mtlue.data.store import PreparedDataset
from mtlue.data.preview import save_figure_png

from .store import POISONED_SPLIT, PoisonStore

__all__ = ["render_poison_preview"]


def render_poison_preview(
    dataset: PreparedDataset, store: PoisonStore, out: str | os.PathLike[str], samples: int = 6
) -> Path:
    """Write a PNG with one column per poisoned sample and three rows.

    Rows: the clean image, the perturbation stretched from [-epsilon, +epsilon] to [0, 1] (grey is
    zero; at 8/255 the raw perturbation is invisible), and the published uint8 image.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = dataset.split(POISONED_SPLIT)
    chosen = np.flatnonzero(store.poisoned_mask())[:samples]
    if chosen.size == 0:
        # A ratio-0 store poisons nothing; show the first samples so the picture still says so.
        chosen = np.arange(min(samples, len(train)))
    epsilon = store.card.epsilon
    clean = np.asarray(train.images[chosen])
    deltas = store.deltas[chosen]
    rows = {
        "clean": clean.astype(np.float32) / 255.0,
        f"delta x{127.5 / epsilon:.0f} (grey = 0)": 0.5 + deltas.astype(np.float32) / (2.0 * epsilon),
        "published": store.published(train, chosen).astype(np.float32) / 255.0,
    }
    figure, axes = plt.subplots(len(rows), len(chosen), figsize=(1.9 * len(chosen), 2.0 * len(rows)), squeeze=False)
    for row, (label, images) in enumerate(rows.items()):
        for column, image in enumerate(images):
            picture = np.clip(image.transpose(1, 2, 0), 0.0, 1.0)
            axis = axes[row, column]
            if picture.shape[-1] == 1:
                axis.imshow(picture[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            else:
                axis.imshow(picture, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if column == 0:
                axis.set_ylabel(label, fontsize=7)
            if row == 0:
                axis.set_title(train.ids[int(chosen[column])], fontsize=6)
    figure.suptitle(store.card.describe(), fontsize=7)
    return save_figure_png(figure, out)
