"""Reading the victims' ``metrics.json`` files of a results folder.

The workflow writes one file per victim at::

    {results}/{dataset}/victims/{method}/{backbone}/{weighting}/{defense}/seed{seed}/metrics.json

(layout of the file: ``mtlue/schemas/victim-metrics.schema.json``, read through
:mod:`mtlue.victim_metrics`). The path names the method (the poison the victim
trained on) and the defense; the file must agree with the path on everything both record
(dataset, backbone, weighting, seed, and the defense when the file has a ``defense`` key), so a
file copied to the wrong place is refused instead of being counted under the wrong axis.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtlue.data.tasks import Task
from mtlue.errors import ReportError
from mtlue.victim_metrics import RERUN, read_victim_metrics

__all__ = [
    "AXES",
    "CLEAN",
    "NO_DEFENSE",
    "ReportError",
    "VictimRecord",
    "collect_victims",
    "find_datasets",
    "load_victim",
    "method_order",
    "defense_order",
]

#: The baseline method: the unmodified training split, published through the same path.
CLEAN = "clean"
#: The attacker's standard training (random crop + flip), i.e. no defense against the poison.
NO_DEFENSE = "none"
#: The axes of a victim, in the order of its path.
AXES = ("method", "backbone", "weighting", "defense", "seed")

_RERUN = RERUN


@dataclass(frozen=True)
class VictimRecord:
    """One victim's result, as read from its ``metrics.json``."""

    path: Path
    dataset: str
    method: str
    backbone: str
    weighting: str
    defense: str
    seed: int
    mode: str
    tasks: tuple[Task, ...]
    metrics: dict[str, dict[str, float]]
    aggregate: dict[str, float]
    train_images: str
    train_content_hash: str
    test_content_hash: str
    created: str
    #: The commit the victim ran at; None in metrics written before it was recorded.
    git_commit: str | None = None
    defense_options: dict[str, Any] = field(default_factory=dict)
    history: tuple[dict[str, Any], ...] = ()

    @property
    def setting(self) -> tuple[str, str, str]:
        """(backbone, weighting, defense): the attacker's choice, without the seed."""
        return (self.backbone, self.weighting, self.defense)


def method_order(methods: Iterable[str]) -> list[str]:
    """Clean first (the reference), then the methods by name."""
    unique = set(methods)
    return ([CLEAN] if CLEAN in unique else []) + sorted(unique - {CLEAN})


def defense_order(defenses: Iterable[str]) -> list[str]:
    """No defense first, then the defenses by name."""
    unique = set(defenses)
    return ([NO_DEFENSE] if NO_DEFENSE in unique else []) + sorted(unique - {NO_DEFENSE})


def find_datasets(results: str | Path) -> list[str]:
    """Datasets of ``results`` that have at least one victim result, by name."""
    root = Path(results)
    if not root.is_dir():
        raise ReportError(f"results folder {root} does not exist; pass the folder the workflow writes to (--results)")
    return sorted(child.name for child in root.iterdir() if child.is_dir() and any((child / "victims").glob("*/*/*/*/seed*/metrics.json")))


def collect_victims(results: str | Path, dataset: str) -> list[VictimRecord]:
    """Every victim of ``dataset`` under ``results``, sorted by path.

    Raises ReportError when there is none, when a file is malformed or disagrees with its path,
    or when the victims do not share one dataset version (tasks and split content hashes).
    """
    root = Path(results) / dataset / "victims"
    paths = sorted(root.glob("*/*/*/*/*/metrics.json"))
    if not paths:
        raise ReportError(
            f"no victim results under {root} (expected {root}/METHOD/BACKBONE/WEIGHTING/DEFENSE/seedN/metrics.json); "
            f"run the workflow's victims first, or check --results and --dataset"
        )
    records = [load_victim(path, dataset) for path in paths]
    first = records[0]
    for record in records[1:]:
        if record.tasks != first.tasks:
            raise ReportError(
                f"{record.path} has tasks {[t.name for t in record.tasks]} but {first.path} has "
                f"{[t.name for t in first.tasks]}: one dataset's victims must share its tasks; delete the stale results"
            )
        for key in ("train_content_hash", "test_content_hash"):
            if getattr(record, key) != getattr(first, key):
                raise ReportError(
                    f"{record.path} and {first.path} were trained on different versions of {dataset!r} "
                    f"({key} {getattr(record, key)[:12]} vs {getattr(first, key)[:12]}); "
                    f"delete the victims of the old version and rerun them"
                )
    return records


def load_victim(path: str | Path, dataset: str | None = None) -> VictimRecord:
    """Read and check one ``metrics.json``; its axes come from the path (see the module docstring)."""
    path = Path(path)
    parts = path.parts
    if len(parts) < 8 or parts[-1] != "metrics.json" or parts[-7] != "victims" or not parts[-2].startswith("seed"):
        raise ReportError(f"{path} is not at DATASET/victims/METHOD/BACKBONE/WEIGHTING/DEFENSE/seedN/metrics.json")
    path_dataset, method, backbone, weighting, defense, seed_part = parts[-8], *parts[-6:-1]
    if not seed_part[4:].isdigit():
        raise ReportError(f"{path}: folder {seed_part!r} must be seedN with N a non-negative integer")
    seed = int(seed_part[4:])
    dataset = dataset or path_dataset
    data = read_victim_metrics(path)
    info = data["dataset"]
    try:
        tasks = tuple(Task.from_json(item) for item in info["tasks"])
    except ValueError as error:
        raise ReportError(f"{path}: dataset.tasks is not a list of tasks ({error!r}); {_RERUN}") from None
    declared = data.get("defense", {})
    defense_options = dict(declared.get("options", {}))
    declared_defense = declared.get("name")
    for axis, in_file, in_path in (
        ("dataset", info["name"], dataset),
        ("backbone", data["backbone"], backbone),
        ("weighting", data["weighting"], weighting),
        ("seed", data["seed"], seed),
        ("defense", declared_defense if declared_defense is not None else defense, defense),
    ):
        if in_file != in_path:
            raise ReportError(
                f"{path}: the file says {axis} {in_file!r} but its path says {in_path!r}; "
                f"it was copied to the wrong folder: move it or rerun its victim"
            )
    train_images = info["train_images"]
    if not isinstance(train_images, str) or (train_images != CLEAN and train_images.partition(":")[0] != method):
        raise ReportError(
            f"{path}: trained on images {train_images!r}, which are not the poison of method {method!r} "
            f"(expected 'clean' or '{method}:<sha256>'); it was copied to the wrong folder: move it or rerun its victim"
        )

    missing = [f"metrics.{task.name}.{metric}" for task in tasks for metric in task.metrics if metric not in data["metrics"].get(task.name, {})]
    if missing:
        raise ReportError(f"{path} lacks {', '.join(missing)}; {_RERUN}")
    metrics = {task.name: {metric: float(data["metrics"][task.name][metric]) for metric in task.metrics} for task in tasks}
    aggregate = {key: float(value) for key, value in data["aggregate"].items()}
    if any(task.kind.is_classification for task in tasks) and "classification_mean" not in aggregate:
        raise ReportError(f"{path}: aggregate lacks classification_mean, which a dataset with classification tasks has; {_RERUN}")
    runs = data["runs"]
    history = tuple(runs[0].get("history", ())) if len(runs) == 1 else ()
    return VictimRecord(
        path=path, dataset=dataset, method=method, backbone=backbone, weighting=weighting, defense=defense, seed=seed,
        mode=str(data["mode"]), tasks=tasks, metrics=metrics, aggregate=aggregate, train_images=train_images,
        train_content_hash=str(info["train_content_hash"]), test_content_hash=str(info["test_content_hash"]),
        created=str(data.get("created", "")), git_commit=data.get("git_commit"), defense_options=defense_options, history=history,
    )


