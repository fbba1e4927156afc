"""The numbers behind the leaderboard: per method and defense, the headline score over a protocol.

Used by the leaderboard entries (:mod:`mtlue.leaderboard.entries`) and by the report's README
summary (:mod:`mtlue.report.summary`), so both quote the same numbers.

**Per-defense score.** For a method and a defense, every seed gives one number: the mean
headline score (:mod:`mtlue.report.scores`) over the protocol's backbones x weightings trained
with that seed. The cell is the :class:`~mtlue.report.ties.Estimate` of these numbers over the
seeds: mean ± sample std and ``n_seeds``. The std is thus seed noise of the very quantity the
leaderboard reports; the spread between backbones or weightings is a property of the victims,
not noise, and does not enter it. On a complete grid the mean equals the mean over every victim
of the cell. Beside it: the mean delta-m over the same victims (None when a victim has no clean
reference), the number of victims, and per task its headline metric under the same rule (mean
over backbones x weightings per seed, then mean ± std over seeds).

**Per setting.** The same estimate for each (backbone, weighting, defense) of the grid alone, so
the page can show the attack x defense matrix per backbone and weighting without recomputing it.

**Best defense.** The attacker picks the defense with the highest *mean* score
(:func:`mtlue.report.scores.attacker_best`; ties go to the defense listed first, ``none``
first): the attacker commits to a defense, not to a lucky seed.

**Completeness.** A method is measured only when every victim of the protocol's grid exists for
it and for ``clean``; incomplete methods are returned as :class:`Skipped`, never filled in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mtlue.data.tasks import Task
from mtlue.report.collect import CLEAN, NO_DEFENSE, ReportError, VictimRecord, method_order
from mtlue.report.frame import victim_frame
from mtlue.report.scores import attacker_best
from mtlue.report.ties import Estimate

from .protocol import Protocol

__all__ = ["DefenseCell", "Measurement", "MethodScores", "SettingCell", "Skipped", "measure"]


@dataclass(frozen=True)
class Skipped:
    """A method without an entry, and why (shown on the rendered leaderboard)."""

    dataset: str
    protocol: str
    method: str
    reason: str


@dataclass(frozen=True)
class DefenseCell:
    """One method under one defense (module docstring)."""

    score: Estimate
    delta_m: float | None
    victims: int
    #: task -> (its headline metric, the estimate of that metric over seeds)
    per_task: dict[str, tuple[str, Estimate]]

    def to_json(self) -> dict[str, Any]:
        return {
            "score": self.score.mean, "score_std": self.score.std, "n_seeds": self.score.n_seeds,
            "delta_m": self.delta_m, "victims": self.victims,
            "per_task": {
                task: {"metric": metric, "score": estimate.mean, "score_std": estimate.std}
                for task, (metric, estimate) in self.per_task.items()
            },
        }


@dataclass(frozen=True)
class SettingCell:
    """One method under one (backbone, weighting, defense) of the grid: its score over seeds."""

    backbone: str
    weighting: str
    defense: str
    score: Estimate

    def to_json(self) -> dict[str, Any]:
        return {
            "backbone": self.backbone, "weighting": self.weighting, "defense": self.defense,
            "score": self.score.mean, "score_std": self.score.std,
        }


@dataclass(frozen=True)
class MethodScores:
    """A complete method: its cell under every defense of the protocol and the attacker's best."""

    method: str
    per_defense: dict[str, DefenseCell]
    best_defense: str
    per_setting: tuple[SettingCell, ...]

    @property
    def best(self) -> DefenseCell:
        return self.per_defense[self.best_defense]

    @property
    def undefended(self) -> DefenseCell | None:
        return self.per_defense.get(NO_DEFENSE)


@dataclass(frozen=True)
class Measurement:
    """One dataset under one protocol: the complete methods (clean first) and the skipped ones."""

    dataset: str
    tasks: tuple[Task, ...]
    protocol: Protocol
    methods: dict[str, MethodScores]
    skipped: list[Skipped]

    @property
    def clean(self) -> MethodScores | None:
        return self.methods.get(CLEAN)


def measure(records: Sequence[VictimRecord], protocol: Protocol, methods: Sequence[str] | None = None) -> Measurement:
    """The complete methods of one dataset's ``records`` under ``protocol``, and the methods skipped.

    ``methods`` defaults to every method with a victim; ``clean`` is always included, as the
    reference, and without a complete clean baseline every method is skipped.
    """
    if not records:
        raise ReportError(f"protocol {protocol.name!r}: no victims given")
    dataset, tasks = records[0].dataset, records[0].tasks
    wanted = method_order([*(methods or {r.method for r in records}), CLEAN])
    # Clean references need the undefended clean victims even when the protocol lists no `none`.
    scored = [r for r in records if r.method in wanted and protocol.covers(r) or (r.method == CLEAN and _reference(r, protocol))]
    if not scored:
        skipped = [Skipped(dataset, protocol.name, method, "no victim of the protocol was measured") for method in wanted]
        return Measurement(dataset, tasks, protocol, {}, skipped)
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
        skipped = [
            Skipped(dataset, protocol.name, method, reasons[CLEAN] if method == CLEAN else f"no complete clean baseline ({reasons[CLEAN]})")
            for method in wanted
        ]
        return Measurement(dataset, tasks, protocol, {}, skipped)
    measured = {}
    for method, rows in complete.items():
        per_defense = {defense: _cell(rows[rows["defense"] == defense], protocol, tasks) for defense in protocol.defenses}
        best = attacker_best({defense: cell.score.mean for defense, cell in per_defense.items()}, protocol.defenses)
        measured[method] = MethodScores(method, per_defense, best, _settings(rows, protocol))
    return Measurement(dataset, tasks, protocol, measured, skipped)


def _reference(record: VictimRecord, protocol: Protocol) -> bool:
    return (
        record.defense == NO_DEFENSE and record.mode == protocol.mode and record.backbone in protocol.backbones
        and record.weighting in protocol.weightings and record.seed in protocol.seeds
    )


def _over_seeds(group: Any, column: str, seeds: Sequence[int]) -> Estimate:
    """Per seed the mean of ``column`` over the group's victims of that seed, then mean ± std over seeds."""
    return Estimate.of(float(group[group["seed"] == seed][column].mean()) for seed in seeds)


def _cell(group: Any, protocol: Protocol, tasks: Sequence[Task]) -> DefenseCell:
    """The cell of one method under one defense: ``group`` holds its victims on the whole grid."""
    deltas = group["delta_m"].to_numpy(dtype=float)
    return DefenseCell(
        score=_over_seeds(group, "score", protocol.seeds),
        delta_m=float(np.mean(deltas)) if np.isfinite(deltas).all() else None,
        victims=int(len(group)),
        per_task={
            task.name: (task.headline_metric, _over_seeds(group, f"metrics/{task.name}/{task.headline_metric}", protocol.seeds))
            for task in tasks
        },
    )


def _settings(rows: Any, protocol: Protocol) -> tuple[SettingCell, ...]:
    """Every (backbone, weighting, defense) of the grid with the method's score over seeds there."""
    return tuple(
        SettingCell(backbone, weighting, defense, _over_seeds(
            rows[(rows["backbone"] == backbone) & (rows["weighting"] == weighting) & (rows["defense"] == defense)], "score", protocol.seeds
        ))
        for backbone in protocol.backbones for weighting in protocol.weightings for defense in protocol.defenses
    )
