"""The workflow's rules as Snakemake's linter and a dry run see them: lint-clean, and a parse
(dry runs included) writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def snakemake(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), *args],
        cwd=cwd, capture_output=True, text=True, env=environment, timeout=600,
    )


def test_snakemake_lint_finds_nothing():
    result = snakemake("--lint", cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_a_dry_run_writes_nothing(tmp_path):
    config = {"datasets": {"tiny": {"source": "shapes"}}, "poisons": {"methods": ["clean", "tap"]}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", "config.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resolved_config" in result.stdout
    written = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*") if path.name != "config.yaml")
    assert [path for path in written if not path.startswith(".snakemake")] == []
