"""The config schema: every key documented, defaults filled, bad input named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mtlue.config import (
    ConfigError,
    VictimJob,
    VictimRun,
    config_schema,
    defense_options,
    load_config,
    validate_config,
    victim_jobs,
    victim_runs,
    victim_train,
)

ROOT = Path(__file__).resolve().parents[1]


def iter_schema_properties(schema, path=""):
    for key, sub in schema.get("properties", {}).items():
        yield f"{path}{key}", sub
        yield from iter_schema_properties(sub, f"{path}{key}.")
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        yield from iter_schema_properties(extra, f"{path}*.")


def test_every_schema_key_has_a_description():
    undocumented = [path for path, sub in iter_schema_properties(config_schema()) if not sub.get("description")]
    assert undocumented == []


def test_workflow_schema_is_the_package_schema():
    linked = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert linked == config_schema()


# protocol.yaml is the fidelity table (mtlue.fidelity, tests/test_fidelity.py), not a workflow config.
@pytest.mark.parametrize("path", sorted(p for p in (ROOT / "config").glob("*.yaml") if p.name != "protocol.yaml"), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    config = load_config(path)
    assert config["datasets"]


def test_defaults_are_filled_in():
    config = validate_config({"datasets": {"shapes": {}}})
    assert config["data_root"] == "resources/data"
    assert config["victims"]["train"]["lr"] == 0.001
    assert config["victims"]["train"]["milestones"] == [0.6, 0.8]
    assert config["datasets"]["shapes"]["options"] == {}


@pytest.mark.parametrize(
    "config, message",
    [
        ({"datasets": {"shapes": {}}, "victim": {}}, "unknown key 'victim' in \\(top level\\)"),
        ({"datasets": {"shapes": {"optons": {}}}}, "unknown key 'optons' in datasets.shapes"),
        ({"datasets": {"shapes": {}}, "victims": {"train": {"epoch": 3}}}, "unknown key 'epoch' in victims.train"),
        ({"datasets": {"shapes": {}}, "victims": {"train": {"epochs": 0}}}, "victims.train.epochs"),
        ({"datasets": {"shapes": {}}, "victims": {"mode": "both"}}, "victims.mode"),
        ({"datasets": {"shapes": {"options": {"imagesize": 3}}}}, "no option\\(s\\) imagesize"),
        ({"datasets": {"imagenet": {}}}, "unknown dataset 'imagenet'"),
        ({"datasets": {}}, "datasets"),
        ({}, "'datasets' is a required property"),
        ({"datasets": {"shapes": {}}, "victims": {"defenses": ["jpg"]}}, "defense 'jpg'.*unknown defense 'jpg'"),
        ({"datasets": {"shapes": {}}, "robustness": [{"defenses": ["cutout+jpeg"]}]}, "write 'jpeg\\+cutout'"),
        ({"datasets": {"shapes": {}}, "robustness": [{"methods": ["lsp"]}]}, "'defenses' is a required property"),
        (
            {"datasets": {"shapes": {}}, "poisons": {"methods": ["clean"]}, "robustness": [{"defenses": ["jpeg"], "methods": ["tap"]}]},
            "robustness\\[0\\].methods: 'tap' not in poisons.methods",
        ),
        ({"datasets": {"shapes": {}}, "victims": {"defense_options": {"at": {"steps": 3}}}}, "no configured defense uses 'at'"),
        ({"datasets": {"shapes": {}}, "victims": {"defenses": ["at"], "defense_options": {"at": {"stepz": 3}}}}, "stepz"),
    ],
)
def test_bad_configs_name_the_key(config, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(config)


def test_load_config_reports_the_file(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("datasets: {shapes: {}\n")
    with pytest.raises(ConfigError, match="broken.yaml is not valid YAML"):
        load_config(broken)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_victim_runs_join_the_grid_and_the_robustness_blocks_without_repeats():
    config = validate_config({
        "datasets": {"shapes": {}},
        "poisons": {"methods": ["clean", "lsp", "tap"]},
        "victims": {"backbones": ["test_resnet"], "weightings": ["ew", "uw"], "defenses": ["none"], "seeds": [0]},
        "robustness": [
            {"defenses": ["jpeg", "none"]},
            {"defenses": ["at"], "methods": ["clean", "tap"], "weightings": ["ew"]},
        ],
    })
    runs = victim_runs(config)
    assert len(runs) == len(set(runs)) == 3 * 2 * 1 + 3 * 2 * 1 + 2 * 1
    assert VictimRun("tap", "test_resnet", "uw", "jpeg", 0) in runs
    assert VictimRun("lsp", "test_resnet", "ew", "at", 0) not in runs
    # A submission joins the grid and every block that takes all methods, not the restricted one.
    with_submission = victim_runs(config, ["mine"])
    assert VictimRun("mine", "test_resnet", "uw", "jpeg", 0) in with_submission
    assert not any(run.method == "mine" and run.defense == "at" for run in with_submission)


def test_victim_jobs_group_each_victim_s_seeds_and_split_them_on_request():
    config = {
        "datasets": {"shapes": {}},
        "poisons": {"methods": ["clean", "lsp"]},
        "victims": {"backbones": ["test_resnet"], "weightings": ["ew"], "seeds": [2, 0, 1]},
        "robustness": [{"defenses": ["jpeg"], "methods": ["clean"], "seeds": [0]}, {"defenses": ["none"], "methods": ["lsp"], "seeds": [7]}],
    }
    jobs = victim_jobs(validate_config(config))
    assert jobs == [
        VictimJob("clean", "test_resnet", "ew", "none", (0, 1, 2)),
        VictimJob("lsp", "test_resnet", "ew", "none", (0, 1, 2, 7)),
        VictimJob("clean", "test_resnet", "ew", "jpeg", (0,)),
    ]
    assert jobs[0].victim == "clean/test_resnet/ew/none"
    # Every run is in exactly one job.
    runs = sorted(victim_runs(validate_config(config)))
    assert sorted(VictimRun(*job[:4], seed) for job in jobs for seed in job.seeds) == runs

    split = victim_jobs(validate_config({**config, "victims": {**config["victims"], "seeds_per_job": 2}}))
    assert [job.seeds for job in split] == [(0, 1), (2,), (0, 1), (2, 7), (0,)]
    assert validate_config({"datasets": {"shapes": {}}})["victims"]["seeds_per_job"] == "all"


@pytest.mark.parametrize("value", [0, -1, "some", 1.5])
def test_bad_seeds_per_job_names_the_key_and_the_choices(value):
    with pytest.raises(ConfigError, match=r"victims\.seeds_per_job.*`all` or a positive integer"):
        validate_config({"datasets": {"shapes": {}}, "victims": {"seeds_per_job": value}})


def test_train_per_defense_gives_at_victims_the_releases_schedule():
    """Release configs/CelebA/resnet18_madrys.yaml: milestones [45, 54, 60] of 60 epochs, batch
    128, where the plain victims drop at 60 % and 80 %."""
    config = validate_config({
        "datasets": {"shapes": {}},
        "victims": {
            "defenses": ["none", "at", "jpeg+at", "jpeg"],
            "train_per_defense": {"at": {"milestones": [0.75, 0.9], "batch_size": 128}},
        },
    })
    plain = victim_train(config, "none")
    assert plain == config["victims"]["train"] and plain["milestones"] == [0.6, 0.8]
    assert victim_train(config, "jpeg") == plain
    at = victim_train(config, "at")
    assert at == {**plain, "milestones": [0.75, 0.9], "batch_size": 128}
    assert victim_train(config, "jpeg+at") == at
    # 60 epochs: the drops land on the release's epochs 45 and 54 (its third, 60, is after the last epoch).
    from victims.config import TrainConfig

    recipe = TrainConfig(epochs=at["epochs"], milestones=tuple(at["milestones"]))
    assert recipe.milestone_epochs() == [45, 54]
    # The default: no override, every victim trains with victims.train.
    assert validate_config({"datasets": {"shapes": {}}})["victims"]["train_per_defense"] == {}


@pytest.mark.parametrize(
    ("victims", "message"),
    [
        ({"train_per_defense": {"at": {"batch_size": 128}}}, "train_per_defense.at: no configured defense uses 'at'"),
        ({"defenses": ["at"], "train_per_defense": {"at": {"milestone": [0.75]}}}, "milestone"),
        ({"defenses": ["at"], "train_per_defense": {"at": {"milestones": [1.0]}}}, "milestones"),
        ({"defenses": ["at"], "train_per_defense": {"at": {"milestones": [0.9, 0.75]}}}, "must be increasing"),
        ({"defenses": ["jpeg+at"], "train_per_defense": {"at": {"batch_size": 128}, "jpeg": {"batch_size": 64}}}, "gets batch_size 64 from 'jpeg' and 128 from 'at'"),
    ],
)
def test_bad_train_per_defense_is_refused_with_the_key(victims, message):
    with pytest.raises(ConfigError, match=message):
        validate_config({"datasets": {"shapes": {}}, "victims": victims})


def test_defense_options_reach_every_composition_that_uses_the_defense():
    config = validate_config({
        "datasets": {"shapes": {}},
        "victims": {"defenses": ["none", "at", "jpeg+at"], "defense_options": {"at": {"steps": 3}, "jpeg": {"quality": 20}}},
    })
    assert defense_options(config, "none") == {}
    assert defense_options(config, "at") == {"at.steps": 3}
    assert defense_options(config, "jpeg+at") == {"jpeg.quality": 20, "at.steps": 3}
