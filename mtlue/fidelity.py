"""The fidelity table: each paper preset's knobs, the official release's value, ours, and why they differ.

MTL-UE (Yu et al., "MTL-UE: Learning to Learn Nothing for Multi-Task Learning", ICML 2025,
arXiv 2505.05279) ships its code as github.com/yuyi-sd/MTL-UE; its settings are spread over
YAML configs, command lines (some_scripts.sh) and constants in the training loops. The
machine-readable table ``config/protocol.yaml`` collects them, one entry per preset
(config/celeba.yaml, ...), one row per knob:

- ``knob``: a human name;
- ``key``: how to read *our* value from the resolved preset (:func:`resolve_key`), or null for a
  behaviour that is not a value:

  - a dotted config path, ``victims.train.epochs``;
  - ``method:<name>.<attribute>``: a hyperparameter of ``create_method(name, **the preset's
    poisons.hyperparameters[name])``;
  - ``defense:<name>.<attribute>``: an attribute of the defense ``create_defense(name, **the
    preset's victims.defense_options)`` builds;
  - ``derived:<name>``: a value computed from several keys (:data:`DERIVED`, e.g. the victims'
    milestone epochs from ``victims.train``'s fractions);

- ``release``: the release's value, ``source``: where it is read (``path:line``, several joined
  by ``; ``), ``ours``: our value, ``status``: ``same`` or ``deviates: <why>``; optionally
  ``note``.

Each preset also has a ``grid``: the victims it trains (datasets, methods, blocks of backbones x
weightings x defenses x seeds, the number of victim jobs) and the paper table it stands for.

``python -m mtlue.fidelity --write docs/FIDELITY.md`` renders the table; ``--check`` exits 1
when the file differs from the rendering. tests/test_fidelity.py holds presets to the table.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mtlue.config import ConfigError, load_config, victim_jobs
from mtlue.errors import FidelityError
from mtlue.io import atomic_write

__all__ = [
    "DERIVED",
    "FidelityError",
    "Grid",
    "Mismatch",
    "PresetEntry",
    "Protocol",
    "Row",
    "check_preset",
    "grid_of_config",
    "load_protocol",
    "main",
    "render_markdown",
    "resolve_key",
    "same_value",
]

#: ``path:line`` or ``path:line-line``; a source lists one or more joined by ``; ``.
_SOURCE = re.compile(r"^[\w./-]+:\d+(-\d+)?$")
_ROW_FIELDS = {"knob", "key", "release", "source", "ours", "status", "note"}
_REQUIRED_ROW_FIELDS = ("knob", "key", "release", "source", "ours", "status")
_GRID_FIELDS = ("datasets", "methods", "blocks", "victim_jobs", "paper")
_BLOCK_FIELDS = ("backbones", "weightings", "defenses", "seeds")


@dataclass(frozen=True)
class Row:
    """One knob of the release and how we set it."""

    knob: str
    key: str | None
    release: Any
    source: str
    ours: Any
    status: str
    note: str | None = None

    @property
    def same(self) -> bool:
        return self.status == "same"


@dataclass(frozen=True)
class Grid:
    """The victims a preset trains: the main grid and its robustness blocks, in config order."""

    datasets: tuple[str, ...]
    methods: tuple[str, ...]
    blocks: tuple[dict[str, list[Any]], ...]
    victim_jobs: int
    paper: str


@dataclass(frozen=True)
class PresetEntry:
    name: str
    file: str
    description: str
    grid: Grid
    rows: tuple[Row, ...]


@dataclass(frozen=True)
class Protocol:
    release: dict[str, str]
    presets: tuple[PresetEntry, ...]

    def preset(self, name: str) -> PresetEntry:
        for entry in self.presets:
            if entry.name == name:
                return entry
        raise FidelityError(f"no preset {name!r} in the protocol table; presets: {', '.join(p.name for p in self.presets)}")


@dataclass(frozen=True)
class Mismatch:
    """A keyed row whose resolved value is not its ``ours``."""

    preset: str
    knob: str
    key: str
    ours: Any
    resolved: Any

    def __str__(self) -> str:
        return f"{self.preset}: {self.knob} ({self.key}) resolves to {self.resolved!r}, the table says ours = {self.ours!r}"


def _row(data: Any, where: str) -> Row:
    if not isinstance(data, Mapping):
        raise FidelityError(f"{where}: a row is a mapping with {', '.join(_REQUIRED_ROW_FIELDS)}, got {data!r}")
    unknown = sorted(set(data) - _ROW_FIELDS)
    if unknown:
        raise FidelityError(f"{where}: unknown field(s) {', '.join(unknown)}; valid: {', '.join(sorted(_ROW_FIELDS))}")
    missing = [name for name in _REQUIRED_ROW_FIELDS if name not in data]
    if missing:
        raise FidelityError(f"{where} ({data.get('knob', '?')}): missing field(s) {', '.join(missing)}")
    where = f"{where} ({data['knob']})"
    if not isinstance(data["knob"], str) or not data["knob"].strip():
        raise FidelityError(f"{where}: knob is a non-empty name")
    key = data["key"]
    if key is not None and not (isinstance(key, str) and key.strip()):
        raise FidelityError(f"{where}: key is a dotted config path, method:NAME.ATTR, defense:NAME.ATTR, derived:NAME or null")
    source = data["source"]
    parts = [part.strip() for part in source.split(";")] if isinstance(source, str) else []
    if not parts or not all(_SOURCE.match(part) for part in parts):
        raise FidelityError(f"{where}: source {source!r} must cite release files with line numbers, e.g. 'main.py:340; configs/a.yaml:12'")
    status = data["status"]
    if not isinstance(status, str) or not (status == "same" or (status.startswith("deviates: ") and len(status) > len("deviates: "))):
        raise FidelityError(f"{where}: status is 'same' or 'deviates: <why>', got {status!r}")
    note = data.get("note")
    if note is not None and not isinstance(note, str):
        raise FidelityError(f"{where}: note is text")
    return Row(data["knob"], key, data["release"], source, data["ours"], status, note)


def _grid(data: Any, where: str) -> Grid:
    if not isinstance(data, Mapping) or sorted(data) != sorted(_GRID_FIELDS):
        raise FidelityError(f"{where}: grid has exactly the fields {', '.join(_GRID_FIELDS)}")
    blocks = data["blocks"]
    if not isinstance(blocks, list) or not blocks:
        raise FidelityError(f"{where}.blocks: a list of {{{', '.join(_BLOCK_FIELDS)}}}, the main grid first")
    for index, block in enumerate(blocks):
        if not isinstance(block, Mapping) or sorted(block) != sorted(_BLOCK_FIELDS):
            raise FidelityError(f"{where}.blocks[{index}]: fields {', '.join(_BLOCK_FIELDS)}")
    if isinstance(data["victim_jobs"], bool) or not isinstance(data["victim_jobs"], int):
        raise FidelityError(f"{where}.victim_jobs: an integer")
    return Grid(tuple(data["datasets"]), tuple(data["methods"]), tuple(dict(block) for block in blocks), data["victim_jobs"], str(data["paper"]))


def load_protocol(path: str | Path = "config/protocol.yaml") -> Protocol:
    """Read and validate the table; raise :class:`FidelityError` naming the bad entry."""
    path = Path(path)
    if not path.is_file():
        raise FidelityError(f"protocol table {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise FidelityError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(data, Mapping) or sorted(data) != ["presets", "release"]:
        raise FidelityError(f"{path}: the top level has exactly 'release' and 'presets'")
    presets = []
    names: set[str] = set()
    for index, entry in enumerate(data["presets"] or []):
        where = f"{path}: presets[{index}]"
        if not isinstance(entry, Mapping) or not {"name", "file", "description", "grid", "rows"} <= set(entry):
            raise FidelityError(f"{where}: a preset has name, file, description, grid and rows")
        if entry["name"] in names:
            raise FidelityError(f"{where}: preset {entry['name']!r} appears twice")
        names.add(entry["name"])
        where = f"{path}: preset {entry['name']}"
        rows = tuple(_row(row, f"{where} row {number}") for number, row in enumerate(entry["rows"] or [], start=1))
        knobs = [row.knob for row in rows]
        doubled = sorted({knob for knob in knobs if knobs.count(knob) > 1})
        if doubled:
            raise FidelityError(f"{where}: knob(s) listed twice: {', '.join(doubled)}")
        presets.append(PresetEntry(entry["name"], entry["file"], str(entry["description"]), _grid(entry["grid"], f"{where} grid"), rows))
    if not presets:
        raise FidelityError(f"{path}: no presets")
    return Protocol(dict(data["release"]), tuple(presets))


def _victim_milestone_epochs(config: Mapping[str, Any]) -> list[int]:
    from victims.config import TrainConfig

    train = config["victims"]["train"]
    return TrainConfig(epochs=train["epochs"], milestones=tuple(train["milestones"])).milestone_epochs()


def _surrogate_milestone_epochs(config: Mapping[str, Any]) -> list[int]:
    # The surrogate stage trains with the victims' recipe over surrogate.epochs (surrogate.smk).
    from victims.config import TrainConfig

    return TrainConfig(epochs=config["surrogate"]["epochs"], milestones=tuple(config["victims"]["train"]["milestones"])).milestone_epochs()


def _surrogate_snapshot_epochs(config: Mapping[str, Any]) -> list[int]:
    from mtlue.methods.surrogate import snapshot_epochs

    return list(snapshot_epochs(config["surrogate"]["epochs"], config["surrogate"]["every"]))


def _victim_job_count(config: Mapping[str, Any]) -> int:
    return len(victim_jobs(config))


#: ``derived:<name>`` keys: values computed from more than one config key.
DERIVED: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "victim_milestone_epochs": _victim_milestone_epochs,
    "surrogate_milestone_epochs": _surrogate_milestone_epochs,
    "surrogate_snapshot_epochs": _surrogate_snapshot_epochs,
    "victim_jobs": _victim_job_count,
}


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively, so YAML values compare with dataclass fields."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


def resolve_key(config: Mapping[str, Any], key: str) -> Any:
    """Our value of ``key`` (see the module docstring) in a resolved config."""
    if key.startswith("method:") or key.startswith("defense:"):
        kind, _, rest = key.partition(":")
        name, dot, attribute = rest.rpartition(".")
        if not dot or not name or not attribute:
            raise FidelityError(f"key {key!r}: write {kind}:NAME.ATTRIBUTE")
        if kind == "method":
            from mtlue.methods import create_method

            hyperparameters = config["poisons"]["hyperparameters"].get(name, {})
            target: Any = create_method(name, **hyperparameters).hyperparameters
        else:
            from mtlue.config import defense_options
            from victims.defenses import create_defense

            pipeline = create_defense(name, **defense_options(config, name))
            (target,) = pipeline.components
        if not hasattr(target, attribute):
            raise FidelityError(f"key {key!r}: {kind} {name!r} has no attribute {attribute!r}")
        return _plain(getattr(target, attribute))
    if key.startswith("derived:"):
        name = key.partition(":")[2]
        if name not in DERIVED:
            raise FidelityError(f"key {key!r}: unknown derived value; known: {', '.join(sorted(DERIVED))}")
        return _plain(DERIVED[name](config))
    value: Any = config
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            raise FidelityError(f"key {key!r}: the resolved config has no {part!r} there")
        value = value[part]
    return _plain(value)


def same_value(a: Any, b: Any) -> bool:
    """Equal, with floats compared to 1e-5 relative: the release writes 8/255 as 0.03137254901 and 4/255 as 0.01568625."""
    a, b = _plain(a), _plain(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-12)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return a == b


def grid_of_config(config: Mapping[str, Any]) -> Grid:
    """The grid a resolved config trains, in the table's form (paper left empty)."""
    victims = config["victims"]
    blocks = [{name: list(victims[name]) for name in _BLOCK_FIELDS}]
    blocks += [{name: list(block[name]) for name in _BLOCK_FIELDS} for block in config["robustness"]]
    return Grid(tuple(config["datasets"]), tuple(config["poisons"]["methods"]), tuple(blocks), len(victim_jobs(config)), "")


def check_preset(entry: PresetEntry, root: str | Path = ".") -> list[Mismatch]:
    """Load the preset alone and return every keyed row whose resolved value is not ``ours``."""
    config = load_config(Path(root) / entry.file)
    mismatches = []
    for row in entry.rows:
        if row.key is None:
            continue
        resolved = resolve_key(config, row.key)
        if not same_value(resolved, row.ours):
            mismatches.append(Mismatch(entry.name, row.knob, row.key, row.ours, resolved))
    return mismatches


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = f"{value:.6g}"
    elif isinstance(value, (list, tuple)):
        text = "[" + ", ".join(_cell(item) for item in value) + "]"
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(protocol: Protocol) -> str:
    """docs/FIDELITY.md: per preset its grid and one table row per knob."""
    release = protocol.release
    lines = [
        "# Fidelity to the MTL-UE release",
        "",
        "<!-- Generated from config/protocol.yaml by `python -m mtlue.fidelity --write docs/FIDELITY.md`; do not edit. -->",
        "",
        f"Each paper preset against the official release, {release.get('repository', '')} at commit "
        f"`{release.get('commit', '')}` (Yu et al., MTL-UE, ICML 2025). `ours` is what the preset resolves to "
        "(tests/test_fidelity.py checks every keyed row); sources are the release's files and lines.",
        "",
    ]
    for entry in protocol.presets:
        grid = entry.grid
        deviations = sum(not row.same for row in entry.rows)
        lines += [
            f"## {entry.name} (`{entry.file}`)",
            "",
            entry.description.strip(),
            "",
            f"{len(entry.rows)} knobs: {len(entry.rows) - deviations} same, {deviations} deviating.",
            "",
            f"**Grid** ({_cell(grid.paper)}): datasets {_cell(list(grid.datasets))}; methods {_cell(list(grid.methods))}; "
            f"{grid.victim_jobs} victim jobs.",
            "",
            "| block | backbones | weightings | defenses | seeds |",
            "|---|---|---|---|---|",
        ]
        for index, block in enumerate(grid.blocks):
            label = "main grid" if index == 0 else f"robustness {index}"
            lines.append(f"| {label} | " + " | ".join(_cell(block[name]) for name in _BLOCK_FIELDS) + " |")
        lines += ["", "| knob | ours | release | status | source | key |", "|---|---|---|---|---|---|"]
        for row in entry.rows:
            status = row.status
            if row.note:
                status += f"; note: {row.note}"
            key = f"`{row.key}`" if row.key else "—"
            lines.append(
                f"| {_cell(row.knob)} | {_cell(row.ours)} | {_cell(row.release)} | {_cell(status)} | {_cell(row.source)} | {key} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mtlue.fidelity", description="Render or check the fidelity table (config/protocol.yaml).")
    parser.add_argument("--protocol", default="config/protocol.yaml", help="the table (default: %(default)s)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="PATH", help="write the markdown rendering to PATH")
    group.add_argument("--check", metavar="PATH", help="exit 1 if PATH differs from the rendering")
    parser.add_argument("--verify", action="store_true", help="also resolve every preset and list keyed rows that differ from `ours`")
    args = parser.parse_args(argv)
    try:
        protocol = load_protocol(args.protocol)
        text = render_markdown(protocol)
        status = 0
        if args.verify:
            for entry in protocol.presets:
                for mismatch in check_preset(entry):
                    print(mismatch, file=sys.stderr)
                    status = 1
        if args.write:
            with atomic_write(args.write) as handle:
                handle.write(text)
        elif args.check:
            current = Path(args.check).read_text(encoding="utf-8") if Path(args.check).is_file() else ""
            if current != text:
                print(f"{args.check} is out of date: run python -m mtlue.fidelity --write {args.check}", file=sys.stderr)
                status = 1
        elif not args.verify:
            sys.stdout.write(text)
        return status
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
