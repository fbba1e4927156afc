"""Backbone registry and the multi-task victim network: shapes, parameter groups, clear errors."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from mtlue.data.tasks import Task, TaskKind
from victims.backbones import (
    BackboneError,
    create_backbone,
    create_dense_encoder,
    list_backbones,
)
from victims.losses import task_loss
from victims.model import DECODERS, MultiTaskModel
from victims.weighting import create_weighting

CLASSIFICATION = (
    Task("smiling", TaskKind.BINARY, 2),
    Task("young", TaskKind.BINARY, 2),
    Task("age", TaskKind.MULTICLASS, 9),
)
DENSE = (
    Task("segmentation", TaskKind.SEGMENTATION, 5),
    Task("depth", TaskKind.DEPTH, 1),
    Task("normal", TaskKind.NORMAL, 3),
)
BATCH = 3


def expected_shape(task: Task, size: int) -> tuple[int, ...]:
    return {
        TaskKind.BINARY: (BATCH,),
        TaskKind.MULTICLASS: (BATCH, task.num_classes),
        TaskKind.SEGMENTATION: (BATCH, task.num_classes, size, size),
        TaskKind.DEPTH: (BATCH, size, size),
        TaskKind.NORMAL: (BATCH, 3, size, size),
    }[task.kind]


def test_registry_lists_the_paper_backbones_and_small_variants():
    names = list_backbones()
    assert {"resnet18", "resnet50", "vgg16_bn", "densenet121", "vit_base_patch16_224"} <= set(names)
    assert {"resnet10t", "test_resnet", "vit_tiny_patch4"} <= set(names)


def test_unknown_backbone_lists_the_valid_choices():
    with pytest.raises(BackboneError, match=r"unknown backbone 'resnet9000'; registered backbones: .*resnet18.*timm"):
        create_backbone("resnet9000", image_size=32)


def test_any_timm_model_name_passes_through():
    encoder = create_backbone("test_efficientnet", image_size=32)
    assert encoder(torch.rand(BATCH, 3, 32, 32)).shape == (BATCH, encoder.out_features)


def test_classification_model_outputs_and_shared_representation():
    model = MultiTaskModel(CLASSIFICATION, "test_resnet", image_size=24)
    features = model.encode(torch.rand(BATCH, 3, 24, 24))
    assert features.shape == (BATCH, 256)
    outputs = model.decode(features)
    assert list(outputs) == [task.name for task in CLASSIFICATION]
    for task in CLASSIFICATION:
        assert outputs[task.name].shape == expected_shape(task, 24)
    # The paper's split: encoder + 256-d neck are shared, each head belongs to one task.
    shared = {id(p) for p in model.shared_parameters()}
    assert {id(p) for p in model.neck.parameters()} <= shared
    assert all(id(p) not in shared for p in model.task_parameters("age"))


@pytest.mark.parametrize("decoder_width", [1.0, 0.1])
@pytest.mark.parametrize("decoder", DECODERS)
def test_dense_model_outputs_for_every_decoder(decoder, decoder_width):
    # 20 px is padded to 32 inside the model and cropped back.
    model = MultiTaskModel(DENSE, "test_resnet", image_size=20, decoder=decoder, decoder_width=decoder_width).eval()
    outputs = model(torch.rand(BATCH, 3, 20, 20))
    for task in DENSE:
        assert outputs[task.name].shape == expected_shape(task, 20)
    assert (outputs["depth"] >= 0).all()
    assert torch.allclose(outputs["normal"].norm(dim=1), torch.ones(BATCH, 20, 20), atol=1e-5)


@pytest.mark.parametrize("decoder", DECODERS)
def test_decoder_width_scales_only_the_decoders(decoder):
    full = MultiTaskModel(DENSE, "test_resnet", image_size=20, decoder=decoder)
    narrow = MultiTaskModel(DENSE, "test_resnet", image_size=20, decoder=decoder, decoder_width=0.25)
    count = lambda parameters: sum(p.numel() for p in parameters)  # noqa: E731
    assert count(narrow.shared_parameters()) == count(full.shared_parameters())
    for task in DENSE:
        assert count(narrow.task_parameters(task.name)) < count(full.task_parameters(task.name)) / 2
    with pytest.raises(ValueError, match="decoder_width"):
        MultiTaskModel(DENSE, "test_resnet", image_size=20, decoder=decoder, decoder_width=0)


def test_mixed_model_gives_every_parameter_exactly_one_group_and_trains_with_aggregation():
    tasks = CLASSIFICATION + DENSE
    model = MultiTaskModel(tasks, "test_resnet", image_size=28, decoder="fpn")
    groups = dict(model.named_parameter_groups())
    assert list(groups) == ["shared", "classification_neck", *(task.name for task in tasks)]
    ids = [id(p) for parameters in groups.values() for p in parameters]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))

    # FPN reads four pyramid levels; encode returns exactly those, so a gradient-aggregation
    # strategy can differentiate every task loss with respect to every returned feature.
    images = torch.rand(BATCH, 3, 28, 28)
    targets = {
        "smiling": torch.tensor([0, 1, 1]), "young": torch.tensor([1, 0, 1]), "age": torch.tensor([0, 3, 8]),
        "segmentation": torch.randint(0, 5, (BATCH, 28, 28)), "depth": torch.rand(BATCH, 28, 28) + 0.5,
        "normal": nn.functional.normalize(torch.rand(BATCH, 3, 28, 28), dim=1),
    }
    features = model.encode(images)
    assert len(features) == 4
    outputs = model.decode(features)
    losses = torch.stack([task_loss(task)(outputs[task.name], targets[task.name]) for task in tasks])
    weighting = create_weighting("pcgrad", len(tasks))
    weighting.backward(losses, model.shared_parameters(), features)
    assert all(p.grad is not None for p in model.parameters())


def test_single_task_model_has_only_its_head():
    model = MultiTaskModel([CLASSIFICATION[2]], "test_resnet", image_size=24)
    assert list(model(torch.rand(BATCH, 3, 24, 24))) == ["age"]
    assert list(model.heads) == ["age"] and not model.dense_heads


def test_dense_task_with_a_backbone_without_pyramid_says_what_works():
    with pytest.raises(BackboneError, match=r"'vit_tiny_patch4' cannot serve dense tasks.*choose one of .*resnet18"):
        MultiTaskModel(DENSE, "vit_tiny_patch4", image_size=32)


def test_input_of_the_wrong_size_is_refused():
    model = MultiTaskModel(CLASSIFICATION, "test_resnet", image_size=24)
    with pytest.raises(ValueError, match="takes 24x24 crops, got \\(32, 32\\)"):
        model.encode(torch.rand(1, 3, 32, 32))


def test_release_stems_and_the_cifar_option():
    # The release's ResNet victims keep the ImageNet stem; its DenseNet-121 uses the CIFAR stem.
    resnet = create_backbone("resnet18", image_size=64)
    assert resnet.stem == "standard" and resnet.net.conv1.stride == (2, 2)
    densenet = create_backbone("densenet121", image_size=32)
    assert densenet.stem == "cifar" and densenet.net.features.conv0.kernel_size == (3, 3)
    assert isinstance(densenet.net.features.pool0, nn.Identity)
    cifar = create_backbone("resnet10t", image_size=16, stem="cifar")
    assert cifar.net.conv1.stride == (1, 1) and isinstance(cifar.net.maxpool, nn.Identity)
    with pytest.raises(BackboneError, match="CIFAR stem exists for ResNets and DenseNets only"):
        create_backbone("vit_tiny_patch4", image_size=32, stem="cifar")


def test_vgg_gives_512_pooled_features_and_refuses_too_small_crops():
    assert create_backbone("vgg16_bn", image_size=32).out_features == 512
    with pytest.raises(BackboneError, match="cannot take 28 px inputs.*larger crop"):
        create_backbone("vgg16_bn", image_size=28)


def test_vit_b16_positional_embeddings_fit_the_crop():
    encoder = create_backbone("vit_base_patch16_224", image_size=28)
    # 28 px is padded to 32: a 2x2 patch grid plus the class token.
    assert encoder.net.patch_embed.grid_size == (2, 2)
    assert encoder(torch.rand(1, 3, 28, 28)).shape == (1, 768)


def test_pretrained_weights_load_from_a_local_file_only(tmp_path):
    source = timm.create_model("test_resnet", num_classes=0)
    path = tmp_path / "test_resnet.pth"
    torch.save(source.state_dict(), path)
    encoder = create_backbone("test_resnet", image_size=32, stem="standard", pretrained=path)
    assert all(torch.equal(a, b) for a, b in zip(source.state_dict().values(), encoder.net.state_dict().values()))
    dense = create_dense_encoder("test_resnet", pretrained=path)
    assert torch.equal(dense.net.model.conv1[0].weight, source.conv1[0].weight)
    with pytest.raises(BackboneError, match="does not exist; pass the path of a local timm checkpoint"):
        create_backbone("test_resnet", image_size=32, pretrained=tmp_path / "missing.pth")


def test_grayscale_inputs():
    model = MultiTaskModel(CLASSIFICATION, "test_resnet", image_size=24, in_chans=1)
    assert model(torch.rand(BATCH, 1, 24, 24))["age"].shape == (BATCH, 9)


def _last_block_norms(net: nn.Module) -> list[torch.Tensor]:
    """The gamma of each residual block's last batch norm (timm: bn2 of BasicBlock, bn3 of Bottleneck)."""
    from timm.models.resnet import BasicBlock, Bottleneck

    gammas = []
    for module in net.modules():
        if isinstance(module, Bottleneck):
            gammas.append(module.bn3.weight.detach())
        elif isinstance(module, BasicBlock):
            gammas.append(module.bn2.weight.detach())
    return gammas


@pytest.mark.parametrize("name", ["resnet18", "resnet10t", "test_resnet"])
@pytest.mark.parametrize("stem", ["release", "cifar"])
def test_resnets_start_with_every_batch_norm_gamma_at_one_as_the_release(name, stem):
    """timm zeroes each block's last gamma (zero_init_last=True); the release's ResNetMTL sets
    every gamma to 1 (models/ResNetMTL.py:97-102)."""
    assert any(float(gamma.abs().max()) == 0 for gamma in _last_block_norms(timm.create_model(name, num_classes=0)))
    encoder = create_backbone(name, image_size=32, stem=stem)
    gammas = _last_block_norms(encoder.net)
    assert gammas and all(torch.equal(gamma, torch.ones_like(gamma)) for gamma in gammas)
    norms = [m for m in encoder.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) and torch.equal(m.bias, torch.zeros_like(m.bias)) for m in norms)


def test_resnet50_bottlenecks_and_the_victim_model_start_with_gamma_one():
    model = MultiTaskModel([Task("a", TaskKind.BINARY, 2)], "resnet50", image_size=32)
    gammas = _last_block_norms(model)
    assert len(gammas) == 16 and all(torch.equal(gamma, torch.ones_like(gamma)) for gamma in gammas)


@pytest.mark.parametrize("name", ["test_resnet", "resnet18"])
def test_dense_resnet_encoders_start_with_gamma_one(name):
    """The timm-universal encoder (tu-test_resnet) gets zero_init_last=False; smp's own resnet18
    is torchvision's, whose gammas start at 1 anyway."""
    encoder = create_dense_encoder(name)
    norms = [m for m in encoder.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in norms)


def test_other_architectures_are_built_without_the_resnet_option():
    create_backbone("densenet121", image_size=32)  # would raise TypeError if zero_init_last were passed
    create_backbone("vit_tiny_patch4", image_size=32)
