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


PARSE_PROBE = """
import sys
from snakemake.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print("EXIT", code, "HEAVY", sorted(name for name in ("torch", "timm") if name in sys.modules))
"""


def test_a_cluster_job_s_parse_imports_neither_torch_nor_timm(tmp_path):
    """Each SLURM job parses the Snakefile again (twice), in Snakemake's remote and subprocess
    modes: those parses skip the model checks the workflow's own parse already ran."""
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"datasets": {"tiny": {"source": "shapes"}}, "poisons": {"methods": ["clean", "tap", "em"]}}))
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    for mode in ("remote", "subprocess"):
        result = subprocess.run(
            [sys.executable, "-c", PARSE_PROBE, "--snakefile", str(ROOT / "Snakefile"), "--mode", mode, "-n", "--quiet", "all", "--configfile", "config.yaml"],
            cwd=tmp_path, capture_output=True, text=True, env=environment, timeout=600,
        )
        assert "EXIT 0 HEAVY []" in result.stdout, (mode, result.stdout[-2000:], result.stderr[-2000:])
