"""Validation of leaderboard entries: the shipped JSON Schema, then what a schema cannot say.

The schema (``mtlue/schemas/leaderboard-entry.schema.json``, Draft 2020-12) fixes the fields and
their types and ranges; :func:`validate_entry` also checks that the numbers agree with each other
(the score is the best per-defense score, the best defense achieved it, ...), so a hand-edited
or submitted entry cannot claim a score its own per-defense numbers do not support.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

from mtlue.report.collect import CLEAN, NO_DEFENSE, ReportError

__all__ = ["ENTRY_FORMAT", "LeaderboardError", "entry_schema", "validate_entry"]

#: /2 added ``convergence`` (required). Entries are rebuilt from the results by every
#: ``mtlue leaderboard`` run, so earlier entries are replaced rather than read.
ENTRY_FORMAT = "mtlue-leaderboard-entry/2"
SCHEMA_NAME = "leaderboard-entry.schema.json"
#: Tolerance of the consistency checks: entries store full-precision means.
_TOLERANCE = 1e-9


class LeaderboardError(ReportError):
    """A leaderboard entry is invalid; the message names the entry and the problem."""


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
    provenance = entry["provenance"]
    if sorted(provenance["seeds"]) != sorted(protocol["seeds"]):
        problems.append(f"provenance.seeds {provenance['seeds']} differ from the protocol's seeds {protocol['seeds']}")
    expected = len(protocol["backbones"]) * len(protocol["weightings"]) * len(protocol["seeds"])
    for defense, cell in per_defense.items():
        if cell["victims"] != expected:
            problems.append(f"per_defense.{defense}.victims is {cell['victims']}, the protocol has {expected} victims per defense")
    if provenance["victims"] != expected * len(per_defense):
        problems.append(f"provenance.victims is {provenance['victims']}, the protocol has {expected * len(per_defense)}")
    return problems


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=0, abs_tol=_TOLERANCE)
