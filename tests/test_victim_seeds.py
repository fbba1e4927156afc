"""Several seeds per `mtlue victim` process: the same victims as one seed per process, resumable,
one MLflow run per seed, bad input refused before the first seed trains, timing recorded."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import Killed, kill_after
from mtlue.cli import main

FAST = ["--backbone", "test_resnet", "--epochs", "2", "--batch-size", "16", "--eval-every", "1", "--num-threads", "1", "--no-progress"]


def victim(data, *flags: str) -> int:
    return main(["victim", "--data", str(data.root), *FAST, *flags])


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def numbers(result: dict) -> dict:
    """What must be bit-identical between two runs of one victim: metrics and every epoch's
    losses, weights, gradient norms and test scores (not wall times)."""
    history = [
        {key: value for key, value in record.items() if key not in ("seconds", "eval_seconds")}
        for run in result["runs"]
        for record in run["history"]
    ]
    return {"metrics": result["metrics"], "aggregate": result["aggregate"], "history": history}


@pytest.fixture(scope="module")
def single_seed_runs(tiny_shapes, tmp_path_factory):
    """Seeds 0 and 2 of a jpeg-defended victim, each in a process of its own (a main() call)."""
    folder = tmp_path_factory.mktemp("single")
    for seed in (0, 2):
        assert victim(tiny_shapes, "--defense", "jpeg", "--seed", str(seed), "--out", str(folder / f"seed{seed}.json")) == 0
    return folder


def test_several_seeds_in_one_process_give_each_seed_s_own_victim_bit_for_bit(tiny_shapes, single_seed_runs, tmp_path, capsys):
    # Seed 2 first, so that seed 0 trains after another victim in the same process.
    pattern = str(tmp_path / "seed{seed}" / "metrics.json")
    assert victim(tiny_shapes, "--defense", "jpeg", "--seed", "2", "0", "--out", pattern) == 0
    for seed in (0, 2):
        together = load(tmp_path / f"seed{seed}" / "metrics.json")
        alone = load(single_seed_runs / f"seed{seed}.json")
        assert together["seed"] == seed and together["train_config"]["seed"] == seed
        assert numbers(together) == numbers(alone)
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(" seed ")[1].split(":")[0] for line in printed if " seed " in line] == ["2", "0"]


def test_each_seed_records_where_its_time_went(tiny_shapes, tmp_path):
    pattern = str(tmp_path / "seed{seed}.json")
    assert victim(tiny_shapes, "--seed", "0", "1", "--out", pattern) == 0
    first, second = (load(tmp_path / f"seed{seed}.json")["timing"] for seed in (0, 1))
    for timing in (first, second):
        assert timing["started"] <= timing["first_step"] <= timing["last_step"] <= timing["finished"]
        assert timing["startup_seconds"] >= 0 and timing["work_seconds"] > 0
        assert timing["cpu_seconds"]["startup"] >= 0 and timing["cpu_seconds"]["work"] > 0
        assert timing["process_started"] is None or timing["process_started"] <= timing["started"]
    # The first seed's turn starts with the process (imports count); the next one's after it.
    assert first["started"] == first["process_started"]
    assert second["started"] >= first["finished"]


def test_a_killed_multi_seed_run_loses_only_the_running_seed_and_resumes(tiny_shapes, single_seed_runs, tmp_path, monkeypatch):
    import victims.run

    out = str(tmp_path / "seed{seed}" / "metrics.json")
    checkpoints = str(tmp_path / "seed{seed}" / "checkpoints")
    flags = ["--defense", "jpeg", "--seed", "0", "2", "--out", out, "--checkpoint-dir", checkpoints]
    real = victims.run.run_victim

    def killed_in_seed_2(dataset, victim_config, config, **options):
        if config.seed == 2:
            options["callbacks"] = [*options["callbacks"], kill_after(1)]
        return real(dataset, victim_config, config, **options)

    monkeypatch.setattr(victims.run, "run_victim", killed_in_seed_2)
    with pytest.raises(Killed):
        victim(tiny_shapes, *flags)
    monkeypatch.undo()
    # Seed 0 was written when it finished; seed 2 died after its first epoch's checkpoint.
    assert (tmp_path / "seed0" / "metrics.json").exists() and not (tmp_path / "seed2" / "metrics.json").exists()
    assert (tmp_path / "seed2" / "checkpoints" / "mtl.pt").exists()

    # Snakemake removes a failed job's outputs; the rerun gets them back from the checkpoints.
    (tmp_path / "seed0" / "metrics.json").unlink()
    assert victim(tiny_shapes, *flags) == 0
    resumed = {seed: load(tmp_path / f"seed{seed}" / "metrics.json") for seed in (0, 2)}
    assert resumed[0]["runs"][0]["resumed_from_epoch"] == 2 and resumed[0]["timing"]["first_step"] is None
    assert resumed[2]["runs"][0]["resumed_from_epoch"] == 1
    for seed in (0, 2):
        assert numbers(resumed[seed]) == numbers(load(single_seed_runs / f"seed{seed}.json"))


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--seed", "0", "1", "--out", "{tmp}/m.json"], r"--out '.*m.json' names one file but --seed gives 2 seeds; put \{seed\} in it"),
        (["--seed", "0", "1", "--out", "{tmp}/{{seed}}.json", "--checkpoint-dir", "{tmp}/ck"], "--checkpoint-dir .* is one folder"),
        (["--seed", "1", "1", "--out", "{tmp}/{{seed}}.json"], "--seed lists 1 more than once"),
        (
            ["--seed", "0", "1", "--out", "{tmp}/{{seed}}.json", "--tracking-uri", "sqlite:///{tmp}/m.db", "--tag", "seed=0"],
            "--tag seed=0 names one seed but --seed gives 2; drop the --tag",
        ),
        (["--seed", "0", "1", "--out", "{tmp}/{{seed}}.json", "--weighting", "nope"], "seed 0: unknown weighting 'nope'"),
    ],
)
def test_bad_input_is_refused_before_any_seed_trains(tiny_shapes, tmp_path, flags, message, capsys):
    argv = [flag.format(tmp=tmp_path) for flag in flags]
    assert victim(tiny_shapes, *argv) == 2
    error = capsys.readouterr().err
    assert re.search(message, error), error
    assert not list(tmp_path.glob("*.json")) and not (tmp_path / "m.db").exists()


def test_each_seed_is_its_own_mlflow_run(tiny_shapes, tmp_path, capsys):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = str(tmp_path / "seed{seed}" / "metrics.json")
    assert victim(tiny_shapes, "--seed", "0", "1", "--out", out, "--tracking-uri", uri, "--tag", "method=clean") == 0, capsys.readouterr().err
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name(tiny_shapes.name).experiment_id])
    assert sorted(run.data.tags["seed"] for run in runs) == ["0", "1"]
    assert all(run.info.status == "FINISHED" and run.data.tags["method"] == "clean" for run in runs)
    assert sorted(run.data.params["out"] for run in runs) == [str(tmp_path / f"seed{seed}" / "metrics.json") for seed in (0, 1)]


def test_as_a_program_the_job_reports_its_phases_and_leaves_a_complete_store(tiny_shapes, tmp_path):
    """`python -m mtlue victim` as the workflow runs it: the exit line counts one work span per
    seed, and the MLflow runs are in mlflow.db itself although the collector is frozen at exit."""
    import os
    import sqlite3
    import subprocess
    import sys

    from mtlue.timing import ENVIRONMENT_VARIABLE, parse_line

    root = Path(__file__).resolve().parents[1]
    environment = {
        **os.environ, ENVIRONMENT_VARIABLE: "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])),
    }
    database = tmp_path / "mlflow.db"
    command = [
        sys.executable, "-m", "mtlue", "victim", "--data", str(tiny_shapes.root), *FAST, "--epochs", "1", "--seed", "0", "1",
        "--out", str(tmp_path / "seed{seed}.json"), "--tracking-uri", f"sqlite:///{database}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
    assert result.returncode == 0, result.stderr
    (record,) = [record for line in result.stderr.splitlines() if (record := parse_line(line))]
    assert record["command"] == "victim" and record["work_spans"] == 2
    assert record["startup_seconds"] > 0 and record["work_seconds"] >= record["busy_seconds"] > 0
    copy = tmp_path / "copy" / "mlflow.db"
    copy.parent.mkdir()
    copy.write_bytes(database.read_bytes())
    connection = sqlite3.connect(copy)
    try:
        assert connection.execute("select status, count(*) from runs group by status").fetchall() == [("FINISHED", 2)]
    finally:
        connection.close()


def test_an_untracked_loss_scaling_victim_imports_neither_mlflow_matplotlib_nor_torchjd(tiny_shapes, tmp_path):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    argv = ["victim", "--data", str(tiny_shapes.root), *FAST, "--epochs", "1", "--defense", "jpeg", "--out", str(tmp_path / "m.json")]
    probe = (
        f"import sys\nfrom mtlue.cli import main\nassert main({argv!r}) == 0\n"
        "print(sorted(name for name in ('mlflow', 'matplotlib', 'torchjd', 'cvxpy', 'victims.defenses.at') if name in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=environment, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"
