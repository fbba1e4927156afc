"""metrics.json is written and read through one module, against one JSON Schema."""

from __future__ import annotations

import json
import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mtlue.errors import ReportError
from mtlue.victim_metrics import FORMAT, is_victim_metrics, problems, read_victim_metrics, write_victim_metrics


def victim_metrics(accuracy: float = 75.0) -> dict:
    """The keys a report needs, as ``VictimResult.to_json()`` writes them."""
    task = {"name": "smiling", "kind": "binary", "num_classes": 2, "metrics": ["accuracy"]}
    return {
        "format": FORMAT,
        "dataset": {"name": "shapes", "tasks": [task], "train_content_hash": "a" * 64, "test_content_hash": "b" * 64, "train_images": "clean"},
        "backbone": "resnet18",
        "weighting": "ew",
        "mode": "mtl",
        "seed": 0,
        "defense": {"name": "none", "options": {}, "components": []},
        "metrics": {"smiling": {"accuracy": accuracy}},
        "aggregate": {"classification_mean": accuracy, "mean_accuracy": accuracy},
        "runs": [{"name": "mtl", "tasks": ["smiling"], "history": [{"epoch": 1, "lr": 0.001, "grad_norm": None}]}],
    }


@settings(max_examples=30, deadline=None)
@given(st.floats(min_value=0, max_value=100))
def test_written_files_read_back_unchanged_and_hold_the_usual_json(tmp_path_factory, accuracy):
    path = tmp_path_factory.mktemp("victim") / "metrics.json"
    data = victim_metrics(accuracy)
    write_victim_metrics(path, data)
    assert path.read_text() == json.dumps(data, indent=2, sort_keys=True) + "\n"
    assert read_victim_metrics(path) == data
    assert is_victim_metrics(path)


def test_the_writer_refuses_what_the_schema_refuses(tmp_path):
    data = victim_metrics()
    del data["runs"]
    with pytest.raises(RuntimeError, match="lacks runs"):
        write_victim_metrics(tmp_path / "metrics.json", data)
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(format="mtlue-victim-metrics/0"), "has format 'mtlue-victim-metrics/0'"),
        (lambda d: d["dataset"].pop("train_images"), "dataset: lacks train_images"),
        (lambda d: d["dataset"].update(tasks=[]), r"dataset.tasks: \[\] should be non-empty"),
        (lambda d: d.update(seed=-1), "seed: -1 is less than the minimum of 0"),
        (lambda d: d.update(mode="both"), "mode: 'both' is not one of"),
        (lambda d: d["aggregate"].update(mean_accuracy=True), "aggregate.mean_accuracy: True is not of type 'number'"),
        (lambda d: d["metrics"]["smiling"].update(accuracy=math.nan), "metrics.smiling.accuracy must be a finite number, got nan"),
        (lambda d: d["runs"][0].update(history={}), r"runs.0.history: \{\} is not of type 'array'"),
    ],
)
def test_the_reader_names_the_key_and_the_fix(tmp_path, change, message):
    data = victim_metrics()
    change(data)
    assert any(re.search(message, line) for line in problems(data)), problems(data)
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ReportError, match=message) as error:
        read_victim_metrics(path)
    assert str(path) in str(error.value) and "rerun its victim" in str(error.value)


def test_a_file_that_is_no_json_is_named(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("{not json")
    with pytest.raises(ReportError, match="cannot be read as JSON"):
        read_victim_metrics(path)
    assert not is_victim_metrics(path)
