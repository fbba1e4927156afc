"""The MTL-UE generator: image encoder + per-task label embeddings -> decoder -> delta in +-epsilon.

Yi Yu et al., "MTL-UE: Learning to Learn Nothing for Multi-Task Learning", ICML 2025
(https://arxiv.org/abs/2505.05279); reference sections 2.1-2.3, 2.6-2.8 (the release's
``models/ResNet.py``, ``ResNetDAE``)::

    z      = E(x)                                       128 x S_h x S_w
    e^k    = table_k[y^k] reshaped to 16 x S_h x S_w    one table of C_k rows per classification task
    d^k    = D^k(y^k)                                   one small module per dense task (below)
    delta  = clamp(D([z, e^1, ..., e^K]), -epsilon, epsilon)

**Encoder** E: the first part of a ResNet-18 (BasicBlocks, random init, trained with the rest):
stem, layer1 (2 blocks, 64 channels), layer2 (2 blocks, 128 channels, stride 2). The small-image
stem (CelebA, UTKFace) is Conv3x3 s1 -> BN -> ReLU, so S = H/2; the ImageNet stem (ChestX-ray14)
is Conv7x7 s2 -> BN -> ReLU -> MaxPool3 s2, so S = H/8. The release also builds layer3, layer4
and a linear layer that its forward never uses (about 10.5 M parameters, still optimised and
saved; reference 8.15); they are not built here.

**Class embeddings**: ``nn.Embedding(C_k, 16 * S_h * S_w)`` per classification task with torch's
default N(0, 1) initialisation, exactly sum_k C_k vectors, so the count grows linearly in K
instead of the prod_k C_k label combinations.

**Dense tasks** (NYUv2-like segmentation / depth / normals; the release has no dense code and the
paper does not give D^k, reference 9.10). Our D^k, decided here: the label map is encoded
without loss of meaning (segmentation: one-hot over its classes, ignored pixels all zero; depth:
metres and a valid-pixel mask, 0 marking a missing reading; normals: the three components and a
valid mask), area-averaged to the latent grid S_h x S_w (per cell: class fractions, mean depth,
mean normal, valid share), then Conv3x3(-> 32) -> ReLU -> Conv3x3(32 -> 16). Pooling first keeps
the module at a few thousand parameters whatever the image size; the two 3x3 convolutions give
each embedding cell its neighbourhood, as the decoder's kernels do. No regulariser touches D^k
(the paper applies the embedding regularisers to class embeddings only).

**Decoder** D (reference 2.2, both variants), InstanceNorm without affine parameters, no final
activation, output hard-clamped (a clamp, not a projection) to +-epsilon:

- small (x2):    ConvT(k4 s2 p1) -> ConvT(k3 s1 p1) -> IN -> ReLU -> ConvT(k3 s1 p1) -> IN -> ReLU -> ConvT(k3 s1 p1)
- ImageNet (x8): ConvT(k4 s2 p1) -> ConvT(k3 s1 p1) -> IN -> ReLU -> ConvT(k4 s2 p1) -> IN -> ReLU -> ConvT(k4 s2 p1)

Odd image sides round the latent grid up (a stride-2 convolution with padding gives ceil(H/2)),
so the decoder can give one row or column more than the image; it is cut off at the bottom/right.

**Partial protection** (reference 2.7): an unprotected classification task feeds the decoder the
mean of its class embeddings instead of its label's row, detached, so the perturbation carries no
information about that task and the task's loss gradient cannot reshape its table either; an
unprotected dense task feeds zeros. Unprotected tasks are left out of the regularisers, whose
purpose (separating the classes' shortcuts) does not apply to them.

**Ablations** (reference 2.8): ``label_priors=False`` is the release's ``--z_only`` (decoder sees z
only); ``image_encoder=False`` its ``--classwise`` (decoder sees the label embeddings only, one
delta per label combination). The two regulariser terms are switched in the training
(:mod:`mtlue.methods.mtl_ue_training`).

**Regularisers** (reference 2.3), on the flattened class embeddings of the protected
classification tasks:

- intra-task: the paper's pooled form, mean cosine over all within-task pairs of all tasks,
  ``[2 / sum_k C_k (C_k - 1)] * sum_k sum_{m<n} cos(e_m^k, e_n^k)``. The release averages per task
  and adds 1; for equal C_k (CelebA, ChestX-ray14) the two differ by that constant offset only,
  which changes no gradient; for UTKFace the pooled form weights age's 36 pairs by 36/47 where the
  release gives each task 1/3. We follow the paper's formula.
- inter-task: mean |cos| over all row pairs of different tasks, ``[1 / sum_{k<l} C_k C_l] * sum ...``
  (paper and release agree); 0 with fewer than two tasks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from mtlue.data.tasks import IGNORE_INDEX, Task, TaskKind

__all__ = [
    "EMBEDDING_CHANNELS",
    "IMAGENET_STEM_MIN_SIDE",
    "LATENT_CHANNELS",
    "EncoderStem",
    "DenseLabelEmbedding",
    "MTLUEGenerator",
    "inter_task_similarity",
    "intra_task_similarity",
    "latent_size",
    "resolve_stem",
]

EncoderStem = Literal["small", "imagenet"]
#: Channels of each task's embedding map (the release's 16).
EMBEDDING_CHANNELS = 16
#: Channels of z, the output of ResNet-18's layer2.
LATENT_CHANNELS = 128
#: "auto" picks the ImageNet stem from this shorter image side on. The release runs the small
#: stem on UTKFace's 140 px and the ImageNet stem on ChestX-ray14's 256 px; any threshold in
#: between reproduces both, and 141 keeps the cheaper latent grid for everything above 140 px.
IMAGENET_STEM_MIN_SIDE = 141
_DENSE_HIDDEN = 32


def resolve_stem(stem: str, height: int, width: int) -> EncoderStem:
    """``"auto"`` -> the release's stem for images of this size; ``"small"``/``"imagenet"`` kept."""
    if stem == "auto":
        return "imagenet" if min(height, width) >= IMAGENET_STEM_MIN_SIDE else "small"
    if stem not in ("small", "imagenet"):
        raise ValueError(f"unknown encoder stem {stem!r}; choose auto, small (3x3 s1) or imagenet (7x7 s2 + max-pool)")
    return stem  # type: ignore[return-value]


def latent_size(height: int, width: int, stem: EncoderStem) -> tuple[int, int]:
    """(S_h, S_w) of z: the stride-2 layers with padding round up, so S = ceil(H / stride)."""
    if stem == "small":
        return -(-height // 2), -(-width // 2)
    return -(-height // 8), -(-width // 8)


class _BasicBlock(nn.Module):
    """ResNet's BasicBlock: two 3x3 convolutions with BN and a (projected) identity shortcut."""

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def scaled_channels(channels: int, width: float) -> int:
    """``channels`` times the width multiplier, rounded, at least 4."""
    return max(4, round(channels * width))


def _image_encoder(in_channels: int, stem: EncoderStem, width: float = 1.0) -> nn.Sequential:
    base, latent = scaled_channels(64, width), scaled_channels(LATENT_CHANNELS, width)
    if stem == "small":
        head: list[nn.Module] = [nn.Conv2d(in_channels, base, 3, 1, 1, bias=False), nn.BatchNorm2d(base), nn.ReLU(inplace=True)]
    else:
        head = [
            nn.Conv2d(in_channels, base, 7, 2, 3, bias=False), nn.BatchNorm2d(base), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1),
        ]
    layer1 = [_BasicBlock(base, base, 1), _BasicBlock(base, base, 1)]
    layer2 = [_BasicBlock(base, latent, 2), _BasicBlock(latent, latent, 1)]
    return nn.Sequential(*head, *layer1, *layer2)


def _decoder(in_channels: int, out_channels: int, stem: EncoderStem, width: float = 1.0) -> nn.Sequential:
    # Upsampling kernels of the second and last ConvT: 3 (stride 1) for the x2 decoder, 4 (stride 2) for x8.
    up = {"small": (3, 1), "imagenet": (4, 2)}[stem]
    wide, narrow = scaled_channels(64, width), scaled_channels(32, width)
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, wide, 4, 2, 1),
        nn.ConvTranspose2d(wide, wide, 3, 1, 1),
        nn.InstanceNorm2d(wide, affine=False),
        nn.ReLU(inplace=True),
        nn.ConvTranspose2d(wide, narrow, up[0], up[1], 1),
        nn.InstanceNorm2d(narrow, affine=False),
        nn.ReLU(inplace=True),
        nn.ConvTranspose2d(narrow, out_channels, up[0], up[1], 1),
    )


class DenseLabelEmbedding(nn.Module):
    """One dense task's label map -> a (B, 16, S_h, S_w) embedding (see the module docstring)."""

    def __init__(self, task: Task, latent: tuple[int, int], channels: int = EMBEDDING_CHANNELS) -> None:
        super().__init__()
        if not task.is_dense:
            raise ValueError(f"task {task.name!r} is {task.kind.value}; dense label embeddings are for dense tasks")
        self.task = task
        self.latent = latent
        inputs = {TaskKind.SEGMENTATION: task.num_classes, TaskKind.DEPTH: 2, TaskKind.NORMAL: 4}[task.kind]
        self.layers = nn.Sequential(
            nn.Conv2d(inputs, _DENSE_HIDDEN, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(_DENSE_HIDDEN, channels, 3, 1, 1)
        )

    def encode_label(self, target: torch.Tensor) -> torch.Tensor:
        """The label map as float channels at image resolution (B, inputs, H, W)."""
        kind = self.task.kind
        if kind is TaskKind.SEGMENTATION:
            labels = target.long()
            valid = labels != IGNORE_INDEX
            one_hot = F.one_hot(torch.where(valid, labels, 0), self.task.num_classes).permute(0, 3, 1, 2).float()
            return one_hot * valid[:, None].float()
        if kind is TaskKind.DEPTH:
            depth = target.float()[:, None]
            return torch.cat([depth, (depth > 0).float()], dim=1)
        normal = target.float()
        return torch.cat([normal, (normal.norm(dim=1, keepdim=True) > 0).float()], dim=1)

    def forward(self, target: torch.Tensor) -> torch.Tensor:
        return self.layers(F.adaptive_avg_pool2d(self.encode_label(target), self.latent))


class MTLUEGenerator(nn.Module):
    """delta = clamp(D([E(x), e^1_{y^1}, ..., e^K_{y^K}]), -epsilon, epsilon) (module docstring).

    Args:
        tasks: every task of the dataset, in its order (the order of the embedding channels).
        image_shape: (C, H, W) of the stored images, the resolution deltas are made at.
        epsilon: L-inf bound in [0, 1] image units (8/255 for the benchmark).
        stem: "auto" (ImageNet stem from 141 px on), "small" or "imagenet".
        unprotected: names of tasks whose labels the generator must not use (partial protection).
        label_priors: False = z only (the release's ``--z_only`` ablation).
        image_encoder: False = embeddings only (the release's ``--classwise`` ablation).
        width_multiplier: multiplier of the encoder's and decoder's channels (1 = the release's; the
            embeddings keep their 16 channels). Smaller widths are for CPU runs: at 32 px the
            release's full-resolution 64-channel layers cost more than a small victim.
    """

    def __init__(
        self,
        tasks: Sequence[Task],
        image_shape: tuple[int, int, int],
        epsilon: float,
        *,
        stem: str = "auto",
        unprotected: Sequence[str] = (),
        label_priors: bool = True,
        image_encoder: bool = True,
        embedding_channels: int = EMBEDDING_CHANNELS,
        width_multiplier: float = 1.0,
    ) -> None:
        super().__init__()
        channels, height, width = image_shape
        if not tasks:
            raise ValueError("the generator needs at least one task to embed")
        if not (label_priors or image_encoder):
            raise ValueError(
                "label_priors=False and image_encoder=False leave the decoder no input; "
                "keep at least one of the two (the release's --z_only or --classwise ablation)"
            )
        if not 0 < epsilon <= 1:
            raise ValueError(f"epsilon is in [0, 1] image units (8/255 = {8 / 255:.4f}), got {epsilon}")
        if not width_multiplier > 0:
            raise ValueError(f"width_multiplier is a positive channel multiplier (1 = the release's), got {width_multiplier}")
        if embedding_channels < 1:
            raise ValueError(f"embedding_channels must be at least 1, got {embedding_channels}")
        names = [task.name for task in tasks]
        unknown = sorted(set(unprotected) - set(names))
        if unknown:
            raise ValueError(f"unprotected task(s) {', '.join(unknown)} are not tasks of the dataset; tasks: {', '.join(names)}")
        if unprotected and not label_priors:
            raise ValueError(
                "unprotected tasks only change what the label embeddings say, and label_priors=False "
                "uses none; drop unprotected_tasks or turn label_priors on"
            )
        self.tasks: tuple[Task, ...] = tuple(tasks)
        self.image_shape = (int(channels), int(height), int(width))
        self.epsilon = float(epsilon)
        self.stem = resolve_stem(stem, height, width)
        self.latent = latent_size(height, width, self.stem)
        self.unprotected: frozenset[str] = frozenset(unprotected)
        self.label_priors = bool(label_priors)
        self.embedding_channels = int(embedding_channels)
        self.width_multiplier = float(width_multiplier)

        self.encoder = _image_encoder(channels, self.stem, width_multiplier) if image_encoder else None
        embedding_size = self.embedding_channels * self.latent[0] * self.latent[1]
        # Keyed by task name; both dicts are empty when label priors are off.
        self.class_embeddings = nn.ModuleDict(
            {task.name: nn.Embedding(task.num_classes, embedding_size) for task in tasks if task.kind.is_classification and label_priors}
        )
        self.dense_embeddings = nn.ModuleDict(
            {task.name: DenseLabelEmbedding(task, self.latent, self.embedding_channels) for task in tasks if task.is_dense and label_priors}
        )
        latent_channels = scaled_channels(LATENT_CHANNELS, width_multiplier)
        decoder_in = (latent_channels if image_encoder else 0) + (self.embedding_channels * len(tasks) if label_priors else 0)
        self.decoder = _decoder(decoder_in, channels, self.stem, width_multiplier)

    @property
    def protected_classification_tasks(self) -> tuple[Task, ...]:
        return tuple(t for t in self.tasks if t.kind.is_classification and t.name not in self.unprotected)

    def protected_class_embeddings(self) -> list[torch.Tensor]:
        """The (C_k, 16 S_h S_w) tables of the protected classification tasks: what the regularisers see."""
        return [self.class_embeddings[t.name].weight for t in self.protected_classification_tasks if t.name in self.class_embeddings]

    def label_maps(self, targets: Mapping[str, torch.Tensor], batch: int) -> list[torch.Tensor]:
        """One (B, 16, S_h, S_w) embedding map per task, in task order."""
        maps = []
        shape = (batch, self.embedding_channels, *self.latent)
        for task in self.tasks:
            if task.name not in targets:
                raise KeyError(f"the generator needs the labels of task {task.name!r}; got targets for {sorted(targets)}")
            if task.kind.is_classification:
                table = self.class_embeddings[task.name]
                if task.name in self.unprotected:
                    rows = table.weight.mean(dim=0).detach().expand(batch, -1)
                else:
                    rows = table(targets[task.name].long())
                maps.append(rows.reshape(shape))
            elif task.name in self.unprotected:
                maps.append(torch.zeros(shape, device=self.decoder[0].weight.device))
            else:
                maps.append(self.dense_embeddings[task.name](targets[task.name]))
        return maps

    def check_images(self, images: torch.Tensor) -> None:
        """Refuse images of another shape than the generator's, with the reason."""
        if images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(
                f"the generator was built for images of shape {self.image_shape}, got {tuple(images.shape)}; "
                f"it works at the stored resolution, before any crop"
            )

    def decoder_input(self, images: torch.Tensor, targets: Mapping[str, torch.Tensor] | None) -> torch.Tensor:
        """What the decoder sees: [z, e^1, ..., e^K] on channels, or the ablations' part of it."""
        self.check_images(images)
        parts = []
        if self.encoder is not None:
            parts.append(self.encoder(images))
        if self.label_priors:
            if targets is None:
                raise ValueError("the generator uses label priors and needs the targets of every task")
            parts.extend(self.label_maps(targets, images.shape[0]))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def forward(self, images: torch.Tensor, targets: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Images (B, C, H, W) in [0, 1] and their targets -> deltas (B, C, H, W) in [-epsilon, epsilon].

        The decoder's first layer is computed as in :meth:`first_layer`, which gives what
        ``decoder[0](decoder_input(images, targets))`` gives up to float rounding.
        """
        _, height, width = self.image_shape
        out = self.decoder[1:](self.first_layer(images, targets))[..., :height, :width]
        # In float32 under autocast too: bf16 cannot hold epsilon exactly.
        return out.float().clamp(-self.epsilon, self.epsilon)

    def first_layer(self, images: torch.Tensor, targets: Mapping[str, torch.Tensor] | None) -> torch.Tensor:
        """The decoder's first transposed convolution of ``decoder_input``, class embeddings factored out.

        The layer is linear in its input channels, and a classification task's embedding map is
        one of C_k table rows. So each row goes through the layer once per step, not once per
        sample: the C_k output maps of every table (with the task's slice of the kernel, no
        bias) form a (sum_k C_k, ...) matrix, and a sample's share is its one-hot labels times
        that matrix (an unprotected task's row is the mean over classes, of detached tables, as
        in :meth:`label_maps`). Only z and the dense tasks' maps are convolved per sample. With
        CelebA's 40 tasks the embeddings are 640 of the layer's 768 input channels, and the
        layer is most of the generator's cost (``bench/bench_generator.py``).
        """
        if not self.class_embeddings:
            return self.decoder[0](self.decoder_input(images, targets))
        self.check_images(images)
        if targets is None:
            raise ValueError("the generator uses label priors and needs the targets of every task")
        layer: nn.ConvTranspose2d = self.decoder[0]
        transpose = {"stride": layer.stride, "padding": layer.padding, "dilation": layer.dilation}
        spatial, kernels, class_maps, one_hots = [], [], [], []
        offset = 0
        if self.encoder is not None:
            spatial.append(self.encoder(images))
            offset = spatial[0].shape[1]
            kernels.append(layer.weight[:offset])
        batch, channels = images.shape[0], self.embedding_channels
        for task in self.tasks:
            kernel = layer.weight[offset : offset + channels]
            offset += channels
            if task.name not in targets:
                raise KeyError(f"the generator needs the labels of task {task.name!r}; got targets for {sorted(targets)}")
            if task.kind.is_classification:
                table = self.class_embeddings[task.name].weight
                unprotected = task.name in self.unprotected
                rows = (table.detach() if unprotected else table).reshape(task.num_classes, channels, *self.latent)
                class_maps.append(F.conv_transpose2d(rows, kernel, None, **transpose))
                if unprotected:
                    one_hots.append(table.new_full((batch, task.num_classes), 1.0 / task.num_classes))
                else:
                    one_hots.append(F.one_hot(targets[task.name].long(), task.num_classes).to(table.dtype))
            elif task.name not in self.unprotected:
                spatial.append(self.dense_embeddings[task.name](targets[task.name]))
                kernels.append(kernel)
        maps = torch.cat(class_maps)
        out = (torch.cat(one_hots, dim=1) @ maps.flatten(1)).view(batch, *maps.shape[1:])
        if spatial:
            out = out + F.conv_transpose2d(torch.cat(spatial, dim=1), torch.cat(kernels), None, **transpose)
        return out + layer.bias[:, None, None]


def _unit_rows(embeddings: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [F.normalize(table.float(), dim=1) for table in embeddings]


def intra_task_similarity(embeddings: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean cosine over all within-task pairs, pooled over tasks (the paper's L_Intra).

    1 when a task's rows point the same way, -1 for two opposite rows, 0 with no pair at all.
    """
    if not embeddings:
        return torch.zeros(())
    total = embeddings[0].new_zeros(())
    pairs = 0
    for rows in _unit_rows(embeddings):
        classes = rows.shape[0]
        gram = rows @ rows.T
        # Off-diagonal sum = 2 * sum over m < n.
        total = total + (gram.sum() - gram.diagonal().sum()) / 2
        pairs += classes * (classes - 1) // 2
    return total / pairs if pairs else total


def inter_task_similarity(embeddings: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean |cos| over all pairs of rows from different tasks (L_Inter); 0 for fewer than two tasks."""
    if len(embeddings) < 2:
        return embeddings[0].new_zeros(()) if embeddings else torch.zeros(())
    rows = torch.cat(_unit_rows(embeddings))
    task_of_row = torch.cat([torch.full((len(table),), index, device=rows.device) for index, table in enumerate(embeddings)])
    cross = task_of_row[:, None] != task_of_row[None, :]
    # Each unordered pair appears twice in the masked Gram matrix; the mean is unchanged.
    return (rows @ rows.T).abs()[cross].mean()
