"""The error every poison-store check raises (defined in :mod:`mtlue.errors`)."""

from __future__ import annotations

from mtlue.errors import PoisonError, SubmissionError

__all__ = ["PoisonError", "SubmissionError"]
