"""Shared encoders of the victim networks, behind a small registry (in the style of timm's).

Two kinds of encoder serve the two kinds of task:

- :class:`PooledEncoder` wraps a timm classification network and returns one pooled feature
  vector per image; it serves datasets whose tasks are all classification (CelebA, UTKFace,
  ChestX-ray14), as the MTL-UE victims do.
- :class:`PyramidEncoder` wraps a segmentation-models-pytorch encoder and returns its feature
  pyramid (strides 2..32); it serves any dataset with a dense task, and per-task decoders
  (:mod:`victims.model`) read the pyramid.

Registered backbones are the MTL-UE victims (Yu et al., ICML 2025, Sec. 5 of
``MTL-UE.md``: ResNet-18, ResNet-50, VGG-16-BN, DenseNet-121, ViT-B/16) and small variants that
train in minutes on a CPU. Any other timm model name is passed through to timm (and to
smp's ``tu-<name>`` encoder for dense tasks).

**Stems.** ``stem="release"`` (the default) builds each backbone as the MTL-UE release does at
every image size: ResNets and VGG keep their ImageNet stem (the release's ResNet-18 victim uses
the 7x7 stride-2 convolution and max-pool even on 64 px CelebA crops), DenseNet-121 uses the
CIFAR stem (3x3 stride-1 convolution, no pooling). ``stem="cifar"`` forces the CIFAR stem on
ResNets and DenseNets, which keeps 4x more spatial resolution on small (< 96 px) images;
``stem="standard"`` keeps timm's stem everywhere. The stem option applies to classification
encoders only: dense decoders expect the standard stride-2 pyramid of the smp encoders.

**Weights.** Backbones train from scratch, as in the paper. ``pretrained`` takes the path of a
local timm checkpoint file; nothing is ever downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import timm
import torch
from torch import nn

from mtlue.errors import BackboneError
from .config import STEMS

__all__ = [
    "BackboneError",
    "BackboneSpec",
    "PooledEncoder",
    "PyramidEncoder",
    "Stem",
    "backbone_description",
    "create_backbone",
    "create_dense_encoder",
    "get_backbone_spec",
    "list_backbones",
    "register_backbone",
]

Stem = Literal["release", "standard", "cifar"]
#: Total stride of every dense encoder's deepest feature map; dense inputs are padded to a
#: multiple of it so that each pyramid level is exactly half the previous one.
PYRAMID_STRIDE = 32


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one named backbone.

    ``release_stem`` is the stem the MTL-UE release gives this architecture ("standard" or
    "cifar"); ``dense_encoder`` is the segmentation-models-pytorch encoder used for dense
    tasks, or None when the architecture has no feature pyramid (plain ViTs).
    """

    name: str
    timm_name: str
    description: str
    dense_encoder: str | None
    release_stem: Literal["standard", "cifar"] = "standard"
    timm_kwargs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(
    name: str,
    *,
    timm_name: str | None = None,
    description: str,
    dense_encoder: str | None,
    release_stem: Literal["standard", "cifar"] = "standard",
    **timm_kwargs: Any,
) -> BackboneSpec:
    """Register a backbone under ``name``; ``timm_kwargs`` go to ``timm.create_model``."""
    if name in _REGISTRY:
        raise BackboneError(f"backbone {name!r} is already registered")
    timm_name = timm_name or name
    if not timm.is_model(timm_name):
        raise BackboneError(f"backbone {name!r}: timm has no model {timm_name!r}")
    spec = BackboneSpec(name, timm_name, description, dense_encoder, release_stem, MappingProxyType(dict(timm_kwargs)))
    _REGISTRY[name] = spec
    return spec


def list_backbones() -> list[str]:
    """Registered backbone names (any other timm model name is accepted as well)."""
    return sorted(_REGISTRY)


def backbone_description(name: str) -> str:
    """One line for ``mtlue list backbones --json``."""
    spec = get_backbone_spec(name)
    dense = "" if spec.dense_encoder else " (classification only)"
    return f"{spec.description}{dense}"


def get_backbone_spec(name: str) -> BackboneSpec:
    """The registered spec, or a pass-through spec for any other timm model name."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if timm.is_model(name):
        return BackboneSpec(name, name, f"timm model {name}", dense_encoder=None if _is_vit(name) else f"tu-{name}")
    raise BackboneError(
        f"unknown backbone {name!r}; registered backbones: {', '.join(list_backbones())} "
        f"(any timm model name also works, see timm.list_models())"
    )


def _dense_capable() -> list[str]:
    return [name for name in list_backbones() if _REGISTRY[name].dense_encoder is not None]


# --------------------------------------------------------------------------------------------
# Weights


def _pretrained_overlay(pretrained: str | os.PathLike[str] | None, name: str) -> dict[str, Any]:
    """timm arguments that load ``pretrained`` from a local file, or none for random init."""
    if pretrained is None:
        return {}
    path = Path(pretrained)
    if not path.is_file():
        raise BackboneError(
            f"backbone {name!r}: pretrained weights file {path} does not exist; pass the path of a "
            f"local timm checkpoint (.safetensors/.pth), or omit it to train from scratch"
        )
    return {"pretrained": True, "pretrained_cfg_overlay": {"file": str(path)}}


# --------------------------------------------------------------------------------------------
# Classification encoders


def _cifar_stem(model: nn.Module, name: str) -> None:
    """Replace an ImageNet stem by the CIFAR one: one 3x3 stride-1 convolution, no pooling.

    This is the stem of the release's DenseNet-121 and of the CIFAR ResNets (He et al., 2016,
    Sec. 4.2) that UE papers use on small images.
    """
    if isinstance(model, timm.models.resnet.ResNet):
        # The deep stems of ResNet-D/T variants are a Sequential; their output width is bn1's.
        conv = _stem_conv(_first_conv(model.conv1).in_channels, model.bn1.num_features)
        model.conv1 = conv
        model.maxpool = nn.Identity()
    elif isinstance(model, timm.models.densenet.DenseNet):
        stem = model.features
        stem.conv0 = _stem_conv(stem.conv0.in_channels, stem.norm0.num_features)
        stem.pool0 = nn.Identity()
    else:
        raise BackboneError(
            f"backbone {name!r}: the CIFAR stem exists for ResNets and DenseNets only; "
            f"use stem='standard' or stem='release'"
        )


def _stem_conv(in_chans: int, width: int) -> nn.Conv2d:
    conv = nn.Conv2d(in_chans, width, kernel_size=3, stride=1, padding=1, bias=False)
    # The initialisation timm gives every other convolution of these networks.
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    return conv


def _first_conv(module: nn.Module) -> nn.Conv2d:
    if isinstance(module, nn.Conv2d):
        return module
    return next(m for m in module.modules() if isinstance(m, nn.Conv2d))


def _release_init(timm_name: str) -> dict[str, Any]:
    """timm arguments that give the release's initialisation: batch-norm gamma 1 everywhere.

    timm's ResNets zero the gamma of each residual block's last batch norm by default
    (``zero_init_last=True``, after Goyal et al., 2017), so every block starts as the identity.
    The MTL-UE release's victims and surrogates (``models/ResNetMTL.py``) set every batch-norm
    gamma to 1 and beta to 0 (``:97-102``, after Kaiming-normal convolutions, which timm's
    ResNets use too), with plain ``nn.BatchNorm2d`` in each block (``:23-25``) and no zero init, so
    ResNets are built with ``zero_init_last=False``. Other architectures have no such option and
    get none.
    """
    return {"zero_init_last": False} if timm.models.is_model_in_modules(timm_name, ["resnet"]) else {}


def _resolve_stem(spec: BackboneSpec, stem: str) -> str:
    if stem not in STEMS:
        raise BackboneError(f"unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
    return spec.release_stem if stem == "release" else stem


class PooledEncoder(nn.Module):
    """A timm network without its classifier: image batch (B, C, H, W) -> features (B, D).

    Pooling is the network's own (global average for CNNs, the class token for ViTs, as in
    the release). VGG's two 4096-wide fully connected layers are dropped, so that VGG-16-BN
    gives the release's 512-d average-pooled features.
    """

    def __init__(
        self,
        name: str,
        *,
        in_chans: int = 3,
        image_size: int,
        stem: Stem = "release",
        pretrained: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        spec = get_backbone_spec(name)
        self.spec = spec
        self.stem = _resolve_stem(spec, stem)
        if self.stem == "cifar" and pretrained is not None:
            raise BackboneError(
                f"backbone {name!r}: the CIFAR stem replaces the pretrained first convolution; "
                f"use stem='standard' with pretrained weights"
            )
        kwargs: dict[str, Any] = {**_release_init(spec.timm_name), **spec.timm_kwargs}
        kwargs.update(_pretrained_overlay(pretrained, name))
        self.pad_to = image_size
        if _is_vit(spec.timm_name):
            patch = int(kwargs.get("patch_size", _vit_patch_size(spec.timm_name)))
            # Positional embeddings sized to the crop (the release slices them instead). A crop
            # that is not a multiple of the patch size (28 px, 16 px patches) is zero-padded up
            # to one in forward() rather than silently losing its border.
            self.pad_to = -(-image_size // patch) * patch
            kwargs["img_size"] = self.pad_to
        try:
            self.net = timm.create_model(spec.timm_name, num_classes=0, in_chans=in_chans, **kwargs)
        except (RuntimeError, OSError) as error:
            if pretrained is not None:
                raise BackboneError(f"backbone {name!r}: cannot load pretrained weights from {pretrained}: {error}") from None
            raise
        if isinstance(self.net, timm.models.vgg.VGG):
            self.net.pre_logits = nn.Identity()
        if self.stem == "cifar":
            _cifar_stem(self.net, name)
        self.image_size = image_size
        self.in_chans = in_chans
        self.out_features = _probe_width(self, name, in_chans, image_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.pad_to != images.shape[-1]:
            images = _pad_bottom_right(images, self.pad_to)
        return self.net(images)


def _pad_bottom_right(images: torch.Tensor, size: int) -> torch.Tensor:
    height, width = images.shape[-2:]
    return nn.functional.pad(images, (0, size - width, 0, size - height))


def _probe_width(net: nn.Module, name: str, in_chans: int, image_size: int) -> int:
    """Feature width from one forward pass, which also proves the input size is workable."""
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            return int(net(torch.zeros(1, in_chans, image_size, image_size)).shape[-1])
    except RuntimeError as error:
        raise BackboneError(
            f"backbone {name!r} cannot take {image_size} px inputs ({error}); use a larger crop "
            f"or a backbone that downsamples less (e.g. stem='cifar' or resnet10t)"
        ) from None
    finally:
        net.train(was_training)


def _is_vit(timm_name: str) -> bool:
    return timm_name.startswith(("vit_", "test_vit", "deit_"))


def _vit_patch_size(timm_name: str) -> int:
    for part in timm_name.split("_"):
        if part.startswith("patch") and part[5:].isdigit():
            return int(part[5:])
    return 16


# --------------------------------------------------------------------------------------------
# Dense encoders


class PyramidEncoder(nn.Module):
    """A segmentation-models-pytorch encoder: image batch -> feature maps at strides 2..32.

    ``out_channels`` lists smp's channels including its first entry (the input, or VGG's
    stride-1 block), which :meth:`forward` does not return: it is either not a function of the
    parameters or only a shape reference for the decoders. ``output_stride`` 16 dilates the
    last stage, as DeepLabV3+ needs.
    """

    def __init__(
        self,
        name: str,
        *,
        in_chans: int = 3,
        output_stride: int = 32,
        pretrained: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        import segmentation_models_pytorch as smp

        spec = get_backbone_spec(name)
        if spec.dense_encoder is None:
            raise BackboneError(
                f"backbone {name!r} cannot serve dense tasks (it has no multi-scale feature pyramid); "
                f"choose one of {', '.join(_dense_capable())}"
            )
        self.spec = spec
        encoder_name = spec.dense_encoder
        kwargs: dict[str, Any] = {}
        if pretrained is not None:
            # smp's own encoders download their weights; the timm-universal encoder of the same
            # architecture loads the local timm checkpoint instead.
            encoder_name = f"tu-{spec.timm_name}"
            kwargs = _pretrained_overlay(pretrained, name)
            kwargs.pop("pretrained")
        if encoder_name.startswith("tu-"):
            # timm-built encoders: the release's batch-norm init (smp's own ResNet encoders are
            # torchvision's, whose gammas already start at 1).
            kwargs = {**_release_init(encoder_name[3:]), **kwargs}
        try:
            if encoder_name.startswith("tu-"):
                self.net = smp.encoders.get_encoder(
                    encoder_name, in_channels=in_chans, depth=5, output_stride=output_stride,
                    weights=True if pretrained is not None else None, **kwargs,
                )
            else:
                self.net = smp.encoders.get_encoder(
                    encoder_name, in_channels=in_chans, depth=5, output_stride=output_stride, weights=None
                )
        except (ValueError, KeyError, AttributeError, RuntimeError) as error:
            raise BackboneError(
                f"backbone {name!r}: smp encoder {encoder_name!r} cannot be built with output stride "
                f"{output_stride} ({error}); dense-capable backbones: {', '.join(_dense_capable())}"
            ) from None
        self.in_chans = in_chans
        self.output_stride = output_stride
        self.out_channels: tuple[int, ...] = tuple(int(c) for c in self.net.out_channels)

    @property
    def out_features(self) -> int:
        """Channels of the deepest map, i.e. the width of its pooled feature vector."""
        return self.out_channels[-1]

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.net(images)[1:])


# --------------------------------------------------------------------------------------------
# Entry points


def create_backbone(
    name: str,
    *,
    in_chans: int = 3,
    image_size: int,
    stem: Stem = "release",
    pretrained: str | os.PathLike[str] | None = None,
) -> PooledEncoder:
    """Classification encoder ``name`` for ``image_size`` px inputs (pooled features)."""
    return PooledEncoder(name, in_chans=in_chans, image_size=image_size, stem=stem, pretrained=pretrained)


def create_dense_encoder(
    name: str,
    *,
    in_chans: int = 3,
    output_stride: int = 32,
    pretrained: str | os.PathLike[str] | None = None,
) -> PyramidEncoder:
    """Dense encoder ``name`` (feature pyramid) for per-task decoders."""
    return PyramidEncoder(name, in_chans=in_chans, output_stride=output_stride, pretrained=pretrained)


# The MTL-UE victims (paper Sec. 5) ...
register_backbone("resnet18", description="ResNet-18 (He et al., 2016); the MTL-UE default victim", dense_encoder="resnet18")
register_backbone("resnet50", description="ResNet-50 (He et al., 2016)", dense_encoder="resnet50")
register_backbone("vgg16_bn", description="VGG-16 with batch norm (Simonyan & Zisserman, 2015), 512-d pooled features", dense_encoder="vgg16_bn")
register_backbone(
    "densenet121",
    description="DenseNet-121 (Huang et al., 2017) with the release's CIFAR stem",
    dense_encoder="densenet121",
    release_stem="cifar",
)
register_backbone(
    "vit_base_patch16_224",
    description="ViT-B/16 (Dosovitskiy et al., 2021), from scratch, positional embeddings sized to the crop",
    dense_encoder=None,
)
# ... and small variants for CPU runs and tests.
register_backbone("resnet10t", description="ResNet-10-T (timm): a ResNet with one block per stage, for CPU runs", dense_encoder="tu-resnet10t")
register_backbone("test_resnet", description="timm's tiny test ResNet (0.4 M parameters), for tests", dense_encoder="tu-test_resnet")
register_backbone(
    "vit_tiny_patch4",
    timm_name="vit_tiny_patch16_224",
    description="ViT-Ti with 4 px patches (64 tokens at 32 px), for CPU runs",
    dense_encoder=None,
    patch_size=4,
)
