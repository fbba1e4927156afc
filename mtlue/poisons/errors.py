"""The error every poison-store check raises."""

from __future__ import annotations

from mtlue.data.store import DatasetError

__all__ = ["PoisonError"]


class PoisonError(DatasetError):
    """A perturbation store (or a perturbation array) is invalid; the message names the cause and the fix.

    A poison store is the published half of a dataset, so this is a ``DatasetError``: the command
    line reports both the same way, as one line and exit status 2.
    """
