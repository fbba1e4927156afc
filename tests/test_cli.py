"""The ``mtlue`` command line: listing, preparing, showing, config checks, and clean errors."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mtlue.cli import main
from mtlue.data import PreparedDataset

ROOT = Path(__file__).resolve().parents[1]

PAPER_DATASETS = {"shapes", "celeba", "utkface", "chestxray14", "nyuv2"}


def test_list_datasets_one_per_line(capsys):
    assert main(["list", "datasets"]) == 0
    names = capsys.readouterr().out.split()
    assert PAPER_DATASETS <= set(names)
    assert names == sorted(names)


def test_list_datasets_json_has_descriptions(capsys):
    assert main(["list", "datasets", "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert PAPER_DATASETS <= {entry["name"] for entry in entries}
    assert all(entry["description"] for entry in entries)


#: What the issues require each registry to hold at least.
REQUIRED = {
    "backbones": {"resnet18", "resnet50", "vgg16_bn", "densenet121", "vit_base_patch16_224"},
    "weightings": {
        "ew", "uw", "dwa", "rlw", "gradnorm", "gls", "pcgrad", "mgda", "cagrad", "imtl", "graddrop",
        "gradvac", "aligned_mtl", "fairgrad", "nash_mtl", "upgrad",
    },
}


@pytest.mark.parametrize("kind", sorted(REQUIRED))
def test_list_registries_with_descriptions(kind, capsys):
    assert main(["list", kind]) == 0
    names = capsys.readouterr().out.split()
    assert REQUIRED[kind] <= set(names) and names == sorted(names)
    assert main(["list", kind, "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [entry["name"] for entry in entries] == names
    assert all(entry["description"] for entry in entries)


def test_weighting_descriptions_cite_the_paper_and_family(capsys):
    assert main(["list", "weightings", "--json"]) == 0
    descriptions = {entry["name"]: entry["description"] for entry in json.loads(capsys.readouterr().out)}
    assert descriptions["pcgrad"].endswith("[gradient aggregation]")
    assert descriptions["uw"].endswith("[loss scaling]")


def test_console_script_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "mtlue", "list", "datasets"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "shapes" in result.stdout.split()


def test_prepare_and_show(tmp_path, capsys):
    out = tmp_path / "data" / "small"
    code = main([
        "prepare", "small", "--source", "shapes", "--out", str(out), "--raw", str(tmp_path / "raw"),
        "--options-json", '{"train_size": 40, "test_size": 8}', "--option", "image_size=24", "--option", "crop_size=20",
    ])
    assert code == 0
    dataset = PreparedDataset(out)
    assert dataset.image_shape == (3, 24, 24) and dataset.crop_size == 20
    assert dataset.manifest["options"]["train_size"] == 40
    capsys.readouterr()

    png = tmp_path / "grid.png"
    assert main(["show", str(out), "--out", str(png), "--samples", "3"]) == 0
    printed = capsys.readouterr().out
    assert "train 40, test 8" in printed
    assert "largest_shape" in printed and "segmentation" in printed
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["prepare", "nope"], "unknown dataset 'nope'"),
        (["prepare", "shapes", "--option", "trainsize=3"], "no option\\(s\\) trainsize"),
        (["prepare", "shapes", "--options-json", "{bad"], "not valid JSON"),
        (["show", "/nonexistent/dataset"], "mtlue prepare"),
        (["check-config", "/nonexistent.yaml"], "does not exist"),
    ],
)
def test_bad_input_gives_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"mtlue {argv[0]}: error: ")
    assert "Traceback" not in error
    assert re.search(message, error), error


def test_a_malformed_key_value_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["prepare", "shapes", "--option", "train_size"])
    assert exit.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == "mtlue prepare: error: argument --option: expected KEY=VALUE, got 'train_size'"


def test_check_config_prints_defaults(capsys):
    assert main(["check-config", str(ROOT / "config" / "config.yaml"), "--print"]) == 0
    assert "milestones" in capsys.readouterr().out


def test_log_records_go_to_stderr_one_line_each_and_stdout_stays_the_results(capsys):
    from mtlue.logs import configure_logging

    assert main(["list", "datasets"]) == 0  # the command line configures logging (default INFO)
    configure_logging("INFO")  # configuring again replaces the handler instead of doubling it
    out = capsys.readouterr().out
    assert "shapes" in out.splitlines()
    logging.getLogger("mtlue.methods.progress").info("em round %d/%d:\ntwo lines", 1, 2)
    logging.getLogger("victims.train").debug("below the level")
    logging.getLogger("alembic.runtime.migration").info("a library's chatter")
    logging.getLogger("some.library").warning("a library's warning")
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 2, lines
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO mtlue\.methods\.progress: em round 1/2: \| two lines", lines[0])
    assert re.fullmatch(r"\S+ \S+ WARNING some\.library: a library's warning", lines[1])

    assert main(["--log-level", "WARNING", "list", "datasets"]) == 0
    logging.getLogger("mtlue.methods.progress").info("not shown at WARNING")
    assert capsys.readouterr().err == ""
    assert main(["--log-level", "DEBUG", "list", "datasets"]) == 0
    logging.getLogger("victims.train").debug("shown at DEBUG")
    assert "DEBUG victims.train: shown at DEBUG" in capsys.readouterr().err
    configure_logging("INFO")


@pytest.mark.parametrize(
    "flags, shown, hidden, bars",
    [
        (["--quiet"], "WARNING", "INFO", False),
        (["-q"], "WARNING", "INFO", False),
        (["--verbose"], "DEBUG", None, True),
        (["-v"], "DEBUG", None, True),
        ([], "INFO", "DEBUG", True),
    ],
)
def test_quiet_and_verbose_set_the_level_and_the_bars(flags, shown, hidden, bars, capsys, monkeypatch):
    from mtlue.logs import configure_logging, show_progress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    try:
        assert main([*flags, "list", "datasets"]) == 0
        capsys.readouterr()
        for level in ("DEBUG", "INFO", "WARNING"):
            logging.getLogger("mtlue.data").log(getattr(logging, level), "record at %s", level)
        err = capsys.readouterr().err
        assert f"record at {shown}" in err
        assert hidden is None or f"record at {hidden}" not in err
        assert show_progress() is bars
        assert show_progress(True) is True and show_progress(False) is False  # --progress / --no-progress win
    finally:
        configure_logging("INFO")


def test_quiet_and_a_log_level_are_refused_together(capsys):
    with pytest.raises(SystemExit) as exit:
        main(["--quiet", "--log-level", "DEBUG", "list", "datasets"])
    assert exit.value.code == 2 and "not allowed with" in capsys.readouterr().err
