"""Which victims a report or leaderboard counts, from the workflow's resolved config.

``--config-json FILE`` is the resolved workflow config (``mtlue check-config --print``, as JSON;
the workflow adds ``submitted``: {dataset: [submission names]});
from it a :class:`Selection` keeps the configured methods (``poisons.methods`` and submissions)
and victims (``victims.backbones``, ``weightings``, ``defenses``, ``seeds``, ``mode``, and the
``robustness`` blocks), so results left over from an earlier configuration in the same folder
are not mixed in. Without a config every
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
    def from_config(cls, config: Mapping[str, Any], source: str = "the config", *, protocol: bool = False) -> Selection:
        """The victims ``config`` asks for: the `victims` grid and every `robustness` block
        (``protocol=False``, what the tables show), or only the leaderboard protocol's grid
        (``protocol=True``): the `victims` grid's axes, with the defenses of the robustness
        blocks that run against every method on that whole grid."""
        try:
            victims = config.get("victims", {})
            blocks = config.get("robustness", [])
            grid = {
                "backbones": _strings(victims.get("backbones"), "victims.backbones", source),
                "weightings": _strings(victims.get("weightings"), "victims.weightings", source),
                "defenses": _strings(victims.get("defenses", [NO_DEFENSE]), "victims.defenses", source),
                "seeds": _integers(victims.get("seeds"), "victims.seeds", source),
            }
            if protocol:
                blocks = [block for block in blocks if _covers_grid(block, grid)]
                axes = dict(grid, defenses=_union(grid["defenses"], *(block["defenses"] for block in blocks)))
            else:
                axes = {key: _union(values, *(block.get(key, values or ()) for block in blocks)) for key, values in grid.items()}
            methods = _strings(config.get("poisons", {}).get("methods"), "poisons.methods", source)
            submitted = [name for names in config.get("submitted", {}).values() for name in names]
            return cls(
                datasets=tuple(config["datasets"]) if "datasets" in config else None,
                methods=_union(methods, submitted) if methods is not None else None,
                mode=victims.get("mode"),
                **axes,
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


def _union(first: tuple | None, *more) -> tuple | None:
    if first is None:
        return None
    return tuple(dict.fromkeys([*first, *(item for values in more for item in values)]))


def _covers_grid(block: Mapping[str, Any], grid: Mapping[str, tuple | None]) -> bool:
    """A robustness block runs against every method on at least the whole grid."""
    return "methods" not in block and all(
        grid[key] is None or set(grid[key]) <= set(block.get(key, grid[key])) for key in ("backbones", "weightings", "seeds")
    )


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
