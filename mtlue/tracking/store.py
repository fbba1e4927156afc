"""Opening an MLflow tracking store that many jobs write at once.

The workflow runs many jobs in parallel against one SQLite file (``sqlite:///results/mlflow.db``).
MLflow alone has two known failure modes there:

* **Concurrent first-time schema creation.** ``SqlAlchemyStore.__init__`` checks whether the
  tables exist and, if not, creates them and runs the Alembic migrations, without a lock
  (mlflow 3.17's tracking store; only its jobs/workspace stores use ``_safe_initialize_tables``).
  Two fresh processes then both migrate and one fails with ``duplicate column name`` or
  ``table already exists`` (daizutabi/hydraflow#245, mlflow/mlflow#19943). Here every process
  opens the store under an inter-process file lock beside the database (``mlflow.db.lock``),
  so exactly one creates the schema and the others find it complete.
* **``database is locked`` under write contention** (mlflow/mlflow#6490, #20014). MLflow sets
  ``PRAGMA busy_timeout = 20000`` per session; on top of that the database is switched to
  write-ahead logging (readers never block the writer, a persistent property of the file, set
  once under the lock) and every MLflow call is retried with jittered exponential backoff on
  a lock error until :data:`RETRY_SECONDS` have passed.

WAL needs all writers on one host (shared memory): for jobs on several cluster nodes, point
``--tracking-uri`` at an MLflow server (``http://...``) or a server database instead of a
SQLite file on a network filesystem.

A process that opened a SQLite store checkpoints its write-ahead log into the database file when
it exits (:func:`_checkpoint_at_exit`): ``mtlue`` freezes the garbage collector at the end of
a job (:func:`mtlue.cli.main`), so MLflow's pooled connection is never closed, and closing is
what used to fold the log back into ``mlflow.db``; the file alone stays complete.

For a SQLite store, run artifacts go beside the database (``<db folder>/mlruns-artifacts``),
never into the working directory's ``./mlruns``. mlflow is imported only here and only when a
store is opened: it takes seconds to import.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import re
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from mtlue.errors import TrackingError

__all__ = [
    "ARTIFACTS_DIRNAME",
    "LOCK_SECONDS",
    "RETRY_SECONDS",
    "TrackingError",
    "artifact_root",
    "experiment_id",
    "is_lock_error",
    "open_client",
    "open_experiment",
    "retrying",
    "sqlite_path",
]

#: Folder beside a SQLite database that holds the runs' artifacts.
ARTIFACTS_DIRNAME = "mlruns-artifacts"
#: How long one MLflow call is retried while the database is locked.
RETRY_SECONDS = 300.0
#: How long a process waits for another one to finish initialising the store.
LOCK_SECONDS = 600.0

_LOCK_MESSAGES = ("database is locked", "database table is locked", "database schema is locked", "sqlite_busy")

T = TypeVar("T")


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (relative to the working directory), else None."""
    if not uri.startswith("sqlite:"):
        return None
    if not uri.startswith("sqlite:///") or uri in ("sqlite:///", "sqlite:///:memory:"):
        raise TrackingError(
            f"tracking URI {uri!r} is not a SQLite file; use sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    return Path(uri.removeprefix("sqlite:///").split("?", 1)[0])


def artifact_root(uri: str, experiment: str | None = None) -> str | None:
    """Where the runs of a new experiment keep their artifacts: beside a SQLite database
    (``<db folder>/mlruns-artifacts[/<experiment>]``), else None (the server's choice)."""
    path = sqlite_path(uri)
    if path is None:
        return None
    root = path.resolve().parent / ARTIFACTS_DIRNAME
    if experiment is not None:
        root = root / (re.sub(r"[^A-Za-z0-9_.-]", "_", experiment).strip(".") or "experiment")
    return root.as_uri()


def is_lock_error(error: BaseException) -> bool:
    """Whether ``error`` (or an exception it wraps) is SQLite's transient "database is locked"."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if any(message in str(current).lower() for message in _LOCK_MESSAGES):
            return True
        current = current.__cause__ or current.__context__
    return False


def retrying(operation: Callable[[], T], what: str, uri: str, *, seconds: float | None = None) -> T:
    """``operation()``, retried with jittered exponential backoff while the store is locked.

    Other errors, and a lock that outlasts ``seconds`` (default :data:`RETRY_SECONDS`), raise
    :class:`TrackingError`. A failed SQLite write is rolled back by MLflow, so repeating it
    never duplicates a row.
    """
    seconds = RETRY_SECONDS if seconds is None else seconds
    deadline = time.monotonic() + seconds
    delay = 0.05
    while True:
        try:
            return operation()
        except TrackingError:
            raise
        except Exception as error:
            if is_lock_error(error) and time.monotonic() + delay < deadline:
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 5.0)
                continue
            hint = (
                f"the database stayed locked for {seconds:.0f} s: fewer parallel jobs, or an MLflow server"
                if is_lock_error(error)
                else "check that the URI is right and the store is reachable and writable"
            )
            raise TrackingError(f"MLflow store {uri}: {what} failed ({type(error).__name__}: {_first_line(error)}); {hint}") from error


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


class _DropLockNoise(logging.Filter):
    """MLflow logs every SQLite lock error with a traceback before raising it; those are retried here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not is_lock_error(Exception(record.getMessage()))


def _quiet_environment() -> None:
    # No telemetry and no hub look-ups from a benchmark job.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    logger = logging.getLogger("mlflow.store.db.utils")
    if not any(isinstance(item, _DropLockNoise) for item in logger.filters):
        logger.addFilter(_DropLockNoise())


def _enable_wal(path: Path) -> None:
    connection = sqlite3.connect(path, timeout=60)
    try:
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    finally:
        connection.close()
    if str(mode).lower() != "wal":
        raise TrackingError(
            f"SQLite store {path} cannot use write-ahead logging (journal mode stays {mode!r}); "
            f"keep the database on a local disk, or use an MLflow server URI"
        )


_CHECKPOINTED: set[Path] = set()


def _checkpoint_wal(path: Path) -> None:
    """Copy the write-ahead log of ``path`` into the database and truncate it (best effort:
    another job still writing keeps its frames, and its own exit folds them in)."""
    try:
        connection = sqlite3.connect(path, timeout=5)
        try:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            connection.close()
    except sqlite3.Error as error:
        print(f"warning: could not checkpoint the write-ahead log of {path}: {error}", file=sys.stderr)


def _checkpoint_at_exit(path: Path) -> None:
    """Register :func:`_checkpoint_wal` for ``path`` once per process."""
    resolved = path.resolve()
    if resolved not in _CHECKPOINTED:
        _CHECKPOINTED.add(resolved)
        atexit.register(_checkpoint_wal, resolved)


def open_client(uri: str, *, lock_seconds: float = LOCK_SECONDS) -> Any:
    """An ``MlflowClient`` on ``uri`` whose store exists with the current schema.

    For a SQLite URI the database is created (or found complete) under a file lock beside it,
    so parallel first jobs never race on the schema.
    """
    return open_experiment(uri, None, lock_seconds=lock_seconds)[0]


def open_experiment(uri: str, experiment: str | None, *, lock_seconds: float = LOCK_SECONDS) -> tuple[Any, str | None]:
    """``(client, id of experiment)`` on ``uri``: :func:`open_client`, then :func:`experiment_id`
    inside the same lock (no id when ``experiment`` is None)."""
    from filelock import FileLock, Timeout

    if not uri or not isinstance(uri, str):
        raise TrackingError(f"tracking URI must be a non-empty string such as sqlite:///results/mlflow.db, got {uri!r}")
    _quiet_environment()
    path = sqlite_path(uri)

    def open_store() -> tuple[Any, str | None]:
        client = retrying(lambda: _client_with_store(uri), "creating or opening the database", uri)
        return client, None if experiment is None else experiment_id(client, uri, experiment)

    if path is None:
        return open_store()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TrackingError(f"cannot create the folder of SQLite store {path} ({error}); choose a writable --tracking-uri") from None
    lock = FileLock(str(path) + ".lock", timeout=lock_seconds)
    try:
        with lock:
            _enable_wal(path)
            _checkpoint_at_exit(path)
            return open_store()
    except Timeout:
        raise TrackingError(
            f"waited {lock_seconds:.0f} s for {lock.lock_file} held by another process initialising {path}; "
            f"if no mtlue job is running, delete that lock file"
        ) from None
    except sqlite3.DatabaseError as error:
        raise TrackingError(f"{path} is not a usable SQLite database ({error}); move it away or choose another --tracking-uri") from None


def _client_with_store(uri: str) -> Any:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    # The first query opens the store, which is what creates and migrates the schema: now, under the lock.
    client.search_experiments(max_results=1)
    return client


def experiment_id(client: Any, uri: str, name: str) -> str:
    """The id of experiment ``name``, created (artifacts beside a SQLite store) when missing.

    Parallel jobs may create the same experiment at once: the loser of that race finds the
    winner's experiment instead of failing.
    """
    from mlflow.exceptions import MlflowException

    if not name or len(name) > 500:
        raise TrackingError(f"experiment name must be 1 to 500 characters, got {name!r}; pass another --experiment")

    def get_or_create() -> str:
        found = client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                raise TrackingError(
                    f"experiment {name!r} in {uri} is deleted; restore it (`mlflow experiments restore "
                    f"--experiment-id {found.experiment_id}`) or pass another --experiment"
                )
            return str(found.experiment_id)
        try:
            return str(client.create_experiment(name, artifact_location=artifact_root(uri, name)))
        except MlflowException as error:
            if "already exists" in str(error).lower() or getattr(error, "error_code", "") == "RESOURCE_ALREADY_EXISTS":
                raced = client.get_experiment_by_name(name)
                if raced is not None:
                    return str(raced.experiment_id)
            raise

    return retrying(get_or_create, f"finding or creating experiment {name!r}", uri)
