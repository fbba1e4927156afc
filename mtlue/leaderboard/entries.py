"""Leaderboard entries: one per (method, dataset, protocol), computed from measured victims only.

**Score.** For each defense d of the protocol, the per-defense score is the mean headline score
(:mod:`mtlue.report.scores`) over every backbone x weighting x seed of the protocol: the
attacker commits to a defense, not to a lucky seed or a per-backbone choice, and the mean is
what they can expect from it. The entry's score is the best per-defense score (the attacker
picks the defense that recovers the most; ties go to the defense listed first, ``none`` first):
``score = max_d mean_{b,w,s} headline(method, b, w, d, s)``. Lower means better protection.

Beside it: the defense that achieved it, the undefended score (``none``; null when the protocol
has no ``none``), the clean score (the ``clean`` method's score under the same rule and
protocol), delta-m at the best defense, and per defense the score, its sample standard deviation
over the same victims (null for one victim), the mean delta-m and the number of victims.

**Convergence.** How the poison's generation ended, from its card without the per-step history
(:mod:`mtlue.poisons.convergence`): a method whose run a cap cut short (``converged`` false) is
marked on the rendered leaderboard. Null when there is no record: victims trained on the
unmodified split without a store, a submitted file, or a card of format mtlue-poison/1.

An entry exists only when every victim of the protocol's grid was measured for the method and
for ``clean``; incomplete methods are reported as skipped, never filled in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mtlue.report.collect import CLEAN, NO_DEFENSE, ReportError, VictimRecord, method_order
from mtlue.report.frame import victim_frame
from mtlue.report.poisons import poison_card
from mtlue.report.scores import headline_label, headline_name

from .protocol import Protocol
from .provenance import git_commit
from .schema import ENTRY_FORMAT, validate_entry

__all__ = ["Skipped", "build_entries"]


@dataclass(frozen=True)
class Skipped:
    """A method without an entry, and why (shown on the rendered leaderboard)."""

    dataset: str
    protocol: str
    method: str
    reason: str


def build_entries(
    results: str | Path,
    records: Sequence[VictimRecord],
    protocol: Protocol,
    methods: Sequence[str] | None = None,
    config_hash: str | None = None,
    commit: str | None = None,
) -> tuple[list[dict[str, Any]], list[Skipped]]:
    """Entries of one dataset's ``records`` under ``protocol`` (validated), and the methods skipped.

    ``methods`` defaults to every method with a victim; ``clean`` is always included, as the
    reference. Raises ReportError for inconsistent inputs (a stale poison card, ...).
    """
    if not records:
        raise ReportError(f"protocol {protocol.name!r}: no victims given")
    dataset = records[0].dataset
    tasks = records[0].tasks
    wanted = method_order([*(methods or {r.method for r in records}), CLEAN])
    # Clean references need the undefended clean victims even when the protocol lists no `none`.
    scored = [r for r in records if r.method in wanted and protocol.covers(r) or (r.method == CLEAN and _reference(r, protocol))]
    if not scored:
        return [], [Skipped(dataset, protocol.name, method, "no victim of the protocol was measured") for method in wanted]
    frame = victim_frame(scored)
    frame = frame[frame["defense"].isin(protocol.defenses)]
    cells = protocol.cells()
    complete, skipped = {}, []
    for method in wanted:
        rows = frame[frame["method"] == method]
        found = set(zip(rows["backbone"], rows["weighting"], rows["defense"], rows["seed"]))
        missing = [cell for cell in cells if cell not in found]
        if missing:
            example = "/".join(map(str, missing[0][:3])) + f"/seed{missing[0][3]}"
            skipped.append(Skipped(dataset, protocol.name, method, f"{len(missing)} of {len(cells)} victims not measured (e.g. {example})"))
        else:
            complete[method] = rows
    if CLEAN not in complete:
        reasons = {item.method: item.reason for item in skipped}
        return [], [
            Skipped(dataset, protocol.name, method, reasons[CLEAN] if method == CLEAN else f"no complete clean baseline ({reasons[CLEAN]})")
            for method in wanted
        ]
    per_defense = {method: _per_defense(rows, protocol) for method, rows in complete.items()}
    clean_score, _ = _best(per_defense[CLEAN], protocol)
    commit = commit or git_commit()
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    from mtlue import __version__

    entries = []
    for method, rows in complete.items():
        score, best = _best(per_defense[method], protocol)
        method_records = [r for r in scored if r.method == method and protocol.covers(r)]
        card = poison_card(results, dataset, method, method_records)
        convergence = None if card is None or card.convergence is None else card.convergence.to_json()
        if convergence is not None:
            del convergence["history"]
        entry = {
            "format": ENTRY_FORMAT,
            "method": method,
            "dataset": {"name": dataset, "tasks": [task.name for task in tasks]},
            "protocol": protocol.to_json(),
            "headline": {"name": headline_name(tasks), "label": headline_label(tasks)},
            "score": score,
            "best_defense": best,
            "undefended_score": per_defense[method][NO_DEFENSE]["score"] if NO_DEFENSE in protocol.defenses else None,
            "clean_score": clean_score,
            "delta_m": per_defense[method][best]["delta_m"],
            "per_defense": per_defense[method],
            "convergence": convergence,
            "provenance": {
                "git_commit": commit,
                "config_sha256": config_hash,
                "poison_sha256": None if card is None else card.sha256,
                "train_content_hash": records[0].train_content_hash,
                "test_content_hash": records[0].test_content_hash,
                "seeds": list(protocol.seeds),
                "victims": len(rows),
                "date": created,
                "mtlue_version": __version__,
            },
        }
        validate_entry(entry, f"entry {dataset}/{protocol.name}/{method}")
        entries.append(entry)
    return entries, skipped


def _reference(record: VictimRecord, protocol: Protocol) -> bool:
    return (
        record.defense == NO_DEFENSE and record.mode == protocol.mode and record.backbone in protocol.backbones
        and record.weighting in protocol.weightings and record.seed in protocol.seeds
    )


def _per_defense(rows: Any, protocol: Protocol) -> dict[str, dict[str, Any]]:
    cells = {}
    for defense in protocol.defenses:
        group = rows[rows["defense"] == defense]
        scores = group["score"].to_numpy(dtype=float)
        deltas = group["delta_m"].to_numpy(dtype=float)
        cells[defense] = {
            "score": float(np.mean(scores)),
            "score_std": float(np.std(scores, ddof=1)) if len(scores) > 1 else None,
            "delta_m": float(np.mean(deltas)) if np.isfinite(deltas).all() else None,
            "victims": int(len(group)),
        }
    return cells


def _best(cells: dict[str, dict[str, Any]], protocol: Protocol) -> tuple[float, str]:
    """The attacker's best per-defense score and its defense; ties go to the earlier defense."""
    best = max(protocol.defenses, key=lambda defense: (cells[defense]["score"], -protocol.defenses.index(defense)))
    score = cells[best]["score"]
    if not math.isfinite(score):
        raise ReportError(f"defense {best!r} has a non-finite score {score}")
    return score, best
