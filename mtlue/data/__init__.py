"""Multi-task datasets: task declarations, the standard on-disk form, and the dataset registry.

Importing this package registers the built-in datasets.
"""

from .registry import DatasetBuilder, create_builder, dataset_description, list_datasets, register_dataset
from .store import SPLITS, DatasetError, DatasetWriter, PreparedDataset, SplitData
from .tasks import IGNORE_INDEX, Task, TaskKind

from . import celeba, chestxray14, folder, nyuv2, photodigits, shapes, utkface  # noqa: E402,F401  (registers the built-in datasets)

__all__ = [
    "IGNORE_INDEX",
    "SPLITS",
    "DatasetBuilder",
    "DatasetError",
    "DatasetWriter",
    "PreparedDataset",
    "SplitData",
    "Task",
    "TaskKind",
    "create_builder",
    "dataset_description",
    "list_datasets",
    "register_dataset",
]
