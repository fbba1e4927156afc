"""Atomic file output, output-path checks and content hashing.

Every file the project writes for another step to read goes through here, so that a job killed
half-way leaves either the previous file or nothing, never a truncated one that a rerun would
take for finished work.

Outputs never destroy a user's files. A command that writes a folder describes its output as a
:class:`FolderOutput` (the marker file its earlier output is recognised by, and the files that
output holds) and checks ``--out`` with :func:`check_output_dir` before any work: a folder is
accepted when it is new, empty, or exactly an earlier output of the same command, which
:func:`atomic_directory` then replaces whole. A command that writes one file checks it with
:func:`check_output_file`. Neither accepts an ``--out`` that is, holds or lies inside one of the
command's inputs. Failures are :class:`OutputError`, one line naming the path and the fix.

A job killed by ``kill -9`` leaves its temporary sibling (``.NAME.XXXXXXXX.tmp``) behind; the
next write of the same path removes it (:func:`remove_orphans`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from mtlue.errors import OutputError

__all__ = [
    "FolderOutput",
    "OutputError",
    "atomic_write",
    "atomic_write_json",
    "atomic_directory",
    "check_output_dir",
    "check_output_file",
    "file_sha256",
    "file_digest",
    "is_png",
    "remove_orphans",
]


_CHUNK = 1 << 20


def _orphan_pattern(name: str) -> re.Pattern[str]:
    # mkstemp / mkdtemp add 8 characters of [a-z0-9_] between our prefix and suffix.
    return re.compile(rf"\.{re.escape(name)}\.[a-z0-9_]{{8}}\.(tmp|old)")


def remove_orphans(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the temporary siblings a killed write of ``path`` left behind; return them.

    Only names of the exact form this module creates for ``path`` (``.NAME.XXXXXXXX.tmp`` and
    ``.NAME.XXXXXXXX.old``) are touched; a live write of the same path at the same time is not
    something the workflow does (Snakemake runs each output's job once).
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    pattern = _orphan_pattern(path.name)
    removed = []
    for sibling in path.parent.iterdir():
        if pattern.fullmatch(sibling.name):
            if sibling.is_dir() and not sibling.is_symlink():
                shutil.rmtree(sibling, ignore_errors=True)
            else:
                sibling.unlink(missing_ok=True)
            removed.append(sibling)
    return removed


@dataclass(frozen=True)
class FolderOutput:
    """What a command's output folder holds, so an earlier output can be told from a user's files.

    ``marker`` is a JSON file at the folder's top whose ``format`` starts with ``format_prefix``;
    the output holds the marker, the ``fixed`` files and the files ``listed`` returns from the
    marker's content (relative POSIX paths). A folder with any other file is not this output.
    """

    what: str
    marker: str
    format_prefix: str
    fixed: tuple[str, ...] = ()
    listed: Callable[[dict[str, Any]], Iterable[str]] = field(default=lambda data: ())

    def owned_files(self, folder: Path) -> set[str] | None:
        """The files an earlier output in ``folder`` may hold, or None when ``folder`` has no valid marker."""
        try:
            data = json.loads((folder / self.marker).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or not str(data.get("format", "")).startswith(self.format_prefix):
            return None
        try:
            listed = {str(item) for item in self.listed(data)}
        except (KeyError, TypeError, AttributeError):
            return None
        return {self.marker, *self.fixed, *listed}


def _same_or_nested(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def _resolved(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.abspath(os.path.realpath(path)))


def _check_not_an_input(path: Path, inputs: Sequence[tuple[str, str | os.PathLike[str] | None]], flag: str) -> None:
    target = _resolved(path)
    for name, given in inputs:
        if given is None:
            continue
        source = _resolved(given)
        if _same_or_nested(target, source):
            relation = "is" if target == source else ("lies inside" if source in target.parents else "holds")
            raise OutputError(
                f"{flag} {path} {relation} the input {name} {given}; write the output to a path of its own"
            )


def _check_writable_parent(path: Path, flag: str) -> None:
    """The nearest existing ancestor of ``path`` must be a folder this process can write in."""
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"{flag} {path}: {parent} is a file, not a folder; choose an output path under a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{flag} {path}: no permission to write in {parent}; choose a folder you can write to")


def check_output_dir(
    path: str | os.PathLike[str],
    output: FolderOutput,
    *,
    inputs: Sequence[tuple[str, str | os.PathLike[str] | None]] = (),
    flag: str = "--out",
) -> Path:
    """Refuse ``path`` as the output folder of ``output`` unless writing it loses nothing (OutputError).

    Accepted: a new path under a writable folder, an empty folder, or an earlier output of the same
    kind holding nothing else. ``inputs`` are (flag, path) pairs of the command's inputs, which
    the output may not be, hold or lie inside.
    """
    path = Path(path)
    _check_not_an_input(path, inputs, flag)
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise OutputError(
            f"{flag} {path} is a file, not a folder; pass a new or empty folder for the {output.what}"
        )
    _check_writable_parent(path, flag)
    if not path.exists():
        return path
    entries = [entry for entry in path.rglob("*") if not entry.is_dir() or entry.is_symlink()]
    if not entries:
        return path
    owned = output.owned_files(path)
    foreign = sorted(entry.relative_to(path).as_posix() for entry in entries if owned is None or entry.relative_to(path).as_posix() not in owned)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        why = f"no {output.marker} of a {output.what}" if owned is None else f"files that are not part of its {output.what}"
        raise OutputError(
            f"{flag} {path} is not empty and holds {why} ({shown}); it would be replaced whole: "
            f"pass a new or empty folder, or move those files out"
        )
    return path


def check_output_file(
    path: str | os.PathLike[str],
    *,
    what: str,
    inputs: Sequence[tuple[str, str | os.PathLike[str] | None]] = (),
    replaceable: Callable[[Path], bool] | None = None,
    example: str = "out",
    flag: str = "--out",
) -> Path:
    """Refuse ``path`` as the output file ``what`` unless writing it loses nothing (OutputError).

    Accepted: a new path under a writable folder, or an existing file that ``replaceable`` says is
    an earlier output of the same kind (without ``replaceable``, any existing file is kept).
    """
    path = Path(path)
    _check_not_an_input(path, inputs, flag)
    if path.is_dir():
        raise OutputError(f"{flag} {path} is a folder; pass the path of the {what} file to write, e.g. {path / example}")
    _check_writable_parent(path, flag)
    if path.exists() and (replaceable is None or not replaceable(path)):
        raise OutputError(
            f"{flag} {path} exists and is not an earlier {what}; pass a new path or move that file away"
        )
    return path


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def is_png(path: Path) -> bool:
    """Whether ``path`` is a PNG file (an earlier picture a command may redraw)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(len(_PNG_SIGNATURE)) == _PNG_SIGNATURE
    except OSError:
        return False


def _temporary_sibling(path: Path, suffix: str = "") -> Path:
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(handle)
    return Path(name)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w") -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success fsync it and rename it onto ``path``."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write supports modes 'w' and 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(path)
    temporary = _temporary_sibling(path)
    try:
        with open(temporary, mode, encoding=None if "b" in mode else "utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike[str], data: Any) -> None:
    with atomic_write(path) as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str], output: FolderOutput | None = None) -> Iterator[Path]:
    """Build a directory under a temporary name; on success it replaces ``path`` whole.

    An existing ``path`` (a previous preparation, or the empty folder Snakemake makes for an
    output) stays untouched until the new directory is complete. With ``output``, ``path`` is
    checked (:func:`check_output_dir`) on entry and again just before it is replaced, so files a
    user put there meanwhile are not lost either.
    """
    path = Path(path)
    if output is not None:
        check_output_dir(path, output)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(path)
    building = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield building
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    if output is not None:
        try:
            check_output_dir(path, output)
        except OutputError:
            shutil.rmtree(building, ignore_errors=True)
            raise
    retired = None
    if path.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
        os.replace(path, retired / path.name)
    os.replace(building, path)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def file_digest(handle: BinaryIO, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    for chunk in iter(lambda: handle.read(_CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    with open(path, "rb") as handle:
        return file_digest(handle)
