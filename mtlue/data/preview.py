"""What ``mtlue show`` prints and draws: a dataset's tasks, sizes, label balance and samples."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from mtlue.io import atomic_write

from .store import PreparedDataset
from .tasks import IGNORE_INDEX, Task, TaskKind

__all__ = ["summary_lines", "label_balance", "render_sample_grid"]


def label_balance(task: Task, targets: np.ndarray) -> str:
    """One line describing the distribution of a task's targets over a split."""
    if task.kind.is_classification:
        counts = np.bincount(np.asarray(targets, dtype=np.int64), minlength=task.num_classes)
        shares = counts / max(1, counts.sum())
        names = task.class_names or tuple(str(index) for index in range(task.num_classes))
        return "  ".join(f"{name}={share:.1%}" for name, share in zip(names, shares))
    if task.kind is TaskKind.SEGMENTATION:
        # Sample at most 256 maps: enough for the class shares, cheap for NYUv2-sized data.
        labels = np.asarray(targets[:: max(1, len(targets) // 256)]).ravel()
        counts = np.bincount(labels[labels != IGNORE_INDEX], minlength=task.num_classes)[: task.num_classes]
        shares = counts / max(1, counts.sum())
        names = task.class_names or tuple(str(index) for index in range(task.num_classes))
        ignored = float(np.mean(labels == IGNORE_INDEX))
        return "  ".join(f"{name}={share:.1%}" for name, share in zip(names, shares)) + f"  ignored={ignored:.1%}"
    values = np.asarray(targets[:: max(1, len(targets) // 256)], dtype=np.float32)
    if task.kind is TaskKind.DEPTH:
        valid = values[values > 0]
        return (
            f"depth min={valid.min():.2f} median={np.median(valid):.2f} max={valid.max():.2f} m, "
            f"missing={1 - valid.size / values.size:.1%}"
        ) if valid.size else "no valid depth"
    norms = np.linalg.norm(values, axis=1)
    return f"unit normals: |n| mean={norms[norms > 0].mean():.3f}, missing={np.mean(norms == 0):.1%}"


def summary_lines(dataset: PreparedDataset) -> list[str]:
    channels, height, width = dataset.image_shape
    lines = [
        f"dataset {dataset.name} (source {dataset.manifest.get('source', dataset.name)}) at {dataset.root}",
        f"images {channels}x{height}x{width} uint8, victims crop {dataset.crop_size}x{dataset.crop_size}",
        "splits: " + ", ".join(f"{name} {dataset.manifest['splits'][name]['size']}" for name in dataset.split_names),
        f"tasks ({len(dataset.tasks)}):",
    ]
    train = dataset.split("train")
    for task in dataset.tasks:
        lines.append(f"  {task.name:<24} {task.kind.value:<12} classes={task.num_classes:<3} metrics={','.join(task.metrics)}")
        lines.append(f"    train: {label_balance(task, train.targets[task.name])}")
    return lines


def _draw_dense(axis, task: Task, target: np.ndarray) -> None:
    """Draw a dense map; class colours are fixed per class id so rows can be compared."""
    target = np.asarray(target, dtype=np.float32)
    if task.kind is TaskKind.NORMAL:
        axis.imshow(np.clip((target.transpose(1, 2, 0) + 1) / 2, 0, 1), interpolation="nearest")
    elif task.kind is TaskKind.SEGMENTATION:
        palette = "tab10" if task.num_classes <= 10 else "tab20" if task.num_classes <= 20 else "nipy_spectral"
        top = {"tab10": 9, "tab20": 19}.get(palette, task.num_classes - 1)
        axis.imshow(np.ma.masked_equal(target, IGNORE_INDEX), cmap=palette, vmin=0, vmax=top, interpolation="nearest")
    else:
        axis.imshow(np.ma.masked_equal(target, 0), cmap="magma_r", interpolation="nearest")


def render_sample_grid(dataset: PreparedDataset, out: str | Path, split: str = "train", samples: int = 8) -> Path:
    """Draw ``samples`` images of a split with their labels and dense maps to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = dataset.split(split)
    count = min(samples, len(data))
    dense = [task for task in dataset.tasks if task.is_dense]
    classification = [task for task in dataset.tasks if not task.is_dense]
    columns = 1 + len(dense)
    figure, axes = plt.subplots(count, columns, figsize=(2.4 * columns, 2.6 * count), squeeze=False)
    for row in range(count):
        image = np.asarray(data.images[row]).transpose(1, 2, 0)
        axes[row, 0].imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None)
        labels = [
            f"{task.name}={(task.class_names or range(task.num_classes))[int(data.targets[task.name][row])]}"
            for task in classification[:4]
        ]
        caption = "\n".join(", ".join(labels[start : start + 2]) for start in range(0, len(labels), 2))
        axes[row, 0].set_title(f"{data.ids[row]}\n{caption}", fontsize=6)
        for column, task in enumerate(dense, start=1):
            _draw_dense(axes[row, column], task, data.targets[task.name][row])
            axes[row, column].set_title(task.name, fontsize=7)
    for axis in axes.ravel():
        axis.set_axis_off()
    figure.suptitle(f"{dataset.name} ({split})", fontsize=9)
    return save_figure_png(figure, out)


def save_figure_png(figure: Any, out: str | os.PathLike[str]) -> Path:
    """Lay out ``figure``, write it as a PNG atomically (never a half-written image) and close it."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    out = Path(out)
    with atomic_write(out, "wb") as handle:
        handle.write(buffer.getvalue())
    return out
