"""Ranking the entries of one (dataset, protocol): lower score = better protection, ties inside the noise.

**Rank** (:func:`entry_ranks`): the tie rule of :mod:`mtlue.report.ties`, the one the report's
tables use, applied to each entry's score at the attacker's best defense (mean, std and seeds
over the protocol): rank = 1 + the number of methods whose score is lower by more than twice the
larger of the two stds; closer methods tie (``ties_with``) and a shared rank is shown as ``=2``.
With one seed nothing is ranked (every rank null, shown as ``–``). ``clean`` is the reference
row: returned apart and never ranked.

**Order** (:func:`rank_entries`): rank, then score ascending, then the undefended score
ascending (the method that also protects without a defense comes first; an entry without
``none`` counts as unbounded), then method name, so the order never depends on file or
dictionary order. Within a tie the order is only a listing, not a claim.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from mtlue.report.collect import CLEAN
from mtlue.report.ties import Estimate, TieRank, rank_labels, tie_ranks

from .schema import LeaderboardError

__all__ = ["entry_ranks", "rank_entries"]


def entry_ranks(entries: Sequence[dict[str, Any]]) -> dict[str, TieRank]:
    """The tie-aware rank of every non-clean entry of one (dataset, protocol), by method."""
    _check_group(entries)
    try:
        estimates = {
            entry["method"]: Estimate(entry["score"], entry["score_std"], entry["n_seeds"])
            for entry in entries if entry["method"] != CLEAN
        }
    except ValueError as error:
        raise LeaderboardError(f"cannot rank the entries of {_group(entries)}: {error}") from None
    return tie_ranks(estimates)


def rank_entries(entries: Sequence[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[tuple[str, dict[str, Any]]]]:
    """(the clean entry or None, [(rank label, entry), ...] best protection first) of one (dataset, protocol).

    Labels are ``1``, ``=2``, ... or ``–`` (not ranked: one seed). Raises LeaderboardError when an
    entry's stored ``rank`` or ``ties_with`` disagrees with what the entries' scores give.
    """
    ranks = entry_ranks(entries)
    for entry in entries:
        expected = ranks.get(entry["method"], TieRank(None, ()))
        stored = (entry.get("rank"), tuple(entry.get("ties_with", ())))
        if stored != (expected.rank, expected.ties_with):
            raise LeaderboardError(
                f"entry {_group(entries)}/{entry['method']} says rank {stored[0]}, ties with {list(stored[1])}, but the "
                f"entries' scores give rank {expected.rank}, ties with {list(expected.ties_with)}: the entries were edited "
                f"or come from different runs; rebuild them with `mtlue leaderboard`"
            )
    labels = rank_labels(ranks)
    reference = next((entry for entry in entries if entry["method"] == CLEAN), None)
    ranked = sorted((entry for entry in entries if entry["method"] != CLEAN), key=lambda entry: _key(entry, ranks[entry["method"]]))
    return reference, [(labels[entry["method"]], entry) for entry in ranked]


def _key(entry: dict[str, Any], ranked: TieRank) -> tuple[float, float, float, str]:
    undefended = entry["undefended_score"]
    rank = math.inf if ranked.rank is None else ranked.rank
    return (rank, entry["score"], math.inf if undefended is None else undefended, entry["method"])


def _check_group(entries: Sequence[dict[str, Any]]) -> None:
    groups = {(entry["dataset"]["name"], entry["protocol"]["name"]) for entry in entries}
    if len(groups) > 1:
        raise LeaderboardError(f"entries are ranked one (dataset, protocol) at a time, got {sorted(groups)}")
    grids = {json.dumps(entry["protocol"], sort_keys=True) for entry in entries}
    if len(grids) > 1:
        raise LeaderboardError(
            f"the entries of {_group(entries)} were measured on {len(grids)} different grids under one protocol name "
            f"({', '.join(sorted(grids))}); one ranking never mixes protocols: give each grid its own --protocol name"
        )
    methods = [entry["method"] for entry in entries]
    duplicates = sorted({method for method in methods if methods.count(method) > 1})
    if duplicates:
        raise LeaderboardError(f"several entries for method(s) {duplicates} in {_group(entries)}")


def _group(entries: Sequence[dict[str, Any]]) -> str:
    names = sorted({f"{entry['dataset']['name']}/{entry['protocol']['name']}" for entry in entries})
    return ", ".join(names) or "(no entries)"
