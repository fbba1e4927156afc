"""Every error the benchmark raises on purpose, under one base: :class:`MtlueError`.

A ``MtlueError`` is a user-facing failure whose message names the problem and its fix: the
command line prints it as one line and exits with status 2, so a command catches this base and
nothing else. Anything else that escapes is a bug and keeps its traceback.

This module imports nothing from the project, so any module can raise these errors without
importing another one's machinery (which is how the import cycles between ``mtlue.config``,
``mtlue.methods`` and ``mtlue.poisons`` used to arise). Each error keeps its historical
built-in base (``ValueError``, ``RuntimeError``, ...) beside ``MtlueError``, so code that caught
it by that base still does. The modules that raise an error re-export it under its old name
(``mtlue.config.ConfigError``, ``victims.weighting.WeightingError``, ...).

Errors that carry structured fields (``mtlue.data.download.ManualDownloadRequired``,
``victims.losses.NonFiniteLossError``) live beside the code that fills them, on a base from here.
"""

from __future__ import annotations

__all__ = [
    "BackboneError",
    "CheckpointError",
    "CommandError",
    "ConfigError",
    "DatasetError",
    "DefenseError",
    "DeviceError",
    "FidelityError",
    "LeaderboardError",
    "MethodError",
    "MetricError",
    "MtlueError",
    "OutputError",
    "PoisonError",
    "RegistryError",
    "ReportError",
    "SubmissionError",
    "SurrogateError",
    "TrackingError",
    "VictimError",
    "WeightingError",
]


class MtlueError(Exception):
    """A failure the user can fix; the message says what to change."""


class CommandError(MtlueError, RuntimeError):
    """A command's arguments cannot be used together (``--seed`` listed twice, ...)."""


class RegistryError(MtlueError, ValueError):
    """A registry entry is declared wrongly (bad name, name taken twice, broken plugin)."""


# -- configuration -------------------------------------------------------------------------


class ConfigError(MtlueError, ValueError):
    """The configuration is invalid; the message names the key and what to change."""


class MethodError(ConfigError):
    """A method cannot be created or run as configured; the message names the fix.

    A ``ConfigError``: the method, its hyperparameters and its inputs all come from the config.
    """


class SurrogateError(MethodError):
    """A surrogate cannot be trained or loaded as asked; the message names the fix."""


class FidelityError(ConfigError):
    """The protocol table is malformed or a key cannot be resolved; the message names the row."""


# -- data ----------------------------------------------------------------------------------


class DatasetError(MtlueError, RuntimeError):
    """A dataset is missing, malformed or fails its checksums; the message says how to fix it."""


class PoisonError(DatasetError):
    """A perturbation store (or a perturbation array) is invalid; the message names the cause and the fix.

    A poison store is the published half of a dataset, so this is a ``DatasetError``.
    """


class SubmissionError(PoisonError):
    """A perturbation file handed in to the leaderboard cannot be accepted or installed."""


class OutputError(MtlueError, RuntimeError):
    """An output path that would destroy or overwrite something it must not; the message names the
    path and what to pass instead."""


class TrackingError(MtlueError, RuntimeError):
    """The MLflow store cannot be opened or written; the message names the store and the fix."""


# -- victims -------------------------------------------------------------------------------


class VictimError(MtlueError):
    """A victim (or surrogate) cannot be built or trained as asked."""


class BackboneError(VictimError, ValueError):
    """A backbone cannot be built as asked; the message names the alternatives."""


class WeightingError(VictimError, ValueError):
    """A strategy name, hyperparameter or input that cannot be used."""


class DefenseError(VictimError, ValueError):
    """A defense name, option, composition or input that cannot be used; the message says the fix."""


class DeviceError(VictimError, ValueError):
    """A requested device or precision is not available here."""


class CheckpointError(VictimError, RuntimeError):
    """A checkpoint is unreadable or belongs to another run; the message says what to do."""


class MetricError(VictimError, ValueError):
    """A metric cannot be computed from the data given; the message says why."""


# -- results -------------------------------------------------------------------------------


class ReportError(MtlueError, ValueError):
    """Results cannot be turned into tables or leaderboard entries; the message says why and what to do."""


class LeaderboardError(ReportError):
    """A leaderboard entry is invalid; the message names the entry and the problem."""
