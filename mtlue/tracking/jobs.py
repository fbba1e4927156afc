"""What each job kind logs: the ``mtlue victim``, ``mtlue surrogate`` and ``mtlue poison`` runs.

Each ``track_*`` function is the command's :func:`~mtlue.tracking.track_job` with the tags and
params derived from the command's own resolved configuration, merged with the explicit
``--tag KEY=VALUE``s (the workflow passes every DAG axis that way; an explicit tag that
contradicts the job's own value, e.g. ``--tag backbone=vit`` on a ResNet job, is an error).
Each ``log_*_result`` logs the finished job: final metrics, content hashes and artifacts.

Artifacts: victim: ``metrics.json``, ``training_curves.png``; surrogate: ``surrogate.json``,
``training_curves.png``; poison: ``card.json``, the preview PNG when one was drawn; every run
also has ``config.json`` (the unflattened params).

A poison run's metrics are its generation's records (step = round / epoch / batch, logged live
by :meth:`JobTracker.progress_listener`), the delta statistics, ``convergence/steps`` and
``convergence/converged`` (1 or 0), and tags ``converged`` (true / false / unknown) and
``stopped_by`` from the card, so the UI can filter runs that a cap cut short.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .plots import training_curves_figure
from .provenance import git_commit, git_dirty
from .store import TrackingError
from .tracker import AXES, JobTracker, TrackingSettings, track_job

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "delta_statistics",
    "job_tags",
    "log_poison_result",
    "log_surrogate_result",
    "log_victim_result",
    "track_poison",
    "track_surrogate",
    "track_victim",
]

#: Samples per chunk when summarising a store's deltas (bounded memory on CelebA-sized splits).
_CHUNK = 1024


def _mtlue_version() -> str:
    from mtlue import __version__

    return __version__


def job_tags(job: str, derived: Mapping[str, Any], explicit: Mapping[str, str]) -> dict[str, str]:
    """The run's tags: ``derived`` from the job, overlaid by ``explicit`` ``--tag``s, plus provenance.

    An explicit DAG axis that differs from the derived one raises TrackingError.
    """
    tags = {key: str(value) for key, value in derived.items() if value is not None}
    conflicts = [
        f"--tag {key}={explicit[key]} but the job's own {key} is {tags[key]!r}"
        for key in AXES
        if key in explicit and key in tags and str(explicit[key]) != tags[key]
    ]
    if conflicts:
        raise TrackingError(f"{'; '.join(conflicts)}: fix the --tag (or the job's flags) so they agree")
    tags.update({key: str(value) for key, value in explicit.items()})
    commit = git_commit()
    tags.update({
        "job": job,
        "git_commit": commit,
        "git_dirty": git_dirty(),
        "mtlue_version": _mtlue_version(),
        "mlflow.source.git.commit": commit,
        "mlflow.source.name": f"mtlue {job}",
        "mlflow.source.type": "LOCAL",
    })
    return tags


def _run_name(job: str, tags: Mapping[str, str], axes: Sequence[str]) -> str:
    parts = [tags[axis] for axis in axes if axis in tags]
    return f"{job} {'/'.join(parts)}" if parts else job


def _data_hashes(dataset: Any) -> dict[str, str]:
    splits = dataset.manifest["splits"]
    return {f"data_{name}_hash": splits[name]["content_hash"] for name in ("train", "test") if name in splits}


# ------------------------------------------------------------------------------------------------
# victim


@contextlib.contextmanager
def track_victim(
    settings: TrackingSettings | None, args: Any, dataset: Any, victim: Any, config: Any,
) -> Iterator[JobTracker | None]:
    """The run of ``mtlue victim``: tags dataset, method (the poison's, or ``clean``), backbone,
    weighting, defense (``args.defense`` when the command has that flag), seed, mode."""
    if settings is None:
        yield None
        return
    card = None
    if getattr(args, "poison", None):
        from mtlue.poisons import read_card

        card = read_card(args.poison)
    defense = getattr(args, "defense", None)
    derived = {
        "dataset": dataset.name, "method": card.method if card else "clean", "backbone": victim.backbone,
        "weighting": victim.weighting, "defense": defense, "seed": config.seed, "mode": victim.mode,
        **_data_hashes(dataset), "poison_sha256": card.sha256 if card else None,
    }
    tags = job_tags("victim", derived, settings.tags)
    params = {
        "data": str(dataset.root), "poison": getattr(args, "poison", None), "out": str(args.out),
        "victim": asdict(victim), "train_config": config.to_json(),
        **({"defense": defense} if defense is not None else {}),
    }
    with track_job(settings, job="victim", experiment=dataset.name, run_name=_run_name("victim", tags, AXES[1:]), tags=tags, params=params) as tracker:
        yield tracker


def log_victim_result(tracker: JobTracker, result: Any, out: str | os.PathLike[str]) -> None:
    """Epochs not logged live (a resumed run), the final aggregate, ``metrics.json`` and the curves."""
    # As the live callback of `mtlue victim` keys them: one network per task in stl mode.
    prefix_networks = result.victim.mode == "stl"
    histories = {}
    for run in result.runs:
        tracker.log_history(run.fit.history, f"{run.name}/" if prefix_networks else "")
        histories[run.name] = run.fit.history
    step = result.config.epochs
    tracker.log_metrics({f"aggregate/{key}": value for key, value in result.aggregate.items()}, step=step)
    tracker.log_metrics({"wall_time_seconds": result.wall_time_seconds}, step=step)
    tracker.log_artifact(out)
    tracker.log_figure(training_curves_figure(histories, title=_title(tracker, result.dataset.name)), "training_curves.png")


def _title(tracker: JobTracker, dataset: str) -> str:
    return f"{dataset}: {tracker.job} run {tracker.run_id[:8]}"


# ------------------------------------------------------------------------------------------------
# surrogate


@contextlib.contextmanager
def track_surrogate(
    settings: TrackingSettings | None, args: Any, dataset: Any, victim: Any, config: Any,
) -> Iterator[JobTracker | None]:
    """The run of ``mtlue surrogate``: tags dataset, backbone, weighting (always ew), seed."""
    if settings is None:
        yield None
        return
    derived = {
        "dataset": dataset.name, "backbone": victim.backbone, "weighting": victim.weighting, "seed": config.seed,
        **_data_hashes(dataset),
    }
    tags = job_tags("surrogate", derived, settings.tags)
    params = {
        "data": str(dataset.root), "out": str(args.out), "every": args.every,
        "victim": asdict(victim), "train_config": config.to_json(),
    }
    with track_job(settings, job="surrogate", experiment=dataset.name, run_name=_run_name("surrogate", tags, ("backbone", "seed")), tags=tags, params=params) as tracker:
        yield tracker


def log_surrogate_result(tracker: JobTracker, card: Any, out_dir: str | os.PathLike[str]) -> None:
    """Epochs not logged live, final test metrics, file hashes, ``surrogate.json`` and the curves."""
    from mtlue.methods.surrogate import CARD_NAME

    history = card.metrics["history"]
    tracker.log_history(history)
    final = history[-1] if history else {}
    if "test_aggregate" in final:
        tracker.log_metrics({f"aggregate/{key}": value for key, value in final["test_aggregate"].items()}, step=card.epochs)
    tracker.log_metrics({"train_seconds": card.train_seconds, "snapshots": len(card.snapshots)}, step=card.epochs)
    tracker.set_tags({"surrogate_sha256": card.final.sha256})
    tracker.log_artifact(Path(out_dir) / CARD_NAME)
    tracker.log_figure(training_curves_figure({"surrogate": history}, title=_title(tracker, card.dataset)), "training_curves.png")


# ------------------------------------------------------------------------------------------------
# poison


@contextlib.contextmanager
def track_poison(
    settings: TrackingSettings | None, args: Any, dataset: Any, method: Any, context: Any,
) -> Iterator[JobTracker | None]:
    """The run of ``mtlue poison``: tags dataset, method, seed."""
    if settings is None:
        yield None
        return
    derived = {"dataset": dataset.name, "method": method.name, "seed": context.seed, **_data_hashes(dataset)}
    tags = job_tags("poison", derived, settings.tags)
    params = {
        "data": str(dataset.root), "out": str(args.out), "method": method.name,
        "hyperparameters": method.hyperparameters_dict(), "epsilon": context.epsilon, "seed": context.seed,
        "ratio": args.ratio, "device": context.device,
        "surrogate": None if context.surrogate is None else str(context.surrogate),
        "surrogate_checkpoints": [str(path) for path in context.surrogate_checkpoints],
    }
    with track_job(settings, job="poison", experiment=dataset.name, run_name=_run_name("poison", tags, ("method", "seed")), tags=tags, params=params) as tracker:
        yield tracker


def delta_statistics(deltas: np.ndarray) -> dict[str, float]:
    """Summary of int8 deltas (N, C, H, W) in 1/255 units, computed in chunks of samples."""
    import numpy as np

    samples = int(deltas.shape[0])
    if samples == 0:
        raise TrackingError("a poison store with no samples has no perturbation statistics")
    per_sample = int(np.prod(deltas.shape[1:]))
    abs_sum = square_sum = nonzero = 0.0
    largest = 0
    poisoned = 0
    l2_sum = linf_sum = 0.0
    for start in range(0, samples, _CHUNK):
        chunk = np.asarray(deltas[start : start + _CHUNK], dtype=np.int32).reshape(-1, per_sample)
        magnitude = np.abs(chunk)
        abs_sum += float(magnitude.sum())
        squares = (chunk * chunk).sum(axis=1, dtype=np.int64)
        square_sum += float(squares.sum())
        nonzero += float(np.count_nonzero(chunk))
        per_linf = magnitude.max(axis=1)
        largest = max(largest, int(per_linf.max()))
        poisoned += int(np.count_nonzero(per_linf))
        l2_sum += float(np.sqrt(squares).sum())
        linf_sum += float(per_linf.sum())
    values = samples * per_sample
    return {
        "delta/max_abs": float(largest),
        "delta/mean_abs": abs_sum / values,
        "delta/rms": float(np.sqrt(square_sum / values)),
        "delta/nonzero_fraction": nonzero / values,
        "delta/mean_l2_per_sample": l2_sum / samples,
        "delta/mean_linf_per_sample": linf_sum / samples,
        "delta/perturbed_samples": float(poisoned),
        "delta/perturbed_fraction": poisoned / samples,
    }


def log_poison_result(tracker: JobTracker, store: Any, preview: str | os.PathLike[str] | None = None) -> None:
    """Generation records not logged live, how it ended, delta statistics, the poison hash, the card and preview."""
    from mtlue.poisons import CARD_NAME

    convergence = store.card.convergence
    metrics = delta_statistics(store.deltas)
    tags = {"poison_sha256": store.card.sha256, "converged": "unknown", "stopped_by": "not generated here"}
    last = 0
    if convergence is not None:
        if convergence.unit is not None:
            tracker.log_history(list(convergence.history), step_key=convergence.unit)
        last = convergence.steps
        metrics["convergence/steps"] = float(convergence.steps)
        if convergence.converged is not None:
            metrics["convergence/converged"] = float(convergence.converged)
            tags["converged"] = str(convergence.converged).lower()
        tags["stopped_by"] = convergence.stopped_by
    tracker.log_metrics(metrics, step=last)
    tracker.set_tags(tags)
    tracker.log_artifact(Path(store.root) / CARD_NAME)
    if preview is not None:
        tracker.log_artifact(preview)
