"""Fetching raw dataset files: downloads, checksums, manual-download instructions, extraction.

Every operation here either completes or leaves the file system as it found it:

- ``download`` streams into a temporary file beside the destination, checks the byte count
  against ``Content-Length`` and the content against the checksum, and only then renames it into
  place. An interrupted, truncated or corrupted transfer leaves neither the destination nor the
  temporary file behind.
- ``extract_archive`` unpacks into a temporary folder and moves the result into place only when
  every member has been checked and written; members that would land outside the folder
  (absolute paths, ``..``) and links are refused.
- ``ManualDownloadRequired`` is raised where a licence or a host (Google Drive, Dropbox) needs a
  person: its message lists each file, the official page to fetch it from, the exact path to put
  it at and the checksum it will be checked against.

Only the standard library is used (``urllib``), so fetching a dataset needs no extra dependency.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from mtlue import __version__
from mtlue.io import file_digest
from mtlue.logs import progress_bar

from .store import DatasetError

__all__ = [
    "Checksum",
    "ChecksumError",
    "DownloadError",
    "ManualDownloadRequired",
    "ManualFile",
    "download",
    "extract_archive",
    "file_checksum",
    "parse_checksum",
    "verify_file",
]

logger = logging.getLogger(__name__)

#: Supported checksum algorithms and the length of their hexadecimal digests.
DIGEST_LENGTHS = {"sha256": 64, "md5": 32}
USER_AGENT = f"mtlue/{__version__} (Python urllib)"
_CHUNK = 1 << 20


class DownloadError(DatasetError):
    """A download failed (HTTP error, dropped connection, wrong size or checksum)."""


class ChecksumError(DatasetError):
    """A file on disk does not have the checksum it is published with."""


@dataclass(frozen=True)
class Checksum:
    """An expected digest, written ``"sha256:<hex>"`` or ``"md5:<hex>"`` in configs and code."""

    algorithm: str
    hexdigest: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hexdigest}"

    def matches(self, path: str | os.PathLike[str]) -> bool:
        return _digest_file(path, self.algorithm) == self.hexdigest


def parse_checksum(text: str) -> Checksum:
    """Parse ``"sha256:<hex>"`` or ``"md5:<hex>"``; raise DatasetError on anything else."""
    algorithm, separator, hexdigest = text.strip().partition(":")
    algorithm, hexdigest = algorithm.lower(), hexdigest.lower()
    length = DIGEST_LENGTHS.get(algorithm)
    if not separator or length is None or len(hexdigest) != length or not _is_hex(hexdigest):
        raise DatasetError(f"bad checksum {text!r}: write it as 'sha256:<64 hex digits>' or 'md5:<32 hex digits>'")
    return Checksum(algorithm, hexdigest)


def _is_hex(text: str) -> bool:
    return all(character in "0123456789abcdef" for character in text)


def _digest_file(path: str | os.PathLike[str], algorithm: str) -> str:
    with open(path, "rb") as handle:
        return file_digest(handle, algorithm)


def file_checksum(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """The checksum of a file in the ``"algorithm:hex"`` form that ``verify_file`` accepts."""
    if algorithm not in DIGEST_LENGTHS:
        raise DatasetError(f"unsupported checksum algorithm {algorithm!r}; use one of {sorted(DIGEST_LENGTHS)}")
    return f"{algorithm}:{_digest_file(path, algorithm)}"


def verify_file(path: str | os.PathLike[str], checksum: str, *, source: str | None = None) -> None:
    """Raise ChecksumError unless ``path`` has ``checksum``; ``source`` says where to refetch it."""
    expected = parse_checksum(checksum)
    actual = _digest_file(path, expected.algorithm)
    if actual != expected.hexdigest:
        refetch = f"fetch it again from {source}" if source else "fetch it again from its official source"
        raise ChecksumError(
            f"{path} has {expected.algorithm} {actual}, expected {expected.hexdigest}: the file is "
            f"damaged, truncated or a different version; delete it and {refetch}"
        )


# --------------------------------------------------------------------------------------------
# Downloads


def download(
    url: str,
    dest: str | os.PathLike[str],
    checksum: str | None = None,
    *,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` atomically, verifying its size and (if given) its checksum.

    An existing ``dest`` that matches ``checksum`` is kept without downloading; with no checksum
    any existing ``dest`` is kept, since this function only ever renames complete files into
    place. An existing ``dest`` with the wrong checksum is downloaded again to a temporary file
    and replaced only once the new copy verifies, so a failed retry keeps the old file.
    ``timeout`` bounds each network wait (connecting, every read), not the whole transfer.
    """
    dest = Path(dest)
    expected = parse_checksum(checksum) if checksum else None
    if dest.exists():
        if expected is None:
            logger.info("%s exists; not downloading %s again (no checksum to check it against)", dest, url)
            return dest
        if expected.matches(dest):
            logger.info("%s exists and matches %s; not downloading it again", dest, expected)
            return dest
        logger.warning(
            "%s exists but does not match %s; downloading %s again (the file is replaced only "
            "when the new copy verifies)",
            dest,
            expected,
            url,
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(handle)
    temporary = Path(name)
    try:
        _stream_to_file(url, temporary, expected, timeout, dest)
        os.replace(temporary, dest)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    logger.info("downloaded %s to %s", url, dest)
    return dest


def _stream_to_file(url: str, target: Path, expected: Checksum | None, timeout: float, dest: Path) -> None:
    by_hand = f"or fetch {url} by hand and put it at {dest}"
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    digest = hashlib.new(expected.algorithm) if expected else None
    received = 0
    declared: int | None = None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(target, "wb") as out:
            declared = _content_length(response)
            content_type = response.headers.get("Content-Type", "")
            if content_type.startswith("text/html") and not dest.name.endswith((".html", ".htm")):
                # Drive, Box and Dropbox answer an expired or login-only link with a web page.
                raise DownloadError(
                    f"downloading {url}: the server sent a web page instead of the file (the link "
                    f"may have expired or need a browser); check the link, {by_hand}"
                )
            with progress_bar(total=declared, desc=dest.name, unit="B", unit_scale=True, unit_divisor=1024) as bar:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
                    if digest is not None:
                        digest.update(chunk)
            out.flush()
            os.fsync(out.fileno())
    except urllib.error.HTTPError as error:
        error.close()
        raise DownloadError(
            f"downloading {url}: the server answered HTTP {error.code} {error.reason}; check that "
            f"the URL is still valid, {by_hand}"
        ) from None
    except urllib.error.URLError as error:
        raise DownloadError(
            f"downloading {url}: cannot connect ({error.reason}); check the network connection and run again, {by_hand}"
        ) from None
    except (OSError, http.client.HTTPException) as error:
        raise DownloadError(
            f"downloading {url}: the transfer failed after {received} bytes ({error!r}); run again, {by_hand}"
        ) from None
    if declared is not None and received != declared:
        raise DownloadError(
            f"downloading {url}: the connection closed after {received} of {declared} bytes; run "
            f"again to restart the download, {by_hand}"
        )
    if expected is not None and digest is not None and digest.hexdigest() != expected.hexdigest:
        raise DownloadError(
            f"downloading {url}: the file has {expected.algorithm} {digest.hexdigest()}, expected "
            f"{expected.hexdigest}; the host serves a damaged or different file: run again, and if "
            f"it persists check the source for a new version, {by_hand}"
        )


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------
# Files a person has to fetch


@dataclass(frozen=True)
class ManualFile:
    """One file (or folder) that must be fetched by hand, relative to the raw directory."""

    name: str
    checksum: str | None = None
    #: Another form that is accepted instead, e.g. "or the extracted folder img_align_celeba/".
    alternative: str = ""
    #: A direct link, where the host has one.
    url: str = ""


class ManualDownloadRequired(DatasetError):
    """Raw files are missing and cannot be fetched automatically; the message says how to get them."""

    def __init__(
        self,
        dataset: str,
        *,
        page: str,
        raw_dir: str | os.PathLike[str],
        files: Sequence[ManualFile],
        missing: Sequence[str],
        reason: str,
    ) -> None:
        self.dataset = dataset
        self.page = page
        self.raw_dir = Path(raw_dir).resolve()
        self.files = tuple(files)
        self.missing = tuple(missing)
        lines = [
            f"dataset {dataset!r} needs files that must be downloaded by hand ({reason}); "
            f"missing: {', '.join(self.missing)}.",
            f"To fix: fetch these files from {page} and put them at exactly these paths:",
        ]
        for item in self.files:
            details = [f"checked against {item.checksum}" if item.checksum else "no checksum is published"]
            if item.url:
                details.insert(0, f"direct link {item.url}")
            if item.alternative:
                details.append(item.alternative)
            lines.append(f"  {self.raw_dir / item.name}  ({'; '.join(details)})")
        lines.append("then run the preparation again.")
        super().__init__("\n".join(lines))


# --------------------------------------------------------------------------------------------
# Archives


def extract_archive(archive: str | os.PathLike[str], destination: str | os.PathLike[str]) -> list[Path]:
    """Unpack a zip or tar (optionally gz/bz2/xz) archive into ``destination``; return its top-level entries.

    Members are unpacked into a hidden temporary folder inside ``destination`` and moved into
    place only when all of them are written. Absolute paths, ``..`` components, links and device
    files are refused (the archive is then damaged or malicious), and so is a top-level entry that
    already exists in ``destination``: nothing is ever overwritten.
    """
    archive, destination = Path(archive), Path(destination)
    if not archive.is_file():
        raise DatasetError(f"archive {archive} does not exist; fetch it first")
    destination.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", suffix=".extracting", dir=destination))
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, staging)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, staging)
        else:
            raise DatasetError(
                f"{archive} is neither a zip nor a tar archive (or it is truncated); delete it and fetch it again"
            )
        entries = sorted(staging.iterdir())
        if not entries:
            raise DatasetError(f"{archive} is empty; delete it and fetch it again")
        clashes = [str(destination / entry.name) for entry in entries if (destination / entry.name).exists()]
        if clashes:
            raise DatasetError(
                f"extracting {archive} would overwrite {', '.join(clashes)}; move or delete "
                f"{'it' if len(clashes) == 1 else 'them'} first"
            )
        for entry in entries:
            os.replace(entry, destination / entry.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("extracted %s into %s", archive, destination)
    return [destination / entry.name for entry in entries]


def _checked_member_path(archive: Path, name: str) -> PurePosixPath:
    path = PurePosixPath(name.replace("\\", "/"))
    drive_like = bool(path.parts) and path.parts[0].endswith(":")
    if path.is_absolute() or drive_like or ".." in path.parts:
        raise DatasetError(
            f"{archive} contains the member {name!r}, which would be written outside the "
            f"extraction folder; the archive is damaged or malicious: delete it and fetch it "
            f"again from the official source"
        )
    return path


def _refuse_member(archive: Path, name: str, what: str) -> DatasetError:
    return DatasetError(
        f"{archive} contains {what} {name!r}; datasets never need one, so the archive is damaged or "
        f"not the expected file: delete it and fetch it again from the official source"
    )


def _extract_zip(archive: Path, staging: Path) -> None:
    with zipfile.ZipFile(archive) as bundle:
        for info in bundle.infolist():
            relative = _checked_member_path(archive, info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise _refuse_member(archive, info.filename, "the symbolic link")
            target = staging.joinpath(*relative.parts)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with bundle.open(info) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out, _CHUNK)


def _extract_tar(archive: Path, staging: Path) -> None:
    with tarfile.open(archive, "r:*") as bundle:
        for member in bundle:
            relative = _checked_member_path(archive, member.name)
            if member.issym() or member.islnk():
                raise _refuse_member(archive, member.name, "the link")
            target = staging.joinpath(*relative.parts)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            if not member.isfile():
                raise _refuse_member(archive, member.name, "the special file")
            target.parent.mkdir(parents=True, exist_ok=True)
            source = bundle.extractfile(member)
            assert source is not None  # regular files always have data
            with source, open(target, "wb") as out:
                shutil.copyfileobj(source, out, _CHUNK)
