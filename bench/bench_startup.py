"""A victim job's fixed cost: CPU seconds before its first training step, against the floor.

    python bench/bench_startup.py [--repeats 3] [--workdir DIR]

Prepares a tiny ``photodigits`` split (1,200 images, four tasks) in a scratch folder, then
runs, ``--repeats`` times each and interleaved (so a shared machine's load hits every row
alike):

- the floor rows, bare interpreters importing only what any training job must: ``torch``, and
  ``torch`` with ``torch._dynamo``, which every ``torch.optim`` optimizer imports when its
  first parameter group is added (``Optimizer.add_param_group`` is wrapped in
  ``torch._disable_dynamo``, whose first call imports ``torch._dynamo``; torch 2.14);
- ``+ timm``: the floor and the encoders' library (timm imports ``torchvision``);
- a tiny ``mtlue victim`` job (test_resnet, equal weighting, one epoch, one thread, no tracking),
  read from the ``mtlue timing`` line it prints at exit (:mod:`mtlue.timing`): start-up is
  process start to the first training step (interpreter, imports, data, model, optimizer),
  shutdown is the last evaluation to the last exit handler;
- the same job with MLflow tracking into a scratch SQLite store (``--tracking``, on by default).

It prints the median CPU seconds of each row and the job's fixed cost above the floor, then
the ten slowest imports of one job (``python -X importtime``, cumulative microseconds). This is
a benchmark, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtlue.timing import ENVIRONMENT_VARIABLE, parse_line  # noqa: E402

FLOORS = {
    "python": "pass",
    "torch": "import torch",
    "torch + torch._dynamo (floor)": "import torch, torch._dynamo",
    "floor + timm": "import torch, torch._dynamo, timm",
}


def _environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update({ENVIRONMENT_VARIABLE: "1", "HF_HUB_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true"})
    return env


def _child_cpu(command: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    before = os.times()
    finished = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    after = os.times()
    if finished.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{finished.stderr[-2000:]}")
    return (after.children_user - before.children_user) + (after.children_system - before.children_system), finished


def _victim_command(data: Path, out: Path, tracking: Path | None) -> list[str]:
    command = [
        sys.executable, "-m", "mtlue", "victim", "--data", str(data), "--backbone", "test_resnet", "--weighting", "ew",
        "--seed", "0", "--epochs", "1", "--batch-size", "128", "--num-threads", "1", "--no-progress",
        "--out", str(out / "metrics.json"),
    ]
    if tracking is not None:
        command += ["--tracking-uri", f"sqlite:///{tracking}"]
    return command


def _timing(stderr: str) -> dict[str, float]:
    records = [parse_line(line) for line in stderr.splitlines()]
    record = next((r for r in records if r is not None), None)
    if record is None:
        raise SystemExit("the victim job printed no `mtlue timing` line")
    cpu = record["cpu_seconds"]
    return {"startup": cpu["startup"], "shutdown": cpu["shutdown"], "work": cpu["work"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, help="scratch folder to keep (default: a temporary one)")
    parser.add_argument("--no-tracking", dest="tracking", action="store_false", help="leave out the tracked job")
    args = parser.parse_args(argv)
    env = _environment()
    with tempfile.TemporaryDirectory(prefix="mtlue-bench-startup-") as scratch:
        work = args.workdir or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        data = work / "data"
        if not (data / "manifest.json").exists():
            subprocess.run(
                [sys.executable, "-m", "mtlue", "prepare", "photodigits", "--out", str(data), "--option", "renders=1"],
                env=env, check=True, capture_output=True, cwd=work,
            )
        cpu: dict[str, list[float]] = {name: [] for name in FLOORS}
        jobs: dict[str, list[dict[str, float]]] = {"victim job": [], "victim job, tracked": []}
        for repeat in range(args.repeats):
            for name, code in FLOORS.items():
                cpu[name].append(_child_cpu([sys.executable, "-c", code], env)[0])
            for name, records in jobs.items():
                tracked = name.endswith("tracked")
                if tracked and not args.tracking:
                    continue
                out = work / f"run{repeat}-{'tracked' if tracked else 'plain'}"
                command = _victim_command(data, out, work / "mlflow.db" if tracked else None)
                total, finished = _child_cpu(command, env)
                records.append({**_timing(finished.stderr), "process": total})
        floor = statistics.median(cpu["torch + torch._dynamo (floor)"])
        print(f"CPU seconds, median of {args.repeats} (load average {os.getloadavg()[0]:.2f})\n")
        print(f"{'row':34} {'start-up':>9} {'shutdown':>9} {'process':>8} {'above floor':>12}")
        for name, values in cpu.items():
            median = statistics.median(values)
            print(f"{name:34} {median:9.2f} {'':>9} {median:8.2f} {median - floor:12.2f}")
        for name, records in jobs.items():
            if not records:
                continue
            startup = statistics.median(r["startup"] for r in records)
            shutdown = statistics.median(r["shutdown"] for r in records)
            process = statistics.median(r["process"] for r in records)
            print(f"{name:34} {startup:9.2f} {shutdown:9.2f} {process:8.2f} {startup + shutdown - floor:12.2f}")
        finished = subprocess.run(
            [sys.executable, "-X", "importtime", *_victim_command(data, work / "importtime", None)[1:]],
            env=env, capture_output=True, text=True, check=True,
        )
        rows = []
        for line in finished.stderr.splitlines():
            if line.startswith("import time:") and "|" in line:
                _, cumulative, module = line.split("|")
                if cumulative.strip().isdigit() and len(module) - len(module.lstrip()) <= 3:
                    rows.append((int(cumulative), module.strip()))
        print("\nslowest top-level imports of the job (cumulative us, python -X importtime):")
        for cumulative, module in sorted(rows, reverse=True)[:10]:
            print(f"  {cumulative:>9}  {module}")
        print(json.dumps({"floor_cpu_seconds": round(floor, 3)}))


if __name__ == "__main__":
    main()
