"""The Snakemake spine: the DAG resolves, config errors stop it, the data stages run for real."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def run_snakemake(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        [*SNAKEMAKE, "--snakefile", str(ROOT / "Snakefile"), *args],
        cwd=cwd, capture_output=True, text=True, env=environment, timeout=600,
    )


def workdir_with_config(tmp_path: Path, config: dict) -> Path:
    (tmp_path / "config").mkdir(parents=True)
    (tmp_path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    return tmp_path


def test_dry_run_of_the_default_config_lists_the_stages():
    result = run_snakemake("-n", "--quiet", "rules", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    for rule in ("prepare", "show_dataset", "victim"):
        assert rule in result.stdout + result.stderr


def test_unknown_key_stops_the_workflow_and_names_it(tmp_path):
    workdir = workdir_with_config(tmp_path, {"datasets": {"shapes": {}}, "victimz": {}})
    result = run_snakemake("-n", cwd=workdir)
    assert result.returncode != 0
    assert "unknown key 'victimz'" in result.stderr + result.stdout


def test_bad_dataset_option_stops_the_workflow(tmp_path):
    workdir = workdir_with_config(tmp_path, {"datasets": {"shapes": {"options": {"train_sizes": 5}}}})
    result = run_snakemake("-n", cwd=workdir)
    assert result.returncode != 0
    assert "train_sizes" in result.stderr + result.stdout


def test_dry_run_fans_victims_out_over_every_axis(tmp_path):
    config = {
        "datasets": {"tiny": {"source": "shapes"}},
        "poisons": {"methods": ["clean", "lsp", "tap"]},
        "victims": {"backbones": ["test_resnet", "resnet10t"], "weightings": ["ew", "pcgrad", "uw"], "seeds": [0, 1]},
    }
    result = run_snakemake("-n", "--quiet", "rules", cwd=workdir_with_config(tmp_path, config))
    assert result.returncode == 0, result.stderr
    counts = {}
    for line in result.stdout.split("Job stats:")[1].splitlines()[3:]:
        if line.strip():
            rule, count = line.split()
            counts[rule] = int(count)
    # 3 methods x 2 backbones x 3 weightings x 1 defense x 2 seeds; only TAP needs the surrogate.
    assert counts["victim"] == 36 and counts["poison"] == 3 and counts["surrogate"] == 1


def test_unknown_method_or_hyperparameter_stops_the_workflow(tmp_path):
    bad_method = {"datasets": {"shapes": {}}, "poisons": {"methods": ["clean", "emm"]}}
    result = run_snakemake("-n", cwd=workdir_with_config(tmp_path / "a", bad_method))
    assert result.returncode != 0 and "unknown method 'emm'" in result.stderr + result.stdout
    bad_value = {"datasets": {"shapes": {}}, "poisons": {"methods": ["tap"], "hyperparameters": {"tap": {"stepz": 3}}}}
    result = run_snakemake("-n", cwd=workdir_with_config(tmp_path / "b", bad_value))
    assert result.returncode != 0 and "stepz" in result.stderr + result.stdout


@pytest.mark.slow
def test_data_and_victim_stages_run_end_to_end(tmp_path):
    config = {
        "datasets": {"tiny": {"source": "shapes", "options": {"train_size": 64, "test_size": 16, "image_size": 24, "crop_size": 20}}},
        "poisons": {"methods": ["clean", "lsp"]},
        "victims": {"backbones": ["test_resnet"], "weightings": ["ew", "pcgrad"], "train": {"epochs": 1, "batch_size": 32}},
    }
    workdir = workdir_with_config(tmp_path, config)
    result = run_snakemake("--cores", "2", "all", cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = workdir / "resources" / "data" / "tiny" / "manifest.json"
    assert manifest.is_file()
    summary = (workdir / "results" / "tiny" / "data" / "summary.txt").read_text()
    assert "tasks (12)" in summary and "has_circle" in summary
    assert (workdir / "results" / "tiny" / "data" / "samples.png").stat().st_size > 1000
    for method in ("clean", "lsp"):
        card = json.loads((workdir / "results" / "tiny" / "poisons" / method / "card.json").read_text())
        assert (workdir / "results" / "tiny" / "poisons" / "previews" / f"{method}.png").stat().st_size > 1000
        for weighting in ("ew", "pcgrad"):
            metrics_file = workdir / "results" / "tiny" / "victims" / method / "test_resnet" / weighting / "none" / "seed0" / "metrics.json"
            metrics = json.loads(metrics_file.read_text())
            assert metrics["weighting"] == weighting and metrics["train_config"]["epochs"] == 1
            assert metrics["dataset"]["train_images"] == f"{method}:{card['sha256']}"
            assert set(metrics["metrics"]) == {task["name"] for task in metrics["dataset"]["tasks"]}
    # A second run has nothing to do.
    again = run_snakemake("--cores", "2", "-n", cwd=workdir)
    assert "Nothing to be done" in again.stdout + again.stderr
    shutil.rmtree(workdir / ".snakemake", ignore_errors=True)
