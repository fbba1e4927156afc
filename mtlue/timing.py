"""Where a job's time goes: start-up, work and shutdown, in wall and CPU seconds.

A tiny victim trains for 10-20 s, and a process that does so pays seconds before its first
training step (interpreter, torch, timm, MLflow, data, model) and after its last (results,
MLflow artifacts, interpreter exit). To see that share, each process keeps one :data:`CLOCK`:

- :func:`victims.train.fit` marks a *work span* from its first training step to the end of its
  final evaluation, and :func:`mtlue.methods.make_poison` one around the method's generation;
- the ``mtlue`` command line, run as a program (``main()`` without arguments) with
  ``MTLUE_JOB_TIMING`` set in the environment (the Snakefile sets it for every job), prints one
  line on stderr when the process exits, which lands in the job's log::

      mtlue timing: {"format": "mtlue-job-timing/1", "command": "victim", ...}

The line's fields (wall times are Unix times; ``cpu`` is this process's CPU time, all threads):

- ``command`` (``victim``, ``poison``, ...) and ``pid``;
- ``process_started``: when the process started (``null`` where the platform does not say);
- ``work_started`` / ``work_ended``: the first work span's start and the last one's end; a
  command that marks no span (``mtlue prepare``, ``mtlue report``) counts its whole handler
  as work;
- ``exited``: when the last exit handler ran (the interpreter's own teardown follows it);
- ``startup_seconds``, ``work_seconds``, ``shutdown_seconds``: the three consecutive phases,
  and ``cpu_seconds``: ``{"startup", "work", "shutdown"}``, the CPU seconds of each; ``busy_seconds`` is the time inside work spans and
  ``work_spans`` their number, so that ``work_seconds - busy_seconds`` is what a multi-seed
  victim job spends between seeds (set-up, tracking runs, figures).

This module is torch-free and cheap to import, so marking costs nothing measurable.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["CLOCK", "ENVIRONMENT_VARIABLE", "FORMAT", "LINE_PREFIX", "Instant", "JobClock", "enabled", "parse_line", "process_started"]

FORMAT = "mtlue-job-timing/1"
#: What starts the line a job prints at exit; :func:`parse_line` reads it back.
LINE_PREFIX = "mtlue timing: "
#: Set (to anything but "" or "0") to make ``mtlue`` print that line.
ENVIRONMENT_VARIABLE = "MTLUE_JOB_TIMING"


_STARTED: dict[int, float | None] = {}


def process_started() -> float | None:
    """Unix time at which this process started, or None where the platform does not tell.

    Linux: from /proc (clock ticks since boot, 10 ms resolution); elsewhere from psutil when it
    is installed (Snakemake depends on it). Read once per process, so every record of a
    process names the same start.
    """
    pid = os.getpid()
    if pid not in _STARTED:
        _STARTED[pid] = _read_process_start()
    return _STARTED[pid]


def _read_process_start() -> float | None:
    try:
        with open("/proc/self/stat", encoding="ascii") as handle:
            ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as handle:
            uptime = float(handle.read().split()[0])
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    try:
        return float(psutil.Process().create_time())
    except Exception:  # psutil.Error and platform quirks: the start time is optional
        return None


@dataclass(frozen=True)
class Instant:
    """A moment of this process: Unix time and the process's CPU seconds so far."""

    wall: float
    cpu: float

    @classmethod
    def now(cls) -> Instant:
        return cls(time.time(), time.process_time())


class JobClock:
    """The work spans of one process (see the module docstring)."""

    def __init__(self) -> None:
        self.command: str | None = None
        self.first: Instant | None = None
        self.last: Instant | None = None
        self.busy_seconds = 0.0
        self.spans = 0
        self.handler: tuple[Instant, Instant] | None = None
        self._open: Instant | None = None
        self._depth = 0

    def work_started(self) -> Instant:
        """Open a work span (the first training step, a method's generation).

        Spans nest (a method that calls ``fit`` inside its generation): only the outermost
        one counts.
        """
        instant = Instant.now()
        if self.first is None:
            self.first = instant
        if self._depth == 0:
            self._open = instant
        self._depth += 1
        return instant

    def work_ended(self) -> Instant:
        """Close the innermost open span; closing the outermost one ends a span."""
        instant = Instant.now()
        self._depth = max(self._depth - 1, 0)
        if self._depth == 0 and self._open is not None:
            self.busy_seconds += instant.wall - self._open.wall
            self.spans += 1
            self._open = None
            self.last = instant
        return instant

    def record(self, exited: Instant, started: float | None) -> dict[str, Any]:
        """The timing record of this process, as the exit line prints it."""
        begin, end = self.first, self.last
        if begin is None and self.handler is not None:
            begin, end = self.handler[0], self.handler[1]
        start = Instant(started, 0.0) if started is not None else None
        begin = begin or exited
        end = end or exited

        def seconds(a: Instant | None, b: Instant) -> float | None:
            return None if a is None else round(b.wall - a.wall, 3)

        def cpu(a: Instant | None, b: Instant) -> float | None:
            return None if a is None else round(b.cpu - a.cpu, 3)

        return {
            "format": FORMAT,
            "command": self.command,
            "pid": os.getpid(),
            "process_started": started,
            "work_started": begin.wall,
            "work_ended": end.wall,
            "exited": exited.wall,
            "startup_seconds": seconds(start, begin),
            "work_seconds": seconds(begin, end),
            "shutdown_seconds": seconds(end, exited),
            "busy_seconds": round(self.busy_seconds, 3),
            "work_spans": self.spans,
            "cpu_seconds": {"startup": cpu(start, begin), "work": cpu(begin, end), "shutdown": cpu(end, exited)},
        }

    def report_at_exit(self, command: str) -> None:
        """Print this process's record on stderr when it exits (see the module docstring).

        Registered before the command runs, the handler runs after the exit handlers of what the
        command imports (they run in reverse order), so MLflow's and torch's count as shutdown.
        """
        self.command = command
        atexit.register(self._print_record)

    def _print_record(self) -> None:
        record = self.record(Instant.now(), process_started())
        sys.stderr.write(LINE_PREFIX + json.dumps(record, sort_keys=True) + "\n")
        sys.stderr.flush()


#: The clock of this process.
CLOCK = JobClock()


def enabled() -> bool:
    """Whether ``MTLUE_JOB_TIMING`` asks for the exit line."""
    return os.environ.get(ENVIRONMENT_VARIABLE, "") not in ("", "0")


def parse_line(line: str) -> dict[str, Any] | None:
    """The record of a ``mtlue timing:`` line (None for any other line)."""
    if not line.startswith(LINE_PREFIX):
        return None
    try:
        record = json.loads(line[len(LINE_PREFIX) :])
    except json.JSONDecodeError:
        return None
    return record if isinstance(record, dict) and record.get("format") == FORMAT else None
