"""MLflow tracking: one run per job on a SQLite store, parallel writers, the job commands, mtlue ui."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import free_port

from mtlue.cli import main
from mtlue.tracking import (
    JobTracker,
    TrackingError,
    TrackingSettings,
    artifact_root,
    flatten_metrics,
    flatten_params,
    git_commit,
    open_client,
    track_job,
)
from mtlue.tracking.provenance import _git_dir, _read_commit
from mtlue.tracking.store import is_lock_error, retrying, sqlite_path

ROOT = Path(__file__).resolve().parents[1]
ENVIRONMENT = {**os.environ, "PYTHONPATH": str(ROOT), "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1"}


def _uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


def _runs(uri: str, experiment: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r}"
    return client.search_runs([found.experiment_id])


def _artifacts(uri: str, run_id: str) -> set[str]:
    from mlflow import MlflowClient

    return {item.path for item in MlflowClient(tracking_uri=uri).list_artifacts(run_id)}


def _history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    from mlflow import MlflowClient

    return sorted((m.step, m.value) for m in MlflowClient(tracking_uri=uri).get_metric_history(run_id, key))


# ------------------------------------------------------------------------------------------------
# flattening, URIs, retries, provenance (no store)


def test_flatten_params_nests_with_dots_and_respects_value_limit():
    flat = flatten_params({"train": {"lr": 0.001, "milestones": [0.6, 0.8]}, "note": "x" * 7000, "empty": {}, "none": None})
    assert flat["train.lr"] == "0.001"
    assert flat["train.milestones"] == "[0.6, 0.8]"
    assert flat["empty"] == "{}" and flat["none"] == "None"
    assert len(flat["note"]) == 6000 and flat["note"].endswith("[truncated]")


def test_flatten_metrics_keeps_numbers_and_skips_the_step():
    record = {"epoch": 3, "lr": 0.1, "train_loss": {"a": 1.5}, "test": {"a": {"accuracy": 50}}, "name": "x", "ok": True}
    assert flatten_metrics(record) == {"lr": 0.1, "train_loss/a": 1.5, "test/a/accuracy": 50.0, "ok": 1.0}


def test_sqlite_paths_and_artifacts_beside_the_database(tmp_path):
    assert sqlite_path("sqlite:///results/mlflow.db") == Path("results/mlflow.db")
    assert sqlite_path("http://127.0.0.1:5000") is None
    assert artifact_root("http://127.0.0.1:5000") is None
    root = artifact_root(_uri(tmp_path), "my data/set")
    assert root == (tmp_path / "mlruns-artifacts" / "my_data_set").as_uri()
    with pytest.raises(TrackingError, match="not a SQLite file"):
        sqlite_path("sqlite:///:memory:")


def test_retrying_waits_out_lock_errors_and_names_other_failures():
    attempts = []

    def locked_twice() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise RuntimeError("write failed") from sqlite3.OperationalError("database is locked")
        return "written"

    assert retrying(locked_twice, "logging", "sqlite:///x.db") == "written"
    assert len(attempts) == 3
    assert is_lock_error(RuntimeError("wrapper")) is False

    def broken() -> None:
        raise ValueError("no such table: runs")

    with pytest.raises(TrackingError, match=r"sqlite:///x.db: logging failed \(ValueError: no such table"):
        retrying(broken, "logging", "sqlite:///x.db")
    with pytest.raises(TrackingError, match="stayed locked"):
        retrying(lambda: (_ for _ in ()).throw(sqlite3.OperationalError("database is locked")), "logging", "sqlite:///x.db", seconds=0.2)


def test_git_commit_of_this_checkout_and_unknown_outside_one(tmp_path):
    commit = git_commit()
    if commit == "unknown":
        pytest.skip("the code under test is not a git checkout")
    assert re.fullmatch(r"[0-9a-f]{40}", commit)
    # The fallback that reads .git without the git executable agrees with git.
    git_dir = _git_dir(ROOT)
    assert git_dir is not None and _read_commit(git_dir) == commit
    assert git_commit(tmp_path) == "unknown"


# ------------------------------------------------------------------------------------------------
# a tracked job on a SQLite store


def test_tracked_job_logs_params_metrics_tags_and_artifacts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory's ./mlruns
    uri = _uri(tmp_path / "store")
    output = tmp_path / "result.json"
    output.write_text(json.dumps({"score": 1.0}), encoding="utf-8")
    settings = TrackingSettings(uri, experiment="exp", tags={"defense": "cutout"})
    with track_job(
        settings, job="victim", experiment="dataset-name", run_name="victim a/b",
        tags={"dataset": "shapes", "seed": 3}, params={"train": {"lr": 0.001, "epochs": 2}, "backbone": "r18"},
    ) as tracker:
        assert isinstance(tracker, JobTracker)
        callback = tracker.epoch_callback()
        for epoch in (1, 2):
            callback("mtl", {"epoch": epoch, "lr": 0.1 / epoch, "train_loss": {"a": 1.0 / epoch, "b": 2.0 / epoch}})
        # Epoch 2 was logged live; the history adds only the missing epoch 3.
        assert tracker.log_history([{"epoch": 2, "lr": 0.05}, {"epoch": 3, "lr": 0.01}]) == 1
        tracker.log_artifact(output)

    (run,) = _runs(uri, "exp")
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "victim a/b"
    assert run.data.params == {"train.lr": "0.001", "train.epochs": "2", "backbone": "r18"}
    assert {"dataset": "shapes", "seed": "3", "defense": "cutout"}.items() <= run.data.tags.items()
    assert _history(uri, run.info.run_id, "train_loss/b") == [(1, 2.0), (2, 1.0)]
    assert _history(uri, run.info.run_id, "lr") == [(1, 0.1), (2, 0.05), (3, 0.01)]
    assert run.data.metrics["tracking_seconds"] > 0
    assert _artifacts(uri, run.info.run_id) == {"config.json", "result.json"}
    assert run.info.artifact_uri.startswith((tmp_path / "store" / "mlruns-artifacts" / "exp").as_uri())
    assert not (tmp_path / "mlruns").exists()
    with sqlite3.connect(tmp_path / "store" / "mlflow.db") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_failing_job_ends_failed_and_reraises(tmp_path):
    uri = _uri(tmp_path)
    settings = TrackingSettings(uri)
    with pytest.raises(ZeroDivisionError):
        with track_job(settings, job="poison", experiment="shapes", run_name="poison", tags={}, params={"a": 1}) as tracker:
            tracker.log_metrics({"loss": 1.0}, step=1)
            1 / 0  # noqa: B018
    (run,) = _runs(uri, "shapes")
    assert run.info.status == "FAILED"
    assert run.data.tags["error"].startswith("ZeroDivisionError")
    assert run.data.metrics["loss"] == 1.0


def test_an_epoch_the_locked_store_refuses_is_logged_at_the_end(tmp_path, monkeypatch, capsys):
    """Another process holds the write lock longer than the retries last: training goes on."""
    import mtlue.tracking.store as store

    uri = _uri(tmp_path)
    with track_job(TrackingSettings(uri), job="victim", experiment="shapes", run_name="v", tags={}, params={}) as tracker:
        callback = tracker.epoch_callback()
        callback("mtl", {"epoch": 1, "lr": 0.1})
        monkeypatch.setattr(store, "RETRY_SECONDS", 0.5)
        blocker = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            callback("mtl", {"epoch": 2, "lr": 0.01})  # waits out MLflow's busy timeout, then gives up
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        monkeypatch.undo()
        assert "epoch 2 not logged live" in capsys.readouterr().err
        assert tracker.log_history([{"epoch": 1, "lr": 0.1}, {"epoch": 2, "lr": 0.01}]) == 1
    (run,) = _runs(uri, "shapes")
    assert run.info.status == "FINISHED"
    assert _history(uri, run.info.run_id, "lr") == [(1, 0.1), (2, 0.01)]


def test_tracking_off_yields_none_without_importing_a_store():
    with track_job(None, job="victim", experiment="x", run_name="x", tags={}, params={}) as tracker:
        assert tracker is None


_WRITER = textwrap.dedent(
    """
    import sys, time
    from mtlue.tracking import TrackingSettings, track_job

    uri, index, start_at = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    while time.time() < start_at:  # all writers open the fresh store at once
        time.sleep(0.01)
    settings = TrackingSettings(uri, tags={"writer": str(index)})
    with track_job(settings, job="victim", experiment="parallel", run_name=f"writer {index}",
                   tags={"seed": index}, params={"index": index}) as tracker:
        for epoch in range(1, 6):
            tracker.log_epoch({"epoch": epoch, "train_loss": {f"task{t}": epoch * 10 + t for t in range(20)}})
    """
)


@pytest.mark.slow
def test_parallel_writers_share_one_fresh_sqlite_store(tmp_path):
    """Six processes create the schema and the experiment and log their runs at the same time."""
    uri = _uri(tmp_path / "fresh")
    writers = 6
    start_at = time.time() + 8  # after every interpreter has imported mlflow
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, uri, str(index), str(start_at)],
            env=ENVIRONMENT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for index in range(writers)
    ]
    outputs = [process.communicate(timeout=600) for process in processes]
    failures = [(process.returncode, error[-2000:]) for process, (_, error) in zip(processes, outputs) if process.returncode]
    assert not failures, failures
    runs = _runs(uri, "parallel")
    assert sorted(run.data.tags["writer"] for run in runs) == [str(index) for index in range(writers)]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert len([key for key in run.data.metrics if key.startswith("train_loss/")]) == 20
        assert _history(uri, run.info.run_id, "train_loss/task7") == [(epoch, epoch * 10 + 7.0) for epoch in range(1, 6)]


# ------------------------------------------------------------------------------------------------
# the job commands


def test_victim_command_logs_one_run_with_the_dag_tags(tiny_shapes, tmp_path, capsys):
    uri = _uri(tmp_path)
    out = tmp_path / "victim" / "metrics.json"
    code = main([
        "victim", "--data", str(tiny_shapes.root), "--backbone", "test_resnet", "--epochs", "1", "--batch-size", "16",
        "--num-threads", "1", "--no-progress", "--out", str(out),
        "--tracking-uri", uri, "--tag", "defense=none", "--tag", "protocol=laptop",
    ])
    assert code == 0, capsys.readouterr().err
    assert json.loads(out.read_text())["format"] == "mtlue-victim-metrics/1"
    (run,) = _runs(uri, tiny_shapes.name)
    tags = run.data.tags
    expected = {
        "job": "victim", "dataset": tiny_shapes.name, "method": "clean", "backbone": "test_resnet",
        "weighting": "ew", "defense": "none", "seed": "0", "protocol": "laptop", "mode": "mtl",
        "data_train_hash": tiny_shapes.manifest["splits"]["train"]["content_hash"],
    }
    assert expected.items() <= tags.items()
    assert tags["git_commit"] == git_commit()
    assert run.info.status == "FINISHED"
    assert run.data.params["victim.backbone"] == "test_resnet" and run.data.params["train_config.epochs"] == "1"
    task = tiny_shapes.tasks[0].name
    assert [step for step, _ in _history(uri, run.info.run_id, f"train_loss/{task}")] == [1]
    assert f"test/{task}/accuracy" in run.data.metrics and "aggregate/classification_mean" in run.data.metrics
    assert _artifacts(uri, run.info.run_id) == {"config.json", "metrics.json", "training_curves.png"}


def test_victim_tag_contradicting_the_job_fails_before_training(tiny_shapes, tmp_path, capsys):
    code = main([
        "victim", "--data", str(tiny_shapes.root), "--backbone", "test_resnet", "--out", str(tmp_path / "m.json"),
        "--tracking-uri", _uri(tmp_path), "--tag", "backbone=resnet18",
    ])
    assert code == 2
    assert "--tag backbone=resnet18 but the job's own backbone is 'test_resnet'" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--tag", "defense=none"], "only apply with --tracking-uri"),
        (["--tracking-uri", "sqlite:///x.db", "--tag", "a=1", "--tag", "a=2"], "--tag a given more than once"),
    ],
)
def test_bad_tracking_flags_give_one_clear_line(tiny_shapes, tmp_path, flags, message, capsys):
    code = main(["victim", "--data", str(tiny_shapes.root), "--out", str(tmp_path / "m.json"), *flags])
    assert code == 2
    assert message in capsys.readouterr().err


def test_poison_command_logs_delta_statistics_card_and_preview(tiny_shapes, tmp_path, capsys):
    uri = _uri(tmp_path)
    store = tmp_path / "poisons" / "lsp"
    code = main([
        "poison", "--data", str(tiny_shapes.root), "--method", "lsp", "--out", str(store),
        "--preview", str(tmp_path / "lsp.png"), "--tracking-uri", uri, "--tag", "method=lsp",
    ])
    assert code == 0, capsys.readouterr().err
    (run,) = _runs(uri, tiny_shapes.name)
    card = json.loads((store / "card.json").read_text())
    assert {"job": "poison", "method": "lsp", "seed": "0", "poison_sha256": card["sha256"]}.items() <= run.data.tags.items()
    assert run.data.metrics["delta/max_abs"] == card["max_abs_delta"]
    assert 0 < run.data.metrics["delta/mean_abs"] <= card["epsilon"]
    assert run.data.metrics["delta/perturbed_fraction"] == 1.0
    assert _artifacts(uri, run.info.run_id) == {"config.json", "card.json", "lsp.png"}


def test_surrogate_command_logs_its_epochs_and_card(tiny_shapes, tmp_path, capsys):
    uri = _uri(tmp_path)
    code = main([
        "surrogate", "--data", str(tiny_shapes.root), "--out", str(tmp_path / "surrogate"), "--backbone", "test_resnet",
        "--epochs", "2", "--every", "1", "--batch-size", "16", "--num-threads", "1", "--no-progress",
        "--tracking-uri", uri, "--experiment", "surrogates",
    ])
    assert code == 0, capsys.readouterr().err
    (run,) = _runs(uri, "surrogates")
    assert {"job": "surrogate", "backbone": "test_resnet", "weighting": "ew", "seed": "0"}.items() <= run.data.tags.items()
    assert "method" not in run.data.tags and "defense" not in run.data.tags
    assert [step for step, _ in _history(uri, run.info.run_id, "grad_norm")] == [1, 2]
    assert _artifacts(uri, run.info.run_id) == {"config.json", "surrogate.json", "training_curves.png"}


# ------------------------------------------------------------------------------------------------
# mtlue ui


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass


@pytest.mark.slow
def test_ui_serves_the_store_on_localhost(tmp_path):
    uri = _uri(tmp_path)
    open_client(uri)
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mtlue", "ui", "--tracking-uri", uri, "--port", str(port)],
        env=ENVIRONMENT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        deadline, status = time.monotonic() + 180, None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                    status = response.status
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        assert status == 200, f"mtlue ui never answered (exit {server.poll()})"
    finally:
        # Stop the process group this test started (the server and its workers), nothing else.
        _signal_group(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _signal_group(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        server.stderr.close()


def test_ui_refuses_a_missing_store(tmp_path, capsys):
    assert main(["ui", "--tracking-uri", _uri(tmp_path / "nowhere")]) == 2
    assert "no tracking store at" in capsys.readouterr().err


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_rerun_marks_the_killed_runs_of_its_own_job_killed_and_leaves_others_running(tmp_path):
    """kill -9 leaves a run RUNNING; the job's rerun ends it before opening its own."""
    from mlflow import MlflowClient

    from mtlue.tracking.tracker import HOST_TAG, PID_TAG

    uri = _uri(tmp_path)
    identity = {"job": "victim", "dataset": "shapes", "method": "lsp", "seed": "0"}
    with track_job(TrackingSettings(uri), job="victim", experiment="shapes", run_name="victim lsp", tags=identity, params={}):
        pass
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("shapes").experiment_id
    here = socket.gethostname()
    dead = client.create_run(experiment, run_name="victim lsp", tags={**identity, HOST_TAG: here, PID_TAG: str(_dead_pid())})
    alive = client.create_run(experiment, run_name="victim lsp", tags={**identity, HOST_TAG: here, PID_TAG: str(os.getpid())})
    other_seed = client.create_run(experiment, run_name="victim lsp", tags={**identity, "seed": "1", HOST_TAG: here, PID_TAG: str(_dead_pid())})
    with track_job(TrackingSettings(uri), job="victim", experiment="shapes", run_name="victim lsp", tags=identity, params={}) as tracker:
        rerun = tracker.run_id
    status = {run.info.run_id: run.info.status for run in _runs(uri, "shapes")}
    assert status[dead.info.run_id] == "KILLED"
    assert client.get_run(dead.info.run_id).data.tags["error"].startswith("process ended without closing its run")
    assert status[alive.info.run_id] == "RUNNING"  # its process still runs: not ours to end
    assert status[other_seed.info.run_id] == "RUNNING"  # another job's identity
    assert status[rerun] == "FINISHED"
