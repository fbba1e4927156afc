"""How a poison's generation ended: the ``convergence`` record of its card.

A method that iterates (EM's min-min rounds, MTL-UE's generator epochs) has a stop rule and a
cap. A run that reaches the cap before the rule holds publishes a poison its method did not
finish, and a victim's score alone cannot tell it from a finished one. So every generation
records: the rule in words, whether it held, what ended the run, how many steps ran (and the
cap), the stop statistics' final values and targets, and one record per step.

``stopped_by``, and the ``converged`` it implies:

- ``stop_rule``: the rule held (true);
- ``cap``: the cap on rounds / epochs ended the run first (false): raise ``cap_hyperparameter``;
- ``fixed_steps``: a method whose paper sets a number of steps and no stop rule ran them all
  (TAP, SEP: PGD steps per sample) (true; ``final`` says how far the attack got);
- ``closed_form``: nothing to iterate (clean, LSP, AR) (true);
- ``unreported``: a method that reported no iterations although it does not declare itself
  closed form, e.g. a plugin written before these records (null: unknown).

A store that no method generated here, a submission (``mtlue submit``), has no record: its card
says ``"convergence": null``. Non-finite numbers are stored as null, since JSON has none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import PoisonError

__all__ = ["STOPPED_BY", "Convergence", "json_value"]

#: What can end a generation; ``converged`` is determined by it (module docstring).
STOPPED_BY: dict[str, bool | None] = {
    "stop_rule": True,
    "cap": False,
    "fixed_steps": True,
    "closed_form": True,
    "unreported": None,
}
_FIELDS = ("rule", "converged", "stopped_by", "unit", "steps", "cap", "cap_hyperparameter", "final", "target", "history")


@dataclass(frozen=True)
class Convergence:
    """The ``convergence`` object of a card (module docstring); checked when built."""

    #: The stop rule in words, e.g. "surrogate training error <= 0.01 ...".
    rule: str
    converged: bool | None
    stopped_by: str
    #: What one step is ("round", "epoch", "batch"); None when nothing iterated.
    unit: str | None
    #: Steps run; equals the length of ``history``.
    steps: int
    #: The most steps the method allows, and the hyperparameter that sets it (None without a cap).
    cap: int | None
    cap_hyperparameter: str | None
    #: The stop statistics after the last step (without a rule: what the run achieved).
    final: dict[str, float | None] = field(default_factory=dict)
    #: The rule's threshold per statistic: the statistic must end at most this.
    target: dict[str, float] = field(default_factory=dict)
    #: One record per step: ``{unit: step, name: number | null | {name: number | null}}``.
    history: tuple[dict[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if self.stopped_by not in STOPPED_BY:
            raise PoisonError(f"convergence.stopped_by is {self.stopped_by!r}, not one of {', '.join(STOPPED_BY)}")
        if self.converged is not STOPPED_BY[self.stopped_by]:
            raise PoisonError(
                f"convergence says converged {self.converged} but stopped_by {self.stopped_by!r}, which means "
                f"converged {STOPPED_BY[self.stopped_by]}"
            )
        if self.steps != len(self.history):
            raise PoisonError(f"convergence.steps is {self.steps} but the history has {len(self.history)} record(s)")
        if (self.unit is None) != (self.steps == 0):
            raise PoisonError("convergence.unit names what a step is exactly when steps were run")
        if (self.cap is None) != (self.cap_hyperparameter is None):
            raise PoisonError("convergence.cap and convergence.cap_hyperparameter are given together or not at all")
        if self.cap is not None and not 0 < self.steps <= self.cap:
            raise PoisonError(f"convergence.steps {self.steps} is not within the cap {self.cap}")
        if self.stopped_by == "cap" and self.steps != self.cap:
            raise PoisonError(f"convergence says the cap stopped the run, but {self.steps} of {self.cap} steps ran")
        for index, record in enumerate(self.history, start=1):
            if record.get(self.unit) != index:
                raise PoisonError(f"convergence.history[{index - 1}] is not {self.unit} {index}")

    @property
    def cut_off(self) -> bool:
        """Whether a cap ended the run before its stop rule held."""
        return self.stopped_by == "cap"

    @classmethod
    def closed_form(cls) -> Convergence:
        return cls(rule="closed form: no iteration", converged=True, stopped_by="closed_form", unit=None, steps=0, cap=None, cap_hyperparameter=None)

    @classmethod
    def unreported(cls) -> Convergence:
        return cls(
            rule="not reported: the method reported no iterations and does not declare itself closed form",
            converged=None, stopped_by="unreported", unit=None, steps=0, cap=None, cap_hyperparameter=None,
        )

    def describe(self) -> str:
        """One line for logs and footnotes."""
        values = ", ".join(f"{name} {_number(value)}" for name, value in self.final.items())
        got = f" ({values})" if values else ""
        if self.stopped_by == "stop_rule":
            return f"converged: stop rule met after {self.steps} {self.unit}(s){got}; rule: {self.rule}"
        if self.stopped_by == "cap":
            return (
                f"NOT converged: cut off by its cap {self.cap_hyperparameter} = {self.cap} after {self.steps} "
                f"{self.unit}(s){got} before its stop rule held; rule: {self.rule}"
            )
        if self.stopped_by == "fixed_steps":
            return f"ran its fixed steps ({self.steps} {self.unit}(s)){got}; {self.rule}"
        return self.rule

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule, "converged": self.converged, "stopped_by": self.stopped_by, "unit": self.unit,
            "steps": self.steps, "cap": self.cap, "cap_hyperparameter": self.cap_hyperparameter,
            "final": dict(self.final), "target": dict(self.target), "history": [dict(record) for record in self.history],
        }

    @classmethod
    def from_json(cls, data: object) -> Convergence:
        """Parse and type-check a card's ``convergence`` object (errors name the field)."""
        if not isinstance(data, Mapping) or set(data) != set(_FIELDS):
            found = sorted(data) if isinstance(data, Mapping) else type(data).__name__
            raise PoisonError(f"the convergence entry must have exactly the fields {', '.join(_FIELDS)}; found {found}")
        converged = data["converged"]
        if converged is not None and not isinstance(converged, bool):
            raise PoisonError(f"convergence.converged must be true, false or null, got {converged!r}")
        unit = _optional(data, "unit", str)
        history = data["history"]
        if not isinstance(history, list) or not all(isinstance(record, Mapping) for record in history):
            raise PoisonError("convergence.history must be a list of objects")
        return cls(
            rule=_required(data, "rule", str),
            converged=converged,
            stopped_by=_required(data, "stopped_by", str),
            unit=unit,
            steps=_required(data, "steps", int),
            cap=_optional(data, "cap", int),
            cap_hyperparameter=_optional(data, "cap_hyperparameter", str),
            final={name: _value(f"convergence.final.{name}", value) for name, value in _object(data, "final").items()},
            target={name: _finite(f"convergence.target.{name}", value) for name, value in _object(data, "target").items()},
            history=tuple(_record(index, record, unit) for index, record in enumerate(history)),
        )


def json_value(value: Any) -> Any:
    """``value`` as the history and ``final`` store it: plain int or float (non-finite: None), mappings recursively.

    Accepts numpy and torch scalars (anything ``float()`` takes).
    """
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, Mapping):
        return {str(name): json_value(item) for name, item in value.items()}
    number = float(value)
    return number if math.isfinite(number) else None


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _required(data: Mapping[str, Any], key: str, kind: type) -> Any:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise PoisonError(f"convergence.{key} has the wrong type ({type(value).__name__})")
    return value


def _optional(data: Mapping[str, Any], key: str, kind: type) -> Any:
    return None if data[key] is None else _required(data, key, kind)


def _object(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data[key]
    if not isinstance(value, Mapping):
        raise PoisonError(f"convergence.{key} must be an object")
    return value


def _value(where: str, value: object) -> float | None:
    if value is None:
        return None
    if not _is_number(value) or not math.isfinite(value):  # type: ignore[arg-type]
        raise PoisonError(f"{where} must be a finite number or null, got {value!r}")
    return value if isinstance(value, int) else float(value)  # type: ignore[arg-type,return-value]


def _finite(where: str, value: object) -> float:
    if value is None:
        raise PoisonError(f"{where} must be a finite number, got null")
    result = _value(where, value)
    assert result is not None
    return result


def _record(index: int, record: Mapping[str, Any], unit: str | None) -> dict[str, Any]:
    where = f"convergence.history[{index}]"
    if unit is None or not isinstance(record.get(unit), int) or isinstance(record.get(unit), bool):
        raise PoisonError(f"{where} lacks its step number {unit!r}")
    parsed: dict[str, Any] = {}
    for name, value in record.items():
        if name == unit:
            parsed[name] = value
        elif isinstance(value, Mapping):
            parsed[name] = {key: _value(f"{where}.{name}.{key}", item) for key, item in value.items()}
        else:
            parsed[name] = _value(f"{where}.{name}", value)
    return parsed
