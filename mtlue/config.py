"""The workflow configuration: loading, validation against the JSON Schema, defaults.

The schema (``mtlue/schemas/config.schema.yaml``, linked from ``workflow/schemas/``) documents
every key. Validation happens before any job runs, in the Snakefile and in ``mtlue
check-config``, so a typo costs seconds, not a half-finished workflow. Errors name the key by
its dotted path and, for an unknown key, list the valid ones.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

__all__ = ["ConfigError", "load_config", "validate_config", "config_schema", "dataset_source"]


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and what to change."""


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


def validate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return a validated copy of ``config`` with defaults filled in; raise ConfigError otherwise."""
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
    _check_methods(resolved)
    return resolved


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


def _check_datasets(config: Mapping[str, Any]) -> None:
    # Imported here: the data package pulls numpy and every builder, which config loading in the
    # Snakefile should not pay for until it is needed.
    from mtlue.data import DatasetError, create_builder

    for name, entry in config["datasets"].items():
        if not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(f"dataset name {name!r} in datasets: use letters, digits, '_' or '-'")
        try:
            create_builder(dataset_source(config, name), **entry.get("options", {}))
        except DatasetError as error:
            raise ConfigError(f"datasets.{name}: {error}") from None


def load_config(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; pass an existing YAML file (e.g. config/config.yaml)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path} is not valid YAML: {error}") from None
    try:
        return validate_config(data or {})
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
