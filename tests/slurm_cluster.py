"""A real single-node SLURM cluster on localhost, for the SLURM test and the overhead benchmark.

It runs the distribution's daemons (Debian's `slurm-wlm` and `munge`) as they run on a cluster:
munged, slurmctld and slurmd, from a generated ``slurm.conf`` in a scratch folder, with two
partitions on the one node, ``cpu`` and ``gpu``. The node declares one GPU as a count-only
generic resource (no device file), so a job that asks for a GPU is scheduled into the ``gpu``
partition by the same rules as on a real cluster, while its code finds no CUDA device and
trains on the CPU. There is no accounting database (as on many small clusters): job states come
from ``squeue``, which keeps finished jobs for ``MinJobAge`` seconds, and from ``scontrol``.

Every daemon is started here and stopped by its own PID; clients find the cluster through the
``SLURM_CONF`` environment variable of :meth:`LocalSlurm.environment`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from conftest import free_port

__all__ = ["DAEMONS", "LocalSlurm", "SlurmUnavailable", "install_hint"]

#: The programs the cluster needs, all from the packages `slurm-wlm` and `munge`.
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "srun")
#: Seconds a finished job stays in squeue's answer (above the plugin's status interval).
MIN_JOB_AGE = 600


class SlurmUnavailable(RuntimeError):
    """SLURM or munge is not installed, or its daemons did not come up; the message says which."""


def install_hint() -> str:
    return "apt-get install -y slurm-wlm munge (.ci/run does this before the tests)"


def _sbin(name: str) -> str | None:
    return shutil.which(name) or next((str(p) for p in (Path("/usr/sbin") / name,) if p.exists()), None)


@dataclass
class LocalSlurm:
    """The cluster's files under ``root``; :meth:`start` runs it, :meth:`stop` ends it."""

    root: Path
    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)
    #: Declared, not measured (SlurmdParameters=config_overrides): the rules' requests (8 GB for
    #: prepare) fit whatever the machine has; nothing enforces memory limits here.
    memory_mb: int = 32000
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def conf(self) -> Path:
        return self.root / "etc" / "slurm.conf"

    @property
    def munge_socket(self) -> Path:
        return self.root / "munge" / "munge.socket"

    @property
    def bin(self) -> Path:
        return self.root / "bin"

    def environment(self, base: dict[str, str] | None = None) -> dict[str, str]:
        base = os.environ if base is None else base
        return {**base, "SLURM_CONF": str(self.conf), "PATH": f"{self.bin}{os.pathsep}{base.get('PATH', '')}"}

    def _write_srun(self) -> None:
        # The SLURM plugin's job step (snakemake-executor-plugin-slurm-jobstep 0.6) removes every
        # SLURM_* variable but the job's identity before it calls srun, SLURM_CONF included, so
        # inside a job srun would look for /etc/slurm/slurm.conf. This srun, first on the jobs'
        # PATH, is the real one with this cluster's SLURM_CONF put back.
        self.bin.mkdir(parents=True, exist_ok=True)
        srun = self.bin / "srun"
        srun.write_text(f'#!/bin/sh\nSLURM_CONF={self.conf} exec {shutil.which("srun")} "$@"\n')
        srun.chmod(0o755)

    def _write_config(self) -> None:
        host = socket.gethostname().split(".")[0]
        for folder in ("etc", "state", "spool", "log", "munge"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=mtlue-ci",
                    f"SlurmctldHost={host}(127.0.0.1)",
                    f"SlurmctldPort={free_port()}",
                    f"SlurmdPort={free_port()}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "SlurmdParameters=config_overrides",
                    f"AuthInfo=socket={self.munge_socket}",
                    f"StateSaveLocation={self.root / 'state'}",
                    f"SlurmdSpoolDir={self.root / 'spool'}",
                    f"SlurmctldPidFile={self.root / 'slurmctld.pid'}",
                    f"SlurmdPidFile={self.root / 'slurmd.pid'}",
                    f"SlurmctldLogFile={self.root / 'log' / 'slurmctld.log'}",
                    f"SlurmdLogFile={self.root / 'log' / 'slurmd.log'}",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "MpiDefault=none",
                    "ReturnToService=2",
                    "SchedulerType=sched/backfill",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core_Memory",
                    "GresTypes=gpu",
                    "AccountingStorageType=accounting_storage/none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "JobCompType=jobcomp/none",
                    f"MinJobAge={MIN_JOB_AGE}",
                    "SchedulerParameters=sched_interval=1",
                    f"NodeName={host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb} Gres=gpu:1 State=UNKNOWN",
                    f"PartitionName=cpu Nodes={host} Default=YES MaxTime=INFINITE State=UP",
                    f"PartitionName=gpu Nodes={host} MaxTime=INFINITE State=UP",
                    "",
                ]
            )
        )
        # A GPU schedulable like any other, behind /dev/null: no CUDA device is there.
        (self.root / "etc" / "gres.conf").write_text(f"NodeName={host} Name=gpu File=/dev/null\n")

    def _spawn(self, name: str, command: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "wb")
        self.processes[name] = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=self.environment())

    def start(self, timeout: float = 60.0) -> None:
        missing = [name for name in DAEMONS if _sbin(name) is None]
        if missing:
            raise SlurmUnavailable(f"{', '.join(missing)} not found; install them with {install_hint()}")
        self._write_config()
        self._write_srun()
        munge_key = self.root / "munge" / "munge.key"
        subprocess.run(["dd", "if=/dev/urandom", f"of={munge_key}", "bs=1024", "count=1"], check=True, capture_output=True)
        munge_key.chmod(0o400)
        self._spawn(
            "munged",
            [
                _sbin("munged"), "--foreground", "--force",
                f"--socket={self.munge_socket}", f"--key-file={munge_key}",
                f"--pid-file={self.root / 'munge' / 'munged.pid'}", f"--seed-file={self.root / 'munge' / 'seed'}",
                f"--log-file={self.root / 'log' / 'munged.log'}",
            ],
        )
        self._wait(lambda: self.munge_socket.exists(), "munged", timeout)
        self._spawn("slurmctld", [_sbin("slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._spawn("slurmd", [_sbin("slurmd"), "-D", "-f", str(self.conf)])
        self._wait(self._node_idle, "slurmd", timeout)

    def _node_idle(self) -> bool:
        result = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, env=self.environment())
        return result.returncode == 0 and "idle" in result.stdout

    def _wait(self, ready, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for daemon, process in self.processes.items():
                if process.poll() is not None:
                    raise SlurmUnavailable(f"{daemon} exited with {process.returncode}; see {self.root / 'log'}")
            if ready():
                return
            time.sleep(0.5)
        raise SlurmUnavailable(f"{name} was not ready after {timeout:.0f} s; see {self.root / 'log'}")

    def stop(self) -> None:
        """Stop every daemon this object started, by PID, slurmd first, munged last."""
        for name in reversed(list(self.processes)):
            process = self.processes[name]
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()

    def __enter__(self) -> LocalSlurm:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def jobs(self) -> list[dict[str, str]]:
        """Every job squeue still knows (finished ones for MinJobAge seconds): id, name, state,
        partition, CPUs, memory, time limit, GPUs (tres-per-job) and the comment Snakemake gives."""
        fields = ("JobID", "Name", "State", "Partition", "NumCPUs", "MinMemory", "TimeLimit", "tres-per-job", "Comment")
        result = subprocess.run(
            ["squeue", "--states=all", "-h", "-O", ",".join(f"{name}:|" for name in fields)],
            capture_output=True, text=True, env=self.environment(), check=True,
        )
        rows = []
        for line in result.stdout.splitlines():
            values = [value.strip() for value in line.split("|")][: len(fields)]
            rows.append(dict(zip(fields, values)))
        return rows
