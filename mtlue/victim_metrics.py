"""A victim's ``metrics.json``: the one module that writes and reads it.

Its layout is the JSON Schema ``mtlue/schemas/victim-metrics.schema.json``; ``mtlue victim``
writes through :func:`write_victim_metrics` (checked against the schema, then written
atomically) and the reports read through :func:`read_victim_metrics`, which refuses a file that
is not JSON, has another format, breaks the schema or records a NaN or infinite metric, naming
the file, the key and the fix. What only a reader knows (the axes of the path, the dataset
version of the other victims) is checked by :mod:`mtlue.report.collect`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from mtlue.errors import ReportError
from mtlue.io import atomic_write_json

__all__ = ["FORMAT", "SCHEMA_NAME", "is_victim_metrics", "metrics_schema", "problems", "read_victim_metrics", "write_victim_metrics"]

FORMAT = "mtlue-victim-metrics/1"
SCHEMA_NAME = "victim-metrics.schema.json"
#: The fix every refused file shares.
RERUN = "delete it and rerun its victim (`mtlue victim`)"


@lru_cache(maxsize=1)
def metrics_schema() -> dict[str, Any]:
    """The shipped JSON Schema of ``metrics.json``."""
    return json.loads(resources.files("mtlue").joinpath(f"schemas/{SCHEMA_NAME}").read_text(encoding="utf-8"))


def problems(data: Any) -> list[str]:
    """What is wrong with ``data`` as a victim's metrics (empty when nothing is), one line each."""
    from jsonschema import Draft202012Validator

    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        return [f"has format {found!r}, expected {FORMAT!r}"]
    found = []
    for error in sorted(Draft202012Validator(metrics_schema()).iter_errors(data), key=lambda error: list(map(str, error.absolute_path))):
        where = ".".join(map(str, error.absolute_path))
        if error.validator == "required":
            missing = [key for key in error.validator_value if key not in error.instance]
            found.append(f"{where + ': ' if where else ''}lacks {', '.join(missing)}")
        else:
            found.append(f"{where or '(top level)'}: {error.message}")
    if not found:
        found = [f"{where} must be a finite number, got {value!r}" for where, value in _values(data) if not math.isfinite(value)]
    return found


def write_victim_metrics(path: str | os.PathLike[str], data: Mapping[str, Any]) -> None:
    """Write ``data`` (``VictimResult.to_json()``) to ``path`` atomically, after checking it
    against the schema: a writer that drifts from the schema fails here, not in a later report."""
    wrong = problems(dict(data))
    if wrong:
        raise RuntimeError(f"the victim's metrics do not match {SCHEMA_NAME} ({'; '.join(wrong)}): a bug in the writer or the schema")
    atomic_write_json(path, data)


def read_victim_metrics(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checked content of the ``metrics.json`` at ``path`` (ReportError naming the fix)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ReportError(f"{path} cannot be read as JSON ({error}); {RERUN}") from None
    wrong = problems(data)
    if wrong:
        raise ReportError(f"{path} {wrong[0]}; {RERUN}" if wrong[0].startswith("has format") else f"{path}: {'; '.join(wrong)}; {RERUN}")
    return data


def is_victim_metrics(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds a victim's ``metrics.json`` of any version (an earlier result a rerun
    may replace)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and str(data.get("format", "")).startswith(FORMAT.partition("/")[0] + "/")


def _values(data: Mapping[str, Any]):
    """(dotted key, value) of every metric and aggregate, the numbers the reports compute with."""
    for task, values in data["metrics"].items():
        for metric, value in values.items():
            yield f"metrics.{task}.{metric}", value
    for key, value in data["aggregate"].items():
        yield f"aggregate.{key}", value
