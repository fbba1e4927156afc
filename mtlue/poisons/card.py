"""The method card: what a perturbation store is, how it was made, and what it is aligned to.

The card is plain JSON so that tables, the leaderboard and MLflow can read it without loading the
perturbations. It records the train split's content hash because the official release coupled its
perturbation files to the dataset's file order with no hash, and silently misaligned poisons when
that order changed (reference, section 8.17).

Format ``mtlue-poison/2`` added the ``convergence`` record (:mod:`mtlue.poisons.convergence`):
required, an object for every store a method generated and ``null`` for a submission, which
was not generated here. Cards of format ``mtlue-poison/1`` predate it and are still read, with
no record (``convergence`` None), so existing stores stay usable; only /2 cards are written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from mtlue.io import FolderOutput

from .budget import NORM, check_epsilon
from .convergence import Convergence
from .errors import PoisonError

__all__ = [
    "STORE_OUTPUT",
    "FORMAT",
    "READABLE_FORMATS",
    "DELTAS_FORMAT",
    "CARD_NAME",
    "DELTAS_NAME",
    "SUBMISSION_LAYOUTS",
    "SurrogateRecord",
    "SubmissionRecord",
    "PoisonCard",
]

#: The card format written.
FORMAT = "mtlue-poison/2"
#: The card's previous format, without ``convergence``; still read (module docstring).
_FORMAT_WITHOUT_CONVERGENCE = "mtlue-poison/1"
READABLE_FORMATS = (_FORMAT_WITHOUT_CONVERGENCE, FORMAT)
#: The format named in the deltas file's safetensors header. The file did not change when the
#: card gained ``convergence``; keeping its header keeps identical deltas byte-identical (same sha256).
DELTAS_FORMAT = "mtlue-poison/1"
CARD_NAME = "card.json"
DELTAS_NAME = "deltas.safetensors"

#: What a perturbation store folder holds (``mtlue poison``, ``submit``, ``install-submission``).
STORE_OUTPUT = FolderOutput("perturbation store", CARD_NAME, "mtlue-poison/", fixed=(DELTAS_NAME,))
#: The forms a submitted perturbation file may take (see mtlue.poisons.submissions).
SUBMISSION_LAYOUTS = ("int8-deltas", "float-deltas", "uint8-images")


@dataclass(frozen=True)
class SurrogateRecord:
    """A surrogate file a method read, by content, so a card says which model made the poison."""

    path: str
    sha256: str


@dataclass(frozen=True)
class SubmissionRecord:
    """The file a leaderboard submission was made from (``mtlue submit``), by content.

    The card's ``method`` is the submitter's name and its ``created`` the submission date; the
    store holds the checked int8 deltas, this record the sha256 of the file as it was handed in.
    """

    file: str
    sha256: str
    bytes: int
    #: One of ``SUBMISSION_LAYOUTS``: which tensor the file held and in which units.
    layout: str


@dataclass(frozen=True)
class PoisonCard:
    method: str
    hyperparameters: dict[str, Any]
    #: Budget in units of 1/255 under ``norm``.
    epsilon: int
    seed: int
    dataset: str
    #: The split the deltas belong to, and that split's content hash (images, ids, targets).
    split: str
    split_content_hash: str
    samples: int
    image_shape: tuple[int, int, int]
    #: sha256 and size of the safetensors file, checked before it is parsed.
    sha256: str
    bytes: int
    #: Largest |delta| actually stored, in 1/255 units (at most ``epsilon``).
    max_abs_delta: int
    #: Requested fraction of poisoned samples; ``poisoned_indices`` is None when every sample is.
    ratio: float
    poisoned_indices: tuple[int, ...] | None
    created: str
    mtlue_version: str
    surrogates: tuple[SurrogateRecord, ...] = ()
    #: Set when the deltas come from a submitted file instead of a registered method.
    submission: SubmissionRecord | None = None
    #: How the method's generation ended; None for a submission (not generated here) and for a
    #: card of format mtlue-poison/1 (made before the record existed).
    convergence: Convergence | None = None
    norm: str = NORM
    file: str = DELTAS_NAME
    format: str = FORMAT

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["image_shape"] = list(self.image_shape)
        data["poisoned_indices"] = None if self.poisoned_indices is None else list(self.poisoned_indices)
        data["surrogates"] = [asdict(record) for record in self.surrogates]
        # Absent rather than null on method stores, so their cards read as before submissions existed.
        if self.submission is None:
            del data["submission"]
        else:
            data["submission"] = asdict(self.submission)
        if self.format == _FORMAT_WITHOUT_CONVERGENCE:
            # A card read from an older store keeps its format and fields when copied (install-submission).
            del data["convergence"]
        else:
            data["convergence"] = None if self.convergence is None else self.convergence.to_json()
        return data

    @classmethod
    def from_json(cls, data: object, source: Path) -> PoisonCard:
        """Parse and type-check a card read from ``source`` (named in every error)."""
        regenerate = "the store is damaged or from another program: delete it and run `mtlue poison` again"
        if not isinstance(data, Mapping):
            raise PoisonError(f"{source} is not a JSON object; {regenerate}")
        version = data.get("format")
        if version not in READABLE_FORMATS:
            raise PoisonError(
                f"{source} has format {version!r}, this version reads {' and '.join(map(repr, READABLE_FORMATS))}; {regenerate}"
            )
        names = {item.name for item in fields(cls)}
        if version == _FORMAT_WITHOUT_CONVERGENCE:
            names.remove("convergence")
        missing = sorted(names - set(data) - {"surrogates", "submission"})
        if missing:
            raise PoisonError(f"{source} lacks {', '.join(missing)}; {regenerate}")
        unknown = sorted(set(data) - names)
        if unknown:
            raise PoisonError(f"{source} has unknown field(s) {', '.join(unknown)}; {regenerate}")
        try:
            card = cls(
                method=_typed(data, "method", str),
                hyperparameters=dict(_typed(data, "hyperparameters", Mapping)),
                epsilon=check_epsilon(data["epsilon"]),
                seed=_typed(data, "seed", int),
                dataset=_typed(data, "dataset", str),
                split=_typed(data, "split", str),
                split_content_hash=_typed(data, "split_content_hash", str),
                samples=_typed(data, "samples", int),
                image_shape=tuple(_int_list(data, "image_shape")),  # type: ignore[arg-type]
                sha256=_typed(data, "sha256", str),
                bytes=_typed(data, "bytes", int),
                max_abs_delta=_typed(data, "max_abs_delta", int),
                ratio=float(_typed(data, "ratio", (int, float))),
                poisoned_indices=(
                    None if data["poisoned_indices"] is None else tuple(_int_list(data, "poisoned_indices"))
                ),
                created=_typed(data, "created", str),
                mtlue_version=_typed(data, "mtlue_version", str),
                surrogates=tuple(_surrogate(item) for item in data.get("surrogates", [])),
                submission=_submission(data.get("submission")),
                convergence=None if data.get("convergence") is None else Convergence.from_json(data["convergence"]),
                norm=_typed(data, "norm", str),
                file=_typed(data, "file", str),
                format=version,
            )
        except PoisonError as error:
            raise PoisonError(f"{source}: {error}; {regenerate}") from None
        if card.norm != NORM:
            raise PoisonError(f"{source} declares norm {card.norm!r}; only {NORM!r} stores exist in this version")
        if len(card.image_shape) != 3:
            raise PoisonError(f"{source}: image_shape {list(card.image_shape)} is not [channels, height, width]")
        if card.file != DELTAS_NAME:
            raise PoisonError(f"{source} points at {card.file!r}; a store's deltas are always {DELTAS_NAME!r}")
        if card.submission is not None and card.convergence is not None:
            raise PoisonError(f"{source} is a submission with a convergence record; a submission was not generated here")
        return card

    def describe(self) -> str:
        share = "all" if self.poisoned_indices is None else f"{len(self.poisoned_indices)}/{self.samples}"
        origin = "" if self.submission is None else f" (submitted as {self.submission.file}, {self.submission.layout})"
        return (
            f"{self.method}{origin} on {self.dataset}/{self.split}: {share} samples poisoned, "
            f"L-inf <= {self.epsilon}/255 (largest |delta| {self.max_abs_delta}/255), seed {self.seed}"
        )

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True)


def _typed(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = data[key]
    # bool is an int subclass; a card with "seed": true is malformed, not seed 1.
    if isinstance(value, bool) or not isinstance(value, kind):
        raise PoisonError(f"field {key!r} has the wrong type ({type(value).__name__})")
    return value


def _int_list(data: Mapping[str, Any], key: str) -> list[int]:
    value = data[key]
    if not isinstance(value, list) or any(isinstance(item, bool) or not isinstance(item, int) for item in value):
        raise PoisonError(f"field {key!r} must be a list of integers")
    return value


def _surrogate(item: object) -> SurrogateRecord:
    if not isinstance(item, Mapping) or set(item) != {"path", "sha256"}:
        raise PoisonError(f"a surrogate entry is not {{path, sha256}}: {item!r}")
    return SurrogateRecord(path=str(item["path"]), sha256=str(item["sha256"]))



def _submission(item: object) -> SubmissionRecord | None:
    if item is None:
        return None
    keys = {"file", "sha256", "bytes", "layout"}
    if not isinstance(item, Mapping) or set(item) != keys:
        raise PoisonError(f"the submission entry is not {{{', '.join(sorted(keys))}}}: {item!r}")
    record = SubmissionRecord(
        file=_typed(item, "file", str),
        sha256=_typed(item, "sha256", str),
        bytes=_typed(item, "bytes", int),
        layout=_typed(item, "layout", str),
    )
    if record.layout not in SUBMISSION_LAYOUTS:
        raise PoisonError(f"submission layout {record.layout!r} is not one of {', '.join(SUBMISSION_LAYOUTS)}")
    return record
