"""Where log records go when ``mtlue`` runs: one line each on stderr.

The library logs through ``logging.getLogger(__name__)`` and configures nothing, as a library
should. The command line calls :func:`configure_logging` once per invocation, so every job's
log (the workflow sends each job's stderr to ``logs/...``) shows the records, e.g.::

    2026-01-01 12:00:03 INFO mtlue.methods.progress: em round 3/100: train_error 0.21 (stop at <= 0.01), ...

Our packages (``mtlue``, ``victims``) log from ``level`` up (INFO by default); other libraries
only their warnings and errors, so MLflow's and alembic's INFO chatter stays out of the logs.
A record that spans lines (a traceback) is joined with `` | `` so that each record stays one
line a ``grep`` finds whole. Stdout is left alone: it carries the commands' results.

Long loops (a poison generation's rounds or batches, a dataset's preparation, a download, a
victim's training) also draw a tqdm bar on stderr (:func:`progress_bar`), only on a terminal
and not after ``mtlue --quiet``: in a job's log file a bar would be noise, the log lines say it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

__all__ = ["LEVELS", "OUR_LOGGERS", "configure_logging", "progress_bar", "show_progress"]

#: The ``--log-level`` choices.
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
#: Loggers shown from ``level``; every other library from WARNING.
OUR_LOGGERS = ("mtlue", "victims")
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
#: False after ``configure_logging(progress=False)`` (``mtlue --quiet``).
_bars = True


class _OneLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return " | ".join(line for line in super().format(record).splitlines() if line.strip())


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the record (as logging's last resort
    does), so a redirected or captured stderr gets the lines, not the stream of the first call."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        return sys.stderr


def configure_logging(level: str = "INFO", *, progress: bool = True) -> None:
    """Send log records to stderr, one line each (module docstring); calling it again replaces the
    setup. ``progress=False`` turns every progress bar off (:func:`show_progress`)."""
    global _bars
    _bars = progress
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, got {level!r}")
    root = logging.getLogger()
    for handler in [handler for handler in root.handlers if isinstance(handler, _StderrHandler)]:
        root.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(_OneLineFormatter(_FORMAT, _DATE_FORMAT))
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name in OUR_LOGGERS:
        logging.getLogger(name).setLevel(level)


def show_progress(requested: bool | None = None) -> bool:
    """Whether to draw a progress bar: as ``requested`` (``--progress``/``--no-progress``), else
    when stderr is a terminal and the command line did not ask for ``--quiet``."""
    if requested is not None:
        return requested
    return _bars and sys.stderr.isatty()


def progress_bar(*, total: float | None, desc: str, unit: str, requested: bool | None = None, **options: Any) -> Any:
    """A tqdm bar on stderr that vanishes when done, disabled unless :func:`show_progress`."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False, disable=not show_progress(requested), **options)
