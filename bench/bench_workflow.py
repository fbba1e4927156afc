"""Wall time of the whole workflow, per rule, and the share of each job spent starting up.

    python bench/bench_workflow.py [--configfile config/config.yaml] [--set victims.seeds=[0,1,2] ...]
        [--cores 2] [--workdir DIR]
    python bench/bench_workflow.py --results results        # an existing run's logs; runs nothing

Without ``--results`` it runs the workflow (``snakemake --cores N``) on the config in a scratch
folder (a new temporary folder, removed afterwards, unless ``--workdir`` names one to keep): the
dataset is prepared there and the results and the MLflow store land there; nothing of the
repository's ``results/`` is read or written. ``--set KEY=VALUE`` (a dotted key, a YAML value)
changes the config first, e.g. ``--set victims.seeds=[0,1,2] --set victims.seeds_per_job=1``.
The default is the embedded default, ``config/config.yaml``.

Every job prints one ``mtlue timing:`` line into its log when it exits (:mod:`mtlue.timing`; the
Snakefile sets ``MTLUE_JOB_TIMING``), and every victim's ``metrics.json`` has a ``timing`` record.
From those:

- **per rule** (the job's ``mtlue`` command): jobs, their wall seconds from process start to
  exit, and its share in start-up (process start to the first work mark: interpreter, imports,
  data, MLflow store, model), work (first to last work mark: a victim's first training step to
  its last evaluation; a poison method's generation, the method's own imports included; the
  whole command for rules that mark nothing) and shutdown (results, MLflow artifacts and
  figures, exit handlers); ``between`` is the part of the work outside work spans, i.e. what a
  multi-seed victim job does between its seeds; CPU seconds of the jobs;
- **victim seeds**: the start-up of each process's first seed against the seeds after it in the
  same process, and the seeds' training time;
- **the workflow**: wall time (measured around Snakemake; with ``--results``, from the first
  job's start to the last job's exit), CPU seconds of Snakemake and every job together (measured
  runs only), of which the jobs' own, and how busy the cores were.

Wall and CPU seconds of a shared machine: the load average at start and end is printed beside
them. This is a benchmark, not a test: tests only check that the timing records exist.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtlue.timing import ENVIRONMENT_VARIABLE, parse_line  # noqa: E402


@dataclass
class Rule:
    """The timed jobs of one ``mtlue`` command."""

    name: str
    jobs: int = 0
    wall: float = 0.0
    startup: float = 0.0
    work: float = 0.0
    busy: float = 0.0
    shutdown: float = 0.0
    cpu: float = 0.0
    spans: int = 0


@dataclass
class Run:
    """What one workflow run left: job records, victim seed records, and the measured totals."""

    jobs: list[dict[str, Any]] = field(default_factory=list)
    untimed_logs: list[Path] = field(default_factory=list)
    seeds: list[dict[str, Any]] = field(default_factory=list)
    wall: float | None = None
    cpu: float | None = None


def set_key(config: dict[str, Any], dotted: str, text: str) -> None:
    """``config[a][b] = yaml(text)`` for ``a.b=text``, creating the intermediate mappings."""
    *parents, leaf = dotted.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise SystemExit(f"--set {dotted}: {key!r} is not a mapping in the config")
    node[leaf] = yaml.safe_load(text)


def run_workflow(config: dict[str, Any], workdir: Path, cores: int) -> tuple[float, float, subprocess.CompletedProcess]:
    """Run Snakemake on ``config`` in ``workdir``; wall seconds, CPU seconds of it and its jobs."""
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    environment = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        ENVIRONMENT_VARIABLE: "1",
    }
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--cores", str(cores), "--quiet", "rules"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=workdir, env=environment, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, result


def read_run(results: Path) -> Run:
    """The timing lines of every job log under ``results/logs`` and every victim's timing record."""
    run = Run()
    for log in sorted((results / "logs").rglob("*.log")):
        records = [record for line in log.read_text(errors="replace").splitlines() if (record := parse_line(line))]
        if records:
            run.jobs.append({**records[-1], "log": str(log.relative_to(results))})
        else:
            run.untimed_logs.append(log)
    for path in sorted(results.glob("*/victims/**/metrics.json")):
        timing = json.loads(path.read_text()).get("timing")
        if timing:
            run.seeds.append(timing)
    return run


def rules_of(run: Run) -> list[Rule]:
    order = ["prepare", "show", "surrogate", "poison", "install-submission", "victim", "report", "leaderboard"]
    rules: dict[str, Rule] = {}
    for job in run.jobs:
        rule = rules.setdefault(job["command"], Rule(job["command"]))
        rule.jobs += 1
        startup = job["startup_seconds"] or 0.0
        rule.wall += startup + job["work_seconds"] + job["shutdown_seconds"]
        rule.startup += startup
        rule.work += job["work_seconds"]
        rule.busy += job["busy_seconds"] if job["work_spans"] else job["work_seconds"]
        rule.shutdown += job["shutdown_seconds"]
        rule.cpu += sum(value or 0.0 for value in job["cpu_seconds"].values())
        rule.spans += job["work_spans"]
    return sorted(rules.values(), key=lambda rule: order.index(rule.name) if rule.name in order else len(order))


def share(part: float, whole: float) -> str:
    return f"{100 * part / whole:5.1f}%" if whole > 0 else "    -"


def print_rules(rules: list[Rule]) -> None:
    print("\nPer rule (mtlue command): wall seconds from process start to exit, summed over the rule's jobs")
    header = (
        f"| {'rule':<18} | {'jobs':>4} | {'wall s':>8} | {'s/job':>6} | {'start-up':>8} | {'work':>6} | {'between':>7} | "
        f"{'shutdown':>8} | {'CPU s':>8} |"
    )
    print(header)
    print("|" + "|".join("-" * len(cell) for cell in header.split("|")[1:-1]) + "|")
    total = Rule("all jobs")
    for rule in [*rules, total]:
        if rule is not total:
            for name in ("jobs", "wall", "startup", "work", "busy", "shutdown", "cpu", "spans"):
                setattr(total, name, getattr(total, name) + getattr(rule, name))
        print(
            f"| {rule.name:<18} | {rule.jobs:>4} | {rule.wall:8.1f} | {rule.wall / max(rule.jobs, 1):6.1f} | "
            f"{share(rule.startup, rule.wall):>8} | {share(rule.busy, rule.wall):>6} | {share(rule.work - rule.busy, rule.wall):>7} | "
            f"{share(rule.shutdown, rule.wall):>8} | {rule.cpu:8.1f} |"
        )


def print_seeds(seeds: list[dict[str, Any]]) -> None:
    if not seeds:
        return
    by_process: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for seed in seeds:
        by_process[seed["process_started"]].append(seed)
    first, later = [], []
    for group in by_process.values():
        group.sort(key=lambda seed: seed["started"])
        first.append(group[0])
        later.extend(group[1:])
    print(f"\nVictim seeds: {len(seeds)} in {len(by_process)} processes (mean seconds per seed)")
    header = f"| {'seed':<28} | {'seeds':>5} | {'start-up s':>10} | {'CPU':>6} | {'train+eval s':>12} | {'CPU':>6} |"
    print(header)
    print("|" + "|".join("-" * len(cell) for cell in header.split("|")[1:-1]) + "|")
    for label, group in (("first of its process", first), ("later in the same process", later)):
        if not group:
            continue

        def mean(values: list[float | None]) -> float:
            known = [value for value in values if value is not None]
            return sum(known) / len(known) if known else float("nan")

        print(
            f"| {label:<28} | {len(group):>5} | {mean([s['startup_seconds'] for s in group]):10.2f} | "
            f"{mean([s['cpu_seconds']['startup'] for s in group]):6.2f} | {mean([s['work_seconds'] for s in group]):12.2f} | "
            f"{mean([s['cpu_seconds']['work'] for s in group]):6.2f} |"
        )


def print_workflow(run: Run, cores: int) -> None:
    jobs = run.jobs
    job_wall = sum((job["startup_seconds"] or 0.0) + job["work_seconds"] + job["shutdown_seconds"] for job in jobs)
    job_cpu = sum(sum(value or 0.0 for value in job["cpu_seconds"].values()) for job in jobs)
    starts = [job["process_started"] for job in jobs if job["process_started"] is not None]
    span = max(job["exited"] for job in jobs) - min(starts) if starts else float("nan")
    wall = run.wall if run.wall is not None else span
    print("\nWorkflow")
    print(f"  wall time            {wall:8.1f} s{'' if run.wall is not None else ' (first job start to last job exit)'}")
    if run.cpu is not None:
        print(f"  CPU, all processes   {run.cpu:8.1f} s (Snakemake and every job)")
    if jobs:
        of_total = f" ({share(job_cpu, run.cpu).strip()}; the rest: Snakemake, shells, interpreter teardown)" if run.cpu else ""
        print(f"  CPU of the jobs      {job_cpu:8.1f} s{of_total}")
        print(f"  cores busy           {share(job_wall, wall * cores).strip()} of {cores} x wall (job wall {job_wall:.1f} s)")
    if run.untimed_logs:
        print(f"  logs without a timing line: {len(run.untimed_logs)} (failed jobs, or a run before mtlue.timing), e.g. {run.untimed_logs[0]}")


def load_average() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configfile", default=str(ROOT / "config" / "config.yaml"), help="workflow config to run (default: the embedded default)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="change a config key first (dotted, YAML value)")
    parser.add_argument("--cores", type=int, default=2, help="Snakemake --cores (default: %(default)s)")
    parser.add_argument("--workdir", help="run in this folder and keep it (default: a temporary folder, removed)")
    parser.add_argument("--results", help="read an existing run's results folder instead of running the workflow")
    args = parser.parse_args()

    print(f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; load average {load_average()}")
    if args.results:
        run = read_run(Path(args.results))
        print(f"results {args.results}: {len(run.jobs)} timed jobs")
    else:
        config = yaml.safe_load(Path(args.configfile).read_text()) or {}
        for item in args.overrides:
            key, separator, value = item.partition("=")
            if not separator or not key:
                parser.error(f"--set expects KEY=VALUE, got {item!r}")
            set_key(config, key, value)
        workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="mtlue-bench-workflow-"))
        if workdir.exists() and any(workdir.iterdir()) and args.workdir:
            parser.error(f"--workdir {workdir} is not empty; give a new folder (the benchmark runs the workflow from scratch)")
        print(f"config {args.configfile}{' with ' + ', '.join(args.overrides) if args.overrides else ''}; {args.cores} cores; in {workdir}")
        try:
            wall, cpu, result = run_workflow(config, workdir, args.cores)
            if result.returncode != 0:
                sys.stderr.write(result.stderr[-4000:])
                raise SystemExit(f"snakemake failed (exit {result.returncode}); logs in {workdir / 'results' / 'logs'}")
            run = read_run(workdir / "results")
            run.wall, run.cpu = wall, cpu
        finally:
            if not args.workdir:
                shutil.rmtree(workdir, ignore_errors=True)
    print_rules(rules_of(run))
    print_seeds(run.seeds)
    print_workflow(run, args.cores)
    print(f"\nload average at the end {load_average()}")


if __name__ == "__main__":
    main()
