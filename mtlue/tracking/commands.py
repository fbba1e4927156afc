"""The tracking flags of the job commands, and ``mtlue ui``.

``add_tracking_arguments(parser)`` adds to ``mtlue victim``, ``mtlue surrogate`` and ``mtlue poison``::

    --tracking-uri URI     log the job to this MLflow store (default: off), e.g. sqlite:///results/mlflow.db
    --experiment NAME      MLflow experiment (default: the dataset's name)
    --tag KEY=VALUE        one run tag (repeatable); the workflow passes every DAG axis this way

``mtlue ui`` serves the MLflow UI of a store on 127.0.0.1 in the foreground (Ctrl-C stops it)::

    mtlue ui [--tracking-uri sqlite:///results/mlflow.db] [--port 5000]

then open http://127.0.0.1:5000. Run it from the folder the jobs ran in (the repository root):
relative SQLite paths are relative to the working directory.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
from typing import Any

from .tracker import TrackingSettings

__all__ = ["DEFAULT_UI_URI", "add_commands", "add_tracking_arguments", "tracking_settings", "ui_command"]

#: The workflow's store, and what ``mtlue ui`` opens without ``--tracking-uri``.
DEFAULT_UI_URI = "sqlite:///results/mlflow.db"
_TAG_KEY = re.compile(r"^[A-Za-z0-9_\-./ ]{1,250}$")


def _tag(text: str) -> tuple[str, str]:
    key, separator, value = text.partition("=")
    key = key.strip()
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"--tag expects KEY=VALUE, got {text!r}")
    if not _TAG_KEY.match(key) or key.startswith("mlflow."):
        raise argparse.ArgumentTypeError(
            f"--tag key {key!r} must be 1-250 letters, digits, '_', '-', '.', '/' or spaces, and not start with 'mlflow.'"
        )
    return key, value


def add_tracking_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--tracking-uri``, ``--experiment`` and ``--tag`` flags of a job command."""
    group = parser.add_argument_group("tracking (MLflow; off without --tracking-uri)")
    group.add_argument(
        "--tracking-uri", metavar="URI",
        help=f"log this job as one MLflow run to URI, e.g. {DEFAULT_UI_URI} or http://host:5000 (default: no tracking)",
    )
    group.add_argument("--experiment", metavar="NAME", help="MLflow experiment of the run (default: the dataset's name)")
    group.add_argument(
        "--tag", dest="tags", action="append", type=_tag, default=[], metavar="KEY=VALUE",
        help="one run tag, e.g. defense=cutout (repeatable; DAG axes must agree with the job's own flags)",
    )


def tracking_settings(args: argparse.Namespace) -> TrackingSettings | None:
    """The settings of the flags of :func:`add_tracking_arguments`; None when tracking is off."""
    from .store import TrackingError

    tags = list(getattr(args, "tags", None) or [])
    keys = [key for key, _ in tags]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise TrackingError(f"--tag {', '.join(repeated)} given more than once; keep one")
    uri = getattr(args, "tracking_uri", None)
    if not uri:
        if tags or getattr(args, "experiment", None):
            raise TrackingError("--experiment and --tag only apply with --tracking-uri; add --tracking-uri URI")
        return None
    return TrackingSettings(uri=uri, experiment=args.experiment, tags=dict(tags))


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``mtlue ui`` to the ``mtlue`` command line."""
    parser = subparsers.add_parser(
        "ui",
        help="serve the MLflow UI of a tracking store on 127.0.0.1 (foreground; Ctrl-C stops it)",
        description="Serve the MLflow UI (mlflow server) of a tracking store on 127.0.0.1 only, in the foreground. "
        "Run it where the jobs ran (the repository root): relative sqlite paths are relative to the working directory.",
    )
    parser.add_argument("--tracking-uri", default=DEFAULT_UI_URI, metavar="URI", help="store to browse (default: %(default)s)")
    parser.add_argument("--port", type=int, default=5000, help="port on 127.0.0.1 (default: %(default)s)")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes (default: %(default)s)")
    parser.set_defaults(handler=_ui)


def ui_command(uri: str, port: int, workers: int = 1) -> list[str]:
    """The ``mlflow server`` command line ``mtlue ui`` runs."""
    from .store import TrackingError, artifact_root, sqlite_path

    if not 1 <= port <= 65535:
        raise TrackingError(f"--port must be 1-65535, got {port}")
    if workers < 1:
        raise TrackingError(f"--workers must be at least 1, got {workers}")
    command = [
        sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri,
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
    ]
    if sqlite_path(uri) is not None:
        # Experiments created by the UI keep their artifacts beside the database too.
        command += ["--default-artifact-root", artifact_root(uri) or "", "--no-serve-artifacts"]
    return command


def _check_port_free(port: int) -> None:
    from .store import TrackingError

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            raise TrackingError(f"port {port} on 127.0.0.1 is not available ({error.strerror}); pass another --port") from None


def _ui(args: argparse.Namespace) -> None:
    from .store import TrackingError, open_client, sqlite_path

    path = sqlite_path(args.tracking_uri)
    if path is not None and not path.is_file():
        raise TrackingError(
            f"no tracking store at {path.resolve()} (from {args.tracking_uri}); run a job with "
            f"--tracking-uri {args.tracking_uri} first, or start mtlue ui where the jobs ran"
        )
    command = ui_command(args.tracking_uri, args.port, args.workers)
    _check_port_free(args.port)
    # Schema creation/migration under the same lock as the jobs, never racing one of them.
    open_client(args.tracking_uri)
    environment: dict[str, Any] = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1"}
    print(f"MLflow UI of {args.tracking_uri} on http://127.0.0.1:{args.port} (Ctrl-C stops it)", file=sys.stderr, flush=True)
    if os.name == "posix":
        # The server replaces this process, so signals (Ctrl-C, a scheduler's SIGTERM) reach it
        # directly and no orphaned server outlives a stopped `mtlue ui`.
        sys.stdout.flush()
        os.execve(sys.executable, command, environment)
    try:
        returncode = subprocess.call(command, env=environment)
    except KeyboardInterrupt:
        returncode = 0
    if returncode != 0:
        raise TrackingError(f"mlflow server exited with status {returncode} (command: {' '.join(command)}); is port {args.port} free?")
