"""The shared setup of every trained network (victims.setup)."""

from __future__ import annotations

import pytest
import torch

from victims.config import VictimConfig
from victims.device import DeviceError
from victims.model import MultiTaskModel
from victims.setup import CPU_BUDGET_MB, build_model, data_budget_bytes, prepare_device, split_sources
from victims.train import seed_everything

CPU = torch.device("cpu")


def test_budget_is_the_given_megabytes_or_the_cpu_default():
    assert data_budget_bytes(CPU, 3.5) == int(3.5 * 2**20)
    assert data_budget_bytes(CPU, 0) == 0
    assert data_budget_bytes(CPU) == int(CPU_BUDGET_MB * 2**20)


def test_negative_budget_is_refused_with_the_fix():
    with pytest.raises(DeviceError, match=">= 0 MB"):
        data_budget_bytes(CPU, -1)


def test_prepare_device_fixes_threads_and_refuses_unknown_devices():
    before = torch.get_num_threads()
    try:
        assert prepare_device("cpu", 1) == CPU
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    with pytest.raises(DeviceError, match="unknown device"):
        prepare_device("tpu-ish")


@pytest.mark.parametrize("budget_of", ["nothing", "train only", "both"])
def test_split_sources_keep_the_train_split_first_and_serve_the_same_batches(tiny_shapes, budget_of):
    train_bytes = tiny_shapes.split("train").images.nbytes + sum(a.nbytes for a in tiny_shapes.split("train").targets.values())
    test_bytes = tiny_shapes.split("test").images.nbytes + sum(a.nbytes for a in tiny_shapes.split("test").targets.values())
    budget = {"nothing": 0, "train only": train_bytes, "both": train_bytes + test_bytes}[budget_of]
    train, test = split_sources(tiny_shapes, CPU, budget)
    assert train.resident == (budget_of != "nothing")
    assert test.resident == (budget_of == "both")
    reference_train, reference_test = split_sources(tiny_shapes, CPU, 0)
    indices = torch.tensor([3, 0, 7, 1])
    for source, reference in ((train, reference_train), (test, reference_test)):
        images, targets = source.batch(indices)
        expected_images, expected_targets = reference.batch(indices)
        assert torch.equal(images, expected_images)
        assert targets.keys() == expected_targets.keys()
        assert all(torch.equal(targets[name], expected_targets[name]) for name in targets)


def test_split_sources_take_replacement_train_images(tiny_shapes):
    replaced = 255 - tiny_shapes.split("train").images
    train, _ = split_sources(tiny_shapes, CPU, 0, train_images=replaced)
    images, _ = train.batch(torch.tensor([0, 2]))
    assert torch.equal(images, torch.from_numpy(replaced[[0, 2]]))


def test_build_model_is_the_seeded_multitask_model(tiny_shapes):
    victim = VictimConfig(backbone="test_resnet")
    built = build_model(tiny_shapes.tasks, victim, tiny_shapes, CPU, seed=3)
    seed_everything(3)
    expected = MultiTaskModel(
        tiny_shapes.tasks, "test_resnet", image_size=tiny_shapes.crop_size, in_chans=tiny_shapes.image_shape[0],
        stem=victim.stem, decoder=victim.decoder, decoder_width=victim.decoder_width,
    )
    state, expected_state = built.state_dict(), expected.state_dict()
    assert state.keys() == expected_state.keys()
    assert all(torch.equal(state[key], expected_state[key]) for key in state)
    # The seed also fixes what is drawn after the model, as a training run expects.
    after_built = torch.rand(3)
    build_model(tiny_shapes.tasks, victim, tiny_shapes, CPU, seed=3)
    assert torch.equal(torch.rand(3), after_built)
