"""Which code produced a run: the git commit of the checkout the ``mtlue`` package is imported from.

The commit is looked up next to the package, not in the working directory, so a job started
from anywhere records the code it ran. ``git`` is asked first; without a ``git`` executable the
``.git`` metadata is read directly (worktrees, packed refs); outside a checkout, or on any
failure, the answer is ``"unknown"``: provenance never makes a job fail.
"""

from __future__ import annotations

import re
import subprocess
from functools import lru_cache
from pathlib import Path

__all__ = ["UNKNOWN", "git_commit", "git_dirty"]

UNKNOWN = "unknown"
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_PACKAGE_DIR = Path(__file__).resolve().parent


def _git(*args: str, cwd: Path = _PACKAGE_DIR) -> str | None:
    try:
        completed = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return completed.stdout.strip() if completed.returncode == 0 else None


def _git_dir(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        marker = folder / ".git"
        if marker.is_dir():
            return marker
        if marker.is_file():
            # A worktree or submodule: ".git" holds "gitdir: <path>".
            text = marker.read_text(encoding="utf-8").strip()
            if text.startswith("gitdir:"):
                target = Path(text.removeprefix("gitdir:").strip())
                return target if target.is_absolute() else (folder / target).resolve()
            return None
    return None


def _read_commit(git_dir: Path) -> str | None:
    head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
    if _SHA.match(head):
        return head
    if not head.startswith("ref:"):
        return None
    ref = head.removeprefix("ref:").strip()
    common = git_dir
    if (git_dir / "commondir").is_file():
        common = (git_dir / (git_dir / "commondir").read_text(encoding="utf-8").strip()).resolve()
    for base in (git_dir, common):
        loose = base / ref
        if loose.is_file():
            value = loose.read_text(encoding="utf-8").strip()
            return value if _SHA.match(value) else None
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == ref and _SHA.match(parts[0]):
                return parts[0]
    return None


@lru_cache(maxsize=None)
def git_commit(start: Path = _PACKAGE_DIR) -> str:
    """The full commit hash checked out at ``start`` (default: this package's checkout), or ``"unknown"``."""
    found = _git("rev-parse", "--verify", "HEAD^{commit}", cwd=start)
    if found and _SHA.match(found):
        return found
    try:
        git_dir = _git_dir(Path(start).resolve())
        commit = _read_commit(git_dir) if git_dir is not None else None
    except (OSError, UnicodeDecodeError):
        commit = None
    return commit or UNKNOWN


@lru_cache(maxsize=None)
def git_dirty(start: Path = _PACKAGE_DIR) -> str:
    """``"true"`` when tracked files differ from the commit, ``"false"`` when not, ``"unknown"`` without git."""
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=start)
    if status is None:
        return UNKNOWN
    return "true" if status else "false"
