"""Defenses: registry and compositions, per-defense properties on classification and dense
batches, the training procedures (MixUp / CutMix loss mixing, UEraser's search, PGD), and
training with every defense, resumed and from the command line.

Batches are random; dense targets are a fixed function of the image's pixels (segmentation
label = red level, depth = green level + 1, normal = (blue + 1, red, 1)), so a defense that
moves pixels must move the targets the same way for the relation to survive.
"""

from __future__ import annotations

import argparse
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import Killed, kill_after
from mtlue.cli import CommandError, main
from mtlue.data import Task, TaskKind
from victims.commands import add_commands
from victims.config import TrainConfig, VictimConfig
from victims.defenses import (
    DefenseError,
    LossMix,
    StepContext,
    StepRandom,
    create_defense,
    defense_class,
    list_defenses,
)
from victims.defenses.ops import PHOTOMETRIC_OPS, equalize, trivial_augment
from victims.losses import per_sample_loss, task_loss
from victims.model import MultiTaskModel
from victims.run import run_victim
from victims.train import task_losses, train_step

REQUIRED = {"none", "cutout", "mixup", "cutmix", "gaussian", "jpeg", "bdr", "grayscale", "ueraser", "ueraser-lite", "ueraser-max", "at", "at-4", "at-2"}
#: Levels stay below 254 so that the red level is a valid label of a 254-class segmentation task.
LEVELS = 254

CLASSIFICATION_TASKS = (Task("label", TaskKind.MULTICLASS, 8), Task("flag", TaskKind.BINARY, 2))
DENSE_TASKS = CLASSIFICATION_TASKS + (
    Task("seg", TaskKind.SEGMENTATION, LEVELS),
    Task("depth", TaskKind.DEPTH, 1),
    Task("normal", TaskKind.NORMAL, 3),
)


def pixel_targets(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Dense targets that are a function of each pixel of uint8 ``images``."""
    red, green, blue = images.long().unbind(dim=1)
    return {
        "seg": red.to(torch.uint8),
        "depth": (green + 1).half(),
        "normal": torch.stack([blue + 1, red, torch.ones_like(red)], dim=1).half(),
    }


def assert_pixel_relation(images: torch.Tensor, targets: dict[str, torch.Tensor]) -> None:
    levels = (images * 255).round().long() if images.dtype != torch.uint8 else images.long()
    expected = pixel_targets(levels.to(torch.uint8))
    for name, target in expected.items():
        assert torch.equal(targets[name], target), f"{name} no longer matches its pixels"


def make_batch(tasks=DENSE_TASKS, batch: int = 8, size: int = 12, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, LEVELS, (batch, 3, size, size), generator=generator, dtype=torch.uint8)
    targets = {"label": torch.arange(batch, dtype=torch.uint8) % 8, "flag": torch.randint(0, 2, (batch,), generator=generator, dtype=torch.uint8)}
    if any(task.is_dense for task in tasks):
        targets.update(pixel_targets(images))
    return images, targets


def step_random(seed: int = 0) -> StepRandom:
    return StepRandom.derive(torch.Generator().manual_seed(seed), torch.device("cpu"))


def tiny_model(tasks, size: int = 12) -> MultiTaskModel:
    torch.manual_seed(0)
    return MultiTaskModel(tasks, "test_resnet", image_size=size, decoder_width=0.25)


# --------------------------------------------------------------------------------------------
# Registry and compositions


def test_registry_lists_the_reference_defenses_with_their_papers():
    assert REQUIRED <= set(list_defenses())
    assert list_defenses() == sorted(list_defenses())
    assert defense_class("at-4") is defense_class("at")
    at4 = create_defense("at-4").procedure
    assert (at4.epsilon, at4.step_size, at4.steps) == pytest.approx((4 / 255, 1 / 255, 10))
    assert create_defense("jpeg").split_transforms[0].quality == 10
    assert create_defense("bdr").split_transforms[0].bits == 2
    assert "quality=20" in repr(create_defense("jpeg", quality=20))


def test_mtlue_list_defenses(capsys):
    assert main(["list", "defenses"]) == 0
    names = capsys.readouterr().out.split()
    assert REQUIRED <= set(names) and names == sorted(names)
    assert main(["list", "defenses", "--json"]) == 0
    descriptions = {entry["name"]: entry["description"] for entry in json.loads(capsys.readouterr().out)}
    assert "Madry et al." in descriptions["at"] and "epsilon=0.0156" in descriptions["at-4"]
    assert "Image Shortcut Squeezing" in descriptions["jpeg"] and "[split; quality=10]" in descriptions["jpeg"]
    assert "Learning the Unlearnable" in descriptions["ueraser-max"]


def test_only_the_defenses_used_are_imported():
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    probe = (
        "import sys\nimport victims.defenses as d\nd.list_defenses()\nd.create_defense('jpeg+cutout')\n"
        "print(sorted(m.rpartition('.')[2] for m in sys.modules if m.startswith('victims.defenses.')))"
    )
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=environment, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[0] == str(["base", "cutout", "jpeg", "pipeline", "registry"])


def test_every_builtin_module_registers_exactly_its_listed_names():
    import importlib

    from victims.defenses.registry import BUILTIN, DEFENSES

    for module in set(BUILTIN.values()):
        importlib.import_module(module)
    assert {name: entry.cls.__module__ for name, entry in DEFENSES.entries.items() if entry.cls.__module__.startswith("victims.")} == BUILTIN


def test_names_are_safe_path_components():
    for name in list_defenses():
        assert name == name.lower() and "/" not in name and "+" not in name and " " not in name


@pytest.mark.parametrize(
    "spec, message",
    [
        ("nonsense", "unknown defense 'nonsense'; available: .*jpeg"),
        ("none+cutout", "'none' .* cannot be composed; drop it: 'cutout'"),
        ("cutout+jpeg", "not in stage order .* write 'jpeg\\+cutout'"),
        ("mixup+at", "combines the training procedures mixup, at"),
        ("jpeg+jpeg", "lists jpeg more than once"),
        ("", "a defense spec is a name"),
    ],
)
def test_illegal_specs_are_refused_with_the_fix(spec, message):
    with pytest.raises(DefenseError, match=message):
        create_defense(spec)


def test_options_are_routed_to_the_component_that_has_them():
    defense = create_defense("jpeg+cutout+at", quality=30, size=0.25, **{"at.steps": 3})
    assert defense.split_transforms[0].quality == 30 and defense.augmentations[0].size == 0.25 and defense.procedure.steps == 3
    with pytest.raises(DefenseError, match="no component of defense 'jpeg' has an option 'bits'"):
        create_defense("jpeg", bits=3)
    with pytest.raises(DefenseError, match="names component 'bogus', which is not in 'jpeg\\+cutout'"):
        create_defense("jpeg+cutout", **{"bogus.quality": 1})
    with pytest.raises(DefenseError, match="jpeg quality is an integer in 1..100"):
        create_defense("jpeg", quality=0)


def test_ambiguous_option_asks_for_the_component():
    from victims.defenses.registry import _route

    # Two components sharing an option name: cutmix and mixup cannot be composed, so check the router itself.
    with pytest.raises(DefenseError, match="several components .* e.g. mixup.alpha"):
        _route(["mixup", "cutmix"], {"alpha": 0.5})
    assert _route(["mixup", "cutmix"], {"cutmix.alpha": 0.5}) == {"mixup": {}, "cutmix": {"alpha": 0.5}}


def test_compositions_apply_in_the_written_order():
    images, _ = make_batch(CLASSIFICATION_TASKS)
    bdr, grayscale = create_defense("bdr").split_transforms[0], create_defense("grayscale").split_transforms[0]
    assert torch.equal(create_defense("bdr+grayscale").transform_images(images), grayscale.transform(bdr.transform(images)))
    assert torch.equal(create_defense("grayscale+bdr").transform_images(images), bdr.transform(grayscale.transform(images)))
    assert not torch.equal(grayscale.transform(bdr.transform(images)), bdr.transform(grayscale.transform(images)))


def test_a_batch_augmentation_runs_before_the_procedure():
    images, targets = make_batch(CLASSIFICATION_TASKS)
    context = StepContext(CLASSIFICATION_TASKS, 1, 1)
    composed = create_defense("cutout+mixup").step(images, targets, torch.Generator().manual_seed(4), context)
    # Replay the same stream by hand: cutout, then mixup on the cut images.
    random = StepRandom.derive(torch.Generator().manual_seed(4), images.device)
    cut, _ = create_defense("cutout").augmentations[0].augment(images.float() / 255, targets, random, context)
    manual = create_defense("mixup").procedure.prepare(cut, targets, random, context)
    assert torch.equal(composed.images, manual.images)


# --------------------------------------------------------------------------------------------
# Properties of every defense on classification and dense batches

STEP_DEFENSES = ["none", "cutout", "mixup", "cutmix", "ueraser-lite", "ueraser", "at"]


@pytest.mark.parametrize("tasks", [CLASSIFICATION_TASKS, DENSE_TASKS], ids=["classification", "dense"])
@pytest.mark.parametrize("spec", STEP_DEFENSES)
def test_step_keeps_shapes_range_and_target_alignment(spec, tasks):
    images, targets = make_batch(tasks)
    model = tiny_model(tasks) if spec in ("ueraser", "at") else None
    options = {"steps": 2} if spec == "at" else {}
    context = StepContext(tasks, epoch=1, epochs=4, model=model)
    out = create_defense(spec, **options).step(images, targets, torch.Generator().manual_seed(1), context)
    assert out.images.shape == images.shape
    if spec == "none":
        assert out.images is images and out.targets is targets and out.mix is None
        return
    assert out.images.dtype == torch.float32
    assert float(out.images.min()) >= 0.0 and float(out.images.max()) <= 1.0
    assert set(out.targets) == set(targets)
    assert all(out.targets[name].shape == targets[name].shape and out.targets[name].dtype == targets[name].dtype for name in targets)
    if spec == "cutmix" and any(task.is_dense for task in tasks):
        # Pixels moved: the dense maps moved with them.
        assert_pixel_relation(out.images, out.targets)
        assert not torch.equal(out.targets["seg"], targets["seg"])
    else:
        # No pixel moved: every target is the sample's own.
        assert all(torch.equal(out.targets[name], targets[name]) for name in targets)
    if out.mix is not None:
        assert set(out.mix.other) == set(out.mix.weights)


def test_cutout_zeroes_one_square_per_sample_and_keeps_the_rest():
    images, targets = make_batch(DENSE_TASKS, batch=16)
    images = images.clamp(min=1)  # no zero pixel before the cut
    out = create_defense("cutout", size=0.5).step(images, targets, torch.Generator().manual_seed(0), StepContext(DENSE_TASKS, 1, 1))
    zeroed = (out.images == 0).all(dim=1)
    kept = ~zeroed
    assert torch.equal(out.images.permute(1, 0, 2, 3)[:, kept], (images.float() / 255).permute(1, 0, 2, 3)[:, kept])
    for mask in zeroed:
        rows, columns = mask.any(dim=1).nonzero()[:, 0], mask.any(dim=0).nonzero()[:, 0]
        assert 1 <= len(rows) <= 6 and 1 <= len(columns) <= 6
        assert mask[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1].all(), "the cut is one square"
    assert len({tuple(mask.nonzero()[0].tolist()) for mask in zeroed}) > 1, "each sample draws its own square"


def test_mixup_mixes_the_pairs_and_their_losses():
    tasks = DENSE_TASKS
    images, targets = make_batch(tasks)
    targets["label"] = torch.arange(8, dtype=torch.uint8)  # identifies every sample
    out = create_defense("mixup").step(images, targets, torch.Generator().manual_seed(2), StepContext(tasks, 1, 1))
    lam = out.mix.weights["label"]
    assert set(out.mix.weights) == {task.name for task in tasks} and 0 < lam < 1
    pairs = out.mix.other["label"].long()
    assert sorted(pairs.tolist()) == list(range(8))
    unit = images.float() / 255
    torch.testing.assert_close(out.images, lam * unit + (1 - lam) * unit[pairs])
    assert all(torch.equal(out.mix.other[name], targets[name][pairs]) for name in targets)
    outputs = tiny_model(tasks)(out.images)
    mixed = task_losses(tasks, outputs, out.targets, out.mix)
    plain, paired = task_losses(tasks, outputs, out.targets), task_losses(tasks, outputs, out.mix.other)
    torch.testing.assert_close(mixed, lam * plain + (1 - lam) * paired)


def test_cutmix_pastes_one_box_into_images_and_dense_maps_and_mixes_labels_by_area():
    tasks = DENSE_TASKS
    images, targets = make_batch(tasks)
    targets["label"] = torch.arange(8, dtype=torch.uint8)
    out = create_defense("cutmix").step(images, targets, torch.Generator().manual_seed(5), StepContext(tasks, 1, 1))
    assert set(out.mix.weights) == {"label", "flag"}, "dense tasks learn from the pasted maps, unmixed"
    pairs = out.mix.other["label"].long()
    unit = images.float() / 255
    changed = (out.images != unit).any(dim=1)
    moved = pairs != torch.arange(8)
    box = changed[moved].any(dim=0)
    pasted = box.float().mean()
    assert 0 < pasted < 1
    # One box for the whole batch: every mixed sample shows its partner inside it and itself outside.
    torch.testing.assert_close(out.images[:, :, box], unit[pairs][:, :, box])
    torch.testing.assert_close(out.images[:, :, ~box], unit[:, :, ~box])
    assert out.mix.weights["label"] == pytest.approx(1 - float(pasted))
    assert_pixel_relation(out.images, out.targets)
    outputs = tiny_model(tasks)(out.images)
    lam = out.mix.weights["label"]
    mixed = task_losses(tasks, outputs, out.targets, out.mix)
    plain, paired = task_losses(tasks, outputs, out.targets), task_losses(tasks, outputs, {**out.targets, **out.mix.other})
    torch.testing.assert_close(mixed[:2], lam * plain[:2] + (1 - lam) * paired[:2])
    torch.testing.assert_close(mixed[2:], plain[2:])


# --------------------------------------------------------------------------------------------
# Split transforms: deterministic, per image, uint8


@pytest.mark.parametrize("spec", ["jpeg", "bdr", "grayscale", "gaussian"])
def test_split_transforms_are_deterministic_per_image_maps(spec):
    images, _ = make_batch(CLASSIFICATION_TASKS, batch=6, size=16)
    transform = create_defense(spec).transform_images
    first = transform(images)
    assert first.dtype == torch.uint8 and first.shape == images.shape
    assert torch.equal(first, transform(images.clone()))
    per_image = torch.cat([transform(images[i : i + 1]) for i in range(len(images))])
    assert torch.equal(first, per_image)
    assert not torch.equal(first, images)


def test_jpeg_matches_pil_at_quality_10():
    images, _ = make_batch(CLASSIFICATION_TASKS, batch=3, size=16)
    out = create_defense("jpeg").transform_images(images)
    for image, compressed in zip(images, out, strict=True):
        buffer = io.BytesIO()
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(buffer, "JPEG", quality=10)
        buffer.seek(0)
        reference = torch.from_numpy(np.array(Image.open(buffer).convert("RGB"))).permute(2, 0, 1)
        assert torch.equal(compressed, reference)


def test_bdr_keeps_two_bits_and_grayscale_matches_pil():
    images, _ = make_batch(CLASSIFICATION_TASKS, batch=3, size=16)
    assert set(create_defense("bdr").transform_images(images).unique().tolist()) <= {0, 64, 128, 192}
    gray = create_defense("grayscale").transform_images(images)
    assert torch.equal(gray[:, 0], gray[:, 1]) and torch.equal(gray[:, 0], gray[:, 2])
    for image, converted in zip(images, gray, strict=True):
        reference = np.array(Image.fromarray(image.permute(1, 2, 0).numpy()).convert("L"))
        assert torch.equal(converted[0], torch.from_numpy(reference))


def test_gaussian_blurs_by_default_and_apbench_sigma_is_the_identity():
    images, _ = make_batch(CLASSIFICATION_TASKS, batch=3, size=16)
    assert torch.equal(create_defense("gaussian", sigma=0.1).transform_images(images), images)
    blurred = create_defense("gaussian").transform_images(images).float()
    # Blurring lowers the pixel-to-pixel variation of noise.
    assert blurred.diff(dim=-1).abs().mean() < 0.7 * images.float().diff(dim=-1).abs().mean()


def test_grayscale_is_refused_on_one_channel_data():
    with pytest.raises(DefenseError, match="1 channel"):
        create_defense("grayscale").check(CLASSIFICATION_TASKS, 1)


# --------------------------------------------------------------------------------------------
# UEraser


def test_ueraser_search_trains_on_the_highest_loss_draw():
    tasks = DENSE_TASKS
    images, targets = make_batch(tasks)
    model = tiny_model(tasks).eval()  # batch-independent per-sample losses
    ueraser = create_defense("ueraser-max").procedure
    before = {name: buffer.clone() for name, buffer in model.named_buffers()}
    chosen, scored = ueraser.search(images.float() / 255, targets, step_random(3), StepContext(tasks, 1, 1, model), draws=5)
    assert scored.shape == (5, 8)
    with torch.no_grad():
        outputs = model(chosen)
        losses = sum(per_sample_loss(task)(outputs[task.name], targets[task.name]) for task in tasks)
    torch.testing.assert_close(losses, scored.max(dim=0).values)
    assert len(set(scored.argmax(dim=0).tolist())) > 1, "different samples pick different draws"
    assert all(torch.equal(before[name], buffer) for name, buffer in model.named_buffers())


def test_ueraser_variants_follow_the_release_schedule():
    lite, standard, maximal = (create_defense(name).procedure for name in ("ueraser-lite", "ueraser", "ueraser-max"))
    assert [lite.draws_at(epoch, 200) for epoch in (1, 200)] == [1, 1]
    assert [standard.draws_at(epoch, 200) for epoch in (1, 50, 51, 200)] == [5, 5, 1, 1]
    assert [maximal.draws_at(epoch, 200) for epoch in (1, 200)] == [5, 5]


def test_trivial_augment_is_photometric_only_when_asked():
    images = torch.rand(64, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    images[:, :, :, :6] = 0.0  # a dark left half: any geometric op would move its edge
    out = trivial_augment(images, torch.Generator().manual_seed(1), geometric=False)
    assert out.shape == images.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    # Photometric ops map equal pixels of a sample to equal pixels (sharpness aside): the dark half stays uniform.
    dark = out[:, :, 1:-1, 1:5].flatten(2)
    uniform = (dark.amax(dim=2) - dark.amin(dim=2)).amax(dim=1) < 1e-6
    assert uniform.float().mean() >= 0.8
    geometric = trivial_augment(images, torch.Generator().manual_seed(1), geometric=True)
    assert not torch.equal(geometric, out)
    assert len(PHOTOMETRIC_OPS) == 9


def test_equalize_flattens_the_histogram_like_pil():
    image = (torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.3 * 255).round() / 255
    ours = (equalize(image) * 255).round().to(torch.uint8)[0]
    pil = Image.fromarray((image[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())
    from PIL import ImageOps

    reference = torch.from_numpy(np.array(ImageOps.equalize(pil))).permute(2, 0, 1)
    assert torch.equal(ours, reference)


# --------------------------------------------------------------------------------------------
# Adversarial training


def test_pgd_stays_in_budget_and_raises_the_loss():
    tasks = DENSE_TASKS
    images, targets = make_batch(tasks)
    model = tiny_model(tasks)
    at = create_defense("at").procedure
    unit = images.float() / 255
    out = at.prepare(unit, targets, step_random(0), StepContext(tasks, 1, 1, model))
    assert model.training, "the attack restores training mode"
    assert float((out.images - unit).abs().max()) <= 8 / 255 + 1e-6
    assert float(out.images.min()) >= 0 and float(out.images.max()) <= 1
    assert all(parameter.grad is None for parameter in model.parameters()), "the attack leaves parameter gradients alone"
    model.eval()
    with torch.no_grad():
        clean = task_losses(tasks, model(unit), targets).sum()
        adversarial = task_losses(tasks, model(out.images), targets).sum()
    assert adversarial > clean


def test_pgd_starts_from_gaussian_noise_times_the_step_size_as_the_release():
    """Release madrys.py:121 (BCEMadrysLoss) and APBench mardrys.py:35-37: x + step_size * N(0, I),
    not a uniform draw in the epsilon ball, and not clamped before the first gradient."""
    tasks = CLASSIFICATION_TASKS
    images, targets = make_batch(tasks)
    model = tiny_model(tasks)
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    unit = images.float() / 255
    procedure = create_defense("at", steps=1).procedure
    procedure.prepare(unit, targets, step_random(5), StepContext(tasks, 1, 1, model))
    start = seen[0]
    expected_noise = torch.randn(unit.shape, generator=step_random(5).device, dtype=unit.dtype)
    assert torch.allclose(start, unit + (2 / 255) * expected_noise, atol=1e-7)
    noise = (start - unit) / (2 / 255)
    assert abs(float(noise.mean())) < 0.1 and abs(float(noise.std()) - 1) < 0.1
    # Gaussian tails leave the epsilon ball sometimes: |N| > 4 has probability 6e-5 per pixel,
    # so over the batch the start is not confined to [-eps, eps] the way a uniform draw is, and
    # it is not clamped to [0, 1] either (the batch has pixels at 0 and 255 levels).
    assert float(noise.abs().max()) > 3
    assert float(start.min()) < 0 or float(start.max()) > 1
    # Without the random start the attack begins at the clean images.
    seen.clear()
    create_defense("at", steps=1, random_start=False).procedure.prepare(unit, targets, step_random(5), StepContext(tasks, 1, 1, model))
    assert torch.equal(seen[0], unit)


def test_train_step_on_floats_equals_the_uint8_step():
    tasks = CLASSIFICATION_TASKS
    images, targets = make_batch(tasks)
    results = []
    for inputs in (images, images.float() / 255):
        model = tiny_model(tasks)
        from victims.weighting import create_weighting

        weighting = create_weighting("ew", len(tasks))
        optimizer = torch.optim.Adam(model.parameters())
        values, _, _ = train_step(model, weighting, optimizer, inputs, targets, clip_norm=5.0)
        results.append((values, [p.detach().clone() for p in model.parameters()]))
    assert torch.equal(results[0][0], results[1][0])
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1], strict=True))


def test_loss_mix_of_identical_targets_is_the_plain_loss():
    tasks = DENSE_TASKS
    images, targets = make_batch(tasks)
    outputs = tiny_model(tasks)(images.float() / 255)
    mix = LossMix(dict(targets), {task.name: 0.3 for task in tasks})
    torch.testing.assert_close(task_losses(tasks, outputs, targets, mix), task_losses(tasks, outputs, targets))
    assert task_loss(tasks[0])(outputs["label"], targets["label"]).ndim == 0


# --------------------------------------------------------------------------------------------
# Training with a defense


def quick(**overrides) -> TrainConfig:
    return TrainConfig(**{"epochs": 1, "batch_size": 16, "device": "cpu", "num_threads": 1, "eval_every": 0, **overrides})


#: Fewer PGD steps keep the CPU test short; the full 10-step attack is tested above.
FAST = {"at": {"steps": 2}, "at-4": {"steps": 2}, "at-2": {"steps": 2}}


def victim(spec: str, weighting: str = "ew") -> VictimConfig:
    return VictimConfig(backbone="test_resnet", weighting=weighting, decoder_width=0.25, defense=spec, defense_options=FAST.get(spec, {}))


@pytest.fixture(scope="module")
def undefended(tiny_dense_shapes):
    return run_victim(tiny_dense_shapes, victim("none"), quick(), progress=False)


@pytest.mark.parametrize("spec", sorted(REQUIRED - {"none"}) + ["jpeg+cutout+ueraser-lite"])
def test_every_defense_trains_a_dense_victim(tiny_dense_shapes, undefended, spec):
    result = run_victim(tiny_dense_shapes, victim(spec), quick(), progress=False)
    record = result.runs[0].fit.history[0]
    assert all(np.isfinite(value) for value in record["train_loss"].values())
    assert set(result.metrics) == {task.name for task in tiny_dense_shapes.tasks}
    data = result.to_json()
    assert data["defense"]["name"] == spec and data["defense"]["options"] == FAST.get(spec, {})
    assert [c["name"] for c in data["defense"]["components"]] == spec.split("+")
    json.dumps(data)
    # Every defense changes what the victim trains on.
    assert record["train_loss"] != undefended.runs[0].fit.history[0]["train_loss"]


@pytest.mark.parametrize("spec", ["jpeg", "cutout", "mixup", "cutmix", "ueraser-max", "at-2"])
def test_defenses_work_with_gradient_aggregation(tiny_dense_shapes, spec):
    result = run_victim(tiny_dense_shapes, victim(spec, "pcgrad"), quick(), progress=False)
    record = result.runs[0].fit.history[0]
    assert all(np.isfinite(value) for value in record["train_loss"].values())
    assert all(np.isfinite(value) for value in record["task_weights"].values())


def test_killed_and_resumed_defended_run_ends_identical(tiny_dense_shapes, tmp_path):
    config = quick(epochs=2)
    spec = victim("cutout+ueraser-max")
    reference = run_victim(tiny_dense_shapes, spec, config, progress=False)
    with pytest.raises(Killed):
        run_victim(tiny_dense_shapes, spec, config, checkpoint_dir=tmp_path, progress=False, callbacks=[kill_after(1)])
    resumed = run_victim(tiny_dense_shapes, spec, config, checkpoint_dir=tmp_path, progress=False)
    assert resumed.runs[0].fit.resumed_from_epoch == 1
    assert resumed.metrics == reference.metrics
    expected, actual = reference.runs[0].model.state_dict(), resumed.runs[0].model.state_dict()
    assert all(torch.equal(expected[key], actual[key]) for key in expected)

    from victims.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="victim differ"):
        run_victim(tiny_dense_shapes, victim("cutout"), config, checkpoint_dir=tmp_path, progress=False)


def victim_command(args: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="mtlue")
    add_commands(parser.add_subparsers(dest="command", required=True))
    parsed = parser.parse_args(["victim", *args])
    parsed.handler(parsed)


def test_victim_command_takes_a_defense_and_records_it(tiny_shapes, tmp_path):
    out = tmp_path / "metrics.json"
    common = ["--data", str(tiny_shapes.root), "--backbone", "test_resnet", "--epochs", "1", "--batch-size", "16",
              "--device", "cpu", "--num-threads", "1", "--no-progress"]
    victim_command([*common, "--defense", "jpeg+cutout", "--defense-set", "quality=20", "--defense-set", "cutout.size=0.25", "--out", str(out)])
    data = json.loads(out.read_text())
    assert data["defense"]["name"] == "jpeg+cutout"
    assert data["defense"]["options"] == {"quality": 20, "cutout.size": 0.25}
    assert [c["hyperparameters"] for c in data["defense"]["components"]] == [{"quality": 20}, {"size": 0.25}]
    with pytest.raises(CommandError, match="not in stage order"):
        victim_command([*common, "--defense", "cutout+jpeg", "--out", str(tmp_path / "x.json")])
    with pytest.raises(CommandError, match="no component of defense 'cutout' has an option 'quality'"):
        victim_command([*common, "--defense", "cutout", "--defense-set", "quality=3", "--out", str(tmp_path / "x.json")])
    assert not (tmp_path / "x.json").exists()
