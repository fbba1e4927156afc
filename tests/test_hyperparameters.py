"""One check of dataclass settings (methods' hyperparameters, datasets' options) and one registry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtlue.errors import MethodError, RegistryError
from mtlue.hyperparameters import build_settings, describe_type, fits
from mtlue.registry import NAME_RULE, Registry, is_valid_name

SCALARS = st.one_of(st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5), st.none())


@given(SCALARS)
def test_each_scalar_fits_exactly_the_types_it_is(value):
    assert fits(value, bool) is isinstance(value, bool)
    assert fits(value, int) is (isinstance(value, int) and not isinstance(value, bool))
    assert fits(value, float) is (isinstance(value, (int, float)) and not isinstance(value, bool))
    assert fits(value, str) is isinstance(value, str)
    assert fits(value, int | None) is (value is None or fits(value, int))


def test_containers_literals_and_numpy_scalars():
    assert fits([1, 2], tuple[int, ...]) and not fits([1, "a"], tuple[int, ...]) and not fits("ab", list[str])
    assert fits({"a": 1}, dict[str, int]) and not fits([], dict)
    assert fits("grid", Literal["grid", "average"]) and not fits("diagonal", Literal["grid", "average"])
    assert fits(np.int64(3), int) and fits(np.float32(0.5), float) and fits("/x", Path)
    assert describe_type(Literal["grid", "average"]) == "one of 'grid', 'average'"
    assert describe_type(int | None) == "an integer or null"


@dataclass(frozen=True)
class Settings:
    steps: int = 20
    step_size: float = 0.8
    mode: Literal["fast", "exact"] = "fast"

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")


class Thing:
    pass


THINGS = Registry("method", base=f"{__name__}:Thing", error=MethodError)


@given(st.integers(min_value=1, max_value=10**6))
def test_widening_makes_an_integer_given_for_a_float_a_float(step_size):
    built = build_settings(Settings, {"step_size": step_size, "steps": np.int32(3)}, registry=THINGS, name="x", noun="hyperparameter", widen=True)
    assert type(built.step_size) is float and built.step_size == step_size and type(built.steps) is int
    exact = build_settings(Settings, {"step_size": step_size}, registry=THINGS, name="x", noun="option")
    assert type(exact.step_size) is int


@pytest.mark.parametrize(
    "given_values, message",
    [
        ({"stepz": 3}, "method 'x' has no hyperparameter\\(s\\) stepz; valid: steps, step_size, mode"),
        ({"steps": "many"}, "method 'x': hyperparameter steps must be an integer, got 'many' \\(str\\); e.g. steps=64"),
        ({"steps": True}, "steps must be an integer, got True"),
        ({"mode": "slow"}, "mode must be one of 'fast', 'exact', got 'slow'"),
        ({"steps": 0}, "method 'x': steps must be at least 1, got 0"),
    ],
)
def test_bad_settings_name_the_entry_the_field_and_the_fix(given_values, message):
    with pytest.raises(MethodError, match=message):
        build_settings(Settings, given_values, registry=THINGS, name="x", noun="hyperparameter")


@given(st.text(alphabet="abcxyz019_-+./A ", max_size=8))
def test_the_name_rule_keeps_names_safe_as_folders_and_wildcards(name):
    if is_valid_name(name):
        assert name[0].isalpha() and name == name.lower() and not set(name) & set("+./ ") and not name.endswith("-")
    else:
        with pytest.raises(RegistryError, match="must be lower case"):
            Registry("method", base=f"{__name__}:Thing", error=MethodError).register(name)
    assert "lower case" in NAME_RULE


def test_a_registry_refuses_a_second_class_for_a_name_and_a_class_of_another_base():
    registry = Registry("method", base=f"{__name__}:Thing", error=MethodError)

    @registry.register("one")
    class One(Thing):
        pass

    with pytest.raises(RegistryError, match="registered twice"):

        @registry.register("one")
        class Other(Thing):
            pass

    with pytest.raises(RegistryError, match="decorates Thing subclasses"):
        registry.register("two")(int)
    assert registry.names() == ["one"] and registry.get("one") is One and One.name == "one"
    with pytest.raises(MethodError, match="unknown method 'three'; available: one"):
        registry.get("three")
