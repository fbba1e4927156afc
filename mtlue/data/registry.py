"""Dataset registry: configs name a dataset, the registry finds the code that prepares it.

Modelled on timm's model registry: ``register_dataset`` adds a builder class, ``list_datasets``
names what is available and ``create_builder`` is the one entry point, so nothing downstream
dispatches on dataset names.

A builder declares its options as a dataclass (``Options``); configs pass a mapping that is
checked against it, so a misspelt option fails with the list of valid ones. Any dataset can be
prepared as a task view (``select_tasks``: e.g. one task of a multi-task dataset, for the
single-task sanity protocol): the builder fills every task and the writer keeps the selection.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from mtlue.hyperparameters import build_settings
from mtlue.registry import Registry

from .store import DatasetError, DatasetWriter
from .tasks import Task

__all__ = [
    "DATASETS",
    "DatasetBuilder",
    "register_dataset",
    "list_datasets",
    "create_builder",
    "dataset_description",
]


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """This dataset takes no options."""


class DatasetBuilder(ABC):
    """Prepares one dataset from its raw files into the standard form (see ``store``)."""

    #: Registry name, set by ``register_dataset``.
    name: ClassVar[str] = ""
    #: One line for ``mtlue list datasets``.
    description: ClassVar[str] = ""
    #: Dataclass of the options a config may set for this dataset.
    Options: ClassVar[type] = NoOptions

    def __init__(self, *, select_tasks: Sequence[str] | None = None, **options: Any) -> None:
        #: Names of the tasks the prepared dataset keeps (None: all of them).
        self.select_tasks = None if select_tasks is None else tuple(select_tasks)
        self.options = build_settings(self.Options, options, registry=DATASETS, name=self.name, noun="option")

    def __repr__(self) -> str:
        view = "" if self.select_tasks is None else f", select_tasks={list(self.select_tasks)}"
        return f"{type(self).__name__}({self.options!r}{view})"

    def options_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.options)

    def writer(
        self,
        out_dir: Path,
        *,
        tasks: Sequence[Task],
        image_shape: tuple[int, int, int],
        crop_size: int,
        provenance: dict[str, Any] | None = None,
        description: str | None = None,
    ) -> DatasetWriter:
        """A ``DatasetWriter`` whose manifest records this builder and its options.

        ``provenance`` (checksums of the raw files, skipped samples, ...) is stored beside the
        options so that a prepared dataset says what it was made from.
        """
        options = self.options_dict()
        if provenance is not None:
            options["provenance"] = provenance
        if self.select_tasks is not None:
            options["select_tasks"] = list(self.select_tasks)
        return DatasetWriter(
            out_dir,
            name=Path(out_dir).name,
            source=self.name,
            tasks=tasks,
            image_shape=image_shape,
            crop_size=crop_size,
            options=options,
            description=self.description if description is None else description,
            keep_tasks=self.select_tasks,
        )

    @abstractmethod
    def prepare(self, out_dir: Path, raw_dir: Path) -> None:
        """Read the raw files under ``raw_dir`` (downloading them when allowed) and write the
        standard form to ``out_dir`` with a ``DatasetWriter``."""


#: The built-in datasets register when :mod:`mtlue.data` is imported.
DATASETS: Registry[type[DatasetBuilder]] = Registry("dataset", base="mtlue.data.registry:DatasetBuilder", error=DatasetError)

B = TypeVar("B", bound=type[DatasetBuilder])


def register_dataset(name: str) -> Callable[[B], B]:
    """Class decorator adding a ``DatasetBuilder`` under ``name``."""
    return DATASETS.register(name)


def list_datasets() -> list[str]:
    return DATASETS.names()


def dataset_description(name: str) -> str:
    return DATASETS.summary(name)


def create_builder(name: str, *, select_tasks: Sequence[str] | None = None, **options: Any) -> DatasetBuilder:
    """The builder of dataset ``name`` with ``options``, keeping only ``select_tasks`` if given."""
    return DATASETS.get(name)(select_tasks=select_tasks, **options)
