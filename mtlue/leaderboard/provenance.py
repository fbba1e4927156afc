"""Where an entry's numbers come from: the code's commit and the poison's content hash."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from pathlib import Path

from mtlue.report.collect import CLEAN, ReportError, VictimRecord

__all__ = ["git_commit", "poison_sha256"]


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


def poison_sha256(results: str | Path, dataset: str, method: str, records: Sequence[VictimRecord]) -> str | None:
    """The deltas' sha256 from the method's card, checked against the images every victim trained on.

    None when the victims trained on the unmodified split without a store (``train_images`` =
    ``clean``); a victim trained on another version of the poison than the card describes is
    an error, since the entry would attribute its score to the wrong perturbations.
    """
    from mtlue.poisons.card import CARD_NAME, PoisonCard
    from mtlue.poisons.errors import PoisonError

    trained_on = sorted({record.train_images for record in records})
    card_path = Path(results) / dataset / "poisons" / method / CARD_NAME
    if trained_on == [CLEAN] and not card_path.exists():
        return None
    try:
        card = PoisonCard.from_json(json.loads(card_path.read_text(encoding="utf-8")), card_path)
    except FileNotFoundError:
        raise ReportError(
            f"victims of {dataset}/{method} trained on {trained_on[0]!r} but there is no poison card at {card_path}; "
            f"the entry needs the card's hash: restore the store or rerun `mtlue poison`"
        ) from None
    except (OSError, json.JSONDecodeError, PoisonError) as error:
        raise ReportError(f"poison card {card_path} cannot be read: {error}") from None
    expected = f"{card.method}:{card.sha256}"
    stale = [str(record.path) for record in records if record.train_images != expected]
    if card.method != method or stale:
        raise ReportError(
            f"{len(stale)} victim(s) of {dataset}/{method} did not train on the poison {card_path} describes ({expected[:24]}...), "
            f"e.g. {stale[0] if stale else card_path}; the store was regenerated after they ran: rerun those victims"
        )
    return card.sha256
