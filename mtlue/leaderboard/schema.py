"""Validation of leaderboard entries: the shipped JSON Schema, then what a schema cannot say.

The schema (``mtlue/schemas/leaderboard-entry.schema.json``, Draft 2020-12) fixes the fields and
their types and ranges; :func:`validate_entry` also checks that the numbers agree with each other
(the score is the best per-defense score, the best defense achieved it, its std is that
defense's, every std is null exactly when there is one seed, the clean reference and one-seed
entries carry no rank, ...), so a hand-edited or submitted entry cannot claim a score, or a
rank, its own numbers do not support. Whether the ranks agree *across* entries is checked when
they are ranked together (:func:`mtlue.leaderboard.ranking.rank_entries`).

Format history (:data:`ENTRY_FORMAT`): format 3 has every field of the two formats 2 that were
developed side by side, the stds, ``n_seeds``, ``rank`` and ``ties_with`` of one and the poison's
``convergence`` of the other. Format 4 adds what the page's detail view shows: per-task scores in
each per-defense cell, ``per_setting`` (the attack x defense matrix) and ``poison`` (the card's
budget, hyperparameters and generation time). Earlier formats are not read (rebuild them with
``mtlue leaderboard`` from the same victims).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

from mtlue.errors import LeaderboardError
from mtlue.report.collect import CLEAN, NO_DEFENSE

__all__ = ["ENTRY_FORMAT", "LeaderboardError", "entry_schema", "validate_entry"]

#: /2 was used twice, by two lines of development: one added ``convergence`` (required), the
#: other the stds, ``n_seeds``, ``rank`` and ``ties_with``. /3 is their union, so that a /2 entry
#: of either kind is refused by its format rather than by a missing field. Entries are rebuilt
#: from the results by every ``mtlue leaderboard`` run, so earlier entries are replaced rather
#: than read.
#: /4 adds the detail fields (per-task scores, per_setting, poison).
ENTRY_FORMAT = "mtlue-leaderboard-entry/4"
SCHEMA_NAME = "leaderboard-entry.schema.json"
#: Tolerance of the consistency checks: entries store full-precision means.
_TOLERANCE = 1e-9


@lru_cache(maxsize=1)
def entry_schema() -> dict[str, Any]:
    """The shipped JSON Schema of an entry."""
    return json.loads(resources.files("mtlue").joinpath(f"schemas/{SCHEMA_NAME}").read_text(encoding="utf-8"))


def validate_entry(entry: Any, source: str = "entry") -> None:
    """Raise LeaderboardError naming ``source`` and every problem, if ``entry`` is not a valid entry."""
    from jsonschema import Draft202012Validator, FormatChecker

    validator = Draft202012Validator(entry_schema(), format_checker=FormatChecker())
    problems = [
        f"{'/'.join(map(str, error.absolute_path)) or '(top level)'}: {error.message}"
        for error in sorted(validator.iter_errors(entry), key=lambda error: list(map(str, error.absolute_path)))
    ]
    if not problems:
        try:
            json.dumps(entry, allow_nan=False)
        except ValueError:
            problems = ["a number is NaN or infinite (JSON has neither)"]
    if not problems:
        problems = _inconsistencies(entry)
    if problems:
        raise LeaderboardError(f"{source} is not a valid leaderboard entry: " + "; ".join(problems))


def _inconsistencies(entry: Mapping[str, Any]) -> list[str]:
    problems = []
    protocol, per_defense = entry["protocol"], entry["per_defense"]
    if sorted(per_defense) != sorted(protocol["defenses"]):
        problems.append(f"per_defense has {sorted(per_defense)}, the protocol's defenses are {sorted(protocol['defenses'])}")
        return problems
    best = max(cell["score"] for cell in per_defense.values())
    if not math.isclose(entry["score"], best, rel_tol=0, abs_tol=_TOLERANCE):
        problems.append(f"score {entry['score']} is not the best per-defense score {best}")
    chosen = per_defense.get(entry["best_defense"])
    if chosen is None or not math.isclose(chosen["score"], entry["score"], rel_tol=0, abs_tol=_TOLERANCE):
        problems.append(f"best_defense {entry['best_defense']!r} did not achieve the score {entry['score']}")
    elif not _same(entry["delta_m"], chosen["delta_m"]):
        problems.append(f"delta_m {entry['delta_m']} is not the best defense's delta_m {chosen['delta_m']}")
    undefended = per_defense.get(NO_DEFENSE, {}).get("score")
    if not _same(entry["undefended_score"], undefended):
        problems.append(f"undefended_score {entry['undefended_score']} is not per_defense.{NO_DEFENSE}.score {undefended}")
    if entry["method"] == CLEAN and not math.isclose(entry["score"], entry["clean_score"], rel_tol=0, abs_tol=_TOLERANCE):
        problems.append(f"the clean entry's score {entry['score']} differs from its clean_score {entry['clean_score']}")
    problems += _noise_inconsistencies(entry)
    provenance = entry["provenance"]
    if sorted(provenance["seeds"]) != sorted(protocol["seeds"]):
        problems.append(f"provenance.seeds {provenance['seeds']} differ from the protocol's seeds {protocol['seeds']}")
    expected = len(protocol["backbones"]) * len(protocol["weightings"]) * len(protocol["seeds"])
    for defense, cell in per_defense.items():
        if cell["victims"] != expected:
            problems.append(f"per_defense.{defense}.victims is {cell['victims']}, the protocol has {expected} victims per defense")
    if provenance["victims"] != expected * len(per_defense):
        problems.append(f"provenance.victims is {provenance['victims']}, the protocol has {expected * len(per_defense)}")
    return problems + _detail_inconsistencies(entry)


def _detail_inconsistencies(entry: Mapping[str, Any]) -> list[str]:
    """Per-task scores and the per-setting matrix against the dataset, the grid and the per-defense scores."""
    problems = []
    protocol, per_defense, tasks = entry["protocol"], entry["per_defense"], entry["dataset"]["tasks"]
    for defense, cell in per_defense.items():
        if sorted(cell["per_task"]) != sorted(tasks):
            problems.append(f"per_defense.{defense}.per_task has tasks {sorted(cell['per_task'])}, the dataset's are {sorted(tasks)}")
    settings = [(cell["backbone"], cell["weighting"], cell["defense"]) for cell in entry["per_setting"]]
    grid = [(b, w, d) for b in protocol["backbones"] for w in protocol["weightings"] for d in protocol["defenses"]]
    if sorted(settings) != sorted(grid):
        problems.append(f"per_setting covers {len(set(settings))} of the grid's {len(grid)} (backbone, weighting, defense) settings, or repeats one")
        return problems
    for defense, cell in per_defense.items():
        scores = [setting["score"] for setting in entry["per_setting"] if setting["defense"] == defense]
        mean = sum(scores) / len(scores)
        if not math.isclose(mean, cell["score"], rel_tol=0, abs_tol=1e-6):
            problems.append(f"per_setting's mean under {defense} is {mean}, per_defense.{defense}.score is {cell['score']}")
    return problems


def _noise_inconsistencies(entry: Mapping[str, Any]) -> list[str]:
    """Stds, seeds and the rank fields against each other (module docstring)."""
    problems = []
    protocol, per_defense, seeds = entry["protocol"], entry["per_defense"], entry["n_seeds"]
    if seeds != len(protocol["seeds"]):
        problems.append(f"n_seeds is {seeds}, the protocol has {len(protocol['seeds'])} seeds")
    stds = {"score_std": entry["score_std"], "clean_std": entry["clean_std"]}
    if entry["undefended_score"] is not None:
        stds["undefended_std"] = entry["undefended_std"]
    elif entry["undefended_std"] is not None:
        problems.append("undefended_std is given but undefended_score is null")
    for defense, cell in per_defense.items():
        if cell["n_seeds"] != seeds:
            problems.append(f"per_defense.{defense}.n_seeds is {cell['n_seeds']}, the entry has {seeds} seeds")
        stds[f"per_defense.{defense}.score_std"] = cell["score_std"]
    for name, std in stds.items():
        if (std is None) != (seeds < 2):
            problems.append(f"{name} is {std!r}: with {seeds} seed(s) it must be {'null' if seeds < 2 else 'a number'}")
    chosen = per_defense.get(entry["best_defense"])
    if chosen is not None and not _same(entry["score_std"], chosen["score_std"]):
        problems.append(f"score_std {entry['score_std']} is not the best defense's score_std {chosen['score_std']}")
    undefended = per_defense.get(NO_DEFENSE)
    if undefended is not None and not _same(entry["undefended_std"], undefended["score_std"]):
        problems.append(f"undefended_std {entry['undefended_std']} is not per_defense.{NO_DEFENSE}.score_std {undefended['score_std']}")
    if entry["method"] == CLEAN and not _same(entry["clean_std"], entry["score_std"]):
        problems.append(f"the clean entry's score_std {entry['score_std']} differs from its clean_std {entry['clean_std']}")
    if entry["method"] == CLEAN and (entry["rank"] is not None or entry["ties_with"]):
        problems.append("the clean entry is the reference: its rank must be null and ties_with empty")
    elif entry["method"] != CLEAN and (entry["rank"] is None) != (seeds < 2):
        problems.append(
            f"rank is {entry['rank']!r}: with {seeds} seed(s) it must be "
            f"{'null (one seed cannot be told from noise)' if seeds < 2 else 'an integer'}"
        )
    if entry["method"] in entry["ties_with"] or CLEAN in entry["ties_with"]:
        problems.append(f"ties_with {entry['ties_with']} names the entry itself or the clean reference")
    if entry["ties_with"] != sorted(entry["ties_with"]):
        problems.append(f"ties_with {entry['ties_with']} is not sorted")
    return problems


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=0, abs_tol=_TOLERANCE)
