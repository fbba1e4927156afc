"""Job timing (mtlue.timing): the records exist and add up; nothing here times anything."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from mtlue.timing import CLOCK, ENVIRONMENT_VARIABLE, FORMAT, LINE_PREFIX, Instant, JobClock, parse_line, process_started

ROOT = Path(__file__).resolve().parents[1]


def mtlue(*args: str, timing: str | None, cwd: Path) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != ENVIRONMENT_VARIABLE}
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    if timing is not None:
        environment[ENVIRONMENT_VARIABLE] = timing
    return subprocess.run([sys.executable, "-m", "mtlue", *args], capture_output=True, text=True, env=environment, cwd=cwd, timeout=300)


def test_a_job_prints_its_phases_at_exit_when_asked(tmp_path):
    args = ("prepare", "tiny", "--source", "shapes", "--out", str(tmp_path / "tiny"), "--raw", str(tmp_path / "raw"),
            "--option", "train_size=8", "--option", "test_size=4", "--option", "image_size=16", "--option", "crop_size=12")
    before = time.time()
    result = mtlue(*args, timing="1", cwd=tmp_path)
    after = time.time()
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith(LINE_PREFIX)]
    assert len(lines) == 1 and lines[0] == result.stderr.splitlines()[-1]
    record = parse_line(lines[0])
    assert record is not None and record["format"] == FORMAT and record["command"] == "prepare"
    # prepare marks no work span: its handler is the work.
    assert record["work_spans"] == 0 and record["busy_seconds"] == 0
    assert before - 1 <= record["process_started"] <= record["work_started"] <= record["work_ended"] <= record["exited"] <= after
    phases = [record[f"{phase}_seconds"] for phase in ("startup", "work", "shutdown")]
    assert all(value >= 0 for value in phases)
    assert abs(sum(phases) - (record["exited"] - record["process_started"])) < 0.01
    assert all(value >= 0 for value in record["cpu_seconds"].values())

    quiet = mtlue(*args, timing="0", cwd=tmp_path)
    assert quiet.returncode == 0 and LINE_PREFIX not in quiet.stderr
    assert LINE_PREFIX not in mtlue("list", "datasets", timing=None, cwd=tmp_path).stderr


def test_nested_spans_count_once_and_the_record_adds_up():
    clock = JobClock()
    started = time.time()
    clock.work_started()
    clock.work_started()  # a method that calls fit inside its generation
    clock.work_ended()
    clock.work_ended()
    clock.work_started()
    clock.work_ended()
    record = clock.record(Instant.now(), started)
    assert record["work_spans"] == 2
    assert 0 <= record["busy_seconds"] <= record["work_seconds"]
    assert record["startup_seconds"] >= 0 and record["shutdown_seconds"] >= 0


def test_without_a_process_start_the_startup_is_unknown():
    record = JobClock().record(Instant.now(), None)
    assert record["startup_seconds"] is None and record["cpu_seconds"]["startup"] is None
    assert record["work_seconds"] == 0 and record["work_spans"] == 0


def test_process_start_is_in_the_past_and_stable():
    started = process_started()
    assert started is not None and started <= time.time() and started == process_started()
    assert isinstance(CLOCK, JobClock)


def test_other_lines_are_not_records():
    assert parse_line("metrics written to x.json") is None
    assert parse_line(LINE_PREFIX + "{not json") is None
    assert parse_line(LINE_PREFIX + '{"format": "something-else/1"}') is None
