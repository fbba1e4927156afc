"""A leaderboard protocol: the victims an entry's score is computed over.

A protocol is a name and its axes: the victim mode, backbones, weightings, defenses and seeds.
Each axis comes from ``--config-json`` (the workflow's resolved config, see
:class:`mtlue.report.selection.Selection`) when it is given, else from the values found among
the dataset's victims. A method enters the protocol's leaderboard only with a victim for every
combination of the axes; the clean baseline must be complete too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any

from mtlue.report.collect import ReportError, VictimRecord, defense_order
from mtlue.report.selection import Selection

__all__ = ["DEFAULT_PROTOCOL", "Protocol", "resolve_protocol"]

DEFAULT_PROTOCOL = "default"


@dataclass(frozen=True)
class Protocol:
    name: str
    mode: str
    backbones: tuple[str, ...]
    weightings: tuple[str, ...]
    defenses: tuple[str, ...]
    seeds: tuple[int, ...]

    def cells(self) -> list[tuple[str, str, str, int]]:
        """Every (backbone, weighting, defense, seed) a complete method has a victim for."""
        return list(product(self.backbones, self.weightings, self.defenses, self.seeds))

    def covers(self, record: VictimRecord) -> bool:
        return (
            record.mode == self.mode and record.backbone in self.backbones and record.weighting in self.weightings
            and record.defense in self.defenses and record.seed in self.seeds
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "mode": self.mode, "backbones": list(self.backbones), "weightings": list(self.weightings),
            "defenses": list(self.defenses), "seeds": list(self.seeds),
        }

    def describe(self) -> str:
        return (
            f"{self.mode} victims; backbones {', '.join(self.backbones)}; weightings {', '.join(self.weightings)}; "
            f"defenses {', '.join(self.defenses)}; seeds {', '.join(map(str, self.seeds))}"
        )


def resolve_protocol(name: str, records: Sequence[VictimRecord], selection: Selection | None = None) -> Protocol:
    """The protocol ``name`` over ``records`` (one dataset's victims), axes as the module docstring says."""
    selection = selection or Selection()
    kept = [record for record in records if selection.keep(record)]
    if not kept:
        raise ReportError(f"protocol {name!r}: no victim matches the configured methods and victim axes")
    modes = sorted({record.mode for record in kept})
    if selection.mode is None and len(modes) > 1:
        raise ReportError(f"protocol {name!r}: victims of modes {modes} are mixed; pass the config (--config-json) to choose one")
    return Protocol(
        name=name,
        mode=selection.mode or modes[0],
        backbones=selection.backbones or _sorted(record.backbone for record in kept),
        weightings=selection.weightings or _sorted(record.weighting for record in kept),
        defenses=selection.defenses or tuple(defense_order(record.defense for record in kept)),
        seeds=selection.seeds or tuple(sorted({record.seed for record in kept})),
    )


def _sorted(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(set(values)))
