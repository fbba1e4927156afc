"""``folder``: a user's own multi-task dataset, from a folder of images and a CSV of labels.

::

    my_data/
      images/                        any files PIL reads (sub-folders allowed)
      labels.csv                     column ``image`` (path relative to images/), one column per
                                     classification task, optional column ``split`` (train/test)
      dense/{task}/{image path}.png  optional segmentation maps: uint8 class ids, 255 = ignore
      dense/{task}/{image path}.npy  optional depth (H, W) or normal (H, W, 3) float maps
      tasks.yaml                     optional: each task's kind and number of classes

``{image path}`` is the image's path under ``images/`` without its extension, so for a flat
``images/`` folder it is the file's stem. docs/DATASETS.md describes the format with an example.

Tasks: every CSV column other than ``image`` and ``split`` is a classification task. Unless
``tasks.yaml`` (or the ``tasks`` option) declares it, its kind is inferred: a column with two
distinct values is binary, with more multiclass; non-negative integers with more than two values
are class ids as they stand (so a class missing from the data keeps its id), any other values
are sorted (numerically when they are numbers) and mapped to 0, 1, ... with the values recorded
as class names. Dense tasks must be declared, because a segmentation head's class count cannot
be read off the labels that happen to occur.

Images are converted to ``channels`` (1 = grayscale, 3 = RGB) and, with ``image_size``, resized
to a square (PIL bilinear); dense maps must have their image's size and are resized with it by
nearest neighbour. Without ``image_size`` all images must share one size. ``crop_size`` (the
victims' random crop) defaults to the stored size, i.e. no cropping. Without a ``split`` column,
``test_fraction`` of the rows (seeded by ``seed``) form the test split.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import yaml
from PIL import Image

from .download import file_checksum
from .imaging import ImageSource, nearest_resize, open_image, resize, to_array, write_images
from .registry import DatasetBuilder, register_dataset
from .store import DatasetError
from .tasks import IGNORE_INDEX, Task, TaskKind

__all__ = ["FolderDataset", "FolderOptions", "TaskDeclaration", "parse_declarations"]

logger = logging.getLogger(__name__)

IMAGE_FOLDER = "images"
LABELS_FILE = "labels.csv"
DENSE_FOLDER = "dense"
TASKS_FILE = "tasks.yaml"
IMAGE_COLUMN = "image"
SPLIT_COLUMN = "split"
SPLITS = ("train", "test")
DENSE_SUFFIX = {TaskKind.SEGMENTATION: ".png", TaskKind.DEPTH: ".npy", TaskKind.NORMAL: ".npy"}
FIXED_CLASSES = {TaskKind.BINARY: 2, TaskKind.DEPTH: 1, TaskKind.NORMAL: 3}
DOCS = "docs/DATASETS.md"


@dataclass(frozen=True)
class FolderOptions:
    """Options of the ``folder`` dataset."""

    #: The folder holding images/ and labels.csv (required).
    path: str = ""
    #: Resize every image to image_size x image_size; None keeps the (common) native size.
    image_size: int | None = None
    #: The victims' random crop; None = the stored size (no cropping).
    crop_size: int | None = None
    channels: int = 3
    #: Share of rows in the test split when labels.csv has no ``split`` column.
    test_fraction: float = 0.2
    seed: int = 0
    #: Task declarations, as tasks.yaml would give them: {name: {kind, num_classes, class_names}}.
    tasks: dict[str, dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if not self.path:
            raise ValueError(f"the folder dataset needs option path=<folder holding {IMAGE_FOLDER}/ and {LABELS_FILE}>")
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(f"image_size must be at least 8, got {self.image_size}")
        if self.crop_size is not None and self.crop_size < 1:
            raise ValueError(f"crop_size must be positive, got {self.crop_size}")
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grayscale) or 3 (RGB), got {self.channels}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be strictly between 0 and 1, got {self.test_fraction}")


# --------------------------------------------------------------------------------------------
# Task declarations


@dataclass(frozen=True)
class TaskDeclaration:
    kind: TaskKind
    num_classes: int
    class_names: tuple[str, ...] = ()


def parse_declarations(raw: object, origin: str) -> dict[str, TaskDeclaration]:
    """Check ``{name: {kind, num_classes?, class_names?}}`` from tasks.yaml or the tasks option."""
    example = "e.g. {smiling: {kind: binary}, age: {kind: multiclass, num_classes: 9}}"
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise DatasetError(f"{origin} must map task names to declarations, {example}")
    declarations = {}
    for name, spec in raw.items():
        if not isinstance(spec, Mapping):
            raise DatasetError(f"{origin}: task {name!r} must be a mapping with a 'kind', {example}")
        unknown = sorted(set(spec) - {"kind", "num_classes", "class_names"})
        if unknown:
            raise DatasetError(
                f"{origin}: task {name!r} has unknown key(s) {unknown}; use kind, num_classes, class_names"
            )
        try:
            kind = TaskKind(spec.get("kind"))
        except ValueError:
            raise DatasetError(
                f"{origin}: task {name!r} has kind {spec.get('kind')!r}; use one of "
                f"{', '.join(kind.value for kind in TaskKind)}"
            ) from None
        class_names = tuple(str(value) for value in spec.get("class_names") or ())
        num_classes = spec.get("num_classes", FIXED_CLASSES.get(kind, len(class_names) or None))
        if not isinstance(num_classes, int):
            raise DatasetError(f"{origin}: task {name!r} ({kind.value}) needs an integer num_classes")
        declarations[str(name)] = TaskDeclaration(kind, num_classes, class_names)
    return declarations


def _make_task(name: str, kind: TaskKind, num_classes: int, class_names: tuple[str, ...], origin: str) -> Task:
    try:
        return Task(name, kind, num_classes, class_names=class_names)
    except ValueError as error:
        raise DatasetError(f"{origin}: {error}; fix the declaration or the column (see {DOCS})") from None


# --------------------------------------------------------------------------------------------
# labels.csv


@dataclass(frozen=True)
class LabelTable:
    path: Path
    columns: tuple[str, ...]
    #: One dict per data row; values stripped of surrounding white space.
    rows: tuple[dict[str, str], ...]
    #: The file line of every row, for error messages.
    lines: tuple[int, ...]

    def values(self, column: str) -> list[str]:
        return [row[column] for row in self.rows]


def read_label_table(path: Path) -> LabelTable:
    try:
        return _read_label_table(path)
    except UnicodeDecodeError as error:
        raise DatasetError(_not_utf8(path, error)) from None


def _not_utf8(path: Path, error: UnicodeDecodeError) -> str:
    return (
        f"{path} is not UTF-8 text (byte {error.object[error.start]:#04x} at offset {error.start}); "
        f"save it as UTF-8, e.g. `iconv -f latin1 -t utf-8 {path.name} > fixed && mv fixed {path.name}`"
    )


def _read_label_table(path: Path) -> LabelTable:
    if not path.is_file():
        raise DatasetError(f"{path} does not exist; the folder dataset needs a {LABELS_FILE} (see {DOCS})")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [name.strip() for name in next(reader, [])]
        if IMAGE_COLUMN not in header:
            raise DatasetError(
                f"{path} has no column {IMAGE_COLUMN!r} (columns: {header}); add a first column "
                f"'{IMAGE_COLUMN}' holding each image's path relative to {IMAGE_FOLDER}/"
            )
        duplicated = sorted({name for name in header if header.count(name) > 1})
        if duplicated or "" in header:
            raise DatasetError(f"{path}: column names must be unique and non-empty, got {header}; rename the columns")
        rows, lines = [], []
        for fields in reader:
            if not any(field.strip() for field in fields):
                continue
            if len(fields) != len(header):
                raise DatasetError(
                    f"{path}, line {reader.line_num}: {len(fields)} fields for {len(header)} columns; "
                    f"fix the row (quote values that contain commas)"
                )
            rows.append({name: field.strip() for name, field in zip(header, fields, strict=True)})
            lines.append(reader.line_num)
    if not rows:
        raise DatasetError(f"{path} has a header but no rows; add one row per image")
    return LabelTable(path, tuple(header), tuple(rows), tuple(lines))


def _is_int(value: str) -> bool:
    try:
        int(value)
    except ValueError:
        return False
    return True


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def encode_classification(
    table: LabelTable, column: str, declaration: TaskDeclaration | None
) -> tuple[Task, np.ndarray]:
    """The task of one label column and its labels as class indices (uint8)."""
    values = table.values(column)
    for value, line in zip(values, table.lines, strict=True):
        if value == "":
            raise DatasetError(
                f"{table.path}, line {line}: column {column!r} is empty; fill in the label or remove the row"
            )
    origin = f"{table.path}, column {column!r}"
    if declaration is not None:
        if not declaration.kind.is_classification:
            raise DatasetError(
                f"{origin} is declared {declaration.kind.value}, a dense kind; dense targets live in "
                f"{DENSE_FOLDER}/{column}/, not in {LABELS_FILE}: move them or declare the column binary/multiclass"
            )
        task = _make_task(column, declaration.kind, declaration.num_classes, declaration.class_names, origin)
        lookup = {name: index for index, name in enumerate(task.class_names)}
        labels = [
            _declared_label(value, lookup, task, table, line) for value, line in zip(values, table.lines, strict=True)
        ]
        return task, np.asarray(labels, dtype=np.uint8)
    return _inferred_task(column, values, origin)


def _declared_label(value: str, lookup: dict[str, int], task: Task, table: LabelTable, line: int) -> int:
    if value in lookup:
        return lookup[value]
    if _is_int(value) and 0 <= int(value) < task.num_classes:
        return int(value)
    allowed = f"class names {list(task.class_names)} or " if task.class_names else ""
    raise DatasetError(
        f"{table.path}, line {line}: {task.name} = {value!r} is not a label of this task; use "
        f"{allowed}class ids 0..{task.num_classes - 1}, or fix the task's declaration"
    )


def _inferred_task(column: str, values: list[str], origin: str) -> tuple[Task, np.ndarray]:
    distinct = set(values)
    if len(distinct) < 2:
        raise DatasetError(
            f"{origin} has the single value {values[0]!r}; a task needs two classes or more: remove the "
            f"column, or declare it in {TASKS_FILE} with its num_classes"
        )
    integers = all(_is_int(value) for value in distinct)
    ids = {int(value) for value in distinct} if integers else set()
    if integers and min(ids) >= 0 and (len(ids) > 2 or ids == {0, 1}):
        num_classes = max(ids) + 1
        kind = TaskKind.BINARY if num_classes == 2 else TaskKind.MULTICLASS
        task = _make_task(column, kind, num_classes, (), origin)
        return task, np.asarray([int(value) for value in values], dtype=np.uint8)
    numeric = all(_is_number(value) for value in distinct)
    class_names = tuple(sorted(distinct, key=float if numeric else str))
    kind = TaskKind.BINARY if len(class_names) == 2 else TaskKind.MULTICLASS
    task = _make_task(column, kind, len(class_names), class_names, origin)
    lookup = {name: index for index, name in enumerate(class_names)}
    return task, np.asarray([lookup[value] for value in values], dtype=np.uint8)


# --------------------------------------------------------------------------------------------
# Images and dense maps


def _image_path(table: LabelTable, images_dir: Path, value: str, line: int) -> Path:
    relative = PurePosixPath(value.replace("\\", "/"))
    if not value or relative.is_absolute() or ".." in relative.parts:
        raise DatasetError(
            f"{table.path}, line {line}: image {value!r} must be a path inside {IMAGE_FOLDER}/ "
            f"(relative, without '..'); fix the row"
        )
    path = images_dir.joinpath(*relative.parts)
    if not path.is_file():
        raise DatasetError(
            f"{table.path}, line {line}: image {value!r} does not exist in {images_dir}; add the file or remove the row"
        )
    return path


def _native_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, SyntaxError, ValueError) as error:
        raise DatasetError(f"cannot read image {path} ({error}); replace the file or remove its row") from None


def _dense_path(dense_dir: Path, task: Task, image_value: str) -> Path:
    relative = PurePosixPath(image_value.replace("\\", "/"))
    return dense_dir.joinpath(task.name, *relative.with_suffix(DENSE_SUFFIX[task.kind]).parts)


def load_dense_map(path: Path, task: Task, native: tuple[int, int]) -> np.ndarray:
    """A dense target in the stored layout: (H, W) labels or depth, (3, H, W) normals."""
    width, height = native
    if not path.is_file():
        raise DatasetError(f"dense map {path} for task {task.name!r} is missing; add it (one per image, see {DOCS})")
    if task.kind is TaskKind.SEGMENTATION:
        try:
            with Image.open(path) as image:
                if image.mode not in ("L", "P"):
                    raise DatasetError(
                        f"{path} is a {image.mode} PNG; save segmentation maps as single-channel 8-bit "
                        f"PNGs holding class ids (255 = ignore)"
                    )
                array = np.asarray(image, dtype=np.uint8)
        except (OSError, SyntaxError, ValueError) as error:
            raise DatasetError(f"cannot read {path} ({error}); replace the file") from None
    else:
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as error:
            raise DatasetError(f"cannot read {path} ({error}); save it with numpy.save") from None
    expected = {
        TaskKind.SEGMENTATION: ((height, width),),
        TaskKind.DEPTH: ((height, width), (height, width, 1)),
        TaskKind.NORMAL: ((height, width, 3),),
    }[task.kind]
    if array.shape not in expected:
        raise DatasetError(
            f"{path} has shape {array.shape}, but its image is {width}x{height} (expected "
            f"{' or '.join(map(str, expected))}); save the map at the image's size"
        )
    if task.kind is TaskKind.SEGMENTATION:
        bad = np.unique(array[(array >= task.num_classes) & (array != IGNORE_INDEX)])
        if bad.size:
            raise DatasetError(
                f"{path} holds labels {bad.tolist()[:5]} outside 0..{task.num_classes - 1} (and "
                f"{IGNORE_INDEX} = ignore); fix the map or the task's num_classes"
            )
        return array
    if not np.issubdtype(array.dtype, np.number) or not np.isfinite(array).all():
        raise DatasetError(f"{path} must hold finite numbers (dtype {array.dtype}); fix the map")
    if task.kind is TaskKind.DEPTH:
        return array.reshape(height, width)
    return array.transpose(2, 0, 1)


def _resize_dense(array: np.ndarray, task: Task, height: int, width: int) -> np.ndarray:
    if task.kind is TaskKind.NORMAL:
        return nearest_resize(array.transpose(1, 2, 0), height, width).transpose(2, 0, 1)
    return nearest_resize(array, height, width)


# --------------------------------------------------------------------------------------------
# The builder


@register_dataset("folder")
class FolderDataset(DatasetBuilder):
    """A user's folder: images/, labels.csv, optional dense/ maps and tasks.yaml (see docs/DATASETS.md)."""

    description = "your own data: images/ + labels.csv (+ dense/ maps, tasks.yaml); see docs/DATASETS.md"
    Options = FolderOptions

    def prepare(self, out_dir: Path, raw_dir: Path) -> None:
        # raw_dir is not used: the user's data stays where the ``path`` option points.
        root = self._data_folder()
        images_dir = root / IMAGE_FOLDER
        table = read_label_table(root / LABELS_FILE)
        classification, labels, dense = self._tasks(root, table)
        tasks = classification + dense

        image_values = table.values(IMAGE_COLUMN)
        self._require_unique_images(table)
        paths = [
            _image_path(table, images_dir, value, line) for value, line in zip(image_values, table.lines, strict=True)
        ]
        native_sizes = [_native_size(path) for path in paths]
        height, width = self._stored_size(paths, native_sizes)
        rows = self._split_rows(table)

        channels = self.options.channels
        mode = "L" if channels == 1 else "RGB"
        def preprocess(source: ImageSource) -> np.ndarray:
            return to_array(resize(open_image(source, mode), height, width))

        with self.writer(
            out_dir,
            tasks=tasks,
            image_shape=(channels, height, width),
            crop_size=self.options.crop_size or min(height, width),
            provenance=_provenance(root),
            description=f"user folder {root}: {len(tasks)} tasks",
        ) as writer:
            splits = {split: writer.split(split, len(indices)) for split, indices in rows.items()}
            for split, indices in rows.items():
                target = splits[split]
                target.set_ids(image_values[row] for row in indices)
                for task in classification:
                    target.targets[task.name][:] = labels[task.name][indices]
                for task in dense:
                    for position, row in enumerate(indices):
                        map_path = _dense_path(root / DENSE_FOLDER, task, image_values[row])
                        array = load_dense_map(map_path, task, native_sizes[row])
                        target.targets[task.name][position] = _resize_dense(array, task, height, width)
            write_images(
                {split: target.images for split, target in splits.items()},
                (
                    (split, position, paths[row])
                    for split, indices in rows.items()
                    for position, row in enumerate(indices)
                ),
                preprocess,
                description=f"folder {root.name}",
            )

    def _tasks(self, root: Path, table: LabelTable) -> tuple[tuple[Task, ...], dict[str, np.ndarray], tuple[Task, ...]]:
        """The classification tasks with their labels, and the dense tasks, of the folder; at least one."""
        declarations = self._declarations(root)
        classification, labels = self._classification_tasks(table, declarations)
        dense = self._dense_tasks(root, table, declarations)
        if not classification and not dense:
            raise DatasetError(
                f"{table.path} has no label column and {root / DENSE_FOLDER} no dense task; add at "
                f"least one task (see {DOCS})"
            )
        return classification, labels, dense

    def _data_folder(self) -> Path:
        root = Path(self.options.path).expanduser().resolve()
        if not root.is_dir():
            raise DatasetError(
                f"folder dataset path {root} is not a directory; set the option path to your data folder"
            )
        if not (root / IMAGE_FOLDER).is_dir():
            raise DatasetError(f"{root} has no {IMAGE_FOLDER}/ folder; put the images there (see {DOCS})")
        return root

    def _declarations(self, root: Path) -> dict[str, TaskDeclaration]:
        tasks_file = root / TASKS_FILE
        if self.options.tasks is not None and tasks_file.is_file():
            raise DatasetError(f"tasks are declared both in {tasks_file} and in the tasks option; keep one of them")
        if self.options.tasks is not None:
            return parse_declarations(self.options.tasks, "the tasks option")
        if not tasks_file.is_file():
            return {}
        try:
            raw = yaml.safe_load(tasks_file.read_text(encoding="utf-8"))
        except UnicodeDecodeError as error:
            raise DatasetError(_not_utf8(tasks_file, error)) from None
        except yaml.YAMLError as error:
            raise DatasetError(f"{tasks_file} is not valid YAML ({error}); fix the file") from None
        return parse_declarations(raw, str(tasks_file))

    @staticmethod
    def _classification_tasks(
        table: LabelTable, declarations: dict[str, TaskDeclaration]
    ) -> tuple[tuple[Task, ...], dict[str, np.ndarray]]:
        columns = [column for column in table.columns if column not in (IMAGE_COLUMN, SPLIT_COLUMN)]
        for name in (IMAGE_COLUMN, SPLIT_COLUMN):
            if name in declarations:
                raise DatasetError(f"{name!r} is a reserved column of {LABELS_FILE}, not a task; rename the task")
        missing = [
            name
            for name, declaration in declarations.items()
            if declaration.kind.is_classification and name not in columns
        ]
        if missing:
            raise DatasetError(
                f"{table.path} has no column for the declared task(s) {missing}; add the column(s) "
                f"or remove the declaration(s)"
            )
        tasks, labels = [], {}
        for column in columns:
            task, encoded = encode_classification(table, column, declarations.get(column))
            tasks.append(task)
            labels[column] = encoded
            logger.info("folder: task %s is %s with %d classes", column, task.kind.value, task.num_classes)
        return tuple(tasks), labels

    @staticmethod
    def _dense_tasks(root: Path, table: LabelTable, declarations: dict[str, TaskDeclaration]) -> tuple[Task, ...]:
        dense_dir = root / DENSE_FOLDER
        present = sorted(path.name for path in dense_dir.iterdir() if path.is_dir()) if dense_dir.is_dir() else []
        declared = [name for name, declaration in declarations.items() if declaration.kind.is_dense]
        undeclared = [name for name in present if name not in declared]
        if undeclared:
            raise DatasetError(
                f"{dense_dir} has folder(s) {undeclared} that no task declares; declare each in "
                f"{TASKS_FILE} (e.g. {undeclared[0]}: {{kind: segmentation, num_classes: 13}}) or remove it"
            )
        absent = [name for name in declared if name not in present]
        if absent:
            raise DatasetError(
                f"dense task(s) {absent} are declared but {dense_dir} has no folder for them; add "
                f"{DENSE_FOLDER}/<task>/ with one map per image or remove the declaration"
            )
        clashes = [name for name in declared if name in table.columns]
        if clashes:
            raise DatasetError(f"task(s) {clashes} are both dense and a {LABELS_FILE} column; rename one of them")
        return tuple(
            _make_task(
                name,
                declarations[name].kind,
                declarations[name].num_classes,
                declarations[name].class_names,
                f"the declaration of dense task {name!r}",
            )
            for name in declared
        )

    @staticmethod
    def _require_unique_images(table: LabelTable) -> None:
        first_line: dict[str, int] = {}
        for value, line in zip(table.values(IMAGE_COLUMN), table.lines, strict=True):
            if value in first_line:
                raise DatasetError(
                    f"{table.path}, line {line}: image {value!r} already has a row (line "
                    f"{first_line[value]}); keep one row per image"
                )
            first_line[value] = line

    def _stored_size(self, paths: list[Path], native_sizes: list[tuple[int, int]]) -> tuple[int, int]:
        if self.options.image_size is not None:
            return self.options.image_size, self.options.image_size
        first = native_sizes[0]
        for path, size in zip(paths, native_sizes, strict=True):
            if size != first:
                raise DatasetError(
                    f"images differ in size ({paths[0].name} is {first[0]}x{first[1]}, {path.name} is "
                    f"{size[0]}x{size[1]}); set the option image_size to resize them all to one square size"
                )
        width, height = first
        return height, width

    def _split_rows(self, table: LabelTable) -> dict[str, np.ndarray]:
        count = len(table.rows)
        if SPLIT_COLUMN in table.columns:
            values = [value.lower() for value in table.values(SPLIT_COLUMN)]
            for value, line in zip(values, table.lines, strict=True):
                if value not in SPLITS:
                    raise DatasetError(
                        f"{table.path}, line {line}: split {value!r} must be 'train' or 'test'; fix the "
                        f"row, or drop the column to split by test_fraction"
                    )
            rows = {split: np.flatnonzero(np.array(values) == split) for split in SPLITS}
            empty = [split for split, indices in rows.items() if not indices.size]
            if empty:
                raise DatasetError(f"{table.path}: no row has split {empty[0]!r}; each split needs at least one image")
            return rows
        test_count = round(count * self.options.test_fraction)
        if not 0 < test_count < count:
            raise DatasetError(
                f"{table.path}: {count} rows cannot be split with test_fraction="
                f"{self.options.test_fraction}; add images, change test_fraction or add a split column"
            )
        test = np.sort(np.random.default_rng(self.options.seed).permutation(count)[:test_count])
        is_test = np.zeros(count, dtype=bool)
        is_test[test] = True
        return {"train": np.flatnonzero(~is_test), "test": test}


def _provenance(root: Path) -> dict[str, Any]:
    """Where the prepared copy came from: the folder and the checksums of its label files."""
    return {
        "folder": str(root),
        "files": {name: file_checksum(root / name) for name in (LABELS_FILE, TASKS_FILE) if (root / name).is_file()},
    }
