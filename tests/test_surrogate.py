"""The surrogate stage: snapshots at the SEP schedule, the card, resuming, refusing a mismatched
surrogate, and the `mtlue surrogate` / `mtlue poison --method tap --surrogate` commands."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from mtlue.cli import main
from mtlue.data import PreparedDataset, create_builder
from mtlue.io import file_sha256
from mtlue.methods.surrogate import (
    CARD_NAME,
    FINAL_NAME,
    SurrogateError,
    load_surrogate,
    read_surrogate_card,
    snapshot_epochs,
    snapshot_name,
    surrogate_files,
    train_surrogate,
)
from mtlue.poisons import load_store, publish
from victims.config import TrainConfig, VictimConfig
from victims.model import MultiTaskModel
from victims.train import seed_everything

from conftest import TINY_SHAPES as SHAPES  # noqa: E402
from conftest import Killed, kill_after  # noqa: E402
EPOCHS, EVERY = 4, 2




def quick_recipe(**overrides) -> TrainConfig:
    settings = dict(epochs=EPOCHS, batch_size=16, device="cpu", eval_every=0, num_threads=1)
    return TrainConfig(**{**settings, **overrides})


TINY = VictimConfig(backbone="test_resnet")


@pytest.fixture(scope="module")
def surrogate(tiny_shapes, tmp_path_factory):
    out = tmp_path_factory.mktemp("surrogate") / "surrogate"
    card = train_surrogate(tiny_shapes, out, victim=TINY, config=quick_recipe(), every=EVERY, progress=False)
    return out, card


def state_of(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def same_state(first, second) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[key], second[key]) for key in first)


def test_snapshot_schedule_is_the_releases():
    # The release saves _epoch{k} after 0-based epoch k (main_MTL_binary.py:464): after epochs
    # 1, 5, ..., 57 of 60 with --save_frequency 4; never the untrained network.
    assert snapshot_epochs(60, 4) == [1, 5, 9, 13, 17, 21, 25, 29, 33, 37, 41, 45, 49, 53, 57]
    assert snapshot_epochs(4, 2) == [1, 3]
    assert snapshot_epochs(3, 2) == [1, 3]
    assert snapshot_epochs(2, 5) == [1]
    assert 0 not in snapshot_epochs(10, 1) and snapshot_epochs(10, 1) == list(range(1, 11))
    with pytest.raises(SurrogateError, match="--every must be a whole number of epochs >= 1"):
        snapshot_epochs(60, 0)


def test_folder_holds_the_snapshots_the_final_model_and_a_card(tiny_shapes, surrogate, tmp_path):
    out, card = surrogate
    assert sorted(path.name for path in out.iterdir()) == sorted([CARD_NAME, snapshot_name(1), snapshot_name(3), FINAL_NAME])
    assert [(item.file, item.epoch) for item in card.snapshots] == [("epoch_001.pt", 1), ("epoch_003.pt", 3)]
    assert (card.final.file, card.final.epoch) == (FINAL_NAME, EPOCHS)
    for item in card.files().values():
        assert file_sha256(out / item.file) == item.sha256
    on_disk = json.loads((out / CARD_NAME).read_text())
    assert on_disk["backbone"] == "test_resnet" and on_disk["seed"] == 0 and on_disk["epochs"] == EPOCHS
    assert on_disk["format"] == "mtlue-surrogate/2"
    assert on_disk["train_content_hash"] == tiny_shapes.manifest["splits"]["train"]["content_hash"]
    assert [task["name"] for task in on_disk["tasks"]] == [task.name for task in tiny_shapes.tasks]
    assert read_surrogate_card(out) == card
    assert surrogate_files(out) == (out / FINAL_NAME, (out / "epoch_001.pt", out / "epoch_003.pt"))

    # No snapshot is the seeded, untrained network: the first is the model after one epoch.
    seed_everything(0)
    initial = MultiTaskModel(tiny_shapes.tasks, "test_resnet", image_size=tiny_shapes.crop_size)
    first = state_of(out / "epoch_001.pt")
    assert not same_state(first, initial.state_dict())
    one_epoch = train_surrogate(tiny_shapes, tmp_path / "one", victim=TINY, config=quick_recipe(epochs=1), every=1, progress=False)
    assert [item.epoch for item in one_epoch.snapshots] == [1]
    assert same_state(first, state_of(tmp_path / "one" / FINAL_NAME))
    # Training moved the weights between the snapshots and to the end.
    snapshots = [state_of(out / name) for name in ("epoch_001.pt", "epoch_003.pt", FINAL_NAME)]
    assert not same_state(snapshots[0], snapshots[1]) and not same_state(snapshots[1], snapshots[2])


def test_a_version_1_folder_with_an_untrained_snapshot_is_refused(surrogate, tmp_path):
    out, _ = surrogate
    old = tmp_path / "old"
    shutil.copytree(out, old)
    card = json.loads((old / CARD_NAME).read_text())
    (old / CARD_NAME).write_text(json.dumps({**card, "format": "mtlue-surrogate/1"}))
    with pytest.raises(SurrogateError, match="is not a mtlue-surrogate/2 card.*train the surrogate again"):
        read_surrogate_card(old)


def test_loaded_surrogate_is_the_saved_model_frozen_in_eval_mode(tiny_shapes, surrogate):
    out, _ = surrogate
    model = load_surrogate(out / FINAL_NAME, tiny_shapes)
    assert isinstance(model, MultiTaskModel) and not model.training
    assert not any(parameter.requires_grad for parameter in model.parameters())
    assert same_state(model.state_dict(), state_of(out / FINAL_NAME))
    # The tasks alone are enough to rebuild it, and loading leaves the caller's random stream alone.
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    load_surrogate(out / "epoch_003.pt", tiny_shapes.tasks, backbone="test_resnet")
    assert torch.equal(torch.rand(3), expected)


def test_interrupted_training_resumes_to_the_same_files(tiny_shapes, surrogate, tmp_path):
    _, reference = surrogate

    out, checkpoints = tmp_path / "surrogate", tmp_path / "checkpoints"
    with pytest.raises(Killed):
        train_surrogate(tiny_shapes, out, victim=TINY, config=quick_recipe(), every=EVERY, checkpoint_dir=checkpoints,
                        progress=False, callbacks=[kill_after(2)])
    assert not out.exists()  # nothing that looks finished
    card = train_surrogate(tiny_shapes, out, victim=TINY, config=quick_recipe(), every=EVERY, checkpoint_dir=checkpoints, progress=False)
    assert card.metrics["history"][0]["epoch"] == 1  # the history of the first two epochs came back
    assert [item.sha256 for item in card.files().values()] == [item.sha256 for item in reference.files().values()]


def test_mismatched_surrogates_are_refused_with_the_fix(tiny_shapes, tiny_dense_shapes, surrogate, tmp_path):
    out, _ = surrogate
    with pytest.raises(SurrogateError, match=r"predicts tasks \[has_circle \(binary, 2\).*but the data has tasks.*mtlue surrogate"):
        load_surrogate(out / FINAL_NAME, tiny_dense_shapes)
    with pytest.raises(SurrogateError, match="is a 'test_resnet' network, 'resnet18' was asked for.*--backbone resnet18"):
        load_surrogate(out / FINAL_NAME, tiny_shapes, backbone="resnet18")
    with pytest.raises(SurrogateError, match="no surrogate model file at .*mtlue surrogate --data"):
        load_surrogate(out / "epoch_002.pt", tiny_shapes)

    other = create_builder("shapes", dense_tasks=False, **{**SHAPES, "seed": 1})
    other.prepare(tmp_path / "other", tmp_path / "raw")
    with pytest.raises(SurrogateError, match="trained on another version of the train split.*mtlue surrogate --data"):
        load_surrogate(out / FINAL_NAME, PreparedDataset(tmp_path / "other"))

    tampered = tmp_path / "tampered"
    shutil.copytree(out, tampered)
    state = state_of(tampered / FINAL_NAME)
    state[next(iter(state))] += 1
    torch.save(state, tampered / FINAL_NAME)
    with pytest.raises(SurrogateError, match="does not match the sha256 its card records"):
        load_surrogate(tampered / FINAL_NAME, tiny_shapes)

    (tampered / CARD_NAME).unlink()
    with pytest.raises(SurrogateError, match="has no surrogate.json: it is not a surrogate folder.*mtlue surrogate"):
        load_surrogate(tampered / "epoch_001.pt", tiny_shapes)


def test_surrogate_refuses_a_weighting_or_single_task_mode(tiny_shapes, tmp_path):
    with pytest.raises(SurrogateError, match="equal task weights.*leave --mode and --weighting at mtl and ew"):
        train_surrogate(tiny_shapes, tmp_path / "out", victim=VictimConfig(backbone="test_resnet", weighting="uw"), config=quick_recipe())
    assert not (tmp_path / "out").exists()


def test_surrogate_and_tap_poison_commands_end_to_end(tiny_shapes, tmp_path, capsys):
    out = tmp_path / "surrogate"
    status = main([
        "surrogate", "--data", str(tiny_shapes.root), "--out", str(out), "--backbone", "test_resnet",
        "--epochs", "2", "--every", "1", "--batch-size", "16", "--eval-every", "0", "--device", "cpu",
        "--num-threads", "1", "--no-progress",
    ])
    assert status == 0
    assert "2 snapshot(s) at epoch(s) 1, 2" in capsys.readouterr().out
    final, _ = surrogate_files(out)

    poison = tmp_path / "poisons" / "tap"
    status = main([
        "poison", "--data", str(tiny_shapes.root), "--method", "tap", "--out", str(poison), "--surrogate", str(final),
        "--set", "steps=2", "--set", "batch_size=16",
    ])
    assert status == 0
    store = load_store(poison, tiny_shapes)
    assert store.card.method == "tap" and store.card.hyperparameters["steps"] == 2
    assert [record.sha256 for record in store.card.surrogates] == [file_sha256(final)]
    clean = tiny_shapes.split("train").images
    published = publish(clean, store.deltas)
    assert np.abs(published.astype(int) - clean.astype(int)).max() <= 8


def test_surrogate_command_errors_name_the_fix(tiny_shapes, tmp_path, capsys):
    status = main(["surrogate", "--data", str(tiny_shapes.root), "--out", str(tmp_path / "s"), "--every", "0"])
    assert status == 2 and "--every must be a whole number of epochs >= 1" in capsys.readouterr().err
    status = main(["surrogate", "--data", str(tiny_shapes.root), "--out", str(tmp_path / "s"), "--epochs", "0"])
    assert status == 2 and "epochs must be at least 1" in capsys.readouterr().err
    status = main(["poison", "--data", str(tiny_shapes.root), "--method", "tap", "--out", str(tmp_path / "p")])
    assert status == 2 and "needs a clean surrogate model" in capsys.readouterr().err
    assert not (tmp_path / "s").exists() and not (tmp_path / "p").exists()
