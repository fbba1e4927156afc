"""The one on-disk form every prepared dataset takes.

::

    resources/data/{dataset}/
      manifest.json                 tasks, image shape, crop size, splits, sha256 of every file
      {split}/images.npy            uint8 (N, C, H, W), opened memory-mapped
      {split}/ids.txt               one sample identifier a line (file name, row number, ...)
      {split}/targets/{task}.npy    (N,) class labels, or (N, H, W) / (N, 3, H, W) dense maps

Preparation decodes every source image once; training opens the ``.npy`` files memory-mapped,
so no epoch ever decodes an image file and every dataset looks the same to the rest of the code.
A directory is written under a temporary name and renamed into place when complete, and the
manifest carries a checksum of every file, so an interrupted or altered preparation is never
mistaken for a finished one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mtlue.errors import DatasetError
from mtlue.io import FolderOutput, atomic_directory, atomic_write_json, file_sha256

from .tasks import Task, tasks_from_json, tasks_to_json

__all__ = [
    "FORMAT",
    "OUTPUT",
    "SPLITS",
    "DatasetError",
    "DatasetWriter",
    "SplitWriter",
    "PreparedDataset",
    "SplitData",
]

FORMAT = "mtlue-dataset/1"
SPLITS = ("train", "test")
MANIFEST = "manifest.json"

#: What ``mtlue prepare --out`` holds: the manifest and the files it lists (see mtlue.io).
OUTPUT = FolderOutput("prepared dataset", MANIFEST, "mtlue-dataset/", listed=lambda manifest: manifest["files"])


class SplitWriter:
    """Pre-allocated, memory-mapped arrays of one split, filled by a dataset's preparation code."""

    def __init__(
        self, root: Path, name: str, size: int, image_shape: tuple[int, int, int], tasks: tuple[Task, ...]
    ) -> None:
        if size <= 0:
            raise DatasetError(f"split {name!r} has no samples; check the source data")
        self.name = name
        self.size = size
        self._root = root / name
        (self._root / "targets").mkdir(parents=True)
        channels, height, width = image_shape
        self.images = np.lib.format.open_memmap(
            self._root / "images.npy", mode="w+", dtype=np.uint8, shape=(size, channels, height, width)
        )
        self.targets: dict[str, np.ndarray] = {
            task.name: np.lib.format.open_memmap(
                self._root / "targets" / f"{task.name}.npy",
                mode="w+",
                dtype=task.target_dtype,
                shape=(size, *task.target_shape(height, width)),
            )
            for task in tasks
        }
        self.ids: list[str] = []

    def set_ids(self, ids: Iterable[str]) -> None:
        ids = [str(item) for item in ids]
        if len(ids) != self.size:
            raise DatasetError(f"split {self.name!r}: {len(ids)} ids for {self.size} samples")
        bad = [item for item in ids if not item or "\n" in item]
        if bad:
            raise DatasetError(f"split {self.name!r}: sample ids must be non-empty single lines")
        if len(set(ids)) != len(ids):
            raise DatasetError(f"split {self.name!r}: sample ids are not unique")
        self.ids = ids

    def _finish(self, tasks: tuple[Task, ...], height: int, width: int) -> None:
        if not self.ids:
            self.set_ids(f"{self.name}-{index:07d}" for index in range(self.size))
        for task in tasks:
            try:
                task.validate_targets(self.targets[task.name], height, width)
            except ValueError as error:
                raise DatasetError(f"split {self.name!r}: {error}; check the source labels") from None
        self.images.flush()
        for array in self.targets.values():
            array.flush()
        (self._root / "ids.txt").write_text("\n".join(self.ids) + "\n", encoding="utf-8")
        # Drop the memory maps so the files are closed before the directory is renamed.
        del self.images
        self.targets = {}


class DatasetWriter:
    """Context manager that writes a prepared dataset atomically.

    >>> with DatasetWriter(out, name="toy", tasks=tasks, image_shape=(3, 32, 32), crop_size=28) as w:
    ...     train = w.split("train", size=100)
    ...     train.images[:] = ...
    ...     train.targets["shape"][:] = ...
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        *,
        name: str,
        tasks: Iterable[Task],
        image_shape: tuple[int, int, int],
        crop_size: int,
        source: str | None = None,
        options: Mapping[str, Any] | None = None,
        description: str = "",
        keep_tasks: Sequence[str] | None = None,
    ) -> None:
        self.out_dir = Path(out_dir)
        self.name = name
        self.tasks = tuple(tasks)
        if not self.tasks:
            raise DatasetError(f"dataset {name!r} declares no tasks")
        names = [task.name for task in self.tasks]
        if len(set(names)) != len(names):
            raise DatasetError(f"dataset {name!r} declares duplicate task names: {names}")
        #: The tasks the prepared dataset keeps (a task view, e.g. one task of a multi-task
        #: dataset); the preparation code still fills every task, the rest is dropped at the end.
        self.kept = self.tasks if keep_tasks is None else _select_tasks(name, self.tasks, keep_tasks)
        channels, height, width = (int(v) for v in image_shape)
        if channels not in (1, 3):
            raise DatasetError(f"dataset {name!r}: images need 1 or 3 channels, got {channels}")
        if not 0 < crop_size <= min(height, width):
            raise DatasetError(
                f"dataset {name!r}: crop size {crop_size} must be in 1..{min(height, width)} "
                f"for {height}x{width} images"
            )
        self.image_shape = (channels, height, width)
        self.crop_size = int(crop_size)
        self.source = source or name
        self.options = dict(options or {})
        self.description = description
        self._splits: dict[str, SplitWriter] = {}
        self._context = None
        self._root: Path | None = None

    def __enter__(self) -> DatasetWriter:
        self._context = atomic_directory(self.out_dir, OUTPUT)
        self._root = self._context.__enter__()
        return self

    def split(self, name: str, size: int) -> SplitWriter:
        if self._root is None:
            raise RuntimeError("DatasetWriter.split is only available inside a `with` block")
        if name not in SPLITS:
            raise DatasetError(f"unknown split {name!r}; splits are {', '.join(SPLITS)}")
        if name in self._splits:
            raise DatasetError(f"split {name!r} is written twice")
        writer = SplitWriter(self._root, name, int(size), self.image_shape, self.tasks)
        self._splits[name] = writer
        return writer

    def __exit__(self, exc_type, exc, traceback) -> bool:
        assert self._context is not None and self._root is not None
        if exc_type is None:
            try:
                self._finish()
            except BaseException as error:
                self._context.__exit__(type(error), error, error.__traceback__)
                raise
        return bool(self._context.__exit__(exc_type, exc, traceback))

    def _finish(self) -> None:
        missing = [name for name in SPLITS if name not in self._splits]
        if missing:
            raise DatasetError(f"dataset {self.name!r}: split(s) {missing} were never written")
        _, height, width = self.image_shape
        for writer in self._splits.values():
            writer._finish(self.tasks, height, width)
        root = self._root
        assert root is not None
        kept = {task.name for task in self.kept}
        for split in self._splits:
            for task in self.tasks:
                if task.name not in kept:
                    (root / split / "targets" / f"{task.name}.npy").unlink()
        files = {
            path.relative_to(root).as_posix(): {"sha256": file_sha256(path), "bytes": path.stat().st_size}
            for path in sorted(root.rglob("*"))
            if path.is_file()
        }
        splits = {
            name: {"size": writer.size, "content_hash": _split_hash(files, name)}
            for name, writer in self._splits.items()
        }
        manifest = {
            "format": FORMAT,
            "name": self.name,
            "source": self.source,
            "description": self.description,
            "image_shape": list(self.image_shape),
            "crop_size": self.crop_size,
            "tasks": tasks_to_json(self.kept),
            "splits": splits,
            "files": files,
            "options": self.options,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        atomic_write_json(root / MANIFEST, manifest)


def _select_tasks(dataset: str, tasks: tuple[Task, ...], names: Sequence[str]) -> tuple[Task, ...]:
    """The tasks named in ``names``, in the dataset's order; refuse unknown or repeated names."""
    available = [task.name for task in tasks]
    if isinstance(names, str) or not names:
        raise DatasetError(f"dataset {dataset!r}: the task selection must list at least one of its tasks: {', '.join(available)}")
    unknown = [name for name in names if name not in available]
    if unknown:
        raise DatasetError(
            f"dataset {dataset!r} has no task(s) {', '.join(map(repr, unknown))}; its tasks: {', '.join(available)}"
        )
    if len(set(names)) != len(names):
        raise DatasetError(f"dataset {dataset!r}: the task selection names a task twice: {list(names)}")
    return tuple(task for task in tasks if task.name in set(names))


def _split_hash(files: Mapping[str, Mapping[str, Any]], split: str) -> str:
    """Hash of a split's images, ids and targets: what a perturbation file is aligned to."""
    digest = hashlib.sha256()
    for relative in sorted(files):
        if relative.startswith(f"{split}/"):
            digest.update(f"{relative}\0{files[relative]['sha256']}\n".encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class SplitData:
    """Read-only, memory-mapped arrays of one split."""

    name: str
    images: np.ndarray
    targets: dict[str, np.ndarray]
    ids: tuple[str, ...]
    content_hash: str

    def __len__(self) -> int:
        return int(self.images.shape[0])


class PreparedDataset:
    """A dataset in the standard form, opened from its directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        manifest_path = self.root / MANIFEST
        if not manifest_path.is_file():
            raise DatasetError(
                f"no prepared dataset at {self.root} (missing {MANIFEST}); prepare it first with "
                f"`mtlue prepare {self.root.name} --out {self.root}` or `snakemake {manifest_path}`"
            )
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise DatasetError(
                f"{manifest_path} is not valid JSON ({error}); delete {self.root} and prepare it again"
            ) from None
        if manifest.get("format") != FORMAT:
            raise DatasetError(
                f"{manifest_path} has format {manifest.get('format')!r}, this version reads {FORMAT!r}; "
                f"delete {self.root} and prepare it again"
            )
        self.manifest: dict[str, Any] = manifest
        self.name: str = manifest["name"]
        self.tasks: tuple[Task, ...] = tasks_from_json(manifest["tasks"])
        self.image_shape: tuple[int, int, int] = tuple(manifest["image_shape"])  # type: ignore[assignment]
        self.crop_size: int = int(manifest["crop_size"])
        missing = [relative for relative in manifest["files"] if not (self.root / relative).is_file()]
        if missing:
            raise DatasetError(
                f"dataset at {self.root} is incomplete, missing {', '.join(missing[:5])}; "
                f"delete {self.root} and prepare it again"
            )

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name}={self.manifest['splits'][name]['size']}" for name in self.split_names)
        return (
            f"PreparedDataset(name={self.name!r}, image_shape={self.image_shape}, "
            f"crop_size={self.crop_size}, tasks={len(self.tasks)}, {sizes})"
        )

    @property
    def split_names(self) -> tuple[str, ...]:
        return tuple(name for name in SPLITS if name in self.manifest["splits"])

    def task(self, name: str) -> Task:
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(f"dataset {self.name!r} has no task {name!r}; tasks: {[t.name for t in self.tasks]}")

    def split(self, name: str) -> SplitData:
        if name not in self.manifest["splits"]:
            raise DatasetError(f"dataset {self.name!r} has no split {name!r}; splits: {list(self.split_names)}")
        base = self.root / name
        images = np.load(base / "images.npy", mmap_mode="r")
        targets = {
            task.name: np.load(base / "targets" / f"{task.name}.npy", mmap_mode="r") for task in self.tasks
        }
        ids = tuple((base / "ids.txt").read_text(encoding="utf-8").splitlines())
        expected = self.manifest["splits"][name]["size"]
        sizes = {len(images), len(ids), *(len(array) for array in targets.values())}
        if sizes != {expected}:
            raise DatasetError(
                f"dataset {self.name!r}, split {name!r}: files disagree on the sample count "
                f"(manifest {expected}, found {sorted(sizes)}); delete {self.root} and prepare it again"
            )
        return SplitData(name, images, targets, ids, self.manifest["splits"][name]["content_hash"])

    def verify(self) -> None:
        """Recompute every checksum; raise DatasetError naming the files that differ."""
        bad = [
            relative
            for relative, info in self.manifest["files"].items()
            if file_sha256(self.root / relative) != info["sha256"]
        ]
        if bad:
            raise DatasetError(
                f"dataset at {self.root} fails its checksums ({', '.join(bad)}); the files were changed "
                f"after preparation: delete {self.root} and prepare it again"
            )
