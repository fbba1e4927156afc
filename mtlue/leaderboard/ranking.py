"""Ranking the entries of one (dataset, protocol): lower score = better protection.

Order: score ascending; ties by the undefended score ascending (the method that also protects
without a defense wins; an entry without ``none`` counts as unbounded), then by method name, so
the order never depends on file or dictionary order. Ranks are positions 1, 2, 3, ... in that
order. ``clean`` is the reference row: returned apart and never ranked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from mtlue.report.collect import CLEAN

from .schema import LeaderboardError

__all__ = ["rank_entries"]


def rank_entries(entries: Sequence[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[tuple[int, dict[str, Any]]]]:
    """(the clean entry or None, [(rank, entry), ...] best protection first) of one (dataset, protocol)."""
    groups = {(entry["dataset"]["name"], entry["protocol"]["name"]) for entry in entries}
    if len(groups) > 1:
        raise LeaderboardError(f"rank_entries ranks one (dataset, protocol) at a time, got {sorted(groups)}")
    methods = [entry["method"] for entry in entries]
    duplicates = sorted({method for method in methods if methods.count(method) > 1})
    if duplicates:
        raise LeaderboardError(f"several entries for method(s) {duplicates} in {next(iter(groups))}")
    reference = next((entry for entry in entries if entry["method"] == CLEAN), None)
    ranked = sorted((entry for entry in entries if entry["method"] != CLEAN), key=_key)
    return reference, list(enumerate(ranked, start=1))


def _key(entry: dict[str, Any]) -> tuple[float, float, str]:
    undefended = entry["undefended_score"]
    return (entry["score"], math.inf if undefended is None else undefended, entry["method"])
