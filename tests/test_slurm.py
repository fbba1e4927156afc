"""The cluster path: GPU placement in the SLURM profile's dry run, and a real run through SLURM.

The dry-run test reads what `snakemake -n --workflow-profile workflow/profiles/slurm` plans with
`resources.gpu: 1` and lets the SLURM plugin's own partition selection place each job with the
profile's partitions.yaml. The real test starts a single-node SLURM cluster on localhost
(tests/slurm_cluster.py), runs a tiny config through the SLURM profile with its MLflow runs sent
to an `mlflow server` it starts on 127.0.0.1, and compares the tables with a local run.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from conftest import free_port
from slurm_cluster import LocalSlurm, SlurmUnavailable, install_hint

ROOT = Path(__file__).resolve().parents[1]
PROFILE = ROOT / "workflow" / "profiles" / "slurm"
BIN = Path(sys.executable).parent
# The jobs that train or run a model; every other job must ask for no GPU.
GPU_JOBS = {("surrogate", None), ("victim", None), ("poison", "tap")}

TINY = {
    "datasets": {"tiny": {"source": "shapes", "options": {"train_size": 64, "test_size": 32, "image_size": 24, "crop_size": 20}}},
    "surrogate": {"backbone": "test_resnet", "epochs": 1, "every": 1, "batch_size": 32},
    "poisons": {"methods": ["clean", "lsp", "tap"], "hyperparameters": {"tap": {"steps": 1, "batch_size": 64}}},
    "victims": {"backbones": ["test_resnet"], "weightings": ["ew"], "seeds": [0], "train": {"epochs": 1, "batch_size": 32}},
    "robustness": [],
    "resources": {"gpu": 1, "threads": 1, "mem_mb": 1000, "runtime": 20},
}


def snakemake(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    environment = {**(env or os.environ), "PATH": f"{BIN}{os.pathsep}{(env or os.environ)['PATH']}", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), *args],
        cwd=cwd, capture_output=True, text=True, env=environment, timeout=timeout,
    )


def write_config(workdir: Path, config: dict) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def planned_jobs(output: str) -> list[dict]:
    """rule, wildcards and resources of every job a dry run prints (group members included)."""
    jobs = []
    for block in re.split(r"\n\s*\[[^\]]+\]\n", output):
        rule = re.search(r"^\s*(?:local)?rule (\w+):", block, re.MULTILINE)
        resources = re.search(r"^\s*resources: (.*)$", block, re.MULTILINE)
        if not rule or not resources or rule.group(1) == "all":
            continue
        wildcards = re.search(r"^\s*wildcards: (.*)$", block, re.MULTILINE)
        jobs.append(
            {
                "rule": rule.group(1),
                "wildcards": dict(item.split("=", 1) for item in wildcards.group(1).split(", ")) if wildcards else {},
                "resources": dict(item.split("=", 1) for item in resources.group(1).split(", ")),
            }
        )
    return jobs


def plugin_partition(job: dict) -> str:
    """The partition the SLURM plugin picks for a planned job from the profile's partitions.yaml."""
    from snakemake_executor_plugin_slurm.partitions import get_best_partition, read_partition_file

    numeric = {key: int(value) for key, value in job["resources"].items() if value.isdigit()}
    view = SimpleNamespace(name=job["rule"], threads=1, resources=SimpleNamespace(get=lambda key, default=None: numeric.get(key, default)))
    logger = SimpleNamespace(info=lambda *a, **k: None, debug=lambda *a, **k: None, warning=lambda *a, **k: None)
    return get_best_partition(read_partition_file(PROFILE / "partitions.yaml"), view, logger)


def test_with_a_gpu_only_the_jobs_that_need_one_ask_and_they_land_in_the_gpu_partition(tmp_path):
    config = write_config(tmp_path, {**TINY, "results_root": str(tmp_path / "results"), "data_root": str(tmp_path / "data")})
    result = snakemake("-n", "--workflow-profile", str(PROFILE), "--configfile", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = planned_jobs(result.stdout + result.stderr)
    assert {job["rule"] for job in jobs} >= {"prepare", "surrogate", "poison", "victim", "report_tables", "leaderboard"}
    for job in jobs:
        key = (job["rule"], job["wildcards"].get("method") if job["rule"] == "poison" else None)
        gpus = int(job["resources"].get("gpu", "0"))
        assert gpus == (1 if key in GPU_JOBS else 0), job
        assert plugin_partition(job) == ("gpu" if gpus else "cpu"), job
    assert sum(job["rule"] == "poison" for job in jobs) == 3


# The real cluster -------------------------------------------------------------------------------


def ensure_slurm_installed() -> None:
    """Install slurm-wlm and munge with apt when they are missing; skip only where that fails
    (slurmd and slurmctld run as root, as they do on a cluster)."""
    if os.geteuid() != 0:
        pytest.skip("a SLURM cluster on localhost needs root (slurmd, slurmctld, apt-get); run as root, e.g. in a CI container")
    if shutil.which("sbatch") and Path("/usr/sbin/slurmctld").exists() and Path("/usr/sbin/munged").exists():
        return
    if not shutil.which("apt-get"):
        pytest.skip(f"SLURM is not installed and cannot be installed here (no apt-get): {install_hint()}")
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "slurm-wlm", "munge"]):
        result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if result.returncode != 0:
            pytest.skip(f"could not install slurm-wlm and munge ({' '.join(command)}: {result.stderr.strip()[-300:]})")


class MlflowServer:
    """`mlflow server` on 127.0.0.1, in a session of its own so its workers stop with it."""

    def __init__(self, root: Path, port: int):
        self.uri = f"http://127.0.0.1:{port}"
        self.log = open(root / "mlflow-server.log", "wb")
        self.process = subprocess.Popen(
            [
                str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts"),
            ],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            # No background job runner (MLflow's GenAI jobs): five idle worker processes otherwise.
            env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"mlflow server exited; see {root / 'mlflow-server.log'}"
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(1)
        raise AssertionError(f"mlflow server did not answer on {self.uri}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


def tables(results: Path) -> dict[str, bytes]:
    folder = results / "tiny" / "tables"
    return {path.name: path.read_bytes() for path in sorted(folder.glob("*.md"))} | {"victims.csv": (folder / "victims.csv").read_bytes()}


@pytest.mark.slow
@pytest.mark.slurm
def test_a_tiny_run_through_a_real_slurm_cluster(tmp_path):
    ensure_slurm_installed()
    cluster = LocalSlurm(tmp_path / "cluster")
    try:
        cluster.start()
    except SlurmUnavailable as error:
        cluster.stop()
        pytest.fail(f"SLURM is installed but its daemons did not start: {error}")
    started_here = list(cluster.processes.values())
    server = None
    try:
        server = MlflowServer(tmp_path, free_port())
        workdir = tmp_path / "slurm"
        data = tmp_path / "data"
        config = write_config(workdir, {**TINY, "data_root": str(data), "tracking_uri": server.uri})
        env = {**cluster.environment(), "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1"}

        # The profile's placeholder account stops the run before anything is submitted.
        refused = snakemake("--workflow-profile", str(PROFILE), "--configfile", str(config), cwd=workdir, env=env)
        assert refused.returncode != 0 and "placeholder 'your-account'" in refused.stderr, refused.stderr[-3000:]
        assert cluster.jobs() == []

        started = time.monotonic()
        result = snakemake(
            "--workflow-profile", str(PROFILE), "--configfile", str(config),
            # No accounts and no accounting on this cluster: no account, job states from squeue.
            "--default-resources", "slurm_account=''", "--slurm-status-command", "squeue",
            "--slurm-init-seconds-before-status-checks", "5", "--seconds-between-status-checks", "5",
            cwd=workdir, env=env, timeout=1500,
        )
        assert result.returncode == 0, result.stderr[-5000:]
        print(f"SLURM run: {time.monotonic() - started:.0f} s")

        jobs = cluster.jobs()
        submitted = {job["Comment"]: job for job in jobs}
        assert all(job["State"] == "COMPLETED" for job in jobs), jobs
        expected = {
            "rule_prepare_wildcards_tiny": ("cpu", "8000M", "4:00:00", ""),
            "rule_surrogate_wildcards_tiny": ("gpu", "1000M", "20:00", "gres:gpu:1"),
            "rule_poison_wildcards_tiny_clean": ("cpu", "1000M", "20:00", ""),
            "rule_poison_wildcards_tiny_lsp": ("cpu", "1000M", "20:00", ""),
            "rule_poison_wildcards_tiny_tap": ("gpu", "1000M", "20:00", "gres:gpu:1"),
        }
        for comment, (partition, memory, limit, gpus) in expected.items():
            job = submitted[comment]
            assert (job["Partition"], job["MinMemory"], job["TimeLimit"], job["NumCPUs"]) == (partition, memory, limit, "1"), job
            assert job["tres-per-job"].replace("N/A", "") == gpus, job
        # The three victims share one allocation (group `victim`) in the GPU partition.
        groups = [job for job in jobs if job["Comment"] == "rule_victim_victim"]
        assert len(groups) == 1, jobs
        # One after another on one victim's resources: one GPU, the three runtimes added.
        assert (groups[0]["Partition"], groups[0]["NumCPUs"], groups[0]["MinMemory"], groups[0]["TimeLimit"]) == ("gpu", "1", "1000M", "1:00:00"), jobs
        assert groups[0]["tres-per-job"] == "gres:gpu:1", jobs
        assert len(jobs) == len(expected) + 1, jobs
        # The cheap rules ran beside Snakemake, never through sbatch.
        assert not any(rule in job["Comment"] for job in jobs for rule in ("report_tables", "leaderboard", "show_dataset"))

        # Every surrogate, poison and victim run reached the tracking server.
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=server.uri)
        runs = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
        assert sorted(run.data.tags["job"] for run in runs) == ["poison"] * 3 + ["surrogate"] + ["victim"] * 3
        assert all(run.info.status == "FINISHED" for run in runs)

        # The same config run locally gives the same tables, byte for byte (the config's hash,
        # which the tables print, included: the local run logs to the same server).
        local = tmp_path / "local"
        local_config = write_config(local, {**TINY, "data_root": str(data), "tracking_uri": server.uri})
        again = snakemake("--cores", "2", "--configfile", str(local_config), cwd=local, env=env, timeout=1500)
        assert again.returncode == 0, again.stderr[-3000:]
        assert tables(local / "results") == tables(workdir / "results")
    finally:
        if server is not None:
            server.stop()
        cluster.stop()
    # Every daemon the test started has ended (stopped by its PID, nothing by name).
    assert all(process.poll() is not None for process in [*started_here, server.process])
