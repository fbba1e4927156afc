"""Where an entry's numbers come from: the code's commit (the poison's card is read by
:func:`mtlue.report.poison_card`, which the report shares).

The commit is the one MLflow runs record (:func:`mtlue.tracking.provenance.git_commit`): one
function, so an entry and the runs it summarises cannot name different commits.
"""

from __future__ import annotations

from mtlue.tracking.provenance import git_commit

__all__ = ["git_commit"]
