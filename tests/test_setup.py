"""The shared setup of every trained network (victims.setup), prefetched batches and deferred finite checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtlue.data.tasks import Task, TaskKind
from victims.batches import batches_per_epoch, epoch_batches, prefetched, sequential_batches
from victims.config import VictimConfig
from victims.device import DeviceError
from victims.model import MultiTaskModel
from victims.setup import CPU_BUDGET_MB, build_model, data_budget_bytes, prepare_device, split_sources
from victims.losses import NonFiniteGradientError, NonFiniteLossError
from victims.train import raise_first_non_finite, seed_everything

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


@pytest.mark.parametrize("depth", [1, 3])
def test_prefetched_batches_of_a_memory_mapped_split_are_the_resident_ones_in_order(tiny_shapes, depth):
    mapped, _ = split_sources(tiny_shapes, CPU, 0)
    resident, _ = split_sources(tiny_shapes, CPU, 2**30)
    assert not mapped.resident and resident.resident
    orders = [epoch_batches(len(mapped), 7, torch.Generator().manual_seed(5)) for _ in range(2)]
    served = list(prefetched(mapped, orders[0], depth))
    expected = [resident.batch(indices) for indices in orders[1]]
    assert len(served) == len(expected) == batches_per_epoch(len(mapped), 7)
    for (images, targets), (expected_images, expected_targets) in zip(served, expected, strict=True):
        assert torch.equal(images, expected_images)
        assert all(torch.equal(targets[name], expected_targets[name]) for name in expected_targets)


def test_prefetching_stops_cleanly_when_the_consumer_stops(tiny_shapes):
    mapped, _ = split_sources(tiny_shapes, CPU, 0)
    batches = prefetched(mapped, sequential_batches(len(mapped), 4))
    first, _ = next(batches)
    batches.close()
    assert torch.equal(first, torch.from_numpy(np.array(tiny_shapes.split("train").images[:4])))


def _fit_history(dataset, budget_mb, weighting="ew"):
    from victims.config import TrainConfig
    from victims.run import run_victim

    victim = VictimConfig(backbone="test_resnet", weighting=weighting)
    config = TrainConfig(epochs=2, batch_size=16, device="cpu", num_threads=1, data_budget_mb=budget_mb, eval_every=1)
    result = run_victim(dataset, victim, config, progress=False)
    return [{k: v for k, v in record.items() if "seconds" not in k} for record in result.runs[0].fit.history]


def test_training_from_the_memory_map_with_prefetching_equals_training_on_resident_data(tiny_shapes):
    assert _fit_history(tiny_shapes, 0) == _fit_history(tiny_shapes, None)


def test_deferred_finite_checks_name_the_first_bad_step():
    tasks = [Task("a", TaskKind.BINARY, 2), Task("b", TaskKind.BINARY, 2)]
    losses = torch.tensor([[0.5, 0.4], [0.3, 0.2], [0.1, float("nan")], [float("inf"), 0.1]])
    norms = torch.tensor([1.0, float("inf"), 1.0, 1.0])
    raise_first_non_finite(tasks, losses[:2], epoch=3)
    with pytest.raises(NonFiniteLossError, match=r"loss of task 'b' is nan at epoch 3, step 3"):
        raise_first_non_finite(tasks, losses, epoch=3)
    with pytest.raises(NonFiniteGradientError, match=r"gradient norm is inf at epoch 3, step 12"):
        raise_first_non_finite(tasks, losses, norms, epoch=3, first_step=11)


@pytest.mark.parametrize("tasks_count", [4, 40])
def test_stacked_heads_give_the_separate_heads_logits_and_gradients(tasks_count):
    """40-task victims stack their heads' products (victims.model.STACKED_HEADS_FROM); fewer keep
    the separate products, bit for bit."""
    import torch.nn.functional as F

    from victims.model import STACKED_HEADS_FROM

    tasks = [Task(f"t{i}", TaskKind.MULTICLASS if i % 3 == 0 else TaskKind.BINARY, 5 if i % 3 == 0 else 2) for i in range(tasks_count)]
    torch.manual_seed(0)
    model = MultiTaskModel(tasks, "test_resnet", image_size=16, in_chans=3)
    representation = torch.randn(6, 256, requires_grad=True)
    logits = model.classification_logits(representation)
    separate = {}
    for task in tasks:
        value = F.linear(representation, model.heads[task.name].weight, model.heads[task.name].bias)
        separate[task.name] = value[:, 0] if task.kind is TaskKind.BINARY else value
    assert logits.keys() == separate.keys()
    for name in logits:
        assert logits[name].shape == separate[name].shape
        if tasks_count < STACKED_HEADS_FROM:
            assert torch.equal(logits[name], separate[name])
        else:
            assert torch.allclose(logits[name], separate[name], atol=1e-6)
    weights = {name: torch.linspace(-1, 1, value.numel()).view_as(value) for name, value in separate.items()}
    gradients = []
    for outputs in (logits, separate):
        model.zero_grad(set_to_none=True)
        representation.grad = None
        sum((outputs[name] * weights[name]).sum() for name in outputs).backward(retain_graph=True)
        gradients.append([representation.grad.clone(), *(p.grad.clone() for p in model.heads.parameters())])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*gradients, strict=True))
