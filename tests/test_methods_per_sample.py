"""Per-sample, surrogate-dependent UE methods (em, tap, sep): objectives, PGD, budget, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtlue.data import DatasetWriter, PreparedDataset, Task, TaskKind
from mtlue.data.tasks import IGNORE_INDEX
from mtlue.methods import GenerationContext, MethodError, Requirement, create_method, method_class
from mtlue.methods.em import EMHyperparameters, error_minimizing_noise, training_error
from mtlue.methods.objectives import shifted_targets, ue_loss
from mtlue.methods.pgd import (
    objective_value,
    pgd_minimize,
    quantize_delta,
    random_start,
    split_source,
)
from mtlue.methods.surrogate import load_surrogate
from mtlue.poisons import publish
from victims.augment import CenterCrop
from victims.losses import task_loss
from victims.model import MultiTaskModel
from victims.train import seed_everything

#: Few, large steps: enough to move the objective on tiny data within the test budget.
QUICK = dict(steps=3, step_size=2.0, batch_size=16)




def assert_within_budget(dataset: PreparedDataset, deltas: np.ndarray, epsilon: int) -> None:
    clean = dataset.split("train").images
    assert deltas.dtype == np.int8 and deltas.shape == clean.shape
    published = publish(clean, deltas).astype(np.int16)
    change = published - clean.astype(np.int16)
    assert np.abs(change).max() <= epsilon
    # Deltas are clipped to the pixel range too, so the published change is exactly the delta.
    assert np.array_equal(change, deltas.astype(np.int16))
    assert np.count_nonzero(deltas) > 0.5 * deltas.size


# --------------------------------------------------------------------------------------------
# Objectives


def test_shifted_targets_change_every_label_and_keep_ignored_pixels():
    generator = torch.Generator().manual_seed(0)
    for classes in range(2, 8):
        tasks = [
            Task("binary", TaskKind.BINARY, 2),
            Task("multi", TaskKind.MULTICLASS, classes),
            Task("seg", TaskKind.SEGMENTATION, classes),
            Task("depth", TaskKind.DEPTH, 1),
            Task("normal", TaskKind.NORMAL, 3),
        ]
        segmentation = torch.randint(0, classes, (4, 6, 6), generator=generator).to(torch.uint8)
        segmentation[:, :2] = IGNORE_INDEX
        targets = {
            "binary": torch.randint(0, 2, (50,), generator=generator).to(torch.uint8),
            "multi": torch.arange(50).remainder(classes).to(torch.uint8),
            "seg": segmentation,
            "depth": torch.rand(4, 6, 6, generator=generator),
            "normal": torch.randn(4, 3, 6, 6, generator=generator),
        }
        shifted = shifted_targets(tasks, targets)
        assert all(shifted[name].dtype == targets[name].dtype for name in targets)
        assert torch.equal(shifted["binary"], 1 - targets["binary"])
        multi = shifted["multi"].long()
        assert bool((multi != targets["multi"].long()).all()) and int(multi.max()) < classes
        assert torch.equal(multi, (targets["multi"].long() + classes // 2) % classes)
        ignored = targets["seg"] == IGNORE_INDEX
        assert bool((shifted["seg"][ignored] == IGNORE_INDEX).all())
        assert bool((shifted["seg"][~ignored] != targets["seg"][~ignored]).all())
        assert int(shifted["seg"][~ignored].max()) < classes
        assert shifted["depth"] is targets["depth"] and shifted["normal"] is targets["normal"]

    with pytest.raises(KeyError, match="no entry for task\\(s\\) normal; pass one target tensor per task"):
        shifted_targets(tasks, {name: value for name, value in targets.items() if name != "normal"})


def test_ue_losses_are_the_mean_task_loss_and_ascend_where_no_class_can_be_targeted(tiny_dense_shapes):
    tasks = tiny_dense_shapes.tasks
    seed_everything(0)
    model = MultiTaskModel(tasks, "test_resnet", image_size=tiny_dense_shapes.crop_size, decoder_width=0.125).eval()
    source = split_source(tiny_dense_shapes, torch.device("cpu"))
    images, targets = source.batch(torch.arange(4))
    view, view_targets = CenterCrop(tasks, tiny_dense_shapes.crop_size)(images.float() / 255, targets)
    with torch.no_grad():
        outputs = model(view)
    true_losses = [task_loss(task)(outputs[task.name], view_targets[task.name]) for task in tasks]
    assert float(ue_loss("em", outputs, view_targets, tasks)) == pytest.approx(float(torch.stack(true_losses).mean()))

    goal = shifted_targets(tasks, view_targets)
    untargeted = (TaskKind.DEPTH, TaskKind.NORMAL, TaskKind.BINARY)
    expected = [
        task_loss(task)(outputs[task.name], goal[task.name]) if task.kind not in untargeted
        else -task_loss(task)(outputs[task.name], view_targets[task.name])
        for task in tasks
    ]
    # Default: binary tasks untargeted, minus the BCE on the true labels (the release's TAP).
    assert float(ue_loss("tap", outputs, view_targets, tasks)) == pytest.approx(float(torch.stack(expected).mean()))
    assert float(ue_loss("tap", outputs, view_targets, tasks, binary_target="untargeted")) == pytest.approx(float(torch.stack(expected).mean()))
    # flip: the BCE toward 1 - y (the release's SEP); the other kinds do not change.
    flipped = [
        task_loss(task)(outputs[task.name], goal[task.name]) if task.kind not in (TaskKind.DEPTH, TaskKind.NORMAL)
        else -task_loss(task)(outputs[task.name], view_targets[task.name])
        for task in tasks
    ]
    assert float(ue_loss("tap", outputs, view_targets, tasks, binary_target="flip")) == pytest.approx(float(torch.stack(flipped).mean()))
    # EM ignores the binary target.
    assert float(ue_loss("em", outputs, view_targets, tasks, binary_target="flip")) == pytest.approx(float(torch.stack(true_losses).mean()))
    with pytest.raises(ValueError, match="unknown UE objective 'emm'; choose one of em, tap"):
        ue_loss("emm", outputs, view_targets, tasks)
    with pytest.raises(ValueError, match="binary_target must be one of untargeted, flip"):
        ue_loss("tap", outputs, view_targets, tasks, binary_target="targeted")


def test_binary_tap_is_untargeted_ascent_and_flip_descends_toward_one_minus_y():
    """On one binary logit the two variants are different functions: untargeted = -BCE(z, y),
    flip = BCE(z, 1 - y). Their gradients in z agree in sign but not in size, and -BCE keeps
    rewarding a confident wrong logit while BCE(z, 1 - y) saturates."""
    task = Task("b", TaskKind.BINARY, 2)
    logits = torch.tensor([[2.0], [-1.0], [0.5], [-3.0]])
    labels = torch.tensor([[1.0], [0.0], [0.0], [1.0]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    untargeted = ue_loss("tap", {"b": logits}, {"b": labels}, [task])
    flip = ue_loss("tap", {"b": logits}, {"b": labels}, [task], binary_target="flip")
    assert float(untargeted) == pytest.approx(-float(bce(logits, labels)))
    assert float(flip) == pytest.approx(float(bce(logits, 1 - labels)))
    assert float(untargeted) != pytest.approx(float(flip))
    # The untargeted loss is unbounded below: pushing the logit far past the wrong side keeps lowering it.
    far_wrong = torch.tensor([[-50.0]])
    one = torch.tensor([[1.0]])
    assert float(ue_loss("tap", {"b": far_wrong}, {"b": one}, [task])) < -49
    assert float(ue_loss("tap", {"b": far_wrong}, {"b": one}, [task], binary_target="flip")) == pytest.approx(0.0, abs=1e-6)


def test_multiclass_tap_targets_the_half_shift_for_either_binary_target():
    """The release shifts C classes by floor(C/2) (perturbation_MTL_DAE.py:496): 9 -> +4, 5 -> +2."""
    age, race = Task("age", TaskKind.MULTICLASS, 9), Task("race", TaskKind.MULTICLASS, 5)
    labels = {"age": torch.arange(9), "race": torch.tensor([0, 1, 2, 3, 4, 0, 1, 2, 3])}
    shifted = shifted_targets([age, race], labels)
    assert shifted["age"].tolist() == [4, 5, 6, 7, 8, 0, 1, 2, 3]
    assert shifted["race"].tolist() == [2, 3, 4, 0, 1, 2, 3, 4, 0]
    logits = {"age": torch.randn(9, 9, generator=torch.Generator().manual_seed(0)), "race": torch.randn(9, 5, generator=torch.Generator().manual_seed(1))}
    cross_entropy = torch.nn.functional.cross_entropy
    expected = (cross_entropy(logits["age"], shifted["age"]) + cross_entropy(logits["race"], shifted["race"])) / 2
    for binary_target in ("untargeted", "flip"):
        assert float(ue_loss("tap", logits, labels, [age, race], binary_target=binary_target)) == pytest.approx(float(expected))


def test_tap_defaults_to_untargeted_binary_and_sep_to_the_flip():
    from mtlue.methods.mtl_ue import MTLUESEPHyperparameters, MTLUETAPHyperparameters

    assert create_method("tap").hyperparameters.binary_target == "untargeted"
    assert create_method("sep").hyperparameters.binary_target == "flip"
    assert create_method("tap", binary_target="flip").hyperparameters.binary_target == "flip"
    assert MTLUETAPHyperparameters().binary_target == "untargeted"
    assert MTLUESEPHyperparameters().binary_target == "flip"
    assert "binary_target" not in create_method("em").hyperparameters_dict()
    with pytest.raises(Exception, match="binary_target must be one of untargeted, flip"):
        create_method("tap", binary_target="targeted")
    with pytest.raises(ValueError, match="binary_target must be one of untargeted, flip"):
        MTLUETAPHyperparameters(binary_target="1-y")


# --------------------------------------------------------------------------------------------
# PGD


def test_quantize_rounds_to_the_grid_and_clips_to_budget_and_pixel_range():
    images = torch.tensor([0, 3, 128, 128, 128, 250, 255], dtype=torch.uint8)
    delta = torch.tensor([-2.0, -5.2, 7.6, -8.4, 0.4, 6.0, 1.0])
    assert quantize_delta(delta, images, 8).tolist() == [0, -3, 8, -8, 0, 5, 0]
    with pytest.raises(FloatingPointError, match="NaN or infinite"):
        quantize_delta(torch.tensor([float("nan")]), images[:1], 8)


@pytest.mark.parametrize("objective", ["em", "tap"])
def test_pgd_lowers_the_objective_from_the_random_start_for_every_task_kind(tiny_dense_shapes, objective):
    tasks, crop, epsilon = tiny_dense_shapes.tasks, tiny_dense_shapes.crop_size, 8
    seed_everything(0)
    model = MultiTaskModel(tasks, "test_resnet", image_size=crop, decoder_width=0.125).eval()
    images, targets = split_source(tiny_dense_shapes, torch.device("cpu")).batch(torch.arange(8))
    start = random_start(images, epsilon, torch.Generator().manual_seed(0))
    assert float(start.abs().max()) <= epsilon
    # Centre crop: the objective is then a deterministic function of the delta.
    delta = pgd_minimize([model], images, targets, tasks, objective=objective, epsilon=epsilon, step_size=1.0,
                         steps=5, crop_size=crop, start=start, generator=None)
    before = objective_value([model], images, start, targets, tasks, objective=objective, crop_size=crop)
    after = objective_value([model], images, delta, targets, tasks, objective=objective, crop_size=crop)
    assert after < before
    pixels = images.float() + delta
    assert float(delta.abs().max()) <= epsilon and float(pixels.min()) >= 0 and float(pixels.max()) <= 255


# --------------------------------------------------------------------------------------------
# Methods


def test_methods_declare_what_they_need():
    assert method_class("em").requires is Requirement.SURROGATE_ALONGSIDE
    assert method_class("tap").requires is Requirement.SURROGATE
    assert method_class("sep").requires is Requirement.SURROGATE_CHECKPOINTS
    defaults = create_method("tap").hyperparameters_dict()
    assert defaults == {"steps": 20, "step_size": 0.8, "batch_size": 128, "augment": True, "binary_target": "untargeted"}
    assert create_method("sep").hyperparameters_dict() == {**defaults, "binary_target": "flip"}
    em = create_method("em").hyperparameters_dict()
    assert (em["model_steps"], em["stop_error"], em["backbone"]) == (10, 0.01, "resnet18")


def test_bad_hyperparameters_and_contexts_are_refused_with_the_fix(tiny_shapes, surrogate):
    with pytest.raises(MethodError, match="steps must be at least 1"):
        create_method("tap", steps=0)
    with pytest.raises(MethodError, match="unknown backbone 'resnet0'"):
        create_method("em", backbone="resnet0")
    with pytest.raises(MethodError, match="needs the checkpoints of a clean surrogate run.*--surrogate-checkpoint"):
        create_method("sep").generate(tiny_shapes, GenerationContext())
    final, _ = surrogate
    with pytest.raises(MethodError, match="'cuda' requested but CUDA is not available"):
        create_method("tap", **QUICK).generate(tiny_shapes, GenerationContext(surrogate=final, device="cuda"))


def test_tap_pushes_the_surrogate_toward_the_shifted_labels_within_budget(tiny_shapes, surrogate):
    final, _ = surrogate
    context = GenerationContext(seed=0, surrogate=final)
    deltas = create_method("tap", **QUICK).generate(tiny_shapes, context)
    assert_within_budget(tiny_shapes, deltas, 8)
    assert np.array_equal(deltas, create_method("tap", **QUICK).generate(tiny_shapes, context))  # byte-identical

    model = load_surrogate(final, tiny_shapes)
    images, targets = split_source(tiny_shapes, torch.device("cpu")).batch(torch.arange(len(deltas)))
    zero = torch.zeros(images.shape)
    poisoned = torch.from_numpy(deltas).float()
    clean_loss = objective_value([model], images, zero, targets, tiny_shapes.tasks, objective="tap", crop_size=tiny_shapes.crop_size)
    poisoned_loss = objective_value([model], images, poisoned, targets, tiny_shapes.tasks, objective="tap", crop_size=tiny_shapes.crop_size)
    assert poisoned_loss < clean_loss


def test_sep_with_one_checkpoint_is_tap_with_that_checkpoint(tiny_shapes, surrogate):
    final, (first, second) = surrogate
    # SEP attacks binary tasks with the flip (the release's SEP), so it equals TAP with the flip...
    tap = create_method("tap", **QUICK, binary_target="flip").generate(tiny_shapes, GenerationContext(seed=3, surrogate=second))
    sep = create_method("sep", **QUICK).generate(tiny_shapes, GenerationContext(seed=3, surrogate_checkpoints=(second,)))
    assert np.array_equal(tap, sep)
    # ... and TAP's default, untargeted on the 6 binary tasks, makes another perturbation.
    untargeted = create_method("tap", **QUICK).generate(tiny_shapes, GenerationContext(seed=3, surrogate=second))
    assert not np.array_equal(untargeted, sep)
    assert np.array_equal(untargeted, create_method("sep", **QUICK, binary_target="untargeted").generate(
        tiny_shapes, GenerationContext(seed=3, surrogate_checkpoints=(second,))))
    ensemble = create_method("sep", **QUICK).generate(tiny_shapes, GenerationContext(seed=3, surrogate_checkpoints=(first, second)))
    assert_within_budget(tiny_shapes, ensemble, 8)
    assert not np.array_equal(ensemble, sep)  # the other checkpoint's gradient counts


EM_QUICK = dict(backbone="test_resnet", steps=5, step_size=4.0, batch_size=16, model_steps=10)


def test_em_stops_once_the_surrogate_fits_the_noisy_data(tiny_shapes):
    """Large budget so the alternation gets there in a few rounds on 32 samples."""
    context = GenerationContext(seed=0, epsilon=32)
    run = error_minimizing_noise(tiny_shapes, context, EMHyperparameters(**EM_QUICK, stop_error=0.3, max_rounds=10))
    errors = [record["train_error"] for record in run.rounds]
    assert run.stopped_by == "stop_error" and len(errors) < 10
    assert errors[-1] <= 0.3 and all(error > 0.3 for error in errors[:-1])
    assert errors[-1] < errors[0]  # the min-min noise made the data easy
    assert_within_budget(tiny_shapes, run.deltas, 32)


def test_em_stops_at_the_round_cap_and_is_deterministic(tiny_shapes):
    context = GenerationContext(seed=1)
    settings = dict(EM_QUICK, steps=2, model_steps=2, stop_error=0.0, max_rounds=2)
    run = error_minimizing_noise(tiny_shapes, context, EMHyperparameters(**settings))
    assert run.stopped_by == "max_rounds" and [record["round"] for record in run.rounds] == [1, 2]
    assert_within_budget(tiny_shapes, run.deltas, 8)
    deltas = create_method("em", **settings).generate(tiny_shapes, context)
    assert np.array_equal(deltas, run.deltas)  # the method is this run, and byte-identical when repeated


def test_em_without_any_error_rate_runs_to_the_cap(tmp_path):
    root = tmp_path / "depth_only"
    rng = np.random.default_rng(0)
    with DatasetWriter(root, name="depth_only", tasks=(Task("depth", TaskKind.DEPTH, 1),), image_shape=(3, 16, 16), crop_size=12) as writer:
        for split in ("train", "test"):
            data = writer.split(split, 6)
            data.images[:] = rng.integers(0, 256, data.images.shape, dtype=np.uint8)
            data.targets["depth"][:] = rng.uniform(0.5, 5.0, data.targets["depth"].shape)
    dataset = PreparedDataset(root)
    settings = dict(EM_QUICK, steps=1, model_steps=1, max_rounds=2, decoder_width=0.125)
    run = error_minimizing_noise(dataset, GenerationContext(), EMHyperparameters(**settings))
    assert run.stopped_by == "max_rounds" and [record["train_error"] for record in run.rounds] == [None, None]
    assert_within_budget(dataset, run.deltas, 8)


def _batch_norm_buffers(model):
    return [module.running_mean.clone() for module in model.modules() if isinstance(module, torch.nn.BatchNorm2d)]


def test_em_stop_check_runs_the_surrogate_in_train_mode_by_default(tiny_shapes, monkeypatch):
    """The MTL-UE release's EM stop check leaves the surrogate in train mode
    (perturbation_MTL_binary_DAE.py:545, :551): batch statistics, running statistics refreshed."""
    assert EMHyperparameters().stop_check_mode == "train"
    tasks, crop = tiny_shapes.tasks, tiny_shapes.crop_size
    seed_everything(0)
    model = MultiTaskModel(tasks, "test_resnet", image_size=crop).eval()
    source = split_source(tiny_shapes, torch.device("cpu"))
    deltas = np.zeros((len(source), *tiny_shapes.image_shape), dtype=np.float16)
    check = dict(epsilon=8, crop_size=crop, batch_size=16, generator=None)

    before = _batch_norm_buffers(model)
    eval_error = training_error(model, source, deltas, tasks, train_mode=False, **check)
    assert all(torch.equal(a, b) for a, b in zip(before, _batch_norm_buffers(model), strict=True))
    train_error = training_error(model, source, deltas, tasks, **check)  # default: train mode
    after = _batch_norm_buffers(model)
    assert before and not any(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    assert not model.training, "the check restores the model's mode"
    assert train_error != eval_error  # batch statistics, not the untrained running ones

    # The method hands its hyperparameter to the check.
    from mtlue.methods import em as em_module

    seen = []
    real = em_module.training_error
    monkeypatch.setattr(em_module, "training_error", lambda *args, **kwargs: seen.append(kwargs["train_mode"]) or real(*args, **kwargs))
    quick = dict(backbone="test_resnet", steps=1, step_size=2.0, batch_size=16, model_steps=1, max_rounds=1)
    error_minimizing_noise(tiny_shapes, GenerationContext(seed=0), EMHyperparameters(**quick))
    error_minimizing_noise(tiny_shapes, GenerationContext(seed=0), EMHyperparameters(**quick, stop_check_mode="eval"))
    assert seen == [True, False]
    with pytest.raises(ValueError, match="stop_check_mode is train"):
        EMHyperparameters(stop_check_mode="inference")
