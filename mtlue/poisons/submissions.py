"""Leaderboard submissions: a perturbation file for the canonical training split, checked and stored.

A submitted file is one safetensors file holding exactly one tensor, aligned with the prepared
training split (``resources/data/{dataset}/train/ids.txt`` gives the sample order)::

    deltas  int8     (N, C, H, W)  steps of 1/255: the image published is clip(x + delta, 0, 255)
    deltas  float16/32/64          the same in [0, 1] pixel units (8/255 = 0.0314); rounded to the
                                   nearest 1/255 step, halves to even, THEN checked (never clipped)
    images  uint8    (N, C, H, W)  the poisoned images themselves; delta = images - clean

``submit_file`` checks it (format, tensors, dtype, shape, finiteness, budget, name) and writes an
ordinary perturbation store, the form ``mtlue poison`` writes, whose card records the submission
(file name, sha256, layout). Stores live by convention at::

    submissions/{dataset}/{name}/{card.json,deltas.safetensors}

and ``install_submission`` re-verifies one (the folder can be edited by hand) and copies it to
``results/{dataset}/poisons/{name}/``, where the victims read every method's store.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors

from mtlue.data.store import PreparedDataset
from mtlue.io import atomic_directory, atomic_write_json, file_sha256

from .budget import DEFAULT_EPSILON, check_budget, check_epsilon, max_abs_per_sample, round_to_steps
from .card import CARD_NAME, DELTAS_NAME, STORE_OUTPUT, PoisonCard, SubmissionRecord
from .errors import PoisonError
from .store import POISONED_SPLIT, PoisonStore, check_safetensors_header, load_store, read_card, write_store

__all__ = [
    "SUBMISSIONS_ROOT",
    "DELTAS_TENSOR",
    "IMAGES_TENSOR",
    "SubmittedTensor",
    "check_submission_name",
    "read_submission",
    "submit_file",
    "submission_dir",
    "list_submissions",
    "install_submission",
]

#: Where ``mtlue submit`` puts stores by default, relative to the repository root.
SUBMISSIONS_ROOT = "submissions"
DELTAS_TENSOR = "deltas"
IMAGES_TENSOR = "images"
_FLOATS = ("F16", "F32", "F64")
_ITEM_BYTES = {"I8": 1, "U8": 1, "F16": 2, "F32": 4, "F64": 8}
#: Samples are read this many bytes at a time, so a float32 file of CelebA's size (9.6 GB) is
#: never held in memory whole; only the int8 result (a quarter of it) is.
_CHUNK_BYTES = 1 << 26
_FORMAT_HELP = (
    "a submission holds exactly one tensor: 'deltas' (int8 steps of 1/255, or float in [0, 1] pixel "
    "units) or 'images' (the poisoned uint8 images); see SUBMITTING.md"
)


@dataclass(frozen=True)
class SubmittedTensor:
    """A submitted file read and converted: its int8 deltas and how they were given."""

    deltas: np.ndarray
    layout: str


def check_submission_name(name: str) -> str:
    """Return ``name`` if it can name a new method: a valid method name no method has taken."""
    from mtlue.methods.registry import METHOD_NAME_RULE, is_valid_method_name, list_methods

    if not is_valid_method_name(name):
        raise PoisonError(
            f"submission name {name!r} is not a valid method name: names are {METHOD_NAME_RULE}; "
            f"pass e.g. --name my-ue"
        )
    if name in list_methods():
        raise PoisonError(
            f"submission name {name!r} is already a method of the benchmark (built-in or an installed "
            f"plugin, see `mtlue list methods`); its results would be mixed with that method's: choose another --name"
        )
    return name


def read_submission(
    path: str | os.PathLike[str], dataset: PreparedDataset, *, epsilon: int = DEFAULT_EPSILON
) -> SubmittedTensor:
    """Check a submitted file against ``dataset``'s training split and return its int8 deltas.

    Nothing but the safetensors header is parsed before the format, tensor name, dtype and shape
    are known to be right; the values are then read in chunks, checked for NaN/inf, rounded (float
    deltas) or differenced against the clean images (poisoned images), and the budget is checked
    on the result, naming the sample with the largest violation.
    """
    path = Path(path)
    epsilon = check_epsilon(epsilon)
    if not path.is_file():
        raise PoisonError(f"submitted file {path} does not exist (or is not a file); check the path")
    check_safetensors_header(path, fix=f"save the tensor with safetensors.numpy.save_file; {_FORMAT_HELP}")
    train = dataset.split(POISONED_SPLIT)
    expected = (len(train), *dataset.image_shape)
    try:
        with safetensors.safe_open(str(path), framework="numpy") as handle:
            name, layout = _tensor_layout(path, list(handle.keys()), handle)
            tensor = handle.get_slice(name)
            _check_shape(path, name, tuple(tensor.get_shape()), expected, dataset)
            return SubmittedTensor(_convert(path, tensor, name, layout, train.images, epsilon), layout)
    except safetensors.SafetensorError as error:
        raise PoisonError(
            f"{path} is not a valid safetensors file ({error}); save it again with "
            f"safetensors.numpy.save_file; {_FORMAT_HELP}"
        ) from None


def submit_file(
    path: str | os.PathLike[str],
    *,
    dataset: PreparedDataset,
    name: str,
    out_dir: str | os.PathLike[str],
    epsilon: int = DEFAULT_EPSILON,
) -> PoisonStore:
    """Check the submitted file at ``path`` and write it as the perturbation store ``out_dir``.

    The card names the method ``name``, records the file's sha256 and layout, and its creation
    time is the submission date (``SOURCE_DATE_EPOCH`` when set).
    """
    path = Path(path)
    name = check_submission_name(name)
    if not path.is_file():
        raise PoisonError(f"submitted file {path} does not exist (or is not a file); check the path")
    sha256_before = file_sha256(path)
    submitted = read_submission(path, dataset, epsilon=epsilon)
    # The hash recorded must be of the bytes that were checked, not of a file replaced meanwhile.
    if file_sha256(path) != sha256_before:
        raise PoisonError(f"{path} changed while it was being checked; submit it again once it is written")
    record = SubmissionRecord(file=path.name, sha256=sha256_before, bytes=path.stat().st_size, layout=submitted.layout)
    return write_store(
        out_dir,
        submitted.deltas,
        dataset=dataset,
        method=name,
        hyperparameters={},
        epsilon=epsilon,
        # A submission is taken as given: no seed of ours made it, and every sample is its own.
        seed=0,
        submission=record,
    )


def submission_dir(root: str | os.PathLike[str], dataset: str, name: str) -> Path:
    """The folder of submission ``name`` for ``dataset`` under ``root`` (``submissions/``)."""
    return Path(root) / dataset / name


def list_submissions(root: str | os.PathLike[str], dataset: str) -> list[str]:
    """Sorted names of the finished submissions for ``dataset`` under ``root``.

    Reads only the cards. Folders whose name starts with '.' are the temporary ones of a store
    being written and are skipped; any other folder must be a submission store whose card names
    it, so a stray or renamed folder stops the workflow with its path instead of being ignored.
    """
    folder = Path(root) / dataset
    if not folder.is_dir():
        return []
    names = []
    for child in sorted(folder.iterdir()):
        if child.name.startswith(".") or not child.is_dir():
            continue
        _check_submission_card(child, dataset)
        names.append(child.name)
    return names


def install_submission(
    submission: str | os.PathLike[str],
    dataset: PreparedDataset,
    out_dir: str | os.PathLike[str],
    *,
    max_epsilon: int = DEFAULT_EPSILON,
) -> PoisonStore:
    """Re-verify the submission store ``submission`` and copy it to ``out_dir`` byte for byte.

    Verified again, since ``submissions/`` can be edited by hand: the card (a submission, named
    like its folder, a name no method has taken since), the split hash of ``dataset``, the file's
    size and sha256 and its budget (at most ``max_epsilon``, the protocol's, whatever the card
    claims). ``out_dir`` must be named after the submission, as results/{dataset}/poisons/{name}.
    """
    submission, out_dir = Path(submission), Path(out_dir)
    card = _check_submission_card(submission, dataset.name)
    check_submission_name(card.method)
    if out_dir.name != card.method:
        raise PoisonError(
            f"--out {out_dir} must be the folder named after the submission, e.g. "
            f"results/{dataset.name}/poisons/{card.method}: the victims and tables name methods by folder"
        )
    store = load_store(submission, dataset, max_epsilon=max_epsilon)
    with atomic_directory(out_dir, STORE_OUTPUT) as building:
        shutil.copyfile(submission / DELTAS_NAME, building / DELTAS_NAME)
        # Compared with the card load_store checked: the copy must be the bytes just verified.
        if file_sha256(building / DELTAS_NAME) != store.card.sha256:
            raise PoisonError(
                f"{submission / DELTAS_NAME} changed while it was being installed; install it again"
            )
        atomic_write_json(building / CARD_NAME, store.card.to_json())
    return PoisonStore(out_dir, store.card, store.deltas)


def _check_submission_card(folder: Path, dataset: str) -> PoisonCard:
    card = read_card(folder)
    where = f"{folder / CARD_NAME}"
    if card.submission is None:
        raise PoisonError(
            f"{where} is the store of method {card.method!r}, not a submission; submission folders hold "
            f"only what `mtlue submit` writes: move it out of {folder.parent}"
        )
    if card.method != folder.name:
        raise PoisonError(
            f"{where} names the submission {card.method!r} but lies in folder {folder.name!r} (renamed by "
            f"hand?); rename the folder back to {card.method!r} or submit the file again with --name {folder.name}"
        )
    if card.dataset != dataset:
        raise PoisonError(
            f"{where} is a submission for dataset {card.dataset!r}, not {dataset!r}; move it to "
            f"{folder.parent.parent / card.dataset / folder.name}"
        )
    return card


def _tensor_layout(path: Path, names: list[str], handle) -> tuple[str, str]:
    known = [name for name in names if name in (DELTAS_TENSOR, IMAGES_TENSOR)]
    if not known:
        raise PoisonError(f"{path} holds tensor(s) {sorted(names)} but no 'deltas' or 'images'; {_FORMAT_HELP}")
    extra = sorted(set(names) - {known[0]})
    if extra:
        raise PoisonError(
            f"{path} holds extra tensor(s) {extra} besides {known[0]!r}; {_FORMAT_HELP}: save only that one"
        )
    name = known[0]
    dtype = handle.get_slice(name).get_dtype()
    if name == IMAGES_TENSOR:
        if dtype != "U8":
            raise PoisonError(
                f"{path} stores {IMAGES_TENSOR!r} as {dtype}; poisoned images are uint8 (0..255) as "
                f"published: convert with np.clip(np.rint(x * 255), 0, 255).astype(np.uint8), or submit "
                f"the perturbation as 'deltas' instead"
            )
        return name, "uint8-images"
    if dtype == "I8":
        return name, "int8-deltas"
    if dtype in _FLOATS:
        return name, "float-deltas"
    hint = " (uint8 is for poisoned images: name that tensor 'images')" if dtype == "U8" else ""
    raise PoisonError(
        f"{path} stores {DELTAS_TENSOR!r} as {dtype}{hint}; deltas are int8 steps of 1/255 or "
        f"float16/float32/float64 in [0, 1] pixel units: convert with .astype(np.int8) or .astype(np.float32)"
    )


def _check_shape(
    path: Path, name: str, shape: tuple[int, ...], expected: tuple[int, ...], dataset: PreparedDataset
) -> None:
    if len(shape) != 4:
        raise PoisonError(
            f"{path}: {name!r} has shape {list(shape)}, expected 4 dimensions (samples, channels, height, "
            f"width) = {list(expected)}"
        )
    if shape[0] != expected[0]:
        raise PoisonError(
            f"{path}: {name!r} holds {shape[0]} samples, the {POISONED_SPLIT} split of {dataset.name!r} "
            f"has {expected[0]}; give one entry per training sample, in the order of "
            f"{dataset.root / POISONED_SPLIT / 'ids.txt'}"
        )
    if tuple(shape[1:]) != tuple(expected[1:]):
        raise PoisonError(
            f"{path}: {name!r} has per-sample shape {list(shape[1:])}, the stored images of "
            f"{dataset.name!r} are {list(expected[1:])} (channels, height, width, before any crop): "
            f"make the perturbation at the stored resolution"
        )


def _convert(path: Path, tensor, name: str, layout: str, clean: np.ndarray, epsilon: int) -> np.ndarray:
    shape = tuple(tensor.get_shape())
    samples = shape[0]
    chunk = max(1, _CHUNK_BYTES // max(1, int(np.prod(shape[1:])) * _ITEM_BYTES[tensor.get_dtype()]))
    deltas = np.empty(shape, dtype=np.int8)
    max_abs = np.zeros(samples, dtype=np.float64)
    values_over = 0
    what = f"{path} ({name!r})"
    for start in range(0, samples, chunk):
        stop = min(samples, start + chunk)
        values = tensor[start:stop]
        if layout == "float-deltas":
            steps = round_to_steps(
                values, what=what, first_sample=start, fix="a perturbation must be finite: fix the method that produced it"
            )
        elif layout == "uint8-images":
            steps = values.astype(np.int16) - np.asarray(clean[start:stop]).astype(np.int16)
        else:
            steps = values
        max_abs[start:stop] = max_abs_per_sample(steps)
        values_over += int(np.count_nonzero((steps < -epsilon) | (steps > epsilon)))
        if values_over == 0:
            deltas[start:stop] = steps.astype(np.int8)
    units = {
        "float-deltas": " after rounding to 1/255 steps (float deltas are in [0, 1] pixel units: 8/255 = 0.0314, not 8)",
        "uint8-images": " as |poisoned image - clean image|",
        "int8-deltas": "",
    }[layout]
    check_budget(
        max_abs,
        epsilon=epsilon,
        values_over=values_over,
        what=f"{what}{units}",
        fix=f"keep every |delta| within {epsilon}/255 (for example with mtlue.poisons.quantize(delta, {epsilon}))",
    )
    return deltas
