"""Where an entry's numbers come from: the code's commit (the poison's card is read by
:func:`mtlue.report.poison_card`, which the report shares)."""

from __future__ import annotations

import subprocess
from pathlib import Path

__all__ = ["git_commit"]


def git_commit(directory: str | Path | None = None) -> str:
    """The commit checked out where this package's source lives (or ``directory``); ``unknown`` outside git.

    The source's checkout, not the working directory's: an installed copy of mtlue reports
    ``unknown`` rather than the commit of whatever repository it was run from.
    """
    where = Path(directory) if directory is not None else Path(__file__).resolve().parent
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = completed.stdout.strip()
    return commit if completed.returncode == 0 and len(commit) == 40 and all(c in "0123456789abcdef" for c in commit) else "unknown"
