"""The victim: a multi-task network with hard parameter sharing.

Classification-only datasets use the MTL-UE victim exactly (Yu et al., ICML 2025; after
Sener & Koltun, 2018 and PaMaL, Dimitriadis et al., 2023)::

    image -> shared encoder -> pooled features -> Linear(D, 256) -> ELU -> one Linear per task

where a binary task's head has 1 logit and a C-class task's head C logits; the 256-d ELU output
is the shared representation. Datasets with a dense task (NYUv2-like) share a
segmentation-models-pytorch encoder whose feature pyramid feeds one decoder per dense task
(U-Net by default, Ronneberger et al., 2015; FPN, Lin et al., 2017 and DeepLabV3+, Chen et
al., 2018 selectable) and an output layer: C logits for segmentation, a non-negative depth
(softplus), and an L2-normalised normal. Classification tasks of such a dataset read the
global average pool of the deepest pyramid level through the same 256-d neck. Dense inputs
are zero-padded at the bottom and right to a multiple of 32 (so every pyramid level is exactly
half the previous one, as FPN needs) and the outputs cropped back to the input size.

What counts as shared (what task-weighting strategies aggregate gradients over):

- classification only: encoder and neck; ``encode`` returns the 256-d representation;
- with dense tasks: the encoder only; ``encode`` returns the pyramid levels the heads read. The
  neck is then shared by the classification tasks alone and is trained by their summed
  gradients, because a representation computed from another returned feature would count the
  deepest level's gradient twice in gradient-aggregation methods.

Single-task learning (the paper's STL victims) is the same class with one task.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mtlue.data.tasks import Task, TaskKind

from .backbones import (
    PYRAMID_STRIDE,
    PooledEncoder,
    PyramidEncoder,
    Stem,
    create_backbone,
    create_dense_encoder,
)
from .config import DECODERS

__all__ = ["DenseHead", "Features", "MultiTaskModel"]

#: Width of the shared representation (the release's ResNetMTL).
NECK_WIDTH = 256
#: From this many classification heads on, their products are stacked into one
#: (:meth:`MultiTaskModel.classification_logits`).
STACKED_HEADS_FROM = 10

#: What ``encode`` returns: the shared representation, or the shared pyramid levels.
Features = torch.Tensor | tuple[torch.Tensor, ...]


def _scaled(width: int, scale: float) -> int:
    return max(1, round(width * scale))


def _build_decoder(decoder: str, encoder_channels: Sequence[int], width_scale: float = 1.0) -> tuple[nn.Module, int]:
    """A fresh smp decoder over ``encoder_channels`` and the number of channels it outputs.

    Widths are the smp models' defaults times ``width_scale``: those defaults suit ImageNet
    encoders, and on the tiny encoders of CPU runs three full-width U-Nets cost 4x more than
    the whole encoder (``bench/bench_training.py``).
    """
    from segmentation_models_pytorch.decoders.deeplabv3.decoder import (
        DeepLabV3PlusDecoder,
    )
    from segmentation_models_pytorch.decoders.fpn.decoder import FPNDecoder
    from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoder

    channels = list(encoder_channels)
    if decoder == "unet":
        widths = tuple(_scaled(width, width_scale) for width in (256, 128, 64, 32, 16))
        return UnetDecoder(channels, widths, n_blocks=5), widths[-1]
    if decoder == "fpn":
        # Its segmentation blocks use GroupNorm(32, width): a multiple of 32.
        segmentation = 32 * max(1, round(128 * width_scale / 32))
        module = FPNDecoder(
            channels, encoder_depth=5, pyramid_channels=_scaled(256, width_scale),
            segmentation_channels=segmentation,
        )
        return module, module.out_channels
    if decoder == "deeplabv3plus":
        width = _scaled(256, width_scale)
        module = DeepLabV3PlusDecoder(
            channels, encoder_depth=5, out_channels=width, atrous_rates=(12, 24, 36),
            output_stride=16, aspp_separable=True, aspp_dropout=0.5,
        )
        return module, width
    raise ValueError(f"unknown decoder {decoder!r}; choose one of {', '.join(DECODERS)}")


#: Pyramid levels (0 = stride 2 ... 4 = deepest) each decoder reads; FPN skips stride 2 and
#: DeepLabV3+ reads only the stride-4 and the deepest level.
_DECODER_LEVELS = {"unet": (0, 1, 2, 3, 4), "fpn": (1, 2, 3, 4), "deeplabv3plus": (1, 4)}


class DenseHead(nn.Module):
    """One dense task's decoder and output layer over the shared pyramid."""

    def __init__(self, task: Task, decoder: str, encoder_channels: Sequence[int], width_scale: float = 1.0) -> None:
        super().__init__()
        if not task.is_dense:
            raise ValueError(f"task {task.name!r} is {task.kind.value}, not a dense task")
        self.kind = task.kind
        self.decoder, width = _build_decoder(decoder, encoder_channels, width_scale)
        out_channels = {TaskKind.SEGMENTATION: task.num_classes, TaskKind.DEPTH: 1, TaskKind.NORMAL: 3}[task.kind]
        self.output = nn.Conv2d(width, out_channels, kernel_size=3, padding=1)

    def forward(self, pyramid: list[torch.Tensor | None], size: int, crop: int) -> torch.Tensor:
        """Decode the smp-style feature list to a (B, C, crop, crop) map (depth: (B, crop, crop))."""
        out = self.output(self.decoder(pyramid))
        if out.shape[-1] != size:
            out = F.interpolate(out, size=(size, size), mode="bilinear", align_corners=False)
        out = out[..., :crop, :crop]
        if self.kind is TaskKind.DEPTH:
            # Softplus keeps depth positive without the dead gradients of a ReLU.
            return F.softplus(out[:, 0])
        if self.kind is TaskKind.NORMAL:
            return F.normalize(out, dim=1)
        return out


class MultiTaskModel(nn.Module):
    """Shared encoder, shared neck, one head per task (see the module docstring).

    Args:
        tasks: the tasks this network predicts (one task = a single-task victim).
        backbone: a name from :func:`victims.backbones.list_backbones` or any timm model.
        image_size: side of the (square) crops the network sees.
        in_chans: image channels (1 for ChestX-ray14).
        stem: stem policy of classification encoders (see :mod:`victims.backbones`).
        decoder: decoder of each dense task: "unet", "fpn" or "deeplabv3plus".
        decoder_width: multiplier of the decoders' default widths (1 = smp's).
        pretrained: path of a local timm checkpoint for the encoder, or None (from scratch).
    """

    def __init__(
        self,
        tasks: Sequence[Task],
        backbone: str = "resnet18",
        *,
        image_size: int,
        in_chans: int = 3,
        stem: Stem = "release",
        decoder: str = "unet",
        decoder_width: float = 1.0,
        pretrained: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        if not tasks:
            raise ValueError("a model needs at least one task")
        names = [task.name for task in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate task names: {names}")
        if decoder not in DECODERS:
            raise ValueError(f"unknown decoder {decoder!r}; choose one of {', '.join(DECODERS)}")
        if not decoder_width > 0:
            raise ValueError(f"decoder_width must be > 0, got {decoder_width!r}")
        self.tasks: tuple[Task, ...] = tuple(tasks)
        self.backbone_name = backbone
        self.image_size = int(image_size)
        self.decoder_name = decoder
        self.has_dense = any(task.is_dense for task in tasks)
        classification = [task for task in tasks if task.kind.is_classification]

        self.encoder: PooledEncoder | PyramidEncoder
        if self.has_dense:
            if stem == "cifar":
                raise ValueError(
                    "the CIFAR stem is for classification-only datasets: dense decoders read the standard "
                    "stride-2 pyramid; use stem='release' or 'standard'"
                )
            self.encoder = create_dense_encoder(
                backbone, in_chans=in_chans, output_stride=16 if decoder == "deeplabv3plus" else 32, pretrained=pretrained
            )
            # Pad to a multiple of the pyramid's stride so every level halves the previous one.
            self.padded_size = -(-self.image_size // PYRAMID_STRIDE) * PYRAMID_STRIDE
            levels = set(_DECODER_LEVELS[decoder])
            if classification:
                levels.add(4)
            self.levels: tuple[int, ...] = tuple(sorted(levels))
        else:
            self.encoder = create_backbone(backbone, in_chans=in_chans, image_size=self.image_size, stem=stem, pretrained=pretrained)
            # NHWC: oneDNN's CPU convolutions (and cuDNN's tensor-core ones) run faster on it;
            # measured 1.33x for a test_resnet training step at 28 px on one CPU thread.
            self.encoder.to(memory_format=torch.channels_last)
            self.padded_size = self.image_size
            self.levels = ()

        self.neck = (
            nn.Sequential(nn.Linear(self.encoder.out_features, NECK_WIDTH), nn.ELU()) if classification else None
        )
        self.heads = nn.ModuleDict(
            {task.name: nn.Linear(NECK_WIDTH, 1 if task.kind is TaskKind.BINARY else task.num_classes) for task in classification}
        )
        self.dense_heads = nn.ModuleDict(
            {
                task.name: DenseHead(task, decoder, self.encoder.out_channels, decoder_width)  # type: ignore[union-attr]
                for task in tasks
                if task.is_dense
            }
        )

    # ----------------------------------------------------------------------------------------
    # Forward pass, split where the weighting strategies need it

    def encode(self, images: torch.Tensor) -> Features:
        """The shared part: images (B, C, S, S) in [0, 1] -> the shared features."""
        if images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"the model takes {self.image_size}x{self.image_size} crops, got {tuple(images.shape[-2:])}; "
                f"crop the images first (victims.augment)"
            )
        if not self.has_dense:
            assert self.neck is not None
            return self.neck(self.encoder(images.contiguous(memory_format=torch.channels_last)))
        if self.padded_size != self.image_size:
            pad = self.padded_size - self.image_size
            images = F.pad(images, (0, pad, 0, pad))
        pyramid = self.encoder(images)
        return tuple(pyramid[level] for level in self.levels)

    def decode(self, features: Features) -> dict[str, torch.Tensor]:
        """Task outputs from the shared features: binary (B,) logits, multiclass (B, C) logits,
        segmentation (B, C, S, S) logits, depth (B, S, S) metres, normal (B, 3, S, S) unit vectors."""
        outputs: dict[str, torch.Tensor] = {}
        if not self.has_dense:
            assert isinstance(features, torch.Tensor)
            representation = features
        else:
            assert isinstance(features, tuple)
            levels = dict(zip(self.levels, features, strict=True))
            representation = self.neck(levels[4].mean(dim=(2, 3))) if self.neck is not None else None
            deepest = features[-1]
            # smp decoders index an encoder's list whose first entry is the input: a zero-channel
            # placeholder carries its size, unread levels stay None.
            stub = deepest.new_empty((deepest.shape[0], 0, self.padded_size, self.padded_size))
            pyramid: list[torch.Tensor | None] = [stub, *(levels.get(level) for level in range(5))]
            for name, head in self.dense_heads.items():
                outputs[name] = head(pyramid, self.padded_size, self.image_size)
        if self.heads:
            assert representation is not None
            outputs.update(self.classification_logits(representation))
        return {task.name: outputs[task.name] for task in self.tasks}

    def classification_logits(self, representation: torch.Tensor) -> dict[str, torch.Tensor]:
        """The logits of every classification head, (B,) for binary tasks and (B, C) otherwise.

        From :data:`STACKED_HEADS_FROM` heads on (CelebA's 40, ChestX-ray14's 14), they are one
        matrix product of the stacked heads, split per task, so that a step launches one kernel
        instead of K. The heads stay separate parameters (the state dict and the weightings'
        per-task parameters do not change). The stacked product rounds differently from K
        separate ones, so models with fewer heads keep the separate products and their results.
        """
        heads = list(self.heads.values())
        if len(heads) >= STACKED_HEADS_FROM:
            weight = torch.cat([head.weight for head in heads])
            bias = torch.cat([head.bias for head in heads])
            logits = F.linear(representation, weight, bias).split([head.out_features for head in heads], dim=1)
        else:
            logits = tuple(head(representation) for head in heads)
        return {name: value[:, 0] if value.shape[1] == 1 else value for name, value in zip(self.heads, logits, strict=True)}

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.decode(self.encode(images))

    # ----------------------------------------------------------------------------------------
    # Parameter groups

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters every task's loss reaches through ``encode`` (see the module docstring)."""
        modules: list[nn.Module] = [self.encoder]
        if not self.has_dense and self.neck is not None:
            modules.append(self.neck)
        return [p for module in modules for p in module.parameters()]

    def task_parameters(self, task: str) -> list[nn.Parameter]:
        """Parameters only ``task`` uses (its head or decoder)."""
        if task in self.heads:
            return list(self.heads[task].parameters())
        if task in self.dense_heads:
            return list(self.dense_heads[task].parameters())
        raise KeyError(f"model has no task {task!r}; tasks: {[t.name for t in self.tasks]}")

    def named_parameter_groups(self) -> Iterator[tuple[str, list[nn.Parameter]]]:
        """Every parameter exactly once: "shared", "classification_neck" (with dense tasks), each task."""
        yield "shared", self.shared_parameters()
        if self.has_dense and self.neck is not None:
            yield "classification_neck", list(self.neck.parameters())
        for task in self.tasks:
            yield task.name, self.task_parameters(task.name)
