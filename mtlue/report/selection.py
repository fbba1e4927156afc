"""Which victims a report or leaderboard counts, from the workflow's resolved config.

``--config-json FILE`` is the resolved workflow config (``mtlue check-config --print``, as JSON);
from it a :class:`Selection` keeps the configured methods (``poisons.methods``) and victims
(``victims.backbones``, ``weightings``, ``defenses``, ``seeds``, ``mode``), so results left over
from an earlier configuration in the same folder are not mixed in. Without a config every
victim found counts. The config's hash (:func:`config_sha256`) is recorded as provenance.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .collect import NO_DEFENSE, ReportError, VictimRecord

__all__ = ["Selection", "config_sha256", "load_config_json"]


@dataclass(frozen=True)
class Selection:
    """Allowed values per axis; None allows every value found."""

    datasets: tuple[str, ...] | None = None
    methods: tuple[str, ...] | None = None
    backbones: tuple[str, ...] | None = None
    weightings: tuple[str, ...] | None = None
    defenses: tuple[str, ...] | None = None
    seeds: tuple[int, ...] | None = None
    mode: str | None = None

    @classmethod
    def from_config(cls, config: Mapping[str, Any], source: str = "the config") -> Selection:
        try:
            victims = config.get("victims", {})
            return cls(
                datasets=tuple(config["datasets"]) if "datasets" in config else None,
                methods=_strings(config.get("poisons", {}).get("methods"), "poisons.methods", source),
                backbones=_strings(victims.get("backbones"), "victims.backbones", source),
                weightings=_strings(victims.get("weightings"), "victims.weightings", source),
                defenses=_strings(victims.get("defenses", [NO_DEFENSE]), "victims.defenses", source),
                seeds=_integers(victims.get("seeds"), "victims.seeds", source),
                mode=victims.get("mode"),
            )
        except AttributeError:
            raise ReportError(f"{source}: poisons and victims must be objects (pass the resolved workflow config)") from None

    def keep(self, record: VictimRecord) -> bool:
        return (
            (self.methods is None or record.method in self.methods)
            and (self.backbones is None or record.backbone in self.backbones)
            and (self.weightings is None or record.weighting in self.weightings)
            and (self.defenses is None or record.defense in self.defenses)
            and (self.seeds is None or record.seed in self.seeds)
            and (self.mode is None or record.mode == self.mode)
        )


def load_config_json(path: str | Path) -> dict[str, Any]:
    """The resolved workflow config in ``path`` (a JSON object)."""
    path = Path(path)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReportError(f"--config-json {path} cannot be read as JSON ({error}); write it with json.dump(config)") from None
    if not isinstance(config, dict):
        raise ReportError(f"--config-json {path} holds a {type(config).__name__}, expected the config object")
    return config


def config_sha256(config: Mapping[str, Any]) -> str:
    """sha256 of the config's canonical JSON (sorted keys, no whitespace): formatting does not change it."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _strings(value: Any, key: str, source: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
        raise ReportError(f"{source}: {key} must be a non-empty list of names, got {value!r}")
    return tuple(value)


def _integers(value: Any, key: str, source: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(item, int) and not isinstance(item, bool) for item in value):
        raise ReportError(f"{source}: {key} must be a non-empty list of integers, got {value!r}")
    return tuple(value)
