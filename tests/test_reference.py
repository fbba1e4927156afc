"""The README's result tables are runs' results, they show what the issue asked them to show, and
a new run of each preset reproduces them within the stated tolerance (slow)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "reference"))
import refresh  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def rows_by(reference: dict, **condition: str) -> dict[str, dict]:
    return {
        row["method"]: row for row in reference["rows"]
        if all(row[key] == value for key, value in condition.items())
    }


@pytest.mark.parametrize("preset", sorted(refresh.PRESETS))
def test_readme_table_is_the_rendering_of_the_committed_reference(preset):
    assert refresh.readme_block(preset) == refresh.render(refresh.load(preset)), (
        f"README.md's {preset} table is not tests/reference/{preset}.json; "
        f"run `python tests/reference/refresh.py {preset} RESULTS_DIR --wall-time ...` after running the preset"
    )


def test_default_reference_shows_the_phenomenon():
    reference = refresh.load("default")
    main = rows_by(reference, backbone="test_resnet", weighting="ew", defense="none")
    clean = main["clean"]["mean"]
    assert clean >= 85.0
    assert all(row["n_seeds"] >= 3 for row in reference["rows"] if row["defense"] == "none")
    best = min(row["mean"] for method, row in main.items() if method != "clean")
    assert clean - best >= 25.0
    for method in ("lsp", "em"):
        assert clean - main[method]["mean"] >= 10.0, method
    for base in ("em", "tap", "sep"):
        if f"mtlue-{base}" in main:
            assert main[f"mtlue-{base}"]["mean"] < main[base]["mean"], base
    # The clean reference and the best method are measured on two backbones and two weightings.
    best_method = min((method for method in main if method != "clean"), key=lambda method: main[method]["mean"])
    for method in ("clean", best_method):
        undefended = [row for row in reference["rows"] if row["method"] == method and row["defense"] == "none"]
        assert len({row["backbone"] for row in undefended}) >= 2 and len({row["weighting"] for row in undefended}) >= 2


@pytest.mark.xfail(strict=True, reason=(
    "AR is no shortcut for the default's victims since they start as the release's do (batch-norm "
    "gamma 1): 85.7 against clean 87.3; with timm's zero-initialised last gamma it cost 23.5 points. "
    "README, 'What the embedded default shows'"
))
def test_default_reference_ar_is_ten_points_below_clean():
    main = rows_by(refresh.load("default"), backbone="test_resnet", weighting="ew", defense="none")
    assert main["clean"]["mean"] - main["ar"]["mean"] >= 10.0


SHORT_OF_THE_MARK = (
    "measured 4.3 (clean train fit), 2.3 (LSP), 16.6 (EM), 26.6 (AR) and 2.7 (TAP) points short "
    "with batch-norm gamma 1; README, sanity section"
)


def missed(criterion, name):
    return pytest.param(criterion, id=name, marks=pytest.mark.xfail(strict=True, reason=SHORT_OF_THE_MARK))


@pytest.mark.parametrize(
    "criterion",
    [
        pytest.param(lambda rows: rows["clean"]["mean"] >= 90.0, id="clean>=90"),
        missed(lambda rows: rows["clean"]["train_fit"] >= 99.0, "clean-train-fit>=99"),
        missed(lambda rows: rows["em"]["mean"] <= 30.0, "em<=30"),
        missed(lambda rows: rows["ar"]["mean"] <= 30.0, "ar<=30"),
        missed(lambda rows: rows["lsp"]["mean"] <= 30.0, "lsp<=30"),
        missed(lambda rows: rows["clean"]["mean"] - rows["tap"]["mean"] >= 20.0, "tap-20-below-clean"),
    ],
)
def test_sanity_reference_against_the_literature_pass_marks(criterion):
    """Each pass mark of the sanity protocol; the ones the reference misses are strict xfails, so
    a reference that starts meeting them fails here until the README says so."""
    assert criterion(rows_by(refresh.load("sanity"), defense="none"))


def test_tolerance_is_twice_the_seed_std_and_never_zero():
    assert refresh.tolerance({"std": 3.0}) == 6.0
    assert refresh.tolerance({"std": 0.0}) == refresh.MIN_TOLERANCE
    assert refresh.tolerance({"std": None}) == refresh.SINGLE_SEED_TOLERANCE


def run_preset(preset: str, workdir: Path) -> dict:
    """Run ``preset`` in ``workdir`` as a user would; the rows its tables hold."""
    workdir.mkdir(parents=True, exist_ok=True)
    environment = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--cores", "all"]
    if preset != "default":
        command += ["--configfile", str(ROOT / refresh.PRESETS[preset])]
    else:
        shutil.copytree(ROOT / "config", workdir / "config")
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, env=environment)
    assert result.returncode == 0, result.stderr[-3000:]
    return {"rows": refresh.read_results(workdir)}


def assert_reproduces(preset: str, workdir: Path) -> None:
    reference = refresh.load(preset)
    new = run_preset(preset, workdir)
    key = ("dataset", "method", "backbone", "weighting", "defense")
    expected = {tuple(row[k] for k in key): row for row in reference["rows"]}
    measured = {tuple(row[k] for k in key): row for row in new["rows"]}
    assert measured.keys() == expected.keys()
    outside = [
        f"{' / '.join(cell)}: {measured[cell]['mean']:.2f} vs reference {row['mean']:.2f} (tolerance ±{refresh.tolerance(row):.2f})"
        for cell, row in expected.items()
        if abs(measured[cell]["mean"] - row["mean"]) > refresh.tolerance(row)
    ]
    assert not outside, "results moved outside the reference's tolerance:\n" + "\n".join(outside)


@pytest.mark.slow
def test_the_embedded_default_reproduces_its_reference(tmp_path):
    assert_reproduces("default", tmp_path / "default")


@pytest.mark.slow
@pytest.mark.sanity
def test_the_sanity_protocol_reproduces_its_reference(tmp_path):
    assert_reproduces("sanity", tmp_path / "sanity")
