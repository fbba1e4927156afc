"""Live progress of a poison generation, and the convergence record it ends with.

One mechanism for every method, so that a user can tell a converged poison from one cut off by
a cap while it runs and afterwards:

1. ``UEMethod.generate`` calls :meth:`GenerationMonitor.reset` before the method runs;
2. a method that iterates declares its stop rule and cap (:meth:`~GenerationMonitor.begin`),
   reports one record per round / epoch / batch (:meth:`~GenerationMonitor.step`) and says what
   ended the run (:meth:`~GenerationMonitor.end`);
3. ``UEMethod.generate`` takes the :class:`~mtlue.poisons.Convergence` record
   (:meth:`~GenerationMonitor.result`), which ``make_poison`` writes into the card. A method
   that reported nothing gets ``closed_form`` if it declares itself closed form (clean, LSP,
   AR), else ``unreported``.

Every record is logged as one readable line (logger ``mtlue.methods.progress``, INFO) and
handed to the listeners, e.g. the MLflow run of ``mtlue poison``, which logs it as metrics at
``step=`` the round / epoch / batch. A run that a cap ends before its stop rule holds is
logged as a WARNING naming the cap and the hyperparameter to raise. A listener that fails
stops the generation: listeners that must not (a tracking store) catch their own errors.
Misuse by a method (a step before ``begin``, no ``end``) is a ``MethodError`` naming the method.

No torch here: ``GenerationContext`` carries a monitor, and the command line loads it to list
methods.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mtlue.errors import MethodError
from mtlue.logs import progress_bar
from mtlue.poisons.convergence import STOPPED_BY, Convergence, json_value

__all__ = ["GenerationMonitor", "ProgressListener"]

logger = logging.getLogger(__name__)

#: Called with (step, values) for every record a method reports; ``values`` excludes the step.
ProgressListener = Callable[[int, Mapping[str, Any]], None]


class GenerationMonitor:
    """Collects one generation's records, logs them, passes them on, and builds its record."""

    def __init__(self, listeners: Iterable[ProgressListener] = ()) -> None:
        self._listeners = list(listeners)
        self.reset()

    def __repr__(self) -> str:
        return f"GenerationMonitor(listeners={len(self._listeners)}, method={self._method!r})"

    def add_listener(self, listener: ProgressListener) -> None:
        """Pass every further record to ``listener`` too."""
        self._listeners.append(listener)

    @property
    def convergence(self) -> Convergence | None:
        """The record of the last finished generation (None before one finished)."""
        return self._result

    # -- called by UEMethod.generate ---------------------------------------------------------

    def reset(self, method: str = "") -> None:
        """Forget the previous generation; ``method`` names the next one in the log lines."""
        self._method = method
        self._rule: str | None = None
        self._unit = ""
        self._cap: int | None = None
        self._cap_hyperparameter: str | None = None
        self._planned: int | None = None
        self._target: dict[str, float] = {}
        self._history: list[dict[str, Any]] = []
        self._ended: Convergence | None = None
        self._result: Convergence | None = None
        self._bar: Any = None

    def result(self, *, closed_form: bool) -> Convergence:
        """The record of the generation that just ran (module docstring, step 3)."""
        if self._rule is not None and self._ended is None:
            raise self._bug(f"reported {len(self._history)} {self._unit}(s) but not how its run ended (no end() call)")
        if self._ended is not None:
            self._result = self._ended
        else:
            self._result = Convergence.closed_form() if closed_form else Convergence.unreported()
            if not closed_form:
                logger.warning(
                    "%s reported no progress and does not declare itself closed form: its card records "
                    "convergence 'unreported'", self._method or "the method",
                )
        return self._result

    # -- called by the method ----------------------------------------------------------------

    def begin(
        self,
        *,
        rule: str,
        unit: str,
        cap: int | None = None,
        cap_hyperparameter: str | None = None,
        planned: int | None = None,
        target: Mapping[str, float] | None = None,
        bar: bool = True,
    ) -> None:
        """Declare the run: its stop ``rule`` in words, what a step is (``unit``: "round", "epoch",
        "batch"), the ``cap`` on steps and the hyperparameter that sets it, or, for a method
        without a rule, the ``planned`` number of steps; ``target`` the rule's threshold per
        statistic (the statistic must end at most this). A progress bar counts the steps on a
        terminal (:func:`mtlue.logs.progress_bar`); ``bar=False`` for a method that draws its own."""
        if self._rule is not None and self._ended is None:
            raise self._bug(f"declared a new run while its run of {len(self._history)} {self._unit}(s) had not ended")
        if self._rule is not None:
            self.reset(self._method)  # a library function run again on the same context
        if not unit:
            raise self._bug("declared no unit: name what one step is, e.g. 'round'")
        self._rule, self._unit, self._cap, self._cap_hyperparameter = rule, unit, cap, cap_hyperparameter
        self._planned = planned if cap is None else cap
        self._target = {name: float(value) for name, value in (target or {}).items()}
        self._bar = progress_bar(total=self._planned, desc=self._method or "generation", unit=unit, requested=None if bar else False)

    def step(self, step: int, values: Mapping[str, Any]) -> None:
        """Report step ``step`` (1, 2, ...): numbers, None, or mappings of them (e.g. per-task errors)."""
        if self._rule is None:
            raise self._bug("reported a step before declaring its run (step() before begin())")
        if self._unit in values:
            raise self._bug(f"reported values that repeat the step number {self._unit!r}; pass it as step")
        record = {name: json_value(value) for name, value in values.items()}
        self._history.append({self._unit: int(step), **record})
        logger.info("%s", self._line(int(step), record))
        self._bar.update(1)
        for listener in self._listeners:
            listener(int(step), record)

    def end(self, stopped_by: str, final: Mapping[str, float | None] | None = None) -> Convergence:
        """Say what ended the run (a key of ``mtlue.poisons.STOPPED_BY``: ``stop_rule``, ``cap``,
        ``fixed_steps``); ``final`` defaults to the last record's values of the ``target``
        statistics. Logs the outcome: a WARNING when the cap cut the run short."""
        if self._rule is None:
            raise self._bug("ended a run it never declared (end() before begin())")
        if stopped_by not in ("stop_rule", "cap", "fixed_steps"):
            raise self._bug(f"says its run stopped by {stopped_by!r}; an iterating method stops by stop_rule, cap or fixed_steps")
        self._bar.close()
        if final is None:
            last = self._history[-1] if self._history else {}
            final = {name: last.get(name) for name in self._target}
        self._ended = Convergence(
            rule=self._rule, converged=STOPPED_BY[stopped_by], stopped_by=stopped_by,
            unit=self._unit if self._history else None, steps=len(self._history), cap=self._cap,
            cap_hyperparameter=self._cap_hyperparameter, final={name: json_value(value) for name, value in final.items()},
            target=dict(self._target), history=tuple(self._history),
        )
        self._log_outcome(self._ended)
        return self._ended

    def _bug(self, problem: str) -> Exception:
        return MethodError(f"method {self._method or '?'} {problem}: a bug in the method, not in the data")

    # -- log lines ---------------------------------------------------------------------------

    def _line(self, step: int, record: Mapping[str, Any]) -> str:
        of = f"/{self._planned}" if self._planned is not None else ""
        parts = []
        for name, value in record.items():
            if isinstance(value, Mapping):
                continue  # per-task values: in the card's history and in MLflow, too long for a line
            text = f"{value:.1f}" if name == "seconds" and value is not None else _number(value)
            if name in self._target:
                text += f" (stop at <= {_number(self._target[name])})"
            parts.append(f"{name} {text}")
        return f"{self._method or 'generation'} {self._unit} {step}{of}: {', '.join(parts)}"

    def _log_outcome(self, record: Convergence) -> None:
        name = self._method or "the method"
        if not record.cut_off:
            logger.info("%s %s", name, record.describe())
            return
        unmeasured = record.final and all(value is None for value in record.final.values())
        if unmeasured:
            advice = (
                f"its stop statistic could not be measured ({', '.join(record.final)}: no task has an error rate), "
                f"so the rule can never hold and {record.cap_hyperparameter} alone sets the run's length"
            )
        else:
            advice = (
                f"the poison may protect less than the method can: raise {record.cap_hyperparameter} "
                f"(mtlue poison --set {record.cap_hyperparameter}=N, or poisons.hyperparameters.{self._method or 'METHOD'}."
                f"{record.cap_hyperparameter} in the config) and generate it again"
            )
        logger.warning("%s %s; %s", name, record.describe(), advice)


def _number(value: float | None) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"
