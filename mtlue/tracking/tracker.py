"""One MLflow run per job: params, live per-epoch metrics, tags and artifacts.

:func:`track_job` opens the run when the job starts and ends it FINISHED when the job returns,
FAILED when it raises (KILLED on Ctrl-C or SIGTERM); the exception always propagates. With
tracking off (``settings is None``) it yields ``None`` and imports nothing, so every command
works without MLflow.

Run layout (every job kind):

* **tags**: the DAG axes (``dataset``, ``method``, ``backbone``, ``weighting``, ``defense``,
  ``seed``; absent axes are omitted), ``job`` (victim / surrogate / poison), ``git_commit``
  (also as ``mlflow.source.git.commit``), ``git_dirty``, ``mtlue_version``, content hashes
  (``data_train_hash``, ``data_test_hash``, ``poison_sha256``, ...) and every ``--tag``.
* **params**: the job's resolved configuration, flattened with ``.`` (lists as JSON), values cut
  to MLflow's 6000-character limit (the full configuration is the ``config.json`` artifact).
* **metrics**: epoch records flattened with ``/`` (``train_loss/<task>``, ``test/<task>/<metric>``,
  ...), step = epoch.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .store import TrackingError, open_experiment, retrying

__all__ = [
    "AXES",
    "JobTracker",
    "TrackingSettings",
    "flatten_metrics",
    "end_stale_runs",
    "flatten_params",
    "track_job",
]

#: Tags recording which process a run belongs to, so a rerun can tell a dead job's run from a live one.
HOST_TAG = "mtlue.host"
PID_TAG = "mtlue.pid"

#: The DAG's axes, tagged on every run that has them.
AXES: tuple[str, ...] = ("dataset", "method", "backbone", "weighting", "defense", "seed")

# MLflow's limits (mlflow.utils.validation): key length, values, batch sizes.
_MAX_KEY = 250
_MAX_PARAM_VALUE = 6000
_MAX_TAG_VALUE = 8000
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000
_KEY_CHARACTERS = re.compile(r"[^A-Za-z0-9_\-. /:]")
_TRUNCATED = "...[truncated]"


@dataclass(frozen=True)
class TrackingSettings:
    """Where and how a job logs itself: the ``--tracking-uri``, ``--experiment`` and ``--tag`` flags."""

    uri: str
    #: Experiment name; None means the dataset's name.
    experiment: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"TrackingSettings(uri={self.uri!r}, experiment={self.experiment!r}, tags={dict(self.tags)!r})"


def _key(text: str) -> str:
    return _KEY_CHARACTERS.sub("_", str(text))[:_MAX_KEY]


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - len(_TRUNCATED)] + _TRUNCATED


def flatten_params(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}, "c": [1, 2]}`` -> ``{"a.b": "1", "c": "[1, 2]"}``, within MLflow's limits."""
    flat: dict[str, str] = {}
    for name, value in config.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, f"{key}."))
            continue
        if isinstance(value, str):
            text = value
        elif isinstance(value, (Mapping, list, tuple)):
            text = json.dumps(value, sort_keys=True, default=str)
        else:
            text = str(value)
        flat[_key(key)] = _cut(text, _MAX_PARAM_VALUE)
    return flat


def flatten_metrics(record: Mapping[str, Any], prefix: str = "", skip: Sequence[str] = ("epoch",)) -> dict[str, float]:
    """Numbers of a (nested) record keyed by their ``/``-joined path; strings and lists are left out."""
    flat: dict[str, float] = {}
    for name, value in record.items():
        if not prefix and name in skip:
            continue
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            flat.update(flatten_metrics(value, f"{key}/", skip))
        elif isinstance(value, bool):
            flat[_key(key)] = float(value)
        elif isinstance(value, (int, float)):
            flat[_key(key)] = float(value)
    return flat


def _alive(pid: str | None) -> bool:
    if pid is None or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def end_stale_runs(client: Any, uri: str, experiment_id: str, *, run_name: str, tags: Mapping[str, str]) -> list[str]:
    """Mark KILLED every RUNNING run of the same job identity whose process is gone; return their ids.

    A job's identity is its run name, ``job`` tag and DAG-axis tags. A job killed by ``kill -9``
    (or a lost node) never ends its run; its rerun calls this before opening its own run, so the
    store keeps one live run per job. A run whose process still runs on this host is left alone;
    a run from another host is taken as dead (Snakemake runs each job once at a time).
    """
    identity = {key: tags[key] for key in ("job", *AXES) if key in tags}
    here = socket.gethostname()
    found = retrying(
        lambda: client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000),
        "looking for stale runs", uri,
    )
    ended = []
    for run in found:
        theirs = run.data.tags
        if run.info.run_name != run_name or any(theirs.get(key) != value for key, value in identity.items()):
            continue
        if theirs.get(HOST_TAG) == here and _alive(theirs.get(PID_TAG)):
            continue
        run_id = run.info.run_id
        retrying(lambda: client.set_tag(run_id, "error", "process ended without closing its run (killed?); superseded by a rerun"), "tagging a stale run", uri)
        retrying(lambda: client.set_terminated(run_id, "KILLED"), "ending a stale run as KILLED", uri)
        print(f"marked stale MLflow run {run_id} of {run_name!r} KILLED: its process is gone", file=sys.stderr)
        ended.append(run_id)
    return ended


class JobTracker:
    """The MLflow run of one job; every call is retried while a SQLite store is locked."""

    def __init__(self, client: Any, uri: str, experiment_id: str, experiment: str, run_id: str, job: str) -> None:
        self.client = client
        self.uri = uri
        self.experiment_id = experiment_id
        self.experiment = experiment
        self.run_id = run_id
        self.job = job
        self.logging_seconds = 0.0
        self._params: dict[str, str] = {}
        self._logged_steps: set[tuple[str, int]] = set()

    def __repr__(self) -> str:
        return f"JobTracker(job={self.job!r}, uri={self.uri!r}, experiment={self.experiment!r}, run_id={self.run_id!r})"

    @classmethod
    def start(
        cls,
        settings: TrackingSettings,
        *,
        job: str,
        experiment: str,
        run_name: str,
        tags: Mapping[str, Any],
        params: Mapping[str, Any],
    ) -> JobTracker:
        """Open the store and create the run (status RUNNING) with its tags (``settings.tags`` win),
        params and ``config.json``."""
        started = time.perf_counter()
        client, experiment_id = open_experiment(settings.uri, settings.experiment or experiment)
        assert experiment_id is not None
        merged = {**tags, **settings.tags, HOST_TAG: socket.gethostname(), PID_TAG: os.getpid()}
        all_tags = {str(key): _cut(str(value), _MAX_TAG_VALUE) for key, value in merged.items() if value is not None}
        end_stale_runs(client, settings.uri, experiment_id, run_name=run_name, tags=all_tags)
        run = retrying(
            lambda: client.create_run(experiment_id, tags=all_tags, run_name=run_name), "creating the run", settings.uri,
        )
        tracker = cls(client, settings.uri, experiment_id, settings.experiment or experiment, run.info.run_id, job)
        tracker.log_params(params)
        tracker.log_json("config.json", params)
        tracker.logging_seconds += time.perf_counter() - started
        return tracker

    @contextlib.contextmanager
    def _timed(self) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.logging_seconds += time.perf_counter() - started

    def _batch(self, what: str, **entities: Any) -> None:
        retrying(lambda: self.client.log_batch(self.run_id, **entities), what, self.uri)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Flatten and log ``params``; a key already logged with the same value is skipped."""
        from mlflow.entities import Param

        flat = flatten_params(params)
        changed = sorted(key for key, value in flat.items() if key in self._params and self._params[key] != value)
        if changed:
            raise TrackingError(f"run {self.run_id}: param(s) {', '.join(changed)} already logged with another value")
        new = {key: value for key, value in flat.items() if key not in self._params}
        items = [Param(key, value) for key, value in new.items()]
        with self._timed():
            for start in range(0, len(items), _PARAMS_PER_BATCH):
                self._batch("logging params", params=items[start : start + _PARAMS_PER_BATCH])
        self._params.update(new)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(str(key), _cut(str(value), _MAX_TAG_VALUE)) for key, value in tags.items() if value is not None]
        with self._timed():
            for start in range(0, len(items), _PARAMS_PER_BATCH):
                self._batch("setting tags", tags=items[start : start + _PARAMS_PER_BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        items = [Metric(_key(key), float(value), timestamp, int(step)) for key, value in metrics.items() if value is not None]
        with self._timed():
            for start in range(0, len(items), _METRICS_PER_BATCH):
                self._batch(f"logging metrics of step {step}", metrics=items[start : start + _METRICS_PER_BATCH])

    def log_epoch(self, record: Mapping[str, Any], prefix: str = "", step_key: str = "epoch") -> None:
        """Log one record (``fit``'s history, a poison generation's history) at step = its ``step_key``."""
        step = int(record[step_key])
        self.log_metrics(flatten_metrics(record, prefix, skip=(step_key,)), step=step)
        self._logged_steps.add((prefix, step))

    def log_history(self, history: Sequence[Mapping[str, Any]], prefix: str = "", step_key: str = "epoch") -> int:
        """Log the records of ``history`` not logged live (epochs of a resumed run); returns how many."""
        missing = [record for record in history if (prefix, int(record[step_key])) not in self._logged_steps]
        for record in missing:
            self.log_epoch(record, prefix, step_key)
        return len(missing)

    def progress_listener(self) -> Callable[[int, Mapping[str, Any]], None]:
        """A ``GenerationMonitor`` listener (mtlue.methods.progress) that logs each round / epoch /
        batch of a poison generation as it ends, at step = its number. As with
        :meth:`epoch_callback`, a step the store does not take is reported once on stderr and
        left to :meth:`log_history` at the end of the job (from the card's history)."""
        warned = False

        def log(step: int, values: Mapping[str, Any]) -> None:
            nonlocal warned
            try:
                self.log_metrics(flatten_metrics(values), step=step)
                self._logged_steps.add(("", step))
            except TrackingError as error:
                if not warned:
                    print(f"warning: step {step} not logged live, retried at the end of the job: {error}", file=sys.stderr)
                    warned = True

        return log

    def epoch_callback(self, prefix_networks: bool = False) -> Callable[[str, dict[str, Any]], None]:
        """A ``victims.train.fit`` callback that logs each epoch as it ends.

        With ``prefix_networks`` the metrics of network ``name`` are keyed ``name/...`` (single-task
        victims train one network per task, each from epoch 1). An epoch the store does not take
        (still locked after the retries, server down) does not stop training: it is reported
        once on stderr and left to :meth:`log_history` at the end of the job."""
        warned = False

        def log(name: str, record: dict[str, Any]) -> None:
            nonlocal warned
            try:
                self.log_epoch(record, f"{name}/" if prefix_networks else "")
            except TrackingError as error:
                if not warned:
                    print(f"warning: epoch {record.get('epoch')} not logged live, retried at the end of the job: {error}", file=sys.stderr)
                    warned = True

        return log

    def log_artifact(self, path: str | os.PathLike[str], artifact_path: str | None = None) -> None:
        path = Path(path)
        if not path.is_file():
            raise TrackingError(f"run {self.run_id}: artifact {path} does not exist")
        with self._timed():
            retrying(lambda: self.client.log_artifact(self.run_id, str(path), artifact_path), f"storing artifact {path.name}", self.uri)

    def log_json(self, name: str, data: Any) -> None:
        """Store ``data`` as the JSON artifact ``name``."""
        with tempfile.TemporaryDirectory(prefix="mtlue-tracking-") as folder:
            path = Path(folder) / name
            path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
            self.log_artifact(path)

    def log_figure(self, figure: Any, name: str) -> None:
        """Store a matplotlib figure as the PNG artifact ``name`` (the figure is closed)."""
        from mtlue.data.preview import save_figure_png

        with tempfile.TemporaryDirectory(prefix="mtlue-tracking-") as folder:
            self.log_artifact(save_figure_png(figure, Path(folder) / name))

    def end(self, status: str, error: BaseException | None = None) -> None:
        """Mark the run ``FINISHED``, ``FAILED`` or ``KILLED`` (with the error as the ``error`` tag)."""
        if error is not None:
            self.set_tags({"error": f"{type(error).__name__}: {error}"})
        self.log_metrics({"tracking_seconds": self.logging_seconds})
        with self._timed():
            retrying(lambda: self.client.set_terminated(self.run_id, status), f"ending the run as {status}", self.uri)


class _Terminated(BaseException):
    """SIGTERM (Snakemake cancelling a job) turned into an exception, so the run ends KILLED."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        raise _Terminated(f"terminated by signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:
        # Not the main thread: the default handling stays.
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def track_job(
    settings: TrackingSettings | None,
    *,
    job: str,
    experiment: str,
    run_name: str,
    tags: Mapping[str, Any],
    params: Mapping[str, Any],
) -> Iterator[JobTracker | None]:
    """The job's run for the duration of the ``with`` block, or None when ``settings`` is None.

    Ends FINISHED on success, FAILED on an exception, KILLED on Ctrl-C / SIGTERM; the job's
    exception always propagates (a failure to end the run is reported on stderr, not raised
    over it).
    """
    if settings is None:
        yield None
        return
    tracker = JobTracker.start(settings, job=job, experiment=experiment, run_name=run_name, tags=tags, params=params)
    print(f"tracking run {tracker.run_id} in experiment {tracker.experiment!r} of {settings.uri}", file=sys.stderr)
    try:
        with _sigterm_raises():
            yield tracker
    except (KeyboardInterrupt, _Terminated, SystemExit) as error:
        _end_quietly(tracker, "KILLED", error)
        if isinstance(error, _Terminated):
            raise SystemExit(128 + signal.SIGTERM) from error
        raise
    except BaseException as error:
        _end_quietly(tracker, "FAILED", error)
        raise
    tracker.end("FINISHED")


def _end_quietly(tracker: JobTracker, status: str, error: BaseException) -> None:
    try:
        tracker.end(status, error)
    except Exception as problem:  # the job's own error matters more
        print(f"warning: could not mark MLflow run {tracker.run_id} {status}: {problem}", file=sys.stderr)

