"""MTL-UE: the generator, its regularisers, its training, and the mtlue-em/-tap/-sep methods.

Tiny data (16 px shapes scenes, 12 px crops) and one or two generator epochs keep the whole file
to well under a minute on a 2-core CPU; the numbers that matter (parameter counts, regulariser
values, budget arithmetic) are checked exactly.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mtlue.cli import main as mtlue_main
from mtlue.data import Task, TaskKind
from mtlue.data.tasks import IGNORE_INDEX
from mtlue.methods import GenerationContext, MethodError, create_method, make_poison
from mtlue.methods.mtl_ue_generator import (
    DenseLabelEmbedding,
    MTLUEGenerator,
    inter_task_similarity,
    intra_task_similarity,
    latent_size,
    resolve_stem,
)
from mtlue.methods.mtl_ue_training import GeneratorTrainer, StopRule, quantized_deltas
from mtlue.methods.pgd import split_source
from mtlue.poisons import load_store, publish
from victims.augment import to_unit_range
from victims.model import MultiTaskModel

EPSILON = 8
#: One or two generator epochs of 16-sample batches: what every training test can afford.
TINY = {"max_epochs": 1, "batch_size": 16, "lr_milestones": [1]}


@pytest.fixture(scope="module")
def surrogate_folder(tiny_shapes, tmp_path_factory):
    """A clean surrogate trained by the surrogate stage: final model + snapshots after epochs 1, 2."""
    from mtlue.methods.surrogate import train_surrogate
    from victims.config import TrainConfig, VictimConfig

    out = tmp_path_factory.mktemp("surrogate") / "surrogate"
    config = TrainConfig(epochs=2, batch_size=16, device="cpu", eval_every=0)
    train_surrogate(tiny_shapes, out, victim=VictimConfig(backbone="test_resnet"), config=config, every=1, progress=False)
    return out


def batch_of(dataset, count=8):
    source = split_source(dataset, torch.device("cpu"))
    return source.batch(torch.arange(count))


def generator_for(dataset, **options):
    torch.manual_seed(0)
    return MTLUEGenerator(dataset.tasks, dataset.image_shape, EPSILON / 255, **options)


# --------------------------------------------------------------------------------------------
# the generator


def test_one_embedding_per_class_and_the_release_parameter_counts():
    # CelebA as the reference counts it (section 2.2): 40 binary tasks, 70 px, small stem, S = 35.
    tasks = [Task(f"attribute_{k}", TaskKind.BINARY, 2) for k in range(40)]
    generator = MTLUEGenerator(tasks, (3, 70, 70), EPSILON / 255)
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert generator.stem == "small" and generator.latent == (35, 35)
    assert sum(table.num_embeddings for table in generator.class_embeddings.values()) == 80  # sum_k C_k, not 2^40
    assert count(generator.class_embeddings) == 1_568_000  # 80 rows of 16 * 35 * 35
    assert count(generator.encoder) == 675_392  # "about 0.67 M": stem, layer1, layer2 and nothing deeper
    assert count(generator.decoder) == 842_755  # "about 0.84 M", dominated by the 768 -> 64 ConvT
    assert generator.decoder[0].in_channels == 128 + 16 * 40


def test_width_multiplier_scales_the_encoder_and_decoder_but_not_the_embeddings(tiny_shapes):
    tasks = tiny_shapes.tasks
    full = MTLUEGenerator(tasks, tiny_shapes.image_shape, EPSILON / 255)
    quarter = MTLUEGenerator(tasks, tiny_shapes.image_shape, EPSILON / 255, width_multiplier=0.25)
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(quarter.class_embeddings) == count(full.class_embeddings)
    assert count(quarter.encoder) < count(full.encoder) / 8 and count(quarter.decoder) < count(full.decoder) / 2
    split = tiny_shapes.split("train")
    images = torch.from_numpy(split.images[:4]).float() / 255
    targets = {task.name: torch.from_numpy(split.targets[task.name][:4]) for task in tasks}
    deltas = quarter(images, targets)
    assert deltas.shape == images.shape and float(deltas.abs().max()) <= EPSILON / 255 + 1e-7
    with pytest.raises(ValueError, match="width_multiplier"):
        MTLUEGenerator(tasks, tiny_shapes.image_shape, EPSILON / 255, width_multiplier=0)


def test_mixed_tasks_embed_every_class_and_every_dense_map(tiny_dense_shapes):
    generator = generator_for(tiny_dense_shapes)
    tiny_shapes = [t for t in tiny_dense_shapes.tasks if t.kind.is_classification]
    assert sum(table.num_embeddings for table in generator.class_embeddings.values()) == sum(t.num_classes for t in tiny_shapes)
    assert set(generator.dense_embeddings) == {"segmentation", "depth", "normal"}
    images, targets = batch_of(tiny_dense_shapes, 4)
    delta = generator(images.float() / 255, targets)
    assert delta.shape == (4, *tiny_dense_shapes.image_shape)
    assert generator.decoder_input(images.float() / 255, targets).shape == (4, 128 + 16 * len(tiny_dense_shapes.tasks), 8, 8)


@pytest.mark.parametrize(
    "dataset_name, options",
    [
        ("tiny_shapes", {}),
        ("tiny_shapes", {"unprotected": ["has_circle", "count"]}),
        ("tiny_shapes", {"image_encoder": False}),
        ("tiny_dense_shapes", {}),
        ("tiny_dense_shapes", {"unprotected": ["segmentation", "depth"], "width_multiplier": 0.5}),
    ],
)
def test_factored_first_layer_equals_the_decoder_on_the_concatenated_input(request, dataset_name, options):
    """The class embeddings factored out of the decoder's first layer change nothing but float rounding,
    in the output and in every gradient (the release concatenates, then convolves)."""
    dataset = request.getfixturevalue(dataset_name)
    generator = generator_for(dataset, **options)
    images, targets = batch_of(dataset, 6)
    x = images.float() / 255
    _, height, width = generator.image_shape

    def gradients(output):
        generator.zero_grad(set_to_none=True)
        output.square().mul(torch.linspace(0.5, 1.5, output.numel()).view_as(output)).sum().backward()
        return {name: p.grad.clone() for name, p in generator.named_parameters() if p.grad is not None}

    # Gradients are compared before the clamp, where a rounding difference could move an
    # output across the bound and switch its gradient off.
    concatenated = generator.decoder(generator.decoder_input(x, targets))
    expected = gradients(concatenated)
    factored = generator.decoder[1:](generator.first_layer(x, targets))
    got = gradients(factored)
    assert got.keys() == expected.keys()
    # Rounding only: under 1/200 of the 1/255 step the deltas are quantised to.
    assert float((generator(x, targets) - concatenated[..., :height, :width].clamp(-generator.epsilon, generator.epsilon)).abs().max()) < 2e-5
    # Biases before an instance norm have a zero gradient in exact arithmetic, hence an
    # absolute tolerance on the scale of the largest gradient.
    largest = max(float(gradient.abs().max()) for gradient in expected.values())
    for name in expected:
        assert torch.allclose(got[name], expected[name], rtol=1e-3, atol=1e-4 * largest), name


def test_stems_and_latent_grids():
    assert resolve_stem("auto", 70, 70) == "small" and resolve_stem("auto", 140, 140) == "small"  # CelebA, UTKFace
    assert resolve_stem("auto", 256, 256) == "imagenet" and resolve_stem("auto", 288, 384) == "imagenet"  # ChestX, NYUv2
    assert latent_size(256, 256, "imagenet") == (32, 32)  # ChestX-ray14's S = 32
    assert latent_size(17, 15, "small") == (9, 8)
    with pytest.raises(ValueError, match="choose auto, small"):
        resolve_stem("large", 64, 64)
    # The x8 decoder restores the stored size, odd sides included (the extra row is cut off).
    tasks = [Task("finding", TaskKind.BINARY, 2)]
    generator = MTLUEGenerator(tasks, (1, 41, 64), EPSILON / 255, stem="imagenet").eval()
    assert generator.latent == (6, 8)
    delta = generator(torch.rand(2, 1, 41, 64), {"finding": torch.tensor([0, 1])})
    assert delta.shape == (2, 1, 41, 64)


def test_output_is_hard_clamped_to_epsilon(tiny_shapes):
    generator = generator_for(tiny_shapes).eval()
    with torch.no_grad():
        generator.decoder[-1].weight.mul_(1000.0)  # drive the raw output far past the budget
    images, targets = batch_of(tiny_shapes)
    with torch.no_grad():
        delta = generator(images.float() / 255, targets)
    assert float(delta.abs().max()) == pytest.approx(EPSILON / 255, abs=1e-7)
    assert (delta.abs() == delta.abs().max()).float().mean() > 0.5  # a clamp, not a rescaling


def test_partial_protection_gives_an_unprotected_task_one_input_for_all_classes(tiny_shapes):
    generator = generator_for(tiny_shapes, unprotected=["has_circle", "count"])
    batch = 4
    targets = {t.name: torch.zeros(batch, dtype=torch.long) for t in tiny_shapes.tasks}
    targets["has_circle"] = torch.tensor([0, 1, 0, 1])
    targets["count"] = torch.tensor([0, 1, 2, 3])
    targets["has_square"] = torch.tensor([0, 1, 0, 1])
    maps = dict(zip([t.name for t in tiny_shapes.tasks], generator.label_maps(targets, batch)))
    for name in ("has_circle", "count"):
        assert torch.equal(maps[name][0], maps[name][1]) and torch.equal(maps[name][0], maps[name][3])
        mean = generator.class_embeddings[name].weight.mean(dim=0)
        assert torch.allclose(maps[name][2].flatten(), mean)
        assert not maps[name].requires_grad  # detached: the loss cannot reshape that table
    assert not torch.equal(maps["has_square"][0], maps["has_square"][1])  # protected: its label's row
    assert [t.name for t in generator.protected_classification_tasks].count("count") == 0
    assert len(generator.protected_class_embeddings()) == 7


def test_label_free_generator_ignores_labels_and_image_free_generator_ignores_the_image(tiny_shapes):
    images, targets = batch_of(tiny_shapes, 4)
    x = images.float() / 255
    other_targets = {name: (value.long() + 1) % 2 for name, value in targets.items()}
    other_images = torch.rand_like(x)

    z_only = generator_for(tiny_shapes, label_priors=False).eval()
    assert z_only.decoder[0].in_channels == 128 and not z_only.class_embeddings
    assert torch.equal(z_only(x, targets), z_only(x, other_targets))
    assert torch.equal(z_only(x, targets), z_only(x))
    assert not torch.equal(z_only(x, targets), z_only(other_images, targets))

    embeddings_only = generator_for(tiny_shapes, image_encoder=False).eval()
    assert embeddings_only.encoder is None and embeddings_only.decoder[0].in_channels == 16 * 9
    assert torch.equal(embeddings_only(x, targets), embeddings_only(other_images, targets))
    assert not torch.equal(embeddings_only(x, targets), embeddings_only(x, other_targets))

    full = generator_for(tiny_shapes).eval()
    assert not torch.equal(full(x, targets), full(other_images, targets))
    assert not torch.equal(full(x, targets), full(x, other_targets))
    with pytest.raises(ValueError, match="leave the decoder no input"):
        generator_for(tiny_shapes, label_priors=False, image_encoder=False)
    with pytest.raises(ValueError, match="needs the targets"):
        full(x)


def test_dense_label_embedding_encodes_the_label_map():
    segmentation = DenseLabelEmbedding(Task("segmentation", TaskKind.SEGMENTATION, 4), (2, 2))
    labels = torch.tensor([[[0, 1], [3, IGNORE_INDEX]]], dtype=torch.uint8)
    encoded = segmentation.encode_label(labels)
    assert encoded.shape == (1, 4, 2, 2)
    assert encoded[0, :, 1, 1].sum() == 0  # ignored pixel: no class
    assert encoded[0, 3, 1, 0] == 1 and encoded[0, 1, 0, 1] == 1
    depth = DenseLabelEmbedding(Task("depth", TaskKind.DEPTH, 1), (1, 1))
    encoded = depth.encode_label(torch.tensor([[[2.0, 0.0]]]))
    assert encoded[0, :, 0].tolist() == [[2.0, 0.0], [1.0, 0.0]]  # metres and the valid mask
    normal = DenseLabelEmbedding(Task("normal", TaskKind.NORMAL, 3), (4, 4))
    out = normal(torch.nn.functional.normalize(torch.randn(2, 3, 16, 16), dim=1))
    assert out.shape == (2, 16, 4, 4)
    with pytest.raises(ValueError, match="for dense tasks"):
        DenseLabelEmbedding(Task("smiling", TaskKind.BINARY, 2), (2, 2))


# --------------------------------------------------------------------------------------------
# the embedding regularisers


def test_regularisers_on_constructed_embeddings():
    basis = torch.eye(6)
    orthogonal = [basis[0:2], basis[2:4], basis[4:6]]
    assert float(inter_task_similarity(orthogonal)) == 0.0
    assert float(intra_task_similarity(orthogonal)) == 0.0
    identical = [torch.ones(3, 5) * torch.tensor([[1.0], [2.0], [0.5]])]  # same direction, other lengths
    assert float(intra_task_similarity(identical)) == pytest.approx(1.0)
    assert float(inter_task_similarity(identical)) == 0.0  # one task: no cross-task pair
    row = torch.randn(1, 7)
    opposite = [torch.cat([row, -row]), torch.cat([-row, row])]
    assert float(intra_task_similarity(opposite)) == pytest.approx(-1.0)
    assert float(inter_task_similarity(opposite)) == pytest.approx(1.0)  # |cos| counts -1 too


def test_intra_task_term_pools_pairs_over_tasks_as_the_paper_does():
    # A 3-class task whose rows coincide (3 pairs at cos 1) and a binary task with opposite rows
    # (1 pair at cos -1): pooled over the 4 pairs = 0.5; the release's per-task mean would give 0.
    row = torch.randn(1, 4)
    embeddings = [row.repeat(3, 1), torch.cat([row, -row])]
    assert float(intra_task_similarity(embeddings)) == pytest.approx(0.5)
    assert float(inter_task_similarity(embeddings)) == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------
# training


def frozen_surrogate(dataset):
    torch.manual_seed(1)
    model = MultiTaskModel(dataset.tasks, "test_resnet", image_size=dataset.crop_size)
    return model.eval().requires_grad_(False)


def trainer_for(dataset, generator, surrogate, *, intra=10.0, inter=200.0, augment=False, lr=1e-3):
    return GeneratorTrainer(
        generator, [surrogate], dataset.tasks, "em", crop_size=dataset.crop_size, augment=augment,
        intra_task_weight=intra, inter_task_weight=inter, lr=lr, weight_decay=1e-4, lr_milestones=[60, 80],
        lr_gamma=0.1, data_generator=torch.Generator().manual_seed(0),
    )


def test_bf16_autocast_keeps_the_budget_and_the_distribution_of_the_deltas(tiny_shapes):
    """What a CUDA run with bf16 does (autocast_dtype), checked on the CPU's bf16 autocast."""
    generator = generator_for(tiny_shapes).eval()
    images, targets = batch_of(tiny_shapes, 32)
    with torch.no_grad():
        raw_bf16 = _under_bf16(lambda: generator(to_unit_range(images), targets))
    assert raw_bf16.dtype == torch.float32 and float(raw_bf16.abs().max()) <= EPSILON / 255 + 1e-7  # float32 epsilon
    full = quantized_deltas(generator, images, targets, EPSILON)
    half = _under_bf16(lambda: quantized_deltas(generator, images, targets, EPSILON))
    assert int(half.abs().max()) <= EPSILON and int(full.abs().max()) <= EPSILON
    bins = torch.arange(-EPSILON, EPSILON + 1)
    histogram = lambda deltas: (deltas.flatten()[:, None] == bins).float().mean(dim=0)  # noqa: E731
    assert float((histogram(full) - histogram(half)).abs().sum() / 2) < 0.05  # total variation distance
    assert float((full - half).abs().float().mean()) < 0.5  # under half a 1/255 step on average

    surrogate = frozen_surrogate(tiny_shapes)
    trainer = GeneratorTrainer(
        generator_for(tiny_shapes), [surrogate], tiny_shapes.tasks, "em", crop_size=tiny_shapes.crop_size, augment=False,
        intra_task_weight=10.0, inter_task_weight=200.0, lr=1e-3, weight_decay=1e-4, lr_milestones=[60, 80],
        lr_gamma=0.1, data_generator=torch.Generator().manual_seed(0), amp_dtype=torch.bfloat16,
    )
    first = trainer.step(images[:8], {name: value[:8] for name, value in targets.items()})
    assert all(math.isfinite(value) for value in first.values())


def _under_bf16(compute):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return compute()


def test_generator_steps_lower_the_loss(tiny_shapes):
    surrogate = frozen_surrogate(tiny_shapes)
    trainer = trainer_for(tiny_shapes, generator_for(tiny_shapes), surrogate)
    images, targets = batch_of(tiny_shapes, 4)
    losses = [trainer.step(images, targets)["loss"] for _ in range(4)]
    assert losses[-1] < losses[0]
    assert all(p.grad is None for p in surrogate.parameters())  # the surrogate stays frozen


def test_regulariser_switches_change_the_loss_by_their_term(tiny_shapes):
    surrogate = frozen_surrogate(tiny_shapes)
    images, targets = batch_of(tiny_shapes)
    generator = generator_for(tiny_shapes)
    with torch.no_grad():
        full, terms = trainer_for(tiny_shapes, generator, surrogate).loss(images, targets)
        without_intra, _ = trainer_for(tiny_shapes, generator, surrogate, intra=0.0).loss(images, targets)
        without_inter, _ = trainer_for(tiny_shapes, generator, surrogate, inter=0.0).loss(images, targets)
    # Same crop (augment off) and train-mode batch statistics: the base loss is the same each time.
    assert float(full - without_intra) == pytest.approx(10.0 * terms["intra_task"], rel=1e-4, abs=1e-6)
    assert float(full - without_inter) == pytest.approx(200.0 * terms["inter_task"], rel=1e-4, abs=1e-6)
    assert 0 < terms["inter_task"] < 0.1  # N(0, 1) rows of 1,024 entries: nearly orthogonal
    # The methods' ablation switches zero exactly these weights.
    paper = create_method("mtlue-tap").hyperparameters
    assert (paper.effective_intra_task_weight, paper.effective_inter_task_weight) == (10.0, 200.0)
    ablated = create_method("mtlue-tap", intra_task_term=False, inter_task_term=False).hyperparameters
    assert (ablated.effective_intra_task_weight, ablated.effective_inter_task_weight) == (0.0, 0.0)


def test_tap_loss_attacks_binary_tasks_untargeted_unless_the_flip_is_asked(tiny_shapes, surrogate_folder, monkeypatch):
    """The release's binary MTL-UE + TAP maximises the BCE on the true labels
    (perturbation_MTL_binary_DAE.py:488, :500); its SEP targets 1 - y (:965)."""
    from mtlue.methods import mtl_ue_training
    from mtlue.methods.objectives import ue_loss
    from victims.augment import CenterCrop, to_unit_range

    surrogate = frozen_surrogate(tiny_shapes)
    images, targets = batch_of(tiny_shapes)
    generator = generator_for(tiny_shapes)
    tasks, crop = tiny_shapes.tasks, tiny_shapes.crop_size

    def base_loss(**options):
        trainer = GeneratorTrainer(
            generator, [surrogate], tasks, "tap", crop_size=crop, augment=False, intra_task_weight=0.0,
            inter_task_weight=0.0, lr=1e-3, weight_decay=1e-4, lr_milestones=[60, 80], lr_gamma=0.1,
            data_generator=torch.Generator().manual_seed(0), **options,
        )
        with torch.no_grad():
            return trainer.loss(images, targets)[1]["base_loss"]

    with torch.no_grad():
        clean = to_unit_range(images)
        view, view_targets = CenterCrop(tasks, crop)((clean + generator(clean, targets)).clamp(0, 1), targets)
        outputs = surrogate(view)
    untargeted = float(ue_loss("tap", outputs, view_targets, tasks, binary_target="untargeted"))
    flip = float(ue_loss("tap", outputs, view_targets, tasks, binary_target="flip"))
    assert untargeted != pytest.approx(flip)
    assert base_loss() == pytest.approx(untargeted, rel=1e-5)
    assert base_loss(binary_target="flip") == pytest.approx(flip, rel=1e-5)

    # The methods hand their hyperparameter to the trainer: mtlue-tap untargeted, mtlue-sep flip.
    seen = []

    class Stop(Exception):
        pass

    def capture(self, *args, binary_target="untargeted", **kwargs):
        seen.append(binary_target)
        raise Stop

    monkeypatch.setattr(mtl_ue_training.GeneratorTrainer, "__init__", capture)
    final = surrogate_folder / "final.pt"
    snapshots = tuple(sorted(surrogate_folder.glob("epoch_*.pt")))
    for name, context, options in (
        ("mtlue-tap", GenerationContext(seed=0, surrogate=final), {}),
        ("mtlue-tap", GenerationContext(seed=0, surrogate=final), {"binary_target": "flip"}),
        ("mtlue-sep", GenerationContext(seed=0, surrogate_checkpoints=snapshots), {}),
    ):
        with pytest.raises(Stop):
            create_method(name, **TINY, generator_width=0.25, **options).generate(tiny_shapes, context)
    assert seen == ["untargeted", "flip", "flip"]


def test_mtl_ue_em_checks_its_surrogate_in_train_mode_and_tap_in_eval_mode(tiny_shapes, monkeypatch):
    """Release: the EM check follows model.train() (perturbation_MTL_binary_DAE.py:545, :551);
    TAP and SEP check their frozen surrogates in eval mode."""
    from mtlue.methods import mtl_ue_training
    from mtlue.methods.mtl_ue import MTLUEEMHyperparameters, MTLUETAPHyperparameters
    from mtlue.methods.mtl_ue_training import classification_errors

    assert MTLUEEMHyperparameters().stop_check_mode == "train"
    assert not hasattr(MTLUETAPHyperparameters(), "stop_check_mode")
    torch.manual_seed(1)
    model = MultiTaskModel(tiny_shapes.tasks, "test_resnet", image_size=tiny_shapes.crop_size).eval()
    generator = generator_for(tiny_shapes)
    source = split_source(tiny_shapes, torch.device("cpu"))

    def buffers():
        return [m.running_mean.clone() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]

    def errors(train_mode):
        return classification_errors(
            generator, model, source, tiny_shapes.tasks, epsilon=EPSILON, targeted=False, crop_size=tiny_shapes.crop_size,
            augment=False, batch_size=16, data_generator=torch.Generator().manual_seed(0), model_train_mode=train_mode,
        )

    before = buffers()
    errors(False)
    assert all(torch.equal(a, b) for a, b in zip(before, buffers(), strict=True))
    errors(True)
    assert not any(torch.equal(a, b) for a, b in zip(before, buffers(), strict=True))
    assert not model.training and generator.training, "modes are restored"

    seen = []
    real = mtl_ue_training.classification_errors
    monkeypatch.setattr(mtl_ue_training, "classification_errors", lambda *a, **k: seen.append(k["model_train_mode"]) or real(*a, **k))
    quick = dict(TINY, generator_width=0.25, surrogate_backbone="test_resnet", surrogate_steps=1)
    create_method("mtlue-em", **quick).generate(tiny_shapes, GenerationContext(seed=0))
    create_method("mtlue-em", **quick, stop_check_mode="eval").generate(tiny_shapes, GenerationContext(seed=0))
    assert seen == [True, False]


def test_dense_tasks_train_their_label_embeddings(tiny_dense_shapes):
    torch.manual_seed(1)
    surrogate = MultiTaskModel(tiny_dense_shapes.tasks, "test_resnet", image_size=tiny_dense_shapes.crop_size, decoder_width=0.125)
    generator = generator_for(tiny_dense_shapes)
    trainer = trainer_for(tiny_dense_shapes, generator, surrogate.eval().requires_grad_(False), augment=True)
    images, targets = batch_of(tiny_dense_shapes, 4)
    trainer.step(images, targets)
    for name in ("segmentation", "depth", "normal"):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in generator.dense_embeddings[name].parameters())


def test_stop_rule_groups_binary_and_multiclass_errors():
    tasks = [Task("a", TaskKind.BINARY, 2), Task("b", TaskKind.BINARY, 2), Task("c", TaskKind.MULTICLASS, 3)]
    rule = StopRule(binary=0.1, multiclass=1e-4, targeted=True)
    assert rule.reached(tasks, {"a": 0.0, "b": 0.2, "c": 0.0})  # binary mean 0.1
    assert not rule.reached(tasks, {"a": 0.0, "b": 0.3, "c": 0.0})
    assert not rule.reached(tasks, {"a": 0.0, "b": 0.0, "c": 0.01})
    assert not rule.reached([Task("depth", TaskKind.DEPTH, 1)], {})  # nothing measurable: run to the cap


def test_quantized_deltas_stay_in_budget_and_in_the_image_range(tiny_shapes):
    generator = generator_for(tiny_shapes).eval()
    with torch.no_grad():
        generator.decoder[-1].weight.zero_()
        generator.decoder[-1].bias.fill_(1.0)  # every raw output far above +epsilon
    columns = torch.tensor([0, 3, 250, 255], dtype=torch.uint8).repeat_interleave(4)  # 16 columns
    images = columns.expand(4, 3, 16, 16).contiguous()
    _, targets = batch_of(tiny_shapes, 4)
    steps = quantized_deltas(generator, images, targets, EPSILON)
    # Clamped at +8, then cut so that x + delta <= 255.
    assert set(zip(images[0, 0, 0].tolist(), steps[0, 0, 0].tolist())) == {(0, 8), (3, 8), (250, 5), (255, 0)}
    with torch.no_grad():
        generator.decoder[-1].bias.fill_(-1.0)
    steps = quantized_deltas(generator, images, targets, EPSILON)
    assert set(zip(images[0, 0, 0].tolist(), steps[0, 0, 0].tolist())) == {(0, 0), (3, -3), (250, -8), (255, -8)}


# --------------------------------------------------------------------------------------------
# the methods


@pytest.fixture(scope="module")
def em_deltas(tiny_shapes):
    method = create_method("mtlue-em", surrogate_backbone="test_resnet", **TINY)
    return method.generate(tiny_shapes, GenerationContext(seed=3)), method.history


def test_em_deltas_fit_the_budget_on_the_published_images(tiny_shapes, em_deltas):
    deltas, history = em_deltas
    train = tiny_shapes.split("train")
    assert deltas.dtype == np.int8 and deltas.shape == (32, *tiny_shapes.image_shape)
    assert np.abs(deltas.astype(np.int16)).max() <= EPSILON
    published = publish(np.asarray(train.images), deltas)
    # Exact: the stored delta is what the published uint8 image differs by, nothing clipped away.
    assert np.array_equal(published.astype(np.int16) - train.images, deltas.astype(np.int16))
    assert np.abs(deltas.astype(np.int16)).mean() > 1  # the generator perturbs
    assert len(history) == 1 and set(history[0]["errors"]) == {t.name for t in tiny_shapes.tasks}


def test_em_is_byte_identical_for_a_seed(tiny_shapes, em_deltas):
    again = create_method("mtlue-em", surrogate_backbone="test_resnet", **TINY).generate(tiny_shapes, GenerationContext(seed=3))
    assert again.tobytes() == em_deltas[0].tobytes()


def test_tap_end_to_end_through_mtlue_poison(tiny_shapes, surrogate_folder, tmp_path, capsys):
    out = tmp_path / "poisons" / "mtlue-tap"
    code = mtlue_main([
        "poison", "--data", str(tiny_shapes.root), "--method", "mtlue-tap", "--out", str(out),
        "--surrogate", str(surrogate_folder / "final.pt"),
        "--set", "max_epochs=1", "--set", "batch_size=16", "--set", "lr_milestones=[1]",
        "--set", "unprotected_tasks=[has_circle]",
    ])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    # The generator's epoch record reaches the job's log.
    (epoch_line,) = [line for line in printed.out.splitlines() if line.startswith("training epoch ")]
    assert {"epoch", "loss", "intra_task", "inter_task", "errors"} <= set(json.loads(epoch_line.removeprefix("training epoch ")))
    store = load_store(out, tiny_shapes)
    assert store.card.method == "mtlue-tap"
    assert store.card.hyperparameters["unprotected_tasks"] == ["has_circle"]
    assert store.card.hyperparameters["lr_milestones"] == [1]
    deltas = np.asarray(store.deltas)
    assert deltas.shape == (32, 3, 16, 16) and np.abs(deltas.astype(np.int16)).max() <= EPSILON


def test_sep_averages_over_the_snapshots(tiny_shapes, surrogate_folder, tmp_path):
    from mtlue.methods.surrogate import surrogate_files

    _, snapshots = surrogate_files(surrogate_folder)
    assert len(snapshots) == 2
    method = create_method("mtlue-sep", **TINY)
    context = GenerationContext(seed=0, surrogate_checkpoints=snapshots)
    store = make_poison(tiny_shapes, method, context, tmp_path / "sep")
    assert len(store.card.surrogates) == 2  # the card names both snapshots the poison was made against
    assert np.abs(np.asarray(store.deltas).astype(np.int16)).max() <= EPSILON
    assert math.isfinite(method.history[0]["base_loss"])


# --------------------------------------------------------------------------------------------
# bad inputs


def test_bad_hyperparameters_name_the_fix(tiny_shapes):
    with pytest.raises(MethodError, match="lr_milestones must be increasing"):
        create_method("mtlue-em", lr_milestones=[80, 60])
    with pytest.raises(MethodError, match="cannot both be false"):
        create_method("mtlue-tap", label_priors=False, image_encoder=False)
    with pytest.raises(MethodError, match="unprotected_tasks must be a list, got .smiling."):
        create_method("mtlue-tap", unprotected_tasks="smiling")
    with pytest.raises(MethodError, match="batch_size must be at least 2"):
        create_method("mtlue-sep", batch_size=1)
    with pytest.raises(MethodError, match="no hyperparameter.*surrogate_backbone"):
        create_method("mtlue-tap", surrogate_backbone="resnet18")  # TAP's surrogate comes from --surrogate
    with pytest.raises(MethodError, match="does not have; its tasks: has_circle"):
        create_method("mtlue-em", unprotected_tasks=["smiling"], **TINY).generate(tiny_shapes, GenerationContext())
    every = [task.name for task in tiny_shapes.tasks]
    with pytest.raises(MethodError, match="nothing would be protected"):
        create_method("mtlue-em", unprotected_tasks=every, **TINY).generate(tiny_shapes, GenerationContext())
    with pytest.raises(MethodError, match="needs a clean surrogate model"):
        create_method("mtlue-tap", **TINY).generate(tiny_shapes, GenerationContext())
    with pytest.raises(MethodError, match="surrogate_backbone 'no_such_net'"):
        create_method("mtlue-em", surrogate_backbone="no_such_net", **TINY).generate(tiny_shapes, GenerationContext())
