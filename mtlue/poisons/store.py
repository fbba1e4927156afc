"""Perturbation stores: one folder per (dataset, method), written atomically, checked on every read.

::

    results/{dataset}/poisons/{method}/
      deltas.safetensors   one int8 tensor "deltas" (N, C, H, W), steps of 1/255, train split order
      card.json            method, hyperparameters, budget, seed, split hash, file sha256, ...

The folder is built under a temporary name and renamed into place, and the card is its last
file, so a store without a card is never taken for a finished one. A read refuses a store whose
file was truncated or altered (size and sha256 against the card), is not safetensors, holds
anything but int8, has the wrong shape, breaks its budget, or was made for another version of
the dataset (split content hash). safetensors, never pickle: loading a store runs no code, and
int8 keeps CelebA's perturbations at 2.4 GB where the release's float32 file took 9.6 GB.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
from safetensors.numpy import save_file

from mtlue import __version__
from mtlue.data.store import PreparedDataset, SplitData
from mtlue.io import atomic_directory, atomic_write_json, file_sha256

from .budget import NORM, check_deltas, check_epsilon, publish
from .card import CARD_NAME, DELTAS_FORMAT, DELTAS_NAME, STORE_OUTPUT, PoisonCard, SubmissionRecord, SurrogateRecord
from .convergence import Convergence
from .errors import PoisonError
from .partial import poisoned_count

__all__ = [
    "POISONED_SPLIT",
    "TENSOR_NAME",
    "PoisonStore",
    "write_store",
    "read_card",
    "read_deltas_file",
    "load_store",
    "check_safetensors_header",
]

#: Unlearnable examples perturb the training split only; victims are scored on the clean test split.
POISONED_SPLIT = "train"
TENSOR_NAME = "deltas"


@dataclass(frozen=True, eq=False)
class PoisonStore:
    """A checked store: its card and its int8 deltas, aligned with the dataset's training split."""

    root: Path
    card: PoisonCard
    deltas: np.ndarray

    def poisoned_mask(self) -> np.ndarray:
        mask = np.zeros(self.card.samples, dtype=bool)
        if self.card.poisoned_indices is None:
            mask[:] = True
        else:
            mask[list(self.card.poisoned_indices)] = True
        return mask

    def published(self, split: SplitData, indices: np.ndarray | slice | Sequence[int]) -> np.ndarray:
        """The uint8 images an attacker downloads for ``indices`` of the (clean) training split."""
        if split.content_hash != self.card.split_content_hash:
            raise PoisonError(
                f"store {self.root} belongs to split hash {self.card.split_content_hash[:12]}, "
                f"not to the split passed ({split.content_hash[:12]}); open both from the same dataset"
            )
        return publish(np.asarray(split.images[indices]), self.deltas[indices])


def write_store(
    out_dir: str | os.PathLike[str],
    deltas: np.ndarray,
    *,
    dataset: PreparedDataset,
    method: str,
    hyperparameters: Mapping[str, Any],
    epsilon: int,
    seed: int,
    ratio: float = 1.0,
    poisoned_indices: Sequence[int] | np.ndarray | None = None,
    surrogates: Sequence[str | os.PathLike[str]] = (),
    submission: SubmissionRecord | None = None,
    convergence: Convergence | None = None,
) -> PoisonStore:
    """Check ``deltas`` against the budget and the training split, then write the store atomically.

    ``poisoned_indices`` lists the perturbed samples when ``ratio`` < 1; every other sample's
    delta must be zero. ``surrogates`` are the model files the method read, recorded by sha256;
    ``submission`` the file a leaderboard submission was made from (``mtlue submit``);
    ``convergence`` how the method's generation ended (None: not generated here).
    """
    out_dir = Path(out_dir)
    epsilon = check_epsilon(epsilon)
    if submission is not None and convergence is not None:
        raise PoisonError("a submitted store records no convergence: it was not generated here; pass convergence=None")
    train = dataset.split(POISONED_SPLIT)
    expected_shape = (len(train), *dataset.image_shape)
    check_deltas(deltas, epsilon=epsilon, shape=expected_shape, what=f"the deltas for {dataset.name!r}")
    indices = _normalise_selection(poisoned_indices, len(train), ratio)
    _check_unselected_are_zero(deltas, indices, what=f"the deltas for {dataset.name!r}")
    try:
        hyperparameters = json.loads(json.dumps(dict(hyperparameters), sort_keys=True))
    except (TypeError, ValueError) as error:
        raise PoisonError(f"the hyperparameters of {method!r} must be JSON values: {error}") from None
    records = tuple(_surrogate_record(Path(path)) for path in surrogates)
    deltas = np.ascontiguousarray(deltas)
    with atomic_directory(out_dir, STORE_OUTPUT) as building:
        deltas_path = building / DELTAS_NAME
        # One metadata key only: safetensors stores metadata in a hash map whose order changes
        # from process to process, so several keys would make identical stores differ in bytes.
        header = json.dumps({"format": DELTAS_FORMAT, "norm": NORM, "epsilon": epsilon, "units": "1/255"}, sort_keys=True)
        save_file({TENSOR_NAME: deltas}, str(deltas_path), metadata={"mtlue": header})
        card = PoisonCard(
            method=method,
            hyperparameters=hyperparameters,
            epsilon=epsilon,
            seed=int(seed),
            dataset=dataset.name,
            split=POISONED_SPLIT,
            split_content_hash=train.content_hash,
            samples=len(train),
            image_shape=tuple(dataset.image_shape),
            sha256=file_sha256(deltas_path),
            bytes=deltas_path.stat().st_size,
            max_abs_delta=_max_abs(deltas),
            ratio=float(ratio),
            poisoned_indices=None if indices is None else tuple(int(index) for index in indices),
            created=_creation_time(),
            mtlue_version=__version__,
            surrogates=records,
            submission=submission,
            convergence=convergence,
        )
        atomic_write_json(building / CARD_NAME, card.to_json())
    return PoisonStore(out_dir, card, deltas)


def read_card(root: str | os.PathLike[str]) -> PoisonCard:
    """The card of a finished store (no other file is read)."""
    root = Path(root)
    path = root / CARD_NAME
    if not path.is_file():
        state = "an unfinished or foreign folder" if root.is_dir() else "missing"
        raise PoisonError(
            f"no finished poison store at {root} ({state}: no {CARD_NAME}); "
            f"generate it with `mtlue poison --data DATASET --method METHOD --out {root}`"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise PoisonError(f"{path} is not valid JSON ({error}); delete {root} and run `mtlue poison` again") from None
    return PoisonCard.from_json(data, path)


def read_deltas_file(
    path: str | os.PathLike[str],
    *,
    expected_sha256: str | None = None,
    expected_bytes: int | None = None,
) -> np.ndarray:
    """Load the int8 ``deltas`` tensor of a safetensors file, checking size, hash and format first.

    Leaderboard submissions, which may also arrive as float deltas or poisoned images, are read
    by ``mtlue.poisons.submissions``.
    """
    path = Path(path)
    if not path.is_file():
        raise PoisonError(f"perturbation file {path} is missing; run `mtlue poison` again to rebuild the store")
    size = path.stat().st_size
    if expected_bytes is not None and size != expected_bytes:
        cause = "truncated" if size < expected_bytes else "longer than written"
        raise PoisonError(
            f"{path} is {cause} ({size} bytes, the card says {expected_bytes}); "
            f"the copy is incomplete or altered: copy it again or regenerate the store"
        )
    if expected_sha256 is not None and file_sha256(path) != expected_sha256:
        raise PoisonError(
            f"{path} fails its sha256 check: the file was changed after the store was written; "
            f"regenerate the store with `mtlue poison` rather than editing it"
        )
    check_safetensors_header(path, fix="regenerate the store with `mtlue poison`")
    try:
        with safetensors.safe_open(str(path), framework="numpy") as handle:
            names = list(handle.keys())
            if names != [TENSOR_NAME]:
                raise PoisonError(
                    f"{path} holds tensor(s) {names}; a perturbation file holds exactly one, named {TENSOR_NAME!r}"
                )
            dtype = handle.get_slice(TENSOR_NAME).get_dtype()
            if dtype != "I8":
                # Refused before loading: a float32 file of dataset size is what this format avoids.
                raise PoisonError(
                    f"{path} stores {dtype} deltas; perturbation files hold int8 steps of 1/255: "
                    f"convert float deltas with mtlue.poisons.quantize(delta, epsilon)"
                )
            return handle.get_tensor(TENSOR_NAME)
    except safetensors.SafetensorError as error:
        raise PoisonError(
            f"{path} is not a valid safetensors file ({error}); perturbations are only read from "
            f"safetensors (never pickle): regenerate the store with `mtlue poison`"
        ) from None


#: Leading bytes of the formats perturbations arrive in by mistake, named in the refusal.
_FOREIGN_FORMATS = (
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"PK\x03\x04", "a zip archive (a NumPy .npz, or a torch.save .pt/.pth file)"),
    (b"PK\x05\x06", "an empty zip archive"),
    (b"\x80", "a Python pickle (pickle.dump, joblib, or an old torch.save)"),
    (b"\x89HDF", "an HDF5 file"),
    (b"\x1f\x8b", "a gzip file"),
)


#: Largest safetensors header (JSON of tensor names, shapes and metadata) read. One tensor's entry
#: and our one metadata key take well under 1 KB; a header of megabytes is metadata padding, which
#: the store would never keep, and parsing it costs memory before anything else is checked.
MAX_HEADER_BYTES = 1 << 20


def check_safetensors_header(path: str | os.PathLike[str], *, fix: str) -> None:
    """Refuse ``path`` unless it starts like safetensors: 8 bytes of header length, then ``{``.

    Reads 9 bytes and nothing else, so a pickle or a zip is named and refused without ever
    being parsed (and never unpickled). ``fix`` is appended to the message.
    """
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(9)
    if len(head) == 9 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size:
        header = int.from_bytes(head[:8], "little")
        if header > MAX_HEADER_BYTES:
            raise PoisonError(
                f"{path} has a safetensors header of {header:,} bytes, above the {MAX_HEADER_BYTES:,} allowed: "
                f"only tensor names, shapes and short metadata belong there; save the file again without the metadata"
            )
        return
    kind = next((name for magic, name in _FOREIGN_FORMATS if head.startswith(magic)), None)
    if kind is None:
        kind = "empty" if size == 0 else "of an unknown format: it lacks the safetensors header"
    else:
        kind = f"{kind}, which is never loaded here"
    raise PoisonError(
        f"{path} is not a valid safetensors file (it is {kind}); perturbations are only read from "
        f"safetensors (never pickle, npy, npz or pt): {fix}"
    )


def load_store(
    root: str | os.PathLike[str],
    dataset: PreparedDataset,
    *,
    max_epsilon: int | None = None,
) -> PoisonStore:
    """Open a store for ``dataset``, refusing anything that does not match it exactly.

    ``max_epsilon`` is the budget the caller allows (a leaderboard protocol); a store made with a
    larger one is refused even if it keeps its own.
    """
    root = Path(root)
    card = read_card(root)
    where = f"poison store {root}"
    if card.split != POISONED_SPLIT:
        raise PoisonError(f"{where} perturbs split {card.split!r}; only the {POISONED_SPLIT!r} split is poisoned")
    train = dataset.split(POISONED_SPLIT)
    if card.split_content_hash != train.content_hash:
        raise PoisonError(
            f"{where} was made for another version of the training split (hash "
            f"{card.split_content_hash[:12]}, dataset {dataset.root} has {train.content_hash[:12]}): its "
            f"deltas would land on the wrong images; regenerate it with "
            f"`mtlue poison --data {dataset.root} --method {card.method} --out {root}`"
        )
    expected_shape = (len(train), *dataset.image_shape)
    if (card.samples, *card.image_shape) != expected_shape:
        raise PoisonError(
            f"{where} declares {card.samples} samples of {list(card.image_shape)}, the training split of "
            f"{dataset.root} has {expected_shape[0]} of {list(expected_shape[1:])}; regenerate the store"
        )
    if max_epsilon is not None and card.epsilon > check_epsilon(max_epsilon):
        raise PoisonError(
            f"{where} was made with a budget of {card.epsilon}/255, more than the {max_epsilon}/255 "
            f"allowed here; regenerate it with --epsilon {max_epsilon}"
        )
    deltas_path = root / DELTAS_NAME
    deltas = read_deltas_file(deltas_path, expected_sha256=card.sha256, expected_bytes=card.bytes)
    check_deltas(deltas, epsilon=card.epsilon, shape=expected_shape, what=str(deltas_path))
    if _max_abs(deltas) != card.max_abs_delta:
        raise PoisonError(
            f"{root / CARD_NAME} says the largest |delta| is {card.max_abs_delta}/255, the file holds "
            f"{_max_abs(deltas)}/255: the card was edited; regenerate the store"
        )
    indices = _normalise_selection(card.poisoned_indices, card.samples, card.ratio)
    _check_unselected_are_zero(deltas, indices, what=str(deltas_path))
    return PoisonStore(root, card, deltas)


def _normalise_selection(
    indices: Sequence[int] | np.ndarray | None, samples: int, ratio: float
) -> np.ndarray | None:
    """Sorted indices of the poisoned samples, or None when every sample is poisoned."""
    count = poisoned_count(samples, ratio)
    if indices is None:
        if count != samples:
            raise PoisonError(
                f"a poison ratio of {ratio} selects {count} of {samples} samples, but no indices were "
                f"given; pass the selection made by mtlue.poisons.poison_mask(samples, ratio, seed)"
            )
        return None
    selection = np.asarray(indices)
    if selection.ndim != 1 or not (selection.size == 0 or np.issubdtype(selection.dtype, np.integer)):
        raise PoisonError(f"poisoned indices must be a 1-D list of integers, got shape {selection.shape}")
    selection = selection.astype(np.int64)
    if selection.size and (selection.min() < 0 or selection.max() >= samples):
        raise PoisonError(f"poisoned indices must lie in 0..{samples - 1}")
    if np.unique(selection).size != selection.size:
        raise PoisonError("poisoned indices repeat a sample")
    if selection.size != count:
        raise PoisonError(
            f"{selection.size} poisoned indices for a ratio of {ratio} of {samples} samples "
            f"(which selects exactly {count})"
        )
    if count == samples:
        return None
    return np.sort(selection)


def _check_unselected_are_zero(deltas: np.ndarray, indices: np.ndarray | None, what: str) -> None:
    if indices is None:
        return
    unselected = np.ones(len(deltas), dtype=bool)
    unselected[indices] = False
    touched = np.flatnonzero(unselected & deltas.reshape(len(deltas), -1).any(axis=1))
    if touched.size:
        raise PoisonError(
            f"{what} perturbs {touched.size} sample(s) outside the poisoned selection (first: "
            f"{touched[:5].tolist()}); zero the deltas of unselected samples"
        )


def _max_abs(deltas: np.ndarray) -> int:
    if deltas.size == 0:
        return 0
    return max(-int(deltas.min()), int(deltas.max()))


def _surrogate_record(path: Path) -> SurrogateRecord:
    if not path.is_file():
        raise PoisonError(f"surrogate file {path} does not exist; train the surrogate first")
    return SurrogateRecord(path=str(path), sha256=file_sha256(path))


def _creation_time() -> str:
    """Now, or SOURCE_DATE_EPOCH when set, so that reruns can produce byte-identical cards."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is not None:
        try:
            moment = datetime.fromtimestamp(int(epoch), tz=timezone.utc)
        except ValueError:
            raise PoisonError(f"SOURCE_DATE_EPOCH must be whole seconds since 1970, got {epoch!r}") from None
    else:
        moment = datetime.now(timezone.utc)
    return moment.isoformat(timespec="seconds")
