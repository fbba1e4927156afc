"""The workflow configuration: loading, validation against the JSON Schema, defaults.

The schema (``mtlue/schemas/config.schema.yaml``, linked from ``workflow/schemas/``) documents
every key. Validation happens before any job runs, in the Snakefile and in ``mtlue
check-config``, so a typo costs seconds, not a half-finished workflow. Errors name the key by
its dotted path and, for an unknown key, list the valid ones.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import jsonschema
import yaml

from mtlue.errors import ConfigError

__all__ = [
    "ConfigError",
    "VictimJob",
    "VictimRun",
    "config_schema",
    "dataset_source",
    "defense_options",
    "load_config",
    "validate_config",
    "victim_jobs",
    "victim_runs",
    "victim_train",
]


def config_schema() -> dict[str, Any]:
    text = resources.files("mtlue").joinpath("schemas/config.schema.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def _path(parts) -> str:
    return ".".join(str(part) for part in parts) or "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    where = _path(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        allowed = set(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - allowed)
        names = ", ".join(repr(key) for key in unknown)
        return f"unknown key {names} in {where}; valid keys: {', '.join(sorted(allowed))}"
    if error.validator == "required":
        return f"{where}: {error.message}"
    description = error.schema.get("description", "")
    hint = f" ({' '.join(description.split())})" if description else ""
    return f"bad value for {where}: {error.message}{hint}"


def _fill_defaults(schema: Mapping[str, Any], instance: Any) -> None:
    """Insert schema defaults for missing keys, recursively (objects with declared properties)."""
    if not isinstance(instance, dict):
        return
    for key, subschema in schema.get("properties", {}).items():
        if key not in instance and "default" in subschema:
            instance[key] = copy.deepcopy(subschema["default"])
        if key in instance:
            _fill_defaults(subschema, instance[key])
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping):
        for key, value in instance.items():
            if key not in schema.get("properties", {}):
                _fill_defaults(extra, value)


def dataset_source(config: Mapping[str, Any], dataset: str) -> str:
    """The registered dataset a config entry prepares (the entry's name unless ``source`` is set)."""
    return config["datasets"][dataset].get("source", dataset)


def validate_config(config: Mapping[str, Any], *, check_models: bool = True) -> dict[str, Any]:
    """Return a validated copy of ``config`` with defaults filled in; raise ConfigError otherwise.

    ``check_models=False`` leaves out the checks that import torch and timm (backbones exist,
    defenses and methods build: EM's hyperparameters name a backbone), seconds of imports: the Snakefile skips them in the parse each cluster job
    repeats, since the workflow's own parse has already run them on the same config.
    """
    if not isinstance(config, Mapping):
        raise ConfigError(f"the config must be a mapping of keys to values, got {type(config).__name__}")
    schema = config_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    if errors:
        raise ConfigError("invalid config: " + "; ".join(_describe(error) for error in errors[:5]))
    resolved = copy.deepcopy(dict(config))
    _fill_defaults(schema, resolved)
    _check_datasets(resolved)
    _resolve_robustness(resolved)
    if check_models:
        _check_methods(resolved)
        _check_victims(resolved)
        _check_defenses(resolved)
    return resolved


class VictimRun(NamedTuple):
    """The DAG axes of one victim (besides its dataset)."""

    method: str
    backbone: str
    weighting: str
    defense: str
    seed: int


def victim_runs(config: Mapping[str, Any], extra_methods: Sequence[str] = ()) -> list[VictimRun]:
    """Every victim a validated config asks for: the `victims` grid over every method, then each
    `robustness` block's grid, without repeats, in that order. ``extra_methods`` (a dataset's
    submissions) join every grid that takes all methods."""
    victims = config["victims"]
    methods = [*config["poisons"]["methods"], *extra_methods]
    grids = [
        (methods, victims["backbones"], victims["weightings"], victims["defenses"], victims["seeds"]),
        *((b.get("methods", methods), b["backbones"], b["weightings"], b["defenses"], b["seeds"]) for b in config["robustness"]),
    ]
    runs = (VictimRun(*axes) for grid in grids for axes in itertools.product(*grid))
    return list(dict.fromkeys(runs))


class VictimJob(NamedTuple):
    """One victim job of the workflow: seeds of one victim, trained in one ``mtlue victim`` process."""

    method: str
    backbone: str
    weighting: str
    defense: str
    seeds: tuple[int, ...]

    @property
    def victim(self) -> str:
        """``method/backbone/weighting/defense``: the job's folder under ``victims/``."""
        return f"{self.method}/{self.backbone}/{self.weighting}/{self.defense}"


def victim_jobs(config: Mapping[str, Any], extra_methods: Sequence[str] = ()) -> list[VictimJob]:
    """The runs of :func:`victim_runs` grouped into jobs: the seeds of each (method, backbone,
    weighting, defense), sorted, in chunks of `victims.seeds_per_job` (all of them by default).

    A victim's seeds are the same for every dataset (submissions join the grids that take every
    method), so a victim has the same jobs in every dataset, which the workflow's rules rely on.
    """
    seeds: dict[tuple[str, str, str, str], set[int]] = {}
    for run in victim_runs(config, extra_methods):
        seeds.setdefault((run.method, run.backbone, run.weighting, run.defense), set()).add(run.seed)
    per_job = config["victims"].get("seeds_per_job", "all")
    jobs = []
    for key, found in seeds.items():
        ordered = sorted(found)
        size = len(ordered) if per_job == "all" else int(per_job)
        jobs.extend(VictimJob(*key, tuple(ordered[start : start + size])) for start in range(0, len(ordered), size))
    return jobs


def _resolve_robustness(config: dict[str, Any]) -> None:
    """Fill each robustness block's axes from the grid's (a block without `methods` takes every
    method, submissions included) and check its methods are configured."""
    defaults = {
        "backbones": config["victims"]["backbones"],
        "weightings": config["victims"]["weightings"],
        "seeds": config["victims"]["seeds"],
    }
    methods = config["poisons"]["methods"]
    for index, block in enumerate(config["robustness"]):
        for key, value in defaults.items():
            block.setdefault(key, list(value))
        unknown = [method for method in block.get("methods", []) if method not in methods]
        if unknown:
            raise ConfigError(
                f"robustness[{index}].methods: {', '.join(map(repr, unknown))} not in poisons.methods "
                f"({', '.join(methods)}); add them there or drop them from the block"
            )


def _check_methods(config: Mapping[str, Any]) -> None:
    """Every configured method exists and takes the hyperparameters given (torch-free)."""
    from mtlue.methods import create_method

    poisons = config["poisons"]
    for method, hyperparameters in poisons["hyperparameters"].items():
        if method not in poisons["methods"]:
            raise ConfigError(
                f"poisons.hyperparameters.{method}: {method!r} is not in poisons.methods "
                f"({', '.join(poisons['methods'])}); add it there or remove its hyperparameters"
            )
    for method in poisons["methods"]:
        try:
            create_method(method, **poisons["hyperparameters"].get(method, {}))
        except ConfigError as error:
            raise ConfigError(f"poisons: {error}") from None


def _check_victims(config: Mapping[str, Any]) -> None:
    """Every backbone is registered or a timm model name, every weighting registered; nothing is built."""
    from victims.backbones import BackboneError, get_backbone_spec, list_backbones
    from victims.weighting import list_weightings

    def check_backbone(where: str, backbone: str) -> None:
        try:
            get_backbone_spec(backbone)
        except BackboneError:
            raise ConfigError(
                f"{where}: unknown backbone {backbone!r}; use one of {', '.join(list_backbones())} "
                f"or any timm model name (timm.list_models())"
            ) from None

    weightings = list_weightings()
    places = [("victims", config["victims"]), *((f"robustness[{i}]", block) for i, block in enumerate(config["robustness"]))]
    for where, block in places:
        for backbone in block["backbones"]:
            check_backbone(f"{where}.backbones", backbone)
        unknown = [name for name in block["weightings"] if name not in weightings]
        if unknown:
            raise ConfigError(
                f"{where}.weightings: unknown weighting(s) {', '.join(map(repr, unknown))}; use one of {', '.join(weightings)}"
            )
    check_backbone("surrogate.backbone", config["surrogate"]["backbone"])


def defense_options(config: Mapping[str, Any], spec: str) -> dict[str, Any]:
    """The `victims.defense_options` of each component of ``spec``, keyed ``component.option``
    (the form `create_defense` and `mtlue victim --defense-set` take for any composition)."""
    options = config["victims"]["defense_options"]
    return {f"{name}.{key}": value for name in spec.split("+") for key, value in options.get(name, {}).items()}


def victim_train(config: Mapping[str, Any], spec: str) -> dict[str, Any]:
    """The training recipe of a victim with defense ``spec``: `victims.train` with the
    `victims.train_per_defense` keys of each component of ``spec`` (e.g. the release's AT
    schedule, `{at: {milestones: [0.75, 0.9], batch_size: 128}}`)."""
    recipe = dict(config["victims"]["train"])
    overrides = config["victims"].get("train_per_defense", {})
    chosen: dict[str, tuple[str, Any]] = {}
    for name in spec.split("+"):
        for key, value in overrides.get(name, {}).items():
            if key in chosen and chosen[key][1] != value:
                raise ConfigError(
                    f"victims.train_per_defense: defense {spec!r} gets {key} {chosen[key][1]!r} from {chosen[key][0]!r} "
                    f"and {value!r} from {name!r}; give the two the same {key} or drop one"
                )
            chosen[key] = (name, value)
    recipe.update({key: value for key, (_, value) in chosen.items()})
    return recipe


def _check_defenses(config: Mapping[str, Any]) -> None:
    """Every defense of the grid and of the robustness blocks builds with its configured options."""
    from victims.defenses import DefenseError, create_defense, split_spec

    specs = dict.fromkeys([*config["victims"]["defenses"], *(d for block in config["robustness"] for d in block["defenses"])])
    used = {name for spec in specs for name in split_spec(spec)}
    for section in ("defense_options", "train_per_defense"):
        for name in config["victims"][section]:
            if name not in used:
                raise ConfigError(
                    f"victims.{section}.{name}: no configured defense uses {name!r} "
                    f"(defenses: {', '.join(specs)}); add it to victims.defenses or a robustness block, or remove its options"
                )
    for spec in specs:
        recipe = victim_train(config, spec)
        if list(recipe["milestones"]) != sorted(set(recipe["milestones"])):
            raise ConfigError(f"victims.train_per_defense: the milestones of defense {spec!r} must be increasing, got {recipe['milestones']}")
    for spec in specs:
        try:
            create_defense(spec, **defense_options(config, spec))
        except DefenseError as error:
            raise ConfigError(f"defense {spec!r}: {error}") from None


def _check_datasets(config: Mapping[str, Any]) -> None:
    # Imported here: the data package pulls numpy and every builder, which config loading in the
    # Snakefile should not pay for until it is needed.
    from mtlue.data import DatasetError, create_builder

    for name, entry in config["datasets"].items():
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"dataset name {name!r} in datasets: use letters, digits, '_' or '-'")
        try:
            create_builder(dataset_source(config, name), select_tasks=entry.get("tasks"), **entry.get("options", {}))
        except DatasetError as error:
            raise ConfigError(f"datasets.{name}: {error}") from None


def load_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass an existing YAML file (e.g. config/config.yaml)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path} is not UTF-8 text (byte at offset {error.start}); save the config as UTF-8") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    try:
        return validate_config(data or {})
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
