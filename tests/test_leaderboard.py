"""mtlue leaderboard: entries, their schema, the attacker's best defense, ranking and rendering."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest

from mtlue.cli import main
from mtlue.leaderboard import (
    LeaderboardError,
    Skipped,
    build_entries,
    build_leaderboard,
    group_boards,
    rank_entries,
    render_html,
    render_markdown,
    resolve_protocol,
    validate_entry,
)
from mtlue.leaderboard.provenance import git_commit
from mtlue.leaderboard.reported import REPORTED_LABEL, reported_applies
from mtlue.report import ReportError, Selection, collect_victims, victim_frame

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def measured(tiny_victim_results):
    """The entries of the real tiny victims (clean and lsp, defenses none and bdr, seeds 0 and 1)."""
    records = collect_victims(tiny_victim_results, "shapes")
    protocol = resolve_protocol("default", records)
    entries, skipped = build_entries(tiny_victim_results, records, protocol)
    return records, protocol, {entry["method"]: entry for entry in entries}, skipped


def test_entries_score_the_attackers_best_defense(measured, tiny_victim_results):
    records, protocol, entries, skipped = measured
    assert skipped == [] and sorted(entries) == ["clean", "lsp"]
    assert protocol.defenses == ("none", "bdr") and protocol.seeds == (0, 1)
    frame = victim_frame(records)
    for method, entry in entries.items():
        per_defense = {
            defense: frame[(frame["method"] == method) & (frame["defense"] == defense)]["score"].mean() for defense in protocol.defenses
        }
        best = max(protocol.defenses, key=lambda d: (per_defense[d], -protocol.defenses.index(d)))
        assert entry["best_defense"] == best
        assert entry["score"] == pytest.approx(per_defense[best])
        assert entry["undefended_score"] == pytest.approx(per_defense["none"])
        assert entry["clean_score"] == entries["clean"]["score"]
        assert entry["per_defense"]["bdr"]["victims"] == 2
        card = json.loads((tiny_victim_results / "shapes" / "poisons" / method / "card.json").read_text())
        assert entry["provenance"]["poison_sha256"] == card["sha256"]
        assert entry["provenance"]["train_content_hash"] == records[0].train_content_hash
        assert entry["provenance"]["git_commit"] == git_commit()


def test_measured_entries_validate(measured):
    for entry in measured[2].values():
        validate_entry(entry)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda e: e.pop("clean_score"), "'clean_score' is a required property"),
        (lambda e: e.update(score="high"), "score: 'high' is not of type 'number'"),
        (lambda e: e.update(score=150.0), "score: 150.0 is greater than the maximum of 100"),
        (lambda e: e["protocol"].update(seeds=[0, 0]), "protocol/seeds: .* has non-unique elements"),
        (lambda e: e["provenance"].update(git_commit="main"), "provenance/git_commit: 'main' does not match"),
        (lambda e: e.update(extra=1), "Additional properties are not allowed"),
        (lambda e: e["per_defense"]["none"].update(delta_m=float("nan")), "NaN or infinite"),
        (lambda e: e.update(score=e["score"] - 1.0), "is not the best per-defense score"),
        (lambda e: e.update(best_defense="cutout"), "best_defense 'cutout' did not achieve"),
        (lambda e: e["per_defense"].pop("bdr"), "per_defense has \\['none'\\], the protocol's defenses are"),
    ],
)
def test_invalid_entries_are_refused(measured, change, message):
    entry = copy.deepcopy(measured[2]["lsp"])
    change(entry)
    with pytest.raises(LeaderboardError, match=message):
        validate_entry(entry, "lsp.json")


def _ranked_copy(entry, method, per_defense):
    """``entry`` re-scored with the given per-defense scores, through the same attacker's-best rule."""
    changed = copy.deepcopy(entry)
    changed["method"] = method
    for defense, score in per_defense.items():
        changed["per_defense"][defense]["score"] = score
    best = max(changed["protocol"]["defenses"], key=lambda d: (per_defense[d], -changed["protocol"]["defenses"].index(d)))
    changed.update(score=per_defense[best], best_defense=best, undefended_score=per_defense["none"], delta_m=changed["per_defense"][best]["delta_m"])
    validate_entry(changed)
    return changed


def test_ranking_lower_is_better_ties_by_undefended_then_name_clean_apart(measured):
    base = measured[2]["lsp"]
    entries = [
        _ranked_copy(base, "zeta", {"none": 30.0, "bdr": 50.0}),  # defended 50
        _ranked_copy(base, "alpha", {"none": 40.0, "bdr": 50.0}),  # ties zeta at 50, worse undefended
        _ranked_copy(base, "beta", {"none": 60.0, "bdr": 20.0}),  # best defense is none: 60
        _ranked_copy(base, "gamma", {"none": 45.0, "bdr": 10.0}),  # 45
        _ranked_copy(base, "delta", {"none": 30.0, "bdr": 50.0}),  # same as zeta: by name
        measured[2]["clean"],
    ]
    reference, ranked = rank_entries(entries)
    assert reference is measured[2]["clean"]
    assert [(rank, entry["method"]) for rank, entry in ranked] == [(1, "gamma"), (2, "delta"), (3, "zeta"), (4, "alpha"), (5, "beta")]
    assert ranked[4][1]["best_defense"] == "none"
    with pytest.raises(LeaderboardError, match="several entries for method"):
        rank_entries([entries[0], copy.deepcopy(entries[0])])


def test_markdown_rows_in_rank_order_and_html_escapes(measured):
    base = measured[2]["lsp"]
    entries = [_ranked_copy(base, "b-method", {"none": 70.0, "bdr": 20.0}), _ranked_copy(base, "a-method", {"none": 40.0, "bdr": 55.0}), measured[2]["clean"]]
    for entry in entries:
        entry["headline"]["label"] = "mean <b>accuracy</b> & co"
    skipped = [Skipped("shapes", "default", "ghost", "<script>alert(1)</script> missing")]
    boards = group_boards(entries, skipped)
    markdown = render_markdown(boards)
    rows = [line for line in markdown.splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[1] for row in rows] == ["clean (reference)", "a-method", "b-method"]
    assert rows[0].startswith("| ref |") and rows[1].startswith("| 1 |") and rows[2].startswith("| 2 |")
    assert "- ghost: <script>" in markdown
    images = {name: PNG_SIGNATURE for board in boards for name in board.plots}
    page = render_html(boards, images)
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "mean &lt;b&gt;accuracy&lt;/b&gt; &amp; co" in page and "<b>accuracy</b>" not in page
    assert page.count("data:image/png;base64,") == 2


def test_reported_numbers_only_for_their_dataset_and_protocol():
    protocol = {"name": "paper", "mode": "mtl", "backbones": ["resnet18"], "weightings": ["ew"], "defenses": ["none"], "seeds": [0]}
    assert reported_applies("celeba", protocol)
    assert not reported_applies("shapes", protocol)
    assert not reported_applies("celeba", {**protocol, "weightings": ["ew", "pcgrad"]})
    assert not reported_applies("celeba", {**protocol, "backbones": ["resnet50"]})
    assert not reported_applies("celeba", {**protocol, "defenses": ["cutout"]})


def test_leaderboard_command_end_to_end(tiny_victim_results, tmp_path, capsys):
    out = tmp_path / "leaderboard"
    (out / "entries").mkdir(parents=True)
    (out / "entries" / "shapes--default--gone.json").write_text("{}")  # a previous run's entry
    assert main(["leaderboard", "--results", str(tiny_victim_results), "--out", str(out)]) == 0
    names = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert names == [
        "entries/shapes--default--clean.json", "entries/shapes--default--lsp.json", "index.html", "leaderboard.md",
        "plots/shapes--default--defenses.png", "plots/shapes--default--scores.png",
    ]
    for path in (out / "entries").iterdir():
        validate_entry(json.loads(path.read_text()), str(path))
    for path in (out / "plots").iterdir():
        assert path.read_bytes().startswith(PNG_SIGNATURE)
    markdown = (out / "leaderboard.md").read_text()
    assert "| ref | clean (reference) |" in markdown and "| 1 | lsp |" in markdown and REPORTED_LABEL not in markdown
    assert "lsp" in capsys.readouterr().out


def test_incomplete_methods_are_skipped_never_filled_in(tiny_victim_results, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(tiny_victim_results, results)
    (results / "shapes" / "victims" / "lsp" / "test_resnet" / "ew" / "bdr" / "seed1" / "metrics.json").unlink()
    board = build_leaderboard(results)
    assert [entry["method"] for entry in board.entries] == ["clean"]
    assert board.skipped == [Skipped("shapes", "default", "lsp", "1 of 4 victims not measured (e.g. test_resnet/ew/bdr/seed1)")]
    assert "- lsp: 1 of 4 victims not measured" in render_markdown(board.boards)
    board.figures.clear()

    config = {"datasets": {"shapes": {}}, "poisons": {"methods": ["clean", "lsp"]}, "victims": {"defenses": ["none"], "seeds": [0, 1]}}
    complete = build_leaderboard(results, Selection.from_config(config), "undefended")
    assert [entry["method"] for entry in complete.entries] == ["clean", "lsp"]
    assert all(entry["protocol"]["defenses"] == ["none"] and entry["best_defense"] == "none" for entry in complete.entries)
    complete.figures.clear()


def test_victims_of_a_regenerated_poison_are_refused(tiny_victim_results, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(tiny_victim_results, results)
    card_path = results / "shapes" / "poisons" / "lsp" / "card.json"
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**card, "sha256": "0" * 64}))
    with pytest.raises(ReportError, match="did not train on the poison .* rerun those victims"):
        build_leaderboard(results)
    card_path.unlink()
    with pytest.raises(ReportError, match="no poison card at"):
        build_leaderboard(results)


def test_git_commit_is_unknown_outside_git(tmp_path):
    assert git_commit(tmp_path) == "unknown"
    commit = git_commit()
    assert commit == "unknown" or (len(commit) == 40 and int(commit, 16) >= 0)


def test_config_hash_is_recorded_and_bad_config_is_one_line(tiny_victim_results, tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"datasets": {"shapes": {}}, "victims": {"seeds": [0, 1], "defenses": ["none", "bdr"]}}))
    out = tmp_path / "leaderboard"
    assert main(["leaderboard", "--results", str(tiny_victim_results), "--out", str(out), "--config-json", str(config), "--protocol", "tiny"]) == 0
    entry = json.loads((out / "entries" / "shapes--tiny--lsp.json").read_text())
    from mtlue.report import config_sha256

    assert entry["provenance"]["config_sha256"] == config_sha256(json.loads(config.read_text()))
    assert entry["protocol"]["name"] == "tiny"
    assert np.isclose(entry["score"], max(cell["score"] for cell in entry["per_defense"].values()))
    config.write_text(json.dumps({"victims": {"seeds": "all"}}))
    assert main(["leaderboard", "--results", str(tiny_victim_results), "--out", str(tmp_path / "other"), "--config-json", str(config)]) == 2
    assert "victims.seeds must be a non-empty list of integers" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()


def test_a_poison_cut_off_by_its_cap_is_marked_on_the_leaderboard(cut_off_results, measured, tmp_path):
    assert measured[2]["lsp"]["convergence"]["stopped_by"] == "closed_form"  # LSP has nothing to iterate
    out = tmp_path / "leaderboard"
    assert main(["leaderboard", "--results", str(cut_off_results), "--out", str(out)]) == 0
    entry = json.loads((out / "entries" / "shapes--default--lsp.json").read_text())
    assert entry["format"] == "mtlue-leaderboard-entry/2"
    assert entry["convergence"] == {
        "rule": "surrogate training error <= 0.01", "converged": False, "stopped_by": "cap", "unit": "round", "steps": 3,
        "cap": 3, "cap_hyperparameter": "max_rounds", "final": {"train_error": 0.4}, "target": {"train_error": 0.01},
    }
    clean = json.loads((out / "entries" / "shapes--default--clean.json").read_text())
    assert (clean["convergence"]["converged"], clean["convergence"]["stopped_by"]) == (True, "closed_form")
    note = "† Poison generation cut off by its cap before its stop rule held"
    markdown = (out / "leaderboard.md").read_text()
    assert "| 1 | lsp † |" in markdown and "| ref | clean (reference) |" in markdown
    assert note in markdown and "lsp: max_rounds = 3 reached after 3 round(s)" in markdown
    page = (out / "index.html").read_text()
    assert "<td>lsp †</td>" in page and note in page
    assert note not in render_markdown(group_boards(list(measured[2].values())))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda c: c.update(converged=True), "convergence: .* is not valid under any of the given schemas"),
        (lambda c: c.update(stopped_by="tired"), "convergence: .* is not valid under any of the given schemas"),
        (lambda c: c.update(history=[]), "convergence: .* is not valid under any of the given schemas"),
    ],
)
def test_entries_with_an_inconsistent_convergence_are_refused(measured, change, message):
    entry = copy.deepcopy(measured[2]["lsp"])
    entry["convergence"].update(converged=False, stopped_by="cap", unit="round", steps=3, cap=3, cap_hyperparameter="max_rounds")
    validate_entry(entry)
    change(entry["convergence"])
    with pytest.raises(LeaderboardError, match=message):
        validate_entry(entry, "lsp.json")
    del entry["convergence"]
    with pytest.raises(LeaderboardError, match="'convergence' is a required property"):
        validate_entry(entry, "lsp.json")
