"""mtlue report: collecting victims, headline scores, delta-m against clean, tables and plots."""

from __future__ import annotations

import io
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import SEEDED_SCORES

from mtlue.cli import main
from mtlue.data.tasks import Task, TaskKind
from mtlue.report import (
    REPORT_FILES,
    ReportError,
    Selection,
    attack_defense_matrix,
    build_dataset_report,
    collect_victims,
    config_sha256,
    headline_score,
    score_table,
    summarize,
    summarize_dataset,
    victim_frame,
)
from mtlue.report.tables import frame_markdown
from victims.metrics import MultiTaskMeter
from victims.summary import aggregate, delta_m

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _read(results, method, defense, seed):
    path = results / "shapes" / "victims" / method / "test_resnet" / "ew" / defense / f"seed{seed}" / "metrics.json"
    return json.loads(path.read_text())


def test_frame_has_one_row_per_victim_with_axes_metrics_and_aggregates(tiny_victim_results):
    records = collect_victims(tiny_victim_results, "shapes")
    frame = victim_frame(records)
    assert len(frame) == 8
    assert list(frame["method"].unique()) == ["clean", "lsp"]  # clean first
    assert {"backbone", "weighting", "defense", "seed", "mode", "score", "delta_m"} <= set(frame.columns)
    tasks = records[0].tasks
    assert all(f"metrics/{t.name}/{t.headline_metric}" in frame for t in tasks)
    row = frame[(frame["method"] == "lsp") & (frame["defense"] == "none") & (frame["seed"] == 1)].iloc[0]
    data = _read(tiny_victim_results, "lsp", "none", 1)
    assert row["score"] == data["aggregate"]["classification_mean"]
    assert row["aggregate/mean_accuracy"] == data["aggregate"]["mean_accuracy"]
    assert row["metrics/count/accuracy"] == data["metrics"]["count"]["accuracy"]


def test_delta_m_is_against_the_undefended_clean_victims_averaged_over_seeds(tiny_victim_results):
    frame = victim_frame(collect_victims(tiny_victim_results, "shapes"))
    clean = [_read(tiny_victim_results, "clean", "none", seed) for seed in (0, 1)]
    tasks = [Task.from_json(item) for item in clean[0]["dataset"]["tasks"]]
    reference = {t.name: {m: np.mean([c["metrics"][t.name][m] for c in clean]) for m in t.metrics} for t in tasks}
    for method, defense in (("lsp", "none"), ("lsp", "bdr"), ("clean", "bdr")):
        victim = _read(tiny_victim_results, method, defense, 0)
        expected = delta_m(victim["metrics"], reference, tasks)
        row = frame[(frame["method"] == method) & (frame["defense"] == defense) & (frame["seed"] == 0)].iloc[0]
        assert row["delta_m"] == pytest.approx(expected)
    undefended_clean = frame[(frame["method"] == "clean") & (frame["defense"] == "none")]
    assert undefended_clean["delta_m"].mean() == pytest.approx(0.0, abs=1e-9)


def test_summary_is_mean_and_sample_std_over_seeds(tiny_victim_results):
    records = collect_victims(tiny_victim_results, "shapes")
    frame = victim_frame(records)
    summary = summarize(frame, records[0].tasks)
    assert len(summary) == 4 and list(summary["method"]) == ["clean", "clean", "lsp", "lsp"]
    assert list(summary["defense"]) == ["none", "bdr", "none", "bdr"]
    for row in summary.itertuples():
        seeds = frame[(frame["method"] == row.method) & (frame["defense"] == row.defense)]["score"]
        assert row.n_seeds == 2
        assert row.score_mean == pytest.approx(seeds.mean())
        assert row.score_std == pytest.approx(float(np.std(seeds.to_numpy(), ddof=1)))
    table = score_table(summary)
    cell = table.loc["lsp", "test_resnet / ew / none"]
    lsp = summary[(summary["method"] == "lsp") & (summary["defense"] == "none")].iloc[0]
    assert cell == f"{lsp.score_mean:.2f} ± {lsp.score_std:.2f}"

    one_seed = summarize(victim_frame([r for r in records if r.seed == 0]), records[0].tasks)
    assert one_seed["score_std"].isna().all() and (one_seed["n_seeds"] == 1).all()
    markdown = frame_markdown(score_table(one_seed))
    assert "±" not in markdown and f"| lsp | {one_seed.iloc[2].score_mean:.2f} |" in markdown


def test_attack_defense_matrix_rows_methods_columns_defenses(tiny_victim_results):
    records = collect_victims(tiny_victim_results, "shapes")
    summary = summarize(victim_frame(records), records[0].tasks)
    matrix = attack_defense_matrix(summary)
    assert list(matrix.columns) == ["none", "bdr"]
    assert list(matrix.index) == [("test_resnet", "ew", "clean"), ("test_resnet", "ew", "lsp")]
    lsp_bdr = summary[(summary["method"] == "lsp") & (summary["defense"] == "bdr")]["score_mean"].item()
    assert matrix.loc[("test_resnet", "ew", "lsp"), "bdr"] == lsp_bdr


def _dense_tasks():
    return (Task("segmentation", TaskKind.SEGMENTATION, 3), Task("depth", TaskKind.DEPTH, 1))


def _dense_metrics(generator: torch.Generator, noise: float):
    """Metrics computed by the real meters from predictions that are the targets plus noise."""
    tasks = _dense_tasks()
    labels = torch.randint(0, 3, (4, 8, 8), generator=generator)
    depth = torch.rand(4, 8, 8, generator=generator) + 0.5
    logits = torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float() + noise * torch.randn(4, 3, 8, 8, generator=generator)
    meter = MultiTaskMeter(tasks)
    meter.update({"segmentation": logits, "depth": depth + noise * torch.randn(4, 8, 8, generator=generator)}, {"segmentation": labels, "depth": depth})
    return meter.compute()


def test_dense_only_headline_is_delta_m_against_clean():
    generator = torch.Generator().manual_seed(0)
    tasks = _dense_tasks()
    clean, poisoned = _dense_metrics(generator, 0.2), _dense_metrics(generator, 2.0)
    score = headline_score(tasks, poisoned, aggregate(poisoned, tasks), clean)
    assert score == delta_m(poisoned, clean, tasks) and score < 0
    assert headline_score(tasks, clean, aggregate(clean, tasks), clean) == 0.0
    with pytest.raises(ReportError, match="dense-only dataset.*no clean victim"):
        headline_score(tasks, poisoned, aggregate(poisoned, tasks), None)
    classification = (Task("smiling", TaskKind.BINARY, 2), *tasks)
    results = {"smiling": {"accuracy": 70.0}, **poisoned}
    assert headline_score(classification, results, aggregate(results, classification), None) == 70.0


@pytest.fixture
def copied_results(tiny_victim_results, tmp_path):
    shutil.copytree(tiny_victim_results, tmp_path / "results")
    return tmp_path / "results"


def _victim_path(results, method="lsp", defense="none", seed=0, backbone="test_resnet"):
    return results / "shapes" / "victims" / method / backbone / "ew" / defense / f"seed{seed}" / "metrics.json"


@pytest.mark.parametrize(
    "corrupt, message",
    [
        (lambda d: "{not json", "cannot be read as JSON"),
        (lambda d: {k: v for k, v in d.items() if k != "aggregate"}, "lacks aggregate"),
        (lambda d: {**d, "metrics": {**d["metrics"], "count": {"accuracy": "high"}}}, r"metrics.count.accuracy: 'high' is not of type 'number'"),
        (lambda d: {**d, "seed": 7}, "the file says seed 7 but its path says 0"),
        (lambda d: {**d, "defense": {"name": "cutout", "options": {}}}, "the file says defense 'cutout' but its path says 'none'"),
        (lambda d: {**d, "dataset": {**d["dataset"], "train_images": "ar:0123"}}, "not the poison of method 'lsp'"),
        (lambda d: {**d, "format": "other/2"}, "has format 'other/2'"),
    ],
)
def test_malformed_victim_files_are_refused_by_name(copied_results, corrupt, message):
    path = _victim_path(copied_results)
    changed = corrupt(json.loads(path.read_text()))
    path.write_text(changed if isinstance(changed, str) else json.dumps(changed))
    with pytest.raises(ReportError, match=message) as error:
        collect_victims(copied_results, "shapes")
    assert str(path) in str(error.value)


def test_defense_key_is_read_when_present(copied_results):
    path = _victim_path(copied_results, defense="bdr")
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "defense": {"name": "bdr", "options": {"augment": False}}}))
    record = next(r for r in collect_victims(copied_results, "shapes") if r.path == path)
    assert record.defense == "bdr" and record.defense_options == {"augment": False}


def test_victims_of_another_dataset_version_are_refused(copied_results):
    path = _victim_path(copied_results, seed=1)
    data = json.loads(path.read_text())
    data["dataset"]["test_content_hash"] = "f" * 64
    path.write_text(json.dumps(data))
    with pytest.raises(ReportError, match="different versions of 'shapes'"):
        collect_victims(copied_results, "shapes")


def test_report_command_writes_every_table_and_plot(tiny_victim_results, tmp_path):
    out = tmp_path / "tables"
    assert main(["report", "--results", str(tiny_victim_results), "--dataset", "shapes", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(REPORT_FILES)
    for name in REPORT_FILES:
        if name.endswith(".png"):
            assert (out / name).read_bytes().startswith(PNG_SIGNATURE)
    victims = pd.read_csv(out / "victims.csv")
    assert len(victims) == 8 and set(victims["method"]) == {"clean", "lsp"}
    scores = pd.read_csv(out / "scores.csv")
    assert scores["score_mean"].tolist() == pytest.approx(victims.groupby(["method", "defense"], sort=False)["score"].mean().tolist())
    markdown = (out / "scores.md").read_text()
    assert "| clean |" in markdown and "| lsp |" in markdown and "config sha256: not given" in markdown
    ranks = pd.read_csv(out / "attack_defense.csv")
    assert list(ranks.columns) == [
        "backbone", "weighting", "method", "defense", "mean", "std", "n_seeds", "rank", "ties_with", "attacker_best", "best_rank",
        "best_ties_with",
    ]
    assert list(ranks["defense"].unique()) == ["none", "bdr"] and (ranks["n_seeds"] == 2).all()
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["method"])[0] == "clean" and set(summary["method"]) == {"clean", "lsp"}


def test_report_config_json_selects_methods_and_records_its_hash(tiny_victim_results, tmp_path):
    config = {"datasets": {"shapes": {}}, "poisons": {"methods": ["clean"]}, "victims": {"defenses": ["none"], "seeds": [0, 1]}}
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config, indent=4))
    out = tmp_path / "tables"
    argv = ["report", "--results", str(tiny_victim_results), "--dataset", "shapes", "--out", str(out), "--config-json", str(config_file)]
    assert main(argv) == 0
    victims = pd.read_csv(out / "victims.csv")
    assert set(victims["method"]) == {"clean"} and set(victims["defense"]) == {"none"}
    assert config_sha256(config) in (out / "scores.md").read_text()
    assert Selection.from_config(config).methods == ("clean",)


def test_report_errors_are_one_line_and_write_nothing(tmp_path, capsys):
    out = tmp_path / "tables"
    assert main(["report", "--results", str(tmp_path), "--dataset", "shapes", "--out", str(out)]) == 2
    assert "no victim results under" in capsys.readouterr().err
    assert not out.exists()
    bad = tmp_path / "config.json"
    bad.write_text("[1, 2]")
    assert main(["report", "--results", str(tmp_path), "--dataset", "shapes", "--out", str(out), "--config-json", str(bad)]) == 2
    assert "holds a list, expected the config object" in capsys.readouterr().err


def test_delta_m_is_nan_without_a_clean_reference(copied_results):
    shutil.rmtree(copied_results / "shapes" / "victims" / "clean")
    frame = victim_frame(collect_victims(copied_results, "shapes"))
    assert frame["delta_m"].isna().all() and frame["score"].notna().all()
    assert math.isnan(summarize(frame, collect_victims(copied_results, "shapes")[0].tasks)["delta_m_mean"].iloc[0])


def test_a_poison_cut_off_by_its_cap_is_marked_in_every_table(cut_off_results, tiny_victim_results, tmp_path):
    out = tmp_path / "tables"
    assert main(["report", "--results", str(cut_off_results), "--dataset", "shapes", "--out", str(out)]) == 0
    scores = pd.read_csv(out / "scores.csv")
    assert dict(zip(scores["method"], scores["converged"])) == {"clean": True, "lsp": False}
    assert dict(zip(scores["method"], scores["stopped_by"])) == {"clean": "closed_form", "lsp": "cap"}
    footnote = "- lsp: max_rounds = 3 reached after 3 round(s) (train_error 0.4); rule: surrogate training error <= 0.01"
    for name in ("scores.md", "attack_defense.md", "summary.md"):
        markdown = (out / name).read_text()
        assert "| lsp † |" in markdown and "| clean |" in markdown and "| lsp |" not in markdown
        assert "† Generation cut off by its cap before its stop rule held" in markdown and footnote in markdown
    assert "| lsp † | test_resnet | ew | none |" in (out / "scores.md").read_text()  # the per-task table too
    for name in ("attack_defense.csv", "summary.csv"):  # data keep plain names
        assert list(pd.read_csv(out / name)["method"].unique()) == ["clean", "lsp"]

    # Where every generation converged (closed form here), nothing is marked.
    plain = tmp_path / "plain"
    assert main(["report", "--results", str(tiny_victim_results), "--dataset", "shapes", "--out", str(plain)]) == 0
    assert "†" not in "".join((plain / name).read_text() for name in ("scores.md", "attack_defense.md", "summary.md"))
    assert pd.read_csv(plain / "scores.csv")["converged"].all()


def test_a_card_regenerated_after_its_victims_is_refused_by_the_report(copied_results):
    card_path = copied_results / "shapes" / "poisons" / "lsp" / "card.json"
    card_path.write_text(json.dumps({**json.loads(card_path.read_text()), "sha256": "0" * 64}))
    with pytest.raises(ReportError, match="did not train on the poison .* rerun those victims"):
        build_dataset_report(copied_results, "shapes")


# --- mean ± std over seeds and ties, on victims with chosen scores (conftest.SEEDED_SCORES) -----------


def _seeded_report(results, seeds=None):
    selection = Selection(seeds=seeds) if seeds else None
    return build_dataset_report(results, "shapes", selection)


def _close_figures(report):
    import matplotlib.pyplot as plt

    for figure in report.figures.values():
        plt.close(figure)
    report.figures.clear()


def _markdown_rows(text):
    """The rows of the first Markdown table in ``text``, as lists of cells (header excluded)."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[1:]]


def _all_table_rows(text):
    """The body rows of every Markdown table in ``text`` (headers and separators excluded)."""
    lines = text.splitlines()
    return [
        [cell.strip() for cell in line.strip("|").split(" | ")]
        for index, line in enumerate(lines)
        if line.startswith("| ") and not (index + 1 < len(lines) and lines[index + 1].startswith("|---"))
    ]


def test_every_table_is_mean_and_sample_std_over_the_seeds_with_their_number(seeded_victim_results):
    report = _seeded_report(seeded_victim_results)
    _close_figures(report)
    scores = pd.read_csv(io.StringIO(report.texts["scores.csv"]))
    assert (scores["n_seeds"] == 3).all() and set(scores["seed_list"]) == {"0 1 2"}
    for method, per_defense in SEEDED_SCORES.items():
        for defense, values in per_defense.items():
            row = scores[(scores["method"] == method) & (scores["defense"] == defense)].iloc[0]
            assert row["score_mean"] == pytest.approx(np.mean(values))
            assert row["score_std"] == pytest.approx(np.std(values, ddof=1))
            assert row["count/accuracy_mean"] == pytest.approx(np.mean(values))
            assert row["count/accuracy_std"] == pytest.approx(np.std(values, ddof=1))
    markdown = report.texts["scores.md"]
    assert "mean accuracy (%): mean ± std over 3 seeds" in markdown and "(ddof=1)" in markdown
    assert "| strong | 61.00 ± 1.00 | 70.50 ± 0.50 |" in markdown
    per_task = markdown[markdown.index("## Per-task"):]
    assert "| flip | test_resnet | ew | none | 3 | 70.00 ± 10.00 | 70.00 ± 10.00 |" in per_task
    assert "| 70.17 ± 2.02 (=1) |" in report.texts["attack_defense.md"]


def test_attack_defense_table_ranks_with_ties_per_defense_and_at_the_best_defense(seeded_victim_results):
    report = _seeded_report(seeded_victim_results)
    _close_figures(report)
    ranks = pd.read_csv(io.StringIO(report.texts["attack_defense.csv"]), keep_default_na=False)
    bdr = ranks[ranks["defense"] == "bdr"].set_index("method")
    # strong and twin are identical, close is within 2 x 1.0 of them, middle is not.
    assert bdr.loc[["strong", "twin", "close", "flip", "middle", "weak"], "rank"].tolist() == ["1", "1", "1", "1", "3", "4"]
    assert bdr.loc["clean", "rank"] == "" and bdr.loc["strong", "ties_with"] == "close flip twin"
    best = ranks[ranks["attacker_best"]].set_index("method")
    assert best["defense"].to_dict() == {
        "clean": "none", "close": "bdr", "flip": "bdr", "middle": "bdr", "strong": "bdr", "twin": "bdr", "weak": "none",
    }
    assert best.loc["middle", "best_rank"] == "3" and best.loc["middle", "best_ties_with"] == "close flip"
    assert best.loc["weak", "best_rank"] == "6" and best.loc["weak", "best_ties_with"] == ""

    rows = _markdown_rows(report.texts["attack_defense.md"].split("## Attack x defense")[1])
    # clean first, then by the rank at the best defense, then mean, then name.
    assert [row[2] for row in rows] == ["clean", "flip", "strong", "twin", "close", "middle", "weak"]
    strong = rows[2]
    assert strong[3:] == ["61.00 ± 1.00 (=3)", "70.50 ± 0.50 (=1)", "bdr", "=1", "close, flip, twin"]
    assert rows[0][3:7] == ["81.00 ± 1.00", "75.00 ± 1.00", "none", "ref"]
    assert rows[5][6] == "3" and rows[6][6] == "6"


def test_summary_is_clean_normalised_mean_std_with_tie_aware_ranks(seeded_victim_results):
    report = _seeded_report(seeded_victim_results)
    _close_figures(report)
    rows = _markdown_rows(report.texts["summary.md"])
    assert rows == [
        ["ref", "clean", "100.0 ± 1.2", "100.0 ± 1.2", "none", ""],
        ["=1", "flip", "86.4 ± 12.3", "86.6 ± 2.5", "bdr", "close, middle, strong, twin"],
        ["=1", "strong", "75.3 ± 1.2", "87.0 ± 0.6", "bdr", "close, flip, twin"],
        ["=1", "twin", "75.3 ± 1.2", "87.0 ± 0.6", "bdr", "close, flip, strong"],
        ["=1", "close", "63.0 ± 1.2", "88.3 ± 1.2", "bdr", "flip, middle, strong, twin"],
        ["3", "middle", "69.1 ± 1.2", "90.1 ± 0.6", "bdr", "close, flip"],
        ["6", "weak", "97.5 ± 1.2", "97.5 ± 1.2", "none", "—"],
    ]
    text = report.texts["summary.md"]
    assert "percentage of the clean victim's 81.0 ± 1.0 (defense none)" in text and "over 3 seeds" in text
    summary = pd.read_csv(io.StringIO(report.texts["summary.csv"]))
    flip = summary.set_index("method").loc["flip"]
    # The attacker's best defense is chosen on the seed-mean (bdr 70.17 > none 70.00), not per seed.
    assert flip["best_defense"] == "bdr" and flip["best_mean"] == pytest.approx(np.mean(SEEDED_SCORES["flip"]["bdr"]))
    assert flip["best_pct_of_clean_mean"] == pytest.approx(100 * flip["best_mean"] / 81.0)
    assert flip["best_pct_of_clean_std"] == pytest.approx(100 * np.std(SEEDED_SCORES["flip"]["bdr"], ddof=1) / 81.0)


def test_summary_is_deterministic_and_matches_the_leaderboard(seeded_victim_results, tmp_path):
    from mtlue.leaderboard import build_leaderboard

    first = _seeded_report(seeded_victim_results)
    _close_figures(first)
    records = collect_victims(seeded_victim_results, "shapes")
    shuffled = summarize_dataset(list(reversed(records)))
    assert shuffled.markdown() == first.texts["summary.md"] and shuffled.csv() == first.texts["summary.csv"]
    board = build_leaderboard(seeded_victim_results)
    board.figures.clear()
    summary = pd.read_csv(io.StringIO(first.texts["summary.csv"]), keep_default_na=False).set_index("method")
    for entry in board.entries:
        row = summary.loc[entry["method"]]
        assert (float(row["best_mean"]), float(row["best_std"]), row["best_defense"]) == (entry["score"], entry["score_std"], entry["best_defense"])
        assert row["rank"] == ("" if entry["rank"] is None else str(entry["rank"]))
        assert row["ties_with"] == " ".join(entry["ties_with"])


def test_one_seed_shows_means_only_and_ranks_nothing(seeded_victim_results):
    report = _seeded_report(seeded_victim_results, seeds=(0,))
    _close_figures(report)
    for name in ("scores.md", "attack_defense.md", "summary.md"):
        cells = [cell for row in _all_table_rows(report.texts[name]) for cell in row]
        assert cells and not any("±" in cell or cell.startswith("=") or cell.endswith(")") for cell in cells), name
    rows = _markdown_rows(report.texts["summary.md"])
    assert [row[0] for row in rows] == ["ref", "–", "–", "–", "–", "–", "–"]
    # Listed by the mean at the best defense (seed 0: strong 70, close 70.5, twin 71, flip 72, ...), not ranked.
    assert [row[1] for row in rows] == ["clean", "strong", "close", "twin", "flip", "middle", "weak"]
    assert rows[1][2:] == ["75.0", "87.5", "bdr", "all others"]
    assert "Not ranked: with one seed no difference can be told from seed noise" in report.texts["summary.md"]
    assert "One seed: with one seed no difference" in report.texts["attack_defense.md"]
    ranks = pd.read_csv(io.StringIO(report.texts["attack_defense.csv"]), keep_default_na=False)
    assert (ranks["rank"] == "").all() and (ranks["best_rank"] == "").all() and (ranks["std"] == "").all()
    scores = pd.read_csv(io.StringIO(report.texts["scores.csv"]))
    assert scores["score_std"].isna().all() and not (scores.filter(like="_std") == 0).any().any()
    summary = pd.read_csv(io.StringIO(report.texts["summary.csv"]))
    assert summary["rank"].isna().all() and summary["best_std"].isna().all()


def test_cells_with_different_seeds_say_their_own_number(seeded_victim_results, tmp_path):
    results = tmp_path / "results"
    shutil.copytree(seeded_victim_results, results)
    shutil.rmtree(results / "shapes" / "victims" / "weak" / "test_resnet" / "ew" / "bdr" / "seed2")
    report = _seeded_report(results)
    _close_figures(report)
    assert "| weak | 79.00 ± 1.00 (n=3) | 73.50 ± 0.71 (n=2) |" in report.texts["scores.md"]
    assert "over the seeds given as (n=k) in each cell" in report.texts["attack_defense.md"]
    assert "- weak: 1 of 6 victims not measured (e.g. test_resnet/ew/bdr/seed2)" in report.texts["summary.md"]
    assert "| weak |" not in report.texts["summary.md"]


# --- both together: the † of a cut-off poison beside mean ± std and tie-aware ranks -------------------


def test_a_cut_off_poison_is_marked_beside_its_ranks_in_every_table(seeded_cut_off_results):
    report = build_dataset_report(seeded_cut_off_results, "shapes")
    _close_figures(report)
    footnote = "- close: max_rounds = 3 reached after 3 round(s) (train_error 0.4); rule: surrogate training error <= 0.01"
    for name in ("scores.md", "attack_defense.md", "summary.md"):
        text = report.texts[name]
        assert "† Generation cut off by its cap before its stop rule held" in text and footnote in text, name
        assert "| close |" not in text and "| close † |" in text, name
    assert "| close † | 51.00 ± 1.00 | 71.50 ± 1.00 |" in report.texts["scores.md"]
    assert "| close † | test_resnet | ew | bdr | 3 | 71.50 ± 1.00 |" in report.texts["scores.md"]
    rows = _markdown_rows(report.texts["attack_defense.md"].split("## Attack x defense")[1])
    # The mark changes no order and no rank; ties name the method plainly.
    assert [row[2] for row in rows] == ["clean", "flip", "strong", "twin", "close †", "middle", "weak"]
    assert rows[4][3:] == ["51.00 ± 1.00 (=1)", "71.50 ± 1.00 (=1)", "bdr", "=1", "flip, middle, strong, twin"]
    assert rows[2][7] == "close, flip, twin"
    summary = _markdown_rows(report.texts["summary.md"])
    assert summary[4] == ["=1", "close †", "63.0 ± 1.2", "88.3 ± 1.2", "bdr", "flip, middle, strong, twin"]
    assert [row[1] for row in summary] == ["clean", "flip", "strong", "twin", "close †", "middle", "weak"]
    scores = pd.read_csv(io.StringIO(report.texts["scores.csv"]))
    assert set(scores.loc[scores["method"] == "close", "stopped_by"]) == {"cap"}
    assert set(scores.loc[scores["method"] != "close", "stopped_by"]) == {"closed_form"}
    for name in ("attack_defense.csv", "summary.csv"):
        assert "†" not in report.texts[name]
