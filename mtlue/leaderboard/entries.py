"""Leaderboard entries: one per (method, dataset, protocol), computed from measured victims only.

**Score.** For each defense d of the protocol, the per-defense score is the mean headline score
(:mod:`mtlue.report.scores`) over every backbone x weighting x seed of the protocol, with its
sample standard deviation over seeds (of the mean over backbones x weightings, so the std is
seed noise: :mod:`mtlue.leaderboard.measure`). The attacker commits to a defense, not to a lucky
seed or a per-backbone choice, and picks the one with the highest mean (ties go to the defense
listed first, ``none`` first): ``score = max_d mean_{b,w,s} headline(method, b, w, d, s)``.
Lower means better protection.

Beside it, each as mean (``*_score``) and std over seeds (``*_std``; null with one seed, never
0), with the protocol's number of seeds (``n_seeds``): the score at the best defense and the
defense itself, the undefended score (``none``; null when the protocol has no ``none``), the
clean score (the ``clean`` method's score under the same rule and protocol); delta-m at the best
defense; per defense the score, its std, the seeds, the mean delta-m and the number of victims.

**Rank.** ``rank`` and ``ties_with`` come from :func:`mtlue.leaderboard.ranking.entry_ranks`, the
tie rule of :mod:`mtlue.report.ties` applied to the scores at the best defense: rank 1 + the
number of methods better beyond twice the larger std, ``ties_with`` the methods within it. The
clean reference is not ranked (null, no ties), and with one seed nothing is: every rank is null.

**Detail.** Each per-defense cell also holds every task's headline metric (mean ± std over
seeds), and ``per_setting`` the score of every (backbone, weighting, defense) of the grid: the
attack x defense matrix the page shows per method (:mod:`mtlue.leaderboard.measure`).

**Poison.** What the poison's card says about how it was made (:func:`poison_summary`): budget,
norm, ratio, generation seed, hyperparameters, the surrogates' hashes, the submitted file's
record, and the generation time (the sum of the seconds its recorded steps took; null for a
method that records no per-step time, such as a closed-form one, and for a submission). Null
when the victims trained on the unmodified split without a store.

**Convergence.** How the poison's generation ended, from its card without the per-step history
(:mod:`mtlue.poisons.convergence`): a method whose run a cap cut short (``converged`` false) is
marked on the rendered leaderboard. Null when there is no record: victims trained on the
unmodified split without a store, a submitted file, or a card of format mtlue-poison/1.

An entry exists only when every victim of the protocol's grid was measured for the method and
for ``clean``; incomplete methods are reported as skipped, never filled in.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mtlue.report.collect import VictimRecord
from mtlue.report.poisons import poison_card
from mtlue.report.scores import headline_label, headline_name

from mtlue.poisons.card import PoisonCard

from .measure import Skipped, measure
from .protocol import Protocol
from .provenance import victims_commit
from .ranking import entry_ranks
from .schema import ENTRY_FORMAT, validate_entry

__all__ = ["Skipped", "build_entries", "poison_summary"]


def poison_summary(card: PoisonCard | None) -> dict[str, Any] | None:
    """The entry's ``poison`` block from the store's card (module docstring); None without a card."""
    if card is None:
        return None
    history = () if card.convergence is None else card.convergence.history
    seconds = [record["seconds"] for record in history if isinstance(record.get("seconds"), (int, float))]
    return {
        "epsilon": card.epsilon,
        "norm": card.norm,
        "ratio": card.ratio,
        "seed": card.seed,
        "max_abs_delta": card.max_abs_delta,
        "hyperparameters": dict(card.hyperparameters),
        "generation_seconds": float(sum(seconds)) if history and len(seconds) == len(history) else None,
        "surrogate_sha256": [surrogate.sha256 for surrogate in card.surrogates],
        "submission": None if card.submission is None else {
            "file": card.submission.file, "sha256": card.submission.sha256, "bytes": card.submission.bytes,
            "layout": card.submission.layout,
        },
        "created": card.created,
    }


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
    measured = measure(records, protocol, methods)
    clean = measured.clean
    if clean is None:
        return [], measured.skipped
    dataset, tasks = measured.dataset, measured.tasks
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    from mtlue import __version__

    entries = []
    for method, scores in measured.methods.items():
        method_records = [r for r in records if r.method == method and protocol.covers(r)]
        undefended = scores.undefended
        card = poison_card(results, dataset, method, method_records)
        convergence = None if card is None or card.convergence is None else card.convergence.to_json()
        if convergence is not None:
            del convergence["history"]
        entries.append({
            "format": ENTRY_FORMAT,
            "method": method,
            "dataset": {"name": dataset, "tasks": [task.name for task in tasks]},
            "protocol": protocol.to_json(),
            "headline": {"name": headline_name(tasks), "label": headline_label(tasks)},
            "n_seeds": len(protocol.seeds),
            "score": scores.best.score.mean,
            "score_std": scores.best.score.std,
            "best_defense": scores.best_defense,
            "undefended_score": None if undefended is None else undefended.score.mean,
            "undefended_std": None if undefended is None else undefended.score.std,
            "clean_score": clean.best.score.mean,
            "clean_std": clean.best.score.std,
            "delta_m": scores.best.delta_m,
            "per_defense": {defense: cell.to_json() for defense, cell in scores.per_defense.items()},
            "per_setting": [cell.to_json() for cell in scores.per_setting],
            "poison": poison_summary(card),
            "convergence": convergence,
            "provenance": {
                "git_commit": commit or victims_commit(method_records),
                "config_sha256": config_hash,
                "poison_sha256": None if card is None else card.sha256,
                "train_content_hash": records[0].train_content_hash,
                "test_content_hash": records[0].test_content_hash,
                "seeds": list(protocol.seeds),
                "victims": sum(cell.victims for cell in scores.per_defense.values()),
                "date": created,
                "mtlue_version": __version__,
            },
        })
    ranks = entry_ranks(entries)
    for entry in entries:
        ranked = ranks.get(entry["method"])
        entry["rank"] = None if ranked is None else ranked.rank
        entry["ties_with"] = [] if ranked is None else list(ranked.ties_with)
        validate_entry(entry, f"entry {dataset}/{protocol.name}/{entry['method']}")
    return entries, measured.skipped
