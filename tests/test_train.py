"""The victim training loop: augmentation alignment, batching, learning, resuming, divergence, CLI.

Everything runs on the CPU with one thread (two engineers' test runs on two cores otherwise
oversubscribe OpenMP and slow each other down by orders of magnitude) and timm's tiny
``test_resnet`` on 16 px "squares": a coloured square of one of three sizes on noise.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF

from conftest import Killed, kill_after
from mtlue.cli import CommandError
from mtlue.data import DatasetWriter, PreparedDataset, Task, TaskKind
from victims.augment import CenterCrop, RandomCropFlip
from victims.batches import BatchSource, SplitArrays, batches_per_epoch, epoch_batches
from victims.checkpoint import CheckpointError
from victims.commands import add_commands
from victims.config import TrainConfig, VictimConfig
from victims.device import DeviceError
from victims.run import run_victim

SIDES = (3, 5, 7)
#: The square's colour carries ``warm``; its side carries ``size``: both are translation
#: invariant, so a small CNN with global pooling learns them in a few epochs.
WARM, COOL = (230, 120, 40), (40, 120, 230)


def write_squares(root: Path, *, train: int, test: int, dense: bool, size: int = 16, crop: int = 14, seed: int = 0) -> PreparedDataset:
    tasks = [Task("warm", TaskKind.BINARY, 2), Task("size", TaskKind.MULTICLASS, len(SIDES))]
    if dense:
        tasks += [Task("mask", TaskKind.SEGMENTATION, 2), Task("depth", TaskKind.DEPTH, 1), Task("normal", TaskKind.NORMAL, 3)]
    rng = np.random.default_rng(seed)
    with DatasetWriter(root, name="squares", tasks=tasks, image_shape=(3, size, size), crop_size=crop) as writer:
        for split, count in (("train", train), ("test", test)):
            out = writer.split(split, count)
            size_class = rng.integers(0, len(SIDES), count)
            warm = rng.integers(0, 2, count)
            inside = np.zeros((count, size, size), dtype=bool)
            for index in range(count):
                side = SIDES[size_class[index]]
                top, left = rng.integers(1, size - side, 2)
                inside[index, top : top + side, left : left + side] = True
            colour = np.where(warm[:, None] == 1, WARM, COOL).astype(np.uint8)[:, :, None, None]
            noise = rng.integers(0, 60, (count, 3, size, size), dtype=np.uint8)
            out.images[:] = np.where(inside[:, None], colour, noise)
            out.targets["warm"][:] = warm
            out.targets["size"][:] = size_class
            if dense:
                mask = inside.astype(np.uint8)
                mask[:, 0, :] = 255  # an unlabelled row
                depth = np.where(inside, 1.0, 2.0)
                depth[:, :, 0] = 0.0  # a column without depth readings
                facing = np.array([0.0, 0.0, 1.0])[None, :, None, None]
                tilted = np.array([0.6, 0.0, 0.8])[None, :, None, None]
                normal = np.where(inside[:, None], tilted, facing)
                normal[:, :, :, 0] = 0.0  # and without normals
                out.targets["mask"][:] = mask
                out.targets["depth"][:] = depth
                out.targets["normal"][:] = normal
    return PreparedDataset(root)


@pytest.fixture(scope="module")
def squares(tmp_path_factory) -> PreparedDataset:
    return write_squares(tmp_path_factory.mktemp("squares") / "cls", train=512, test=96, dense=False)


@pytest.fixture(scope="module")
def dense_squares(tmp_path_factory) -> PreparedDataset:
    return write_squares(tmp_path_factory.mktemp("squares") / "dense", train=192, test=32, dense=True)


def quick_config(**overrides) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "batch_size": 32, "device": "cpu", "num_threads": 1, "eval_every": 0, **overrides})


# --------------------------------------------------------------------------------------------
# Augmentation


def coordinate_batch(batch: int = 6, height: int = 12, width: int = 10):
    """Images and dense targets whose values encode (sample, row, column)."""
    rows = torch.arange(height)[:, None].expand(height, width)
    columns = torch.arange(width)[None, :].expand(height, width)
    images = torch.stack([torch.stack([rows, columns, torch.full_like(rows, b)]) for b in range(batch)]).to(torch.uint8)
    code = (rows * width + columns).float()
    targets = {
        "label": torch.arange(batch, dtype=torch.uint8),
        "seg": (rows * width + columns).to(torch.uint8).expand(batch, height, width).clone(),
        "depth": (code + 1).expand(batch, height, width).clone().half(),
        # x = column + 1 (> 0 everywhere), so the sign shows whether it was negated.
        "normal": torch.stack([columns.float() + 1, rows.float(), torch.ones(height, width)]).expand(batch, 3, height, width).clone().half(),
    }
    tasks = [
        Task("label", TaskKind.MULTICLASS, batch),
        Task("seg", TaskKind.SEGMENTATION, 254),
        Task("depth", TaskKind.DEPTH, 1),
        Task("normal", TaskKind.NORMAL, 3),
    ]
    return images, targets, tasks


def test_random_crop_flip_moves_dense_targets_with_the_image():
    images, targets, tasks = coordinate_batch()
    crop = RandomCropFlip(tasks, 7)
    out_images, out = crop(images, targets, torch.Generator().manual_seed(3))
    width = images.shape[-1]
    flipped_any = unflipped_any = False
    for b in range(images.shape[0]):
        rows, columns = out_images[b, 0].long(), out_images[b, 1].long()
        assert (out_images[b, 2] == b).all(), "samples were mixed up"
        # A window: consecutive rows; consecutive columns, reversed when flipped.
        assert torch.equal(rows, rows[0, 0] + torch.arange(7)[:, None].expand(7, 7))
        step = columns[0, 1] - columns[0, 0]
        flipped = bool(step == -1)
        assert torch.equal(columns, columns[0, 0] + step * torch.arange(7)[None, :].expand(7, 7))
        flipped_any |= flipped
        unflipped_any |= not flipped
        # Every dense target holds the same coordinates as the image pixel it sits under.
        assert torch.equal(out["seg"][b].long(), rows * width + columns)
        assert torch.equal(out["depth"][b].float(), (rows * width + columns + 1).float())
        sign = -1.0 if flipped else 1.0
        assert torch.equal(out["normal"][b, 0].float(), sign * (columns.float() + 1))
        assert torch.equal(out["normal"][b, 1].float(), rows.float())
    assert flipped_any and unflipped_any, "the seed should give both flipped and unflipped samples"
    assert torch.equal(out["label"], targets["label"])


def test_random_crop_offsets_cover_every_position_and_depend_on_the_generator():
    images, targets, tasks = coordinate_batch(batch=64)
    crop = RandomCropFlip(tasks, 9)
    first = crop(images, targets, torch.Generator().manual_seed(0))[0]
    again = crop(images, targets, torch.Generator().manual_seed(0))[0]
    other = crop(images, targets, torch.Generator().manual_seed(1))[0]
    assert torch.equal(first, again) and not torch.equal(first, other)
    tops = set(first[:, 0, 0, :].min(dim=1).values.tolist())
    assert tops == set(range(12 - 9 + 1))


def test_center_crop_matches_torchvision_and_crops_targets_alike():
    images, targets, tasks = coordinate_batch(height=13, width=10)
    out_images, out = CenterCrop(tasks, 7)(images, targets)
    assert torch.equal(out_images, TF.center_crop(images, [7, 7]))
    assert torch.equal(out["seg"], TF.center_crop(targets["seg"], [7, 7]))
    assert torch.equal(out["normal"], TF.center_crop(targets["normal"], [7, 7]))


def test_crop_larger_than_the_image_is_refused():
    images, targets, tasks = coordinate_batch()
    with pytest.raises(ValueError, match="cannot crop 20 px"):
        CenterCrop(tasks, 20)(images, targets)


# --------------------------------------------------------------------------------------------
# Batching


def test_resident_and_streamed_batches_are_identical(squares):
    split = squares.split("train")
    arrays = SplitArrays(split.images, split.targets)
    resident = BatchSource(arrays, torch.device("cpu"), budget_bytes=10**9)
    streamed = BatchSource(arrays, torch.device("cpu"), budget_bytes=0)
    assert resident.resident and not streamed.resident
    indices = torch.tensor([5, 0, 511, 42])
    images_a, targets_a = resident.batch(indices)
    images_b, targets_b = streamed.batch(indices)
    assert images_a.dtype == torch.uint8 and torch.equal(images_a, images_b)
    assert torch.equal(images_a[0], torch.from_numpy(np.array(split.images[5])))
    assert all(torch.equal(targets_a[name], targets_b[name]) for name in targets_a)


@pytest.mark.parametrize("size, batch_size", [(10, 4), (9, 4), (8, 4), (1, 4), (3, 2)])
def test_epoch_batches_cover_the_split_once_and_never_yield_a_single_sample(size, batch_size):
    batches = list(epoch_batches(size, batch_size, torch.Generator().manual_seed(0)))
    assert len(batches) == batches_per_epoch(size, batch_size)
    seen = torch.cat(batches).tolist()
    assert len(seen) == len(set(seen))
    assert len(seen) >= size - 1
    assert size == 1 or all(len(batch) > 1 for batch in batches)


# --------------------------------------------------------------------------------------------
# Learning


def test_training_learns_a_simple_problem(squares):
    """Colour and size of a square: chance is 50 % and 33 %; a trained victim gets both right."""
    result = run_victim(
        squares,
        VictimConfig(backbone="test_resnet"),
        quick_config(epochs=8, eval_every=1),
        progress=False,
    )
    history = result.runs[0].fit.history
    first, last = history[0]["test"], history[-1]["test"]
    assert last["warm"]["accuracy"] >= 90 and last["size"]["accuracy"] >= 90
    assert result.aggregate["classification_mean"] >= first_mean(first) + 20
    losses = [record["train_loss"]["size"] for record in history]
    assert losses[-1] < 0.5 * losses[0]
    # MultiStepLR at round(0.6 * 8) = 5 and round(0.8 * 8) = 6 epochs.
    assert [record["lr"] for record in history] == pytest.approx([1e-3] * 5 + [1e-4] + [1e-5] * 2)


def first_mean(results: dict) -> float:
    return float(np.mean([values["accuracy"] for values in results.values()]))


def test_dense_victim_learns_segmentation_depth_and_normals(dense_squares):
    result = run_victim(dense_squares, VictimConfig(backbone="test_resnet"), quick_config(epochs=8, batch_size=16, eval_every=1), progress=False)
    history = result.runs[0].fit.history
    first, last = history[0]["test"], history[-1]["test"]
    assert last["mask"]["miou"] >= 80 and last["mask"]["miou"] > first["mask"]["miou"] + 20
    # Depth is 1 m on the square and 2 m behind it.
    assert last["depth"]["abs_err"] < 0.2 and last["depth"]["abs_err"] < 0.5 * first["depth"]["abs_err"]
    assert last["normal"]["mean_angle"] < first["normal"]["mean_angle"]
    assert last["warm"]["accuracy"] >= 90


# --------------------------------------------------------------------------------------------
# Checkpoints


def test_killed_and_resumed_run_ends_bit_identical(dense_squares, tmp_path):
    victim = VictimConfig(backbone="test_resnet", weighting="rlw")
    config = quick_config(epochs=3, batch_size=16, eval_every=2)
    reference = run_victim(dense_squares, victim, config, progress=False)

    with pytest.raises(Killed):
        run_victim(dense_squares, victim, config, checkpoint_dir=tmp_path, progress=False, callbacks=[kill_after(1)])
    resumed = run_victim(dense_squares, victim, config, checkpoint_dir=tmp_path, progress=False)

    assert resumed.runs[0].fit.resumed_from_epoch == 1
    assert resumed.metrics == reference.metrics
    expected, actual = reference.runs[0].model.state_dict(), resumed.runs[0].model.state_dict()
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[key], actual[key]) for key in expected)
    def strip(history):
        return [{k: v for k, v in r.items() if "seconds" not in k} for r in history]

    assert strip(resumed.runs[0].fit.history) == strip(reference.runs[0].fit.history)


def test_checkpoint_of_other_settings_is_refused(squares, tmp_path):
    victim = VictimConfig(backbone="test_resnet")
    with pytest.raises(Killed):
        run_victim(squares, victim, quick_config(), checkpoint_dir=tmp_path, progress=False, callbacks=[kill_after(1)])
    with pytest.raises(CheckpointError, match="train_config differ"):
        run_victim(squares, victim, quick_config(lr=5e-4), checkpoint_dir=tmp_path, progress=False)


# --------------------------------------------------------------------------------------------
# Command line


def victim_command(args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="mtlue")
    add_commands(parser.add_subparsers(dest="command", required=True))
    parsed = parser.parse_args(["victim", *args])
    parsed.handler(parsed)


def test_victim_command_writes_documented_metrics_json(squares, tmp_path, capsys):
    out = tmp_path / "victims" / "metrics.json"
    victim_command(
        ["--data", str(squares.root), "--backbone", "test_resnet", "--weighting", "dwa", "--seed", "3",
         "--epochs", "1", "--batch-size", "64", "--device", "cpu", "--num-threads", "1", "--no-progress", "--out", str(out)]
    )
    data = json.loads(out.read_text())
    assert data["format"] == "mtlue-victim-metrics/1"
    assert (data["backbone"], data["weighting"], data["mode"], data["seed"]) == ("test_resnet", "dwa", "mtl", 3)
    assert data["dataset"]["train_content_hash"] == squares.manifest["splits"]["train"]["content_hash"]
    assert data["dataset"]["train_images"] == "clean"
    assert set(data["metrics"]) == {"warm", "size"} and set(data["aggregate"]) == {"classification_mean", "mean_accuracy"}
    assert data["train_config"]["epochs"] == 1 and data["train_config"]["milestone_epochs"] == [1, 1]
    assert [run["name"] for run in data["runs"]] == ["mtl"] and len(data["runs"][0]["history"]) == 1
    assert data["device"] == "cpu" and data["amp_dtype"] is None
    assert {"torch", "timm", "segmentation_models_pytorch", "torchjd"} <= set(data["versions"])
    assert "classification_mean" in capsys.readouterr().out


def test_victim_command_trains_on_the_published_images_of_a_poison_store(squares, dense_squares, tmp_path):
    from mtlue.methods import GenerationContext, create_method, make_poison
    from mtlue.poisons import PoisonError

    store = make_poison(squares, create_method("lsp"), GenerationContext(seed=1), tmp_path / "lsp")
    common = ["--backbone", "test_resnet", "--epochs", "1", "--batch-size", "64", "--device", "cpu", "--num-threads", "1", "--no-progress"]
    out = tmp_path / "poisoned.json"
    victim_command(["--data", str(squares.root), "--poison", str(store.root), "--out", str(out), *common])
    data = json.loads(out.read_text())
    assert data["dataset"]["train_images"] == f"lsp:{store.card.sha256}"
    # A store made for other data would put its deltas on the wrong images: refused, nothing written.
    with pytest.raises(PoisonError, match="another version of the training split|regenerate"):
        victim_command(["--data", str(dense_squares.root), "--poison", str(store.root), "--out", str(tmp_path / "x.json"), *common])
    assert not (tmp_path / "x.json").exists()


def test_single_task_mode_trains_one_network_per_task(squares, tmp_path):
    out = tmp_path / "metrics.json"
    victim_command(
        ["--data", str(squares.root), "--backbone", "test_resnet", "--mode", "stl", "--epochs", "1",
         "--batch-size", "64", "--device", "cpu", "--num-threads", "1", "--out", str(out)]
    )
    data = json.loads(out.read_text())
    assert [(run["name"], run["tasks"]) for run in data["runs"]] == [("stl-warm", ["warm"]), ("stl-size", ["size"])]
    assert set(data["metrics"]) == {"warm", "size"}


def test_diverging_run_names_epoch_step_and_task_and_writes_nothing(squares, tmp_path):
    out = tmp_path / "metrics.json"
    with pytest.raises(CommandError, match=r"loss of task '(warm|size)' is (nan|inf) at epoch 1, step 2") as caught:
        victim_command(
            ["--data", str(squares.root), "--backbone", "test_resnet", "--lr", "1e20", "--epochs", "2",
             "--batch-size", "64", "--device", "cpu", "--num-threads", "1", "--out", str(out)]
        )
    assert "lower the learning rate" in str(caught.value)
    assert not out.exists() and not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--epochs", "0"], "epochs must be at least 1"),
        (["--milestones", "0.8", "0.6"], "milestones must be increasing"),
        (["--mode", "stl", "--weighting", "uw"], "no effect in single-task mode"),
        (["--weighting", "nonsense"], "unknown weighting 'nonsense'"),
        (["--backbone", "nonsense"], "unknown backbone 'nonsense'; registered backbones: .*resnet18"),
    ],
)
def test_bad_settings_fail_with_the_fix(squares, tmp_path, flags, message):
    with pytest.raises(CommandError, match=message):
        victim_command(["--data", str(squares.root), "--device", "cpu", "--out", str(tmp_path / "m.json"), *flags])
    assert not (tmp_path / "m.json").exists()


def test_published_images_must_match_the_train_split(squares):
    wrong = np.zeros((3, 3, 16, 16), dtype=np.uint8)
    with pytest.raises(ValueError, match="clean train split's shape"):
        run_victim(squares, VictimConfig(backbone="test_resnet"), quick_config(), train_images=wrong)


def test_mixed_precision_is_refused_off_cuda(squares):
    with pytest.raises(DeviceError, match="only offered on CUDA devices, not on cpu; use --amp off or auto"):
        run_victim(squares, VictimConfig(backbone="test_resnet"), quick_config(epochs=1, amp=True), progress=False)
