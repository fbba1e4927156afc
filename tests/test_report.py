"""mtlue report: collecting victims, headline scores, delta-m against clean, tables and plots."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

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
        assert row.seeds == 2
        assert row.score_mean == pytest.approx(seeds.mean())
        assert row.score_std == pytest.approx(float(np.std(seeds.to_numpy(), ddof=1)))
    table = score_table(summary)
    cell = table.loc["lsp", "test_resnet / ew / none"]
    lsp = summary[(summary["method"] == "lsp") & (summary["defense"] == "none")].iloc[0]
    assert cell == f"{lsp.score_mean:.2f} ± {lsp.score_std:.2f}"

    one_seed = summarize(victim_frame([r for r in records if r.seed == 0]), records[0].tasks)
    assert one_seed["score_std"].isna().all() and (one_seed["seeds"] == 1).all()
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
        (lambda d: {**d, "metrics": {**d["metrics"], "count": {"accuracy": "high"}}}, r"metrics.count.accuracy must be a finite number"),
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
    matrix = pd.read_csv(out / "attack_defense.csv", index_col=[0, 1, 2])
    assert list(matrix.columns) == ["none", "bdr"]


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
    for name in ("scores.md", "attack_defense.md"):
        markdown = (out / name).read_text()
        assert "| lsp † |" in markdown and "| clean |" in markdown and "| lsp |" not in markdown
        assert "† Generation cut off by its cap before its stop rule held" in markdown and footnote in markdown
    assert "| lsp † | test_resnet | ew | none |" in (out / "scores.md").read_text()  # the per-task table too
    assert list(pd.read_csv(out / "attack_defense.csv")["method"].unique()) == ["clean", "lsp"]  # data keep plain names

    # Where every generation converged (closed form here), nothing is marked.
    plain = tmp_path / "plain"
    assert main(["report", "--results", str(tiny_victim_results), "--dataset", "shapes", "--out", str(plain)]) == 0
    assert "†" not in (plain / "scores.md").read_text() + (plain / "attack_defense.md").read_text()
    assert pd.read_csv(plain / "scores.csv")["converged"].all()


def test_a_card_regenerated_after_its_victims_is_refused_by_the_report(copied_results):
    card_path = copied_results / "shapes" / "poisons" / "lsp" / "card.json"
    card_path.write_text(json.dumps({**json.loads(card_path.read_text()), "sha256": "0" * 64}))
    with pytest.raises(ReportError, match="did not train on the poison .* rerun those victims"):
        build_dataset_report(copied_results, "shapes")
