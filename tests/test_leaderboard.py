"""mtlue leaderboard: entries, their schema, the attacker's best defense, ranking and rendering."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from html.parser import HTMLParser

import numpy as np
import pytest
from conftest import SEEDED_SCORES

from mtlue.cli import main
from mtlue.leaderboard import (
    LeaderboardError,
    Skipped,
    build_entries,
    build_leaderboard,
    entry_ranks,
    group_boards,
    rank_entries,
    render_html,
    render_markdown,
    resolve_protocol,
    validate_entry,
)
from mtlue.tracking.provenance import git_commit
from mtlue.leaderboard.reported import REPORTED_LABEL, reported_applies
from mtlue.report import ReportError, Selection, collect_victims, victim_frame

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class _RankingRows(HTMLParser):
    """The text of every cell of the page's ranking tables, row by row (header rows left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._in_ranking = self._in_body = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "table":
            self._in_ranking = attributes.get("class") == "ranking"
        elif tag == "tbody" and self._in_ranking:
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append([])
        elif tag == "td" and self._in_body and "hidden" not in attributes:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "tbody":
            self._in_body = False
        elif tag == "table":
            self._in_ranking = False

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def ranking_rows(page: str) -> list[list[str]]:
    parser = _RankingRows()
    parser.feed(page)
    return parser.rows


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


def test_entries_carry_per_task_scores_the_setting_matrix_and_the_poison_card(measured, tiny_victim_results):
    records, protocol, entries, _ = measured
    frame = victim_frame(records)
    tasks = records[0].tasks
    for method, entry in entries.items():
        rows = frame[frame["method"] == method]
        for defense in protocol.defenses:
            victims = rows[rows["defense"] == defense]
            for task in tasks:
                column = victims[f"metrics/{task.name}/{task.headline_metric}"]
                per_seed = [column[victims["seed"] == seed].mean() for seed in protocol.seeds]
                cell = entry["per_defense"][defense]["per_task"][task.name]
                assert cell["metric"] == task.headline_metric
                assert cell["score"] == pytest.approx(np.mean(per_seed)) and cell["score_std"] == pytest.approx(np.std(per_seed, ddof=1))
        assert [(s["backbone"], s["weighting"], s["defense"]) for s in entry["per_setting"]] == [("test_resnet", "ew", "none"), ("test_resnet", "ew", "bdr")]
        for setting in entry["per_setting"]:
            assert setting["score"] == pytest.approx(entry["per_defense"][setting["defense"]]["score"])  # one backbone x weighting
        card = json.loads((tiny_victim_results / "shapes" / "poisons" / method / "card.json").read_text())
        poison = entry["poison"]
        assert (poison["epsilon"], poison["norm"], poison["ratio"], poison["seed"]) == (card["epsilon"], card["norm"], card["ratio"], card["seed"])
        assert poison["hyperparameters"] == card["hyperparameters"] and poison["submission"] is None
        assert poison["generation_seconds"] is None  # closed form: no recorded steps to time


def test_generation_time_is_the_sum_of_the_recorded_steps_or_unknown(tiny_victim_results):
    from mtlue.leaderboard.entries import poison_summary
    from mtlue.poisons import Convergence
    from mtlue.poisons.card import PoisonCard

    card = json.loads((tiny_victim_results / "shapes" / "poisons" / "lsp" / "card.json").read_text())

    def summary(history):
        card["convergence"] = Convergence(
            rule="error <= 0.01", converged=True, stopped_by="stop_rule", unit="round", steps=len(history), cap=5,
            cap_hyperparameter="max_rounds", final={"train_error": 0.0}, target={"train_error": 0.01}, history=tuple(history),
        ).to_json()
        return poison_summary(PoisonCard.from_json(card, tiny_victim_results / "card.json"))

    timed = [{"round": 1, "seconds": 1.5}, {"round": 2, "seconds": 2.0}, {"round": 3, "seconds": 0.5}]
    assert summary(timed)["generation_seconds"] == pytest.approx(4.0)
    assert summary([*timed[:2], {"round": 3}])["generation_seconds"] is None  # a step without its time: unknown, not less


def test_measured_entries_validate(measured):
    for entry in measured[2].values():
        validate_entry(entry)
    clean = copy.deepcopy(measured[2]["clean"])
    clean["rank"] = 1
    with pytest.raises(LeaderboardError, match="the clean entry is the reference: its rank must be null"):
        validate_entry(clean)


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
        (lambda e: e.update(format="mtlue-leaderboard-entry/1"), "format: 'mtlue-leaderboard-entry/4' was expected"),
        (lambda e: e.update(format="mtlue-leaderboard-entry/3"), "format: 'mtlue-leaderboard-entry/4' was expected"),
        (lambda e: e.pop("per_setting"), "'per_setting' is a required property"),
        (lambda e: e["per_setting"].pop(), "per_setting covers 1 of the grid's 2"),
        (lambda e: e["per_setting"][0].update(score=e["per_setting"][0]["score"] + 5), "per_setting's mean under none is"),
        (lambda e: e["per_defense"]["none"]["per_task"].popitem(), "per_defense.none.per_task has tasks"),
        (lambda e: e["poison"].update(generation_seconds=-1.0), "poison: .* is not valid under any of the given schemas"),
        (lambda e: e.pop("score_std"), "'score_std' is a required property"),
        (lambda e: e.update(score_std=-1.0), "score_std: -1.0 is less than the minimum of 0"),
        (lambda e: e.update(score_std=e["score_std"] + 1.0), "score_std .* is not the best defense's score_std"),
        (lambda e: e.update(undefended_std=e["undefended_std"] + 1.0), "undefended_std .* is not per_defense.none.score_std"),
        (lambda e: e.update(n_seeds=3), "n_seeds is 3, the protocol has 2 seeds"),
        (lambda e: e["per_defense"]["none"].update(score_std=None), "per_defense.none.score_std is None: with 2 seed\\(s\\) it must be a number"),
        (lambda e: e["per_defense"]["bdr"].update(n_seeds=1), "per_defense.bdr.n_seeds is 1, the entry has 2 seeds"),
        (lambda e: e.update(rank=None), "rank is None: with 2 seed\\(s\\) it must be an integer"),
        (lambda e: e.update(rank=0), "rank: 0 is less than the minimum of 1"),
        (lambda e: e.update(ties_with=["lsp"]), "names the entry itself or the clean reference"),
        (lambda e: e.update(ties_with=["zeta", "alpha"]), "is not sorted"),
    ],
)
def test_invalid_entries_are_refused(measured, change, message):
    entry = copy.deepcopy(measured[2]["lsp"])
    change(entry)
    with pytest.raises(LeaderboardError, match=message):
        validate_entry(entry, "lsp.json")


def _ranked_copy(entry, method, per_defense, std=0.1):
    """``entry`` re-scored with the given per-defense scores (each with ``std`` over seeds), through the
    same attacker's-best rule; its rank is set by :func:`_with_ranks` once the board is complete."""
    changed = copy.deepcopy(entry)
    changed["method"] = method
    for defense, score in per_defense.items():
        changed["per_defense"][defense].update(score=score, score_std=std)
    for setting in changed["per_setting"]:
        setting.update(score=per_defense[setting["defense"]], score_std=std)
    best = max(changed["protocol"]["defenses"], key=lambda d: (per_defense[d], -changed["protocol"]["defenses"].index(d)))
    changed.update(
        score=per_defense[best], score_std=std, best_defense=best, undefended_score=per_defense["none"], undefended_std=std,
        delta_m=changed["per_defense"][best]["delta_m"],
    )
    validate_entry(changed)
    return changed


def _with_ranks(entries):
    """The entries with the rank and ties their scores give (as build_entries stores them)."""
    ranks = entry_ranks(entries)
    for entry in entries:
        ranked = ranks.get(entry["method"])
        entry.update(rank=None if ranked is None else ranked.rank, ties_with=[] if ranked is None else list(ranked.ties_with))
        validate_entry(entry)
    return entries


def test_ranking_lower_is_better_ties_share_a_rank_clean_apart(measured):
    base = measured[2]["lsp"]
    entries = _with_ranks([
        _ranked_copy(base, "zeta", {"none": 30.0, "bdr": 50.0}),  # defended 50
        _ranked_copy(base, "alpha", {"none": 40.0, "bdr": 50.0}),  # ties zeta at 50, worse undefended
        _ranked_copy(base, "beta", {"none": 60.0, "bdr": 20.0}),  # best defense is none: 60
        _ranked_copy(base, "gamma", {"none": 45.0, "bdr": 10.0}),  # 45
        _ranked_copy(base, "delta", {"none": 30.0, "bdr": 50.0}),  # same as zeta
        measured[2]["clean"],
    ])
    reference, ranked = rank_entries(entries)
    assert reference is measured[2]["clean"]
    # The three at 50 tie (=2) and are listed by undefended score, then name; beta is behind all four.
    assert [(label, entry["method"]) for label, entry in ranked] == [("1", "gamma"), ("=2", "delta"), ("=2", "zeta"), ("=2", "alpha"), ("5", "beta")]
    assert ranked[1][1]["ties_with"] == ["alpha", "zeta"] and ranked[4][1]["ties_with"] == []
    assert ranked[4][1]["best_defense"] == "none"
    with pytest.raises(LeaderboardError, match="several entries for method"):
        rank_entries([entries[0], copy.deepcopy(entries[0])])


def test_differences_inside_the_noise_are_ties_not_ranks(measured):
    base = measured[2]["lsp"]
    # 50 vs 51 with std 0.6: a gap of 1 is within 2 x 0.6, a tie; 53 (std 1) is 3 > 2 x 1 from 50 but ties 51 (2 <= 2 x 1).
    entries = _with_ranks([
        _ranked_copy(base, "a", {"none": 50.0, "bdr": 40.0}, std=0.6),
        _ranked_copy(base, "b", {"none": 51.0, "bdr": 40.0}, std=0.6),
        _ranked_copy(base, "c", {"none": 53.0, "bdr": 40.0}, std=1.0),
        measured[2]["clean"],
    ])
    _, ranked = rank_entries(entries)
    assert [(label, entry["method"], entry["ties_with"]) for label, entry in ranked] == [
        ("=1", "a", ["b"]), ("=1", "b", ["a", "c"]), ("2", "c", ["b"]),
    ]
    edited = copy.deepcopy(entries)
    edited[2]["rank"] = 1
    with pytest.raises(LeaderboardError, match="entry shapes/default/c says rank 1, ties with \\['b'\\], but the entries' scores give rank 2"):
        rank_entries(edited)


def test_markdown_rows_in_rank_order_and_html_escapes(measured):
    base = measured[2]["lsp"]
    entries = _with_ranks([_ranked_copy(base, "b-method", {"none": 70.0, "bdr": 20.0}), _ranked_copy(base, "a-method", {"none": 40.0, "bdr": 55.0}), measured[2]["clean"]])
    for entry in entries:
        entry["headline"]["label"] = "mean <b>accuracy</b> & co"
    skipped = [Skipped("shapes", "default", "ghost", "<script>alert(1)</script> missing")]
    boards = group_boards(entries, skipped)
    markdown = render_markdown(boards)
    rows = [line for line in markdown.splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[1] for row in rows] == ["clean (reference)", "a-method", "b-method"]
    assert rows[0].startswith("| ref |") and rows[1].startswith("| 1 |") and rows[2].startswith("| 2 |")
    assert "- ghost: <script>" in markdown
    page = render_html(boards)
    # The page's own script is the only one; the entry's text is escaped.
    assert page.count("<script>") == 1 and "alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "mean &lt;b&gt;accuracy&lt;/b&gt; &amp; co" in page and "<b>accuracy</b>" not in page
    assert all(f'<img src="{name}"' in page for name in boards[0].plots) and "data:image" not in page


def test_entries_of_different_grids_under_one_protocol_name_are_never_ranked_together(measured):
    entries = [copy.deepcopy(entry) for entry in measured[2].values()]
    entries[-1]["protocol"]["seeds"] = [0, 1, 2]
    with pytest.raises(LeaderboardError, match="measured on 2 different grids under one protocol name .* its own --protocol name"):
        rank_entries(entries)


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


def test_an_entry_names_the_commit_its_victims_ran_at_not_the_boards(measured, tiny_victim_results):
    records, protocol, entries, _ = measured
    ran_at = {record.git_commit for record in records}
    assert ran_at == {git_commit()}  # the victims recorded the checkout they ran from
    assert all(entry["provenance"]["git_commit"] == git_commit() for entry in entries.values())
    other = "f" * 40
    moved = [dataclasses.replace(record, git_commit=other) for record in records]
    rebuilt, _ = build_entries(tiny_victim_results, moved, protocol)
    assert {entry["provenance"]["git_commit"] for entry in rebuilt} == {other}
    lsp = [r for r in moved if r.method == "lsp"]
    mixed = [dataclasses.replace(lsp[0], git_commit=None), *lsp[1:], *[r for r in moved if r.method != "lsp"]]
    by_method = {entry["method"]: entry["provenance"]["git_commit"] for entry in build_entries(tiny_victim_results, mixed, protocol)[0]}
    assert by_method == {"clean": other, "lsp": "unknown"}  # one victim without a record: no claim


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
    assert entry["format"] == "mtlue-leaderboard-entry/4"
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
    assert [row[1] for row in ranking_rows(page)] == ["clean (reference)", "lsp †"] and note in page
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


# --- mean ± std over seeds and ties, on victims with chosen scores (conftest.SEEDED_SCORES) -----------


def _seeded_entries(results, seeds=None):
    records = collect_victims(results, "shapes")
    selection = Selection(seeds=seeds) if seeds else Selection()
    entries, skipped = build_entries(results, records, resolve_protocol("default", records, selection))
    assert skipped == []
    return {entry["method"]: entry for entry in entries}


def test_entries_carry_mean_std_seeds_and_the_tie_aware_rank(seeded_victim_results):
    entries = _seeded_entries(seeded_victim_results)
    for entry in entries.values():
        validate_entry(entry)
        assert entry["n_seeds"] == 3 and all(cell["n_seeds"] == 3 for cell in entry["per_defense"].values())
    strong = entries["strong"]
    assert (strong["score"], strong["score_std"], strong["best_defense"]) == (70.5, 0.5, "bdr")
    assert (strong["undefended_score"], strong["undefended_std"]) == (61.0, 1.0)
    assert (strong["clean_score"], strong["clean_std"]) == (81.0, 1.0)
    assert strong["rank"] == 1 and strong["ties_with"] == ["close", "flip", "twin"]
    assert {method: entry["rank"] for method, entry in entries.items()} == {
        "clean": None, "strong": 1, "twin": 1, "close": 1, "flip": 1, "middle": 3, "weak": 6,
    }
    # close ties strong and middle, which are separated from each other: the ranks stay defined.
    assert entries["close"]["ties_with"] == ["flip", "middle", "strong", "twin"] and entries["middle"]["ties_with"] == ["close", "flip"]
    assert entries["clean"]["ties_with"] == [] and entries["weak"]["ties_with"] == []


def test_the_best_defense_is_chosen_on_the_seed_mean(seeded_victim_results):
    flip = _seeded_entries(seeded_victim_results)["flip"]
    none, bdr = SEEDED_SCORES["flip"]["none"], SEEDED_SCORES["flip"]["bdr"]
    # Per seed the attacker's best would average max(60, 72), max(80, 68), max(70, 70.5) = 74.2;
    # committing to one defense, bdr's mean 70.17 beats none's 70.00.
    assert np.mean([max(a, b) for a, b in zip(none, bdr)]) > np.mean(bdr) > np.mean(none)
    assert flip["best_defense"] == "bdr"
    assert flip["score"] == pytest.approx(np.mean(bdr)) and flip["score_std"] == pytest.approx(np.std(bdr, ddof=1))


def test_leaderboard_shows_ties_as_shared_ranks(seeded_victim_results, tmp_path):
    out = tmp_path / "leaderboard"
    assert main(["leaderboard", "--results", str(seeded_victim_results), "--out", str(out)]) == 0
    for path in (out / "entries").iterdir():
        validate_entry(json.loads(path.read_text()), str(path))
    markdown = (out / "leaderboard.md").read_text()
    rows = [line.split(" | ") for line in markdown.splitlines() if line.startswith("| ")][1:]
    assert [(row[0].lstrip("| "), row[1]) for row in rows] == [
        ("ref", "clean (reference)"), ("=1", "flip"), ("=1", "strong"), ("=1", "twin"), ("=1", "close"), ("3", "middle"), ("6", "weak"),
    ]
    strong = rows[2]
    assert strong[2:8] == ["70.50 ± 0.50", "bdr", "61.00 ± 1.00", "81.00 ± 1.00", "-12.96", "close, flip, twin"]
    assert rows[6][7] == "—"
    assert "Mean ± std over 3 seeds" in markdown and "lower by more than 2 x the larger of the two stds" in markdown
    page = (out / "index.html").read_text()
    assert ["=1", "strong"] in [row[:2] for row in ranking_rows(page)]


def test_one_seed_leaderboard_ranks_nothing(seeded_victim_results, tmp_path):
    entries = _seeded_entries(seeded_victim_results, seeds=(0,))
    for method, entry in entries.items():
        validate_entry(entry)
        assert entry["rank"] is None and entry["score_std"] is None and entry["clean_std"] is None
        assert all(cell["score_std"] is None and cell["n_seeds"] == 1 for cell in entry["per_defense"].values())
        others = sorted(set(entries) - {method, "clean"})
        assert entry["ties_with"] == ([] if method == "clean" else others)
    reference, ranked = rank_entries(list(entries.values()))
    assert [label for label, _ in ranked] == ["–"] * 6
    assert [entry["method"] for _, entry in ranked] == ["strong", "close", "twin", "flip", "middle", "weak"]  # by score only
    markdown = render_markdown(group_boards(list(entries.values())))
    assert "Not ranked: with one seed no difference can be told from seed noise" in markdown
    body = [line for line in markdown.splitlines() if line.startswith("| ")][1:]
    assert not any("±" in line or line.startswith(("| =", "| 1 ")) for line in body)
    assert all(line.split(" | ")[7] == "all others" for line in body[1:])


# --- both together: the † of a cut-off poison beside mean ± std and shared ranks ----------------------


def test_a_cut_off_poison_is_marked_beside_its_shared_rank(seeded_cut_off_results, tmp_path):
    out = tmp_path / "leaderboard"
    assert main(["leaderboard", "--results", str(seeded_cut_off_results), "--out", str(out)]) == 0
    entries = {}
    for path in (out / "entries").iterdir():
        entry = json.loads(path.read_text())
        validate_entry(entry, str(path))
        entries[entry["method"]] = entry
    close = entries["close"]
    assert close["format"] == "mtlue-leaderboard-entry/4"
    assert (close["convergence"]["converged"], close["convergence"]["stopped_by"]) == (False, "cap")
    assert (close["score"], close["score_std"], close["n_seeds"], close["rank"]) == (71.5, 1.0, 3, 1)
    assert close["ties_with"] == ["flip", "middle", "strong", "twin"]
    assert entries["strong"]["ties_with"] == ["close", "flip", "twin"]  # other entries name it plainly
    assert entries["strong"]["convergence"]["stopped_by"] == "closed_form"
    markdown = (out / "leaderboard.md").read_text()
    rows = [line.split(" | ") for line in markdown.splitlines() if line.startswith("| ")][1:]
    assert [(row[0].lstrip("| "), row[1]) for row in rows] == [
        ("ref", "clean (reference)"), ("=1", "flip"), ("=1", "strong"), ("=1", "twin"), ("=1", "close †"), ("3", "middle"), ("6", "weak"),
    ]
    assert rows[4][2:] == [
        "71.50 ± 1.00", "bdr", "51.00 ± 1.00", "81.00 ± 1.00", "-11.73", "flip, middle, strong, twin", "51.00 ± 1.00", "71.50 ± 1.00 |",
    ]
    assert rows[2][7] == "close, flip, twin"
    assert "† Poison generation cut off by its cap" in markdown and "close: max_rounds = 3 reached after 3 round(s)" in markdown
    assert "Mean ± std over 3 seeds" in markdown
    page = (out / "index.html").read_text()
    assert ["=1", "close †", "71.50 ± 1.00"] in [row[:3] for row in ranking_rows(page)]
    assert "† Poison generation cut off by its cap" in page
