"""The Snakemake spine: the DAG resolves, config errors stop it, the data stages run for real."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import save_file

from mtlue.data import PreparedDataset

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
        "robustness": [{"defenses": ["jpeg", "at"], "methods": ["clean", "tap"], "backbones": ["test_resnet"], "weightings": ["ew"]}],
    }
    result = run_snakemake("-n", "--quiet", "rules", cwd=workdir_with_config(tmp_path, config))
    assert result.returncode == 0, result.stderr
    counts = {}
    for line in result.stdout.split("Job stats:")[1].splitlines()[3:]:
        if line.strip():
            rule, count = line.split()
            counts[rule] = int(count)
    # The grid, 3 methods x 2 backbones x 3 weightings x 1 defense, and the robustness block,
    # 2 methods x 2 defenses, each victim's 2 seeds in one job; only TAP needs the surrogate.
    assert counts["victim"] == 18 + 4 and counts["poison"] == 3 and counts["surrogate"] == 1
    assert counts["report_tables"] == 1 and counts["leaderboard"] == 1


def dry_run_jobs(workdir: Path) -> list[dict]:
    """Every job of a dry run: its rule, outputs and shell command."""
    return dry_run_jobs_with(workdir)


def dry_run_jobs_with(workdir: Path, *args: str) -> list[dict]:
    """Every job of a dry run with extra Snakemake arguments: its rule, outputs and shell command."""
    result = run_snakemake("-n", "-p", *args, cwd=workdir)
    assert result.returncode == 0, result.stderr
    jobs = []
    # Victim jobs are printed inside their group job (the rule's `group: victim`), indented.
    for block in re.split(r"\n\s*rule ", result.stdout + result.stderr)[1:]:
        rule = block.split(":", 1)[0]
        output = next((line.split(":", 1)[1] for line in block.splitlines() if line.strip().startswith("output:")), "")
        command = next((line.split(":", 1)[1] for line in block.splitlines() if line.startswith("Shell command:")), "")
        jobs.append({"rule": rule, "outputs": [path.strip() for path in output.split(",") if path.strip()], "command": command})
    return jobs


def test_a_victim_s_seeds_are_one_job_with_one_output_per_seed(tmp_path):
    config = {
        "datasets": {"tiny": {"source": "shapes"}},
        "poisons": {"methods": ["clean", "lsp"]},
        "victims": {"backbones": ["test_resnet"], "weightings": ["ew"], "seeds": [0, 1, 2]},
        "robustness": [{"defenses": ["jpeg"], "methods": ["clean"], "seeds": [0]}, {"defenses": ["none"], "methods": ["lsp"], "seeds": [7]}],
    }
    jobs = [job for job in dry_run_jobs(workdir_with_config(tmp_path / "all", config)) if job["rule"].startswith("victim")]
    victims = "results/tiny/victims"
    by_folder = {job["outputs"][0].rsplit("/seed", 1)[0]: job for job in jobs}
    assert sorted(by_folder) == [f"{victims}/clean/test_resnet/ew/jpeg", f"{victims}/clean/test_resnet/ew/none", f"{victims}/lsp/test_resnet/ew/none"]
    grid = by_folder[f"{victims}/clean/test_resnet/ew/none"]
    assert grid["rule"] == "victim_seeds_0_1_2"
    assert grid["outputs"] == [f"{victims}/clean/test_resnet/ew/none/seed{seed}/metrics.json" for seed in (0, 1, 2)]
    assert "--seed 0 1 2 " in grid["command"] and "/seed{seed}/metrics.json'" in grid["command"]
    assert "--tag seed=" not in grid["command"]
    assert by_folder[f"{victims}/lsp/test_resnet/ew/none"]["rule"] == "victim_seeds_0_1_2_7"
    assert by_folder[f"{victims}/clean/test_resnet/ew/jpeg"]["rule"] == "victim_seeds_0"

    # One seed per job on request (a cluster with many GPUs): every seed its own job again.
    config["victims"]["seeds_per_job"] = 1
    jobs = [job for job in dry_run_jobs(workdir_with_config(tmp_path / "one", config)) if job["rule"].startswith("victim")]
    assert len(jobs) == 3 + 4 + 1 and all(len(job["outputs"]) == 1 for job in jobs)
    assert {job["rule"] for job in jobs} == {"victim_seeds_0", "victim_seeds_1", "victim_seeds_2", "victim_seeds_7"}


def test_a_config_file_runs_alone_as_check_config_resolves_it(tmp_path):
    # The embedded default sits where Snakemake looks for it; the user's file names another
    # dataset and other methods. Merged, the run would also prepare `photodigits`, keep the
    # default's methods and reject its EM hyperparameters.
    demo = {"datasets": {"photodigits": {}}, "poisons": {"methods": ["clean", "em"], "hyperparameters": {"em": {"max_rounds": 2}}}}
    workdir = workdir_with_config(tmp_path, demo)
    user = {"datasets": {"tiny": {"source": "shapes"}}, "poisons": {"methods": ["clean", "lsp"]}, "victims": {"backbones": ["test_resnet"]}}
    (workdir / "mine.yaml").write_text(yaml.safe_dump(user))

    jobs = dry_run_jobs_with(workdir, "--configfile", "mine.yaml")
    outputs = [path for job in jobs for path in job["outputs"]]
    assert outputs and not [path for path in outputs if "photodigits" in path]
    assert {job["rule"] for job in jobs if job["rule"] == "poison"} == {"poison"}
    assert sorted(path.split("/")[3] for path in outputs if path.endswith("card.json")) == ["clean", "lsp"]

    printed = subprocess.run(
        [str(Path(sys.executable).parent / "mtlue"), "check-config", "mine.yaml", "--print"],
        cwd=workdir, capture_output=True, text=True, check=True,
    )
    # The resolved config is written by its own rule (a dry run writes nothing).
    written = run_snakemake("--cores", "1", "results/config.json", "--configfile", "mine.yaml", cwd=workdir)
    assert written.returncode == 0, written.stderr[-3000:]
    used = json.loads((workdir / "results" / "config.json").read_text())
    used.pop("submitted")
    assert used == yaml.safe_load(printed.stdout)
    assert used["victims"]["train"]["epochs"] == 60 and used["surrogate"]["backbone"] == "resnet18"  # the schema's paper defaults

    # Without a config file the embedded default runs; `--config` still changes single keys.
    jobs = dry_run_jobs_with(workdir, "--config", "tracking_uri=none")
    assert any("photodigits" in path for job in jobs for path in job["outputs"])
    written = run_snakemake("--cores", "1", "results/config.json", "--config", "tracking_uri=none", cwd=workdir)
    assert written.returncode == 0, written.stderr[-3000:]
    used = json.loads((workdir / "results" / "config.json").read_text())
    assert used["tracking_uri"] == "none" and used["poisons"]["methods"] == ["clean", "em"]


def test_at_victims_train_with_their_own_recipe(tmp_path):
    config = {
        "datasets": {"tiny": {"source": "shapes"}},
        "poisons": {"methods": ["clean"]},
        "victims": {
            "backbones": ["test_resnet"], "weightings": ["ew"], "defenses": ["none", "at"], "train": {"batch_size": 512},
            "train_per_defense": {"at": {"milestones": [0.75, 0.9], "batch_size": 128}},
        },
    }
    jobs = [job for job in dry_run_jobs(workdir_with_config(tmp_path, config)) if job["rule"].startswith("victim")]
    commands = {job["outputs"][0].split("/")[-3]: job["command"] for job in jobs}
    assert "--batch-size 128 " in commands["at"] and "--milestones 0.75 0.9 " in commands["at"]
    assert "--batch-size 512 " in commands["none"] and "--milestones 0.6 0.8 " in commands["none"]


def test_unknown_method_or_hyperparameter_stops_the_workflow(tmp_path):
    bad_method = {"datasets": {"shapes": {}}, "poisons": {"methods": ["clean", "emm"]}}
    result = run_snakemake("-n", cwd=workdir_with_config(tmp_path / "a", bad_method))
    assert result.returncode != 0 and "unknown method 'emm'" in result.stderr + result.stdout
    bad_value = {"datasets": {"shapes": {}}, "poisons": {"methods": ["tap"], "hyperparameters": {"tap": {"stepz": 3}}}}
    result = run_snakemake("-n", cwd=workdir_with_config(tmp_path / "b", bad_value))
    assert result.returncode != 0 and "stepz" in result.stderr + result.stdout


@pytest.mark.slow
def test_every_stage_runs_end_to_end_with_a_submission_and_a_robustness_block(tmp_path):
    config = {
        "datasets": {"tiny": {"source": "shapes", "options": {"train_size": 64, "test_size": 32, "image_size": 24, "crop_size": 20}}},
        "poisons": {"methods": ["clean", "lsp"]},
        "victims": {"backbones": ["test_resnet"], "weightings": ["ew", "pcgrad"], "train": {"epochs": 1, "batch_size": 32}},
        "robustness": [{"defenses": ["bdr"], "weightings": ["ew"]}],
    }
    workdir = workdir_with_config(tmp_path, config)
    prepared = run_snakemake("--cores", "1", "resources/data/tiny/manifest.json", cwd=workdir)
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    # A third party submits a perturbation file; the workflow evaluates it with its own victims.
    dataset = PreparedDataset(workdir / "resources" / "data" / "tiny")
    deltas = np.random.default_rng(0).integers(-8, 9, size=dataset.split("train").images.shape, dtype=np.int8)
    save_file({"deltas": torch.from_numpy(deltas)}, str(workdir / "mine.safetensors"))
    submitted = subprocess.run(
        [sys.executable, "-m", "mtlue", "submit", "mine.safetensors", "--dataset", "tiny", "--name", "my-ue"],
        cwd=workdir, capture_output=True, text=True,
    )
    assert submitted.returncode == 0, submitted.stderr
    result = run_snakemake("--cores", "2", "all", cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]

    results = workdir / "results" / "tiny"
    summary = (results / "data" / "summary.txt").read_text()
    assert "tasks (12)" in summary and "has_circle" in summary
    assert (results / "data" / "samples.png").stat().st_size > 1000
    installed = results / "poisons" / "my-ue" / "card.json"
    assert installed.read_bytes() == (workdir / "submissions" / "tiny" / "my-ue" / "card.json").read_bytes()
    victims = sorted(path.relative_to(results / "victims").parts[:4] for path in (results / "victims").rglob("metrics.json"))
    expected = sorted(
        [(m, "test_resnet", w, "none") for m in ("clean", "lsp", "my-ue") for w in ("ew", "pcgrad")]
        + [(m, "test_resnet", "ew", "bdr") for m in ("clean", "lsp", "my-ue")]
    )
    assert victims == expected
    for method, _, weighting, defense in expected:
        card = json.loads((results / "poisons" / method / "card.json").read_text())
        metrics = json.loads((results / "victims" / method / "test_resnet" / weighting / defense / "seed0" / "metrics.json").read_text())
        assert metrics["weighting"] == weighting and metrics["defense"]["name"] == defense
        assert metrics["dataset"]["train_images"] == f"{method}:{card['sha256']}"
        assert set(metrics["metrics"]) == {task["name"] for task in metrics["dataset"]["tasks"]}

    # Tables, plots, the leaderboard with every method ranked, and one MLflow run per job.
    matrix = (results / "tables" / "attack_defense.md").read_text()
    assert all(name in matrix for name in ("clean", "lsp", "my-ue", "bdr"))
    for plot in ("scores.png", "attack_defense.png", "training_curves.png"):
        assert (results / "tables" / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    board = workdir / "results" / "leaderboard"
    assert "my-ue" in (board / "leaderboard.md").read_text() and (board / "index.html").stat().st_size > 1000
    entries = {json.loads(path.read_text())["method"] for path in (board / "entries").glob("*.json")}
    assert entries == {"clean", "lsp", "my-ue"}
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{workdir / 'results' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("tiny")
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(run.data.tags["job"] for run in runs) == ["poison"] * 2 + ["victim"] * len(expected)
    assert all(run.info.status == "FINISHED" for run in runs)

    # A second run has nothing to do.
    again = run_snakemake("--cores", "2", "-n", cwd=workdir)
    assert "Nothing to be done" in again.stdout + again.stderr

    # A submission edited after it was checked is refused when it is installed again.
    store = workdir / "submissions" / "tiny" / "my-ue" / "deltas.safetensors"
    data = bytearray(store.read_bytes())
    data[-1] ^= 1
    store.write_bytes(bytes(data))
    shutil.rmtree(results / "poisons" / "my-ue")
    tampered = run_snakemake("--cores", "1", str(Path("results/tiny/poisons/my-ue/card.json")), cwd=workdir)
    assert tampered.returncode != 0
    log = (workdir / "results" / "logs" / "install_submission" / "tiny" / "my-ue.log").read_text()
    assert "sha256" in log
    shutil.rmtree(workdir / ".snakemake", ignore_errors=True)


def _paper_presets():
    from mtlue.fidelity import load_protocol

    return load_protocol(ROOT / "config" / "protocol.yaml").presets


@pytest.mark.parametrize("entry", _paper_presets(), ids=lambda entry: entry.name)
def test_a_paper_preset_s_dry_run_lists_exactly_the_paper_s_grid(entry, tmp_path):
    """`snakemake -n --configfile PRESET` plans the grid the protocol table states for it: only its
    datasets, one poison per method, and the table's number of victim jobs covering every
    (method, backbone, weighting, defense, seed) of its blocks."""
    jobs = dry_run_jobs_with(tmp_path, "--configfile", str(ROOT / entry.file))
    outputs = [path for job in jobs for path in job["outputs"]]
    printed = subprocess.run(
        [str(Path(sys.executable).parent / "mtlue"), "check-config", str(ROOT / entry.file), "--print"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    )
    resolved = yaml.safe_load(printed.stdout)  # what the Snakefile resolves (a dry run writes no config.json)
    per_dataset = [
        path.removeprefix(f"{root}/").split("/")[0]
        for root in (resolved["results_root"], resolved["data_root"])
        for path in outputs
        if path.startswith(f"{root}/")
        and not path.startswith(f"{resolved['results_root']}/leaderboard/")
        and path != f"{resolved['results_root']}/config.json"
    ]
    assert set(per_dataset) == set(entry.grid.datasets)

    cards = sorted(path.split("/")[3] for path in outputs if path.endswith("/card.json") and "/poisons/" in path)
    assert cards == sorted(entry.grid.methods)
    victims = [job for job in jobs if job["rule"].startswith("victim")]
    assert len(victims) == entry.grid.victim_jobs
    planned = {path.split("/victims/", 1)[1].removesuffix("/metrics.json") for job in victims for path in job["outputs"]}
    expected = {
        f"{method}/{backbone}/{weighting}/{defense}/seed{seed}"
        for block in entry.grid.blocks
        for method in block.get("methods", entry.grid.methods)
        for backbone in block["backbones"]
        for weighting in block["weightings"]
        for defense in block["defenses"]
        for seed in block["seeds"]
    }
    assert planned == expected
