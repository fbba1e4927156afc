"""MLflow tracking of every job: "files are the truth, MLflow is the window".

Each ``mtlue victim``, ``mtlue surrogate`` and ``mtlue poison`` job writes its JSON result as
before and, with ``--tracking-uri``, also logs itself as one MLflow run (params, live per-epoch
metrics, DAG-axis tags, git commit, content hashes, artifacts); ``mtlue ui`` serves the UI.
Nothing here imports mlflow until a store is opened. See :mod:`.tracker` for the run layout,
:mod:`.store` for how parallel jobs share one SQLite store, :mod:`.jobs` for what each job logs.
"""

from .commands import DEFAULT_UI_URI, add_tracking_arguments, tracking_settings
from .jobs import (
    delta_statistics,
    job_tags,
    log_poison_result,
    log_surrogate_result,
    log_victim_result,
    track_poison,
    track_surrogate,
    track_victim,
)
from .provenance import git_commit, git_dirty
from .store import ARTIFACTS_DIRNAME, TrackingError, artifact_root, open_client, open_experiment
from .tracker import AXES, JobTracker, TrackingSettings, flatten_metrics, flatten_params, track_job

__all__ = [
    "ARTIFACTS_DIRNAME",
    "AXES",
    "DEFAULT_UI_URI",
    "JobTracker",
    "TrackingError",
    "TrackingSettings",
    "add_tracking_arguments",
    "artifact_root",
    "delta_statistics",
    "flatten_metrics",
    "flatten_params",
    "git_commit",
    "git_dirty",
    "job_tags",
    "log_poison_result",
    "log_surrogate_result",
    "log_victim_result",
    "open_client",
    "open_experiment",
    "track_job",
    "track_poison",
    "track_surrogate",
    "track_victim",
    "tracking_settings",
]
