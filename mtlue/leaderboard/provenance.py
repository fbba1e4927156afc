"""Where an entry's numbers come from: the commit its victims ran at (the poison's card is read
by :func:`mtlue.report.poison_card`, which the report shares).

An entry names the code that measured it, not the code that assembled the board: each victim's
``metrics.json`` records the commit it ran at (:func:`mtlue.tracking.provenance.git_commit`, the
function MLflow runs use too, so an entry and the runs it summarises cannot name different
commits). When an entry's victims ran at different commits, or predate that record, its commit
is ``unknown``: a board must not claim a provenance its numbers do not share.
"""

from __future__ import annotations

from collections.abc import Iterable

from mtlue.report.collect import VictimRecord
from mtlue.tracking.provenance import UNKNOWN

__all__ = ["victims_commit"]


def victims_commit(records: Iterable[VictimRecord]) -> str:
    """The one commit every record ran at, else ``unknown``."""
    commits = {record.git_commit for record in records}
    return commits.pop() if len(commits) == 1 and None not in commits else UNKNOWN
