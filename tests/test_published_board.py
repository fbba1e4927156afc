"""The published reference board (results/leaderboard/): valid entries of the committed default.

The board is what the workflow's leaderboard rule writes for ``config/config.yaml`` with
``results_root: results`` and no submissions. When the default's config changes, these tests fail
until the board is rebuilt from a rerun (README, "The page and the published board").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtlue.config import load_config
from mtlue.leaderboard import ENTRY_FORMAT, group_boards, rank_entries, validate_entry
from mtlue.leaderboard.render import entry_file
from mtlue.report.selection import Selection, config_sha256

REPOSITORY = Path(__file__).resolve().parent.parent
BOARD = REPOSITORY / "results" / "leaderboard"
REBUILD = (
    "if a local run of another config rewrote it, restore the published board with `git checkout results/leaderboard`; "
    "if the default changed, rerun `snakemake --cores all` and commit results/leaderboard/ (README, 'The page and the published board')"
)


@pytest.fixture(scope="module")
def entries():
    paths = sorted((BOARD / "entries").glob("*.json"))
    assert paths, f"no entries under {BOARD / 'entries'}: {REBUILD}"
    found = []
    for path in paths:
        entry = json.loads(path.read_text(encoding="utf-8"))
        validate_entry(entry, str(path.relative_to(REPOSITORY)))
        assert path.relative_to(BOARD).as_posix() == entry_file(entry), f"{path} is named unlike its entry"
        found.append(entry)
    return found


@pytest.fixture(scope="module")
def default_config():
    """The resolved default config as the workflow's report rules hash it: the schema's defaults
    filled in, and each dataset's submissions (none on the published board)."""
    config = load_config(REPOSITORY / "config" / "config.yaml")
    return {**config, "submitted": {dataset: [] for dataset in config["datasets"]}}


def test_published_entries_are_valid_and_current(entries):
    assert {entry["format"] for entry in entries} == {ENTRY_FORMAT}, f"entries of an older format: {REBUILD}"
    for board in group_boards(entries):
        rank_entries([entry for _, entry in board.rows()])  # ranks agree across the board's entries


def test_published_entries_come_from_the_committed_default(entries, default_config):
    expected = config_sha256(default_config)
    stale = sorted({entry_file(e) for e in entries if e["provenance"]["config_sha256"] != expected})
    assert not stale, f"{stale} were built from another config than config/config.yaml (sha256 {expected[:12]}): {REBUILD}"
    selection = Selection.from_config(default_config, protocol=True)
    assert sorted({e["dataset"]["name"] for e in entries}) == sorted(selection.datasets)
    assert {e["method"] for e in entries} == set(selection.methods), f"the default's methods and the board's differ: {REBUILD}"
    for entry in entries:
        protocol = entry["protocol"]
        assert (protocol["name"], protocol["mode"]) == ("default", selection.mode or protocol["mode"])
        assert (tuple(protocol["backbones"]), tuple(protocol["weightings"]), tuple(protocol["seeds"])) == (
            selection.backbones, selection.weightings, selection.seeds,
        ), f"{entry_file(entry)}: its protocol is not the default's grid: {REBUILD}"
        assert set(protocol["defenses"]) == set(selection.defenses)


def test_published_page_shows_and_links_every_entry(entries):
    page = (BOARD / "index.html").read_text(encoding="utf-8")
    markdown = (BOARD / "leaderboard.md").read_text(encoding="utf-8")
    for entry in entries:
        assert f'href="{entry_file(entry)}"' in page and f'data-method="{entry["method"]}"' in page
        assert f"| {entry['method']}" in markdown
    for name in ("scores", "defenses"):
        for board in group_boards(entries):
            assert (BOARD / "plots" / f"{board.slug}--{name}.png").is_file()
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page, "the page must not load anything"

