"""Seconds of overhead per job under SLURM: what an allocation spends outside the `mtlue` command.

    python bench/bench_slurm.py                        # this checkout
    python bench/bench_slurm.py --repo /tmp/before     # another checkout (e.g. `git archive REV`), same config

It starts a single-node SLURM cluster on localhost (tests/slurm_cluster.py: munged, slurmctld,
slurmd; needs `apt-get install slurm-wlm munge` and root), runs a small workflow through the
repository's `workflow/profiles/slurm` (methods clean, lsp and ar on the `shapes` data, one
victim each, MLflow off), and prints one row per run:

- **allocations**: sbatch jobs, and the `mtlue` commands they ran (a group job runs several);
- **allocated s**: the allocations' wall seconds together, start to end as slurmctld records them;
- **mtlue s**: the `mtlue` commands' own wall seconds together (process start to exit, from the
  `mtlue timing:` line each writes into its log);
- **overhead s/job**: (allocated - mtlue) / commands, i.e. what each job pays before and after
  its command inside its allocation: the job script, Snakemake started twice (the batch step and
  its srun step) and the Snakefile parsed each time;
- **local jobs**: jobs Snakemake ran beside itself instead of submitting them (localrules);
- **wall s**: the whole run as Snakemake takes it, status polling included.

Wall seconds on a shared machine: the load average is printed beside them.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from slurm_cluster import LocalSlurm  # noqa: E402

from mtlue.timing import ENVIRONMENT_VARIABLE, parse_line  # noqa: E402

CONFIG = {
    "datasets": {"shapes": {"options": {"train_size": 64, "test_size": 32, "image_size": 24, "crop_size": 20}}},
    "poisons": {"methods": ["clean", "lsp", "ar"]},
    "victims": {"backbones": ["test_resnet"], "weightings": ["ew"], "seeds": [0], "train": {"epochs": 1, "batch_size": 32}},
    "robustness": [],
    "tracking_uri": "none",
    "resources": {"threads": 1, "mem_mb": 1000, "runtime": 20},
}


def allocation_seconds(cluster: LocalSlurm, job_id: str) -> float:
    """End minus start of a finished job, as slurmctld records them (1 s resolution)."""
    text = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, env=cluster.environment(), check=True).stdout
    start, end = (datetime.fromisoformat(re.search(rf"{key}=(\S+)", text).group(1)) for key in ("StartTime", "EndTime"))
    return (end - start).total_seconds()


def run(repo: Path, scratch: Path) -> dict[str, float]:
    workdir = scratch / "work"
    workdir.mkdir(parents=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump({**CONFIG, "data_root": str(scratch / "data")}))
    with LocalSlurm(scratch / "cluster") as cluster:
        env = {
            **cluster.environment(),
            "PYTHONPATH": str(repo),
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{cluster.environment()['PATH']}",
            ENVIRONMENT_VARIABLE: "1",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
        started = time.monotonic()
        result = subprocess.run(
            [
                sys.executable, "-m", "snakemake", "--snakefile", str(repo / "Snakefile"),
                "--workflow-profile", str(repo / "workflow" / "profiles" / "slurm"), "--configfile", "config.yaml",
                "--default-resources", "slurm_account=''", "--slurm-status-command", "squeue",
                "--slurm-init-seconds-before-status-checks", "5", "--seconds-between-status-checks", "5",
            ],
            cwd=workdir, env=env, capture_output=True, text=True,
        )
        wall = time.monotonic() - started
        if result.returncode != 0:
            raise SystemExit(f"the workflow failed in {repo}:\n{result.stderr[-4000:]}")
        jobs = cluster.jobs()
        allocated = sum(allocation_seconds(cluster, job["JobID"]) for job in jobs)
    records = [
        record
        for log in (workdir / "results" / "logs").rglob("*.log")
        for line in log.read_text(errors="replace").splitlines()
        if (record := parse_line(line)) is not None
    ]
    # sbatch comments start with rule_RULE (a group job's with rule_GROUP; the victims' group is `victim`).
    command_of = {"prepare": "prepare", "poison": "poison", "victim": "victim", "show_dataset": "show", "report_tables": "report", "leaderboard": "leaderboard"}
    submitted_commands = {command for rule, command in command_of.items() for job in jobs if job["Comment"].startswith(f"rule_{rule}")}
    remote = [record for record in records if record["command"] in submitted_commands]
    mtlue = sum(record["exited"] - record["process_started"] for record in remote)
    return {
        "allocations": len(jobs),
        "commands": len(remote),
        "allocated": allocated,
        "mtlue": mtlue,
        "overhead": (allocated - mtlue) / len(remote),
        "local": len(records) - len(remote),
        "wall": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, action="append", help="checkout to run (repeatable; default: this one)")
    args = parser.parse_args()
    repos = args.repo or [ROOT]
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    print("| checkout | allocations | commands | allocated s | mtlue s | overhead s/job | local jobs | wall s |")
    print("|---|---|---|---|---|---|---|---|")
    for repo in repos:
        with tempfile.TemporaryDirectory(prefix="bench-slurm-") as scratch:
            row = run(repo.resolve(), Path(scratch))
        print(
            f"| {repo} | {row['allocations']} | {row['commands']} | {row['allocated']:.0f} | {row['mtlue']:.1f} "
            f"| {row['overhead']:.1f} | {row['local']} | {row['wall']:.0f} |",
            flush=True,
        )
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
