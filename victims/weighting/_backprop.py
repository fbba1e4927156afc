"""Backpropagation for strategies that need each task's gradient separately.

torchjd's ``mtl_backward`` differentiates each task loss on its own, which assumes K separate loss
tensors with disjoint graphs. Our interface hands over one stacked loss vector instead, so each
of those per-task passes would run back through every head and free the graph after the first;
keeping it alive (``retain_graph=True``) would hold every activation until the training loop
drops the next batch's references. The same split is done here with torchjd's public ``jac`` and
``backward``:

1. one vectorised pass through the heads gives the K gradients w.r.t. the features
   (``jac(losses, features)``), and one ordinary pass gives every head its own task's gradient;
2. the strategy then decides what reaches the shared encoder: a Jacobian (one vectorised pass
   through the encoder, ``accumulate_shared_jacobian``) or a single combined gradient.

Every graph node runs once per pass and the graph is freed by the last one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchjd.autojac import backward as backward_jacobian
from torchjd.autojac import jac

from .base import WeightingError

__all__ = [
    "accumulate_shared_jacobian",
    "backward_through_heads",
    "chunk_size",
    "task_specific_parameters",
]


def chunk_size(requested: int | None, features: Sequence[Tensor]) -> int | None:
    """How many task gradients to backpropagate at once; ``None`` chooses by device.

    On the CPU, one at a time: ``torch.vmap`` over a convolutional encoder's backward pass was up
    to 3 times slower than a loop over the tasks there (small CNN, 8 tasks) and never faster
    (ResNet-18, 4 tasks). Elsewhere all at once, torchjd's default, which batches the K passes
    into larger kernels on a GPU.
    """
    if requested is not None:
        return requested
    return 1 if features[0].device.type == "cpu" else None


def task_specific_parameters(
    losses: Tensor, features: Sequence[Tensor], shared_parameters: Sequence[Tensor]
) -> list[Tensor]:
    """The trainable leaves the losses reach without going through the features (task heads)."""
    boundary = {tensor.grad_fn for tensor in features if tensor.grad_fn is not None}
    feature_ids = {id(tensor) for tensor in features}
    shared_ids = {id(parameter) for parameter in shared_parameters}
    leaves: list[Tensor] = []
    visited = set()
    pending = [losses.grad_fn]
    while pending:
        node = pending.pop()
        if node is None or node in visited or node in boundary:
            continue
        visited.add(node)
        leaf = getattr(node, "variable", None)  # set on AccumulateGrad nodes only
        if leaf is not None and id(leaf) not in feature_ids:
            if id(leaf) in shared_ids:
                raise WeightingError(
                    f"a shared parameter of shape {tuple(leaf.shape)} reaches the task losses "
                    "without going through the features; pass as features the last shared "
                    "representation that every task head consumes"
                )
            leaves.append(leaf)
        pending.extend(child for child, _ in node.next_functions)
    return leaves


def backward_through_heads(
    losses: Tensor,
    features: Sequence[Tensor],
    shared_parameters: Sequence[Tensor],
    *,
    head_loss_weights: Tensor | None = None,
    parallel_chunk_size: int | None = None,
) -> tuple[Tensor, ...]:
    """Accumulate each head's task gradient (times ``head_loss_weights`` when given) and return,
    per feature tensor, the per-task gradients w.r.t. it (shape ``[K, *feature.shape]``)."""
    heads = task_specific_parameters(losses, features, shared_parameters)
    feature_jacobians = jac(
        losses,
        list(features),
        retain_graph=bool(heads),
        parallel_chunk_size=chunk_size(parallel_chunk_size, features),
    )
    if heads:
        seed = torch.ones_like(losses) if head_loss_weights is None else head_loss_weights
        torch.autograd.backward(losses, grad_tensors=seed.detach(), inputs=heads)
    return feature_jacobians


def accumulate_shared_jacobian(
    features: Sequence[Tensor],
    feature_jacobians: Sequence[Tensor],
    shared_parameters: Sequence[Tensor],
    parallel_chunk_size: int | None,
) -> None:
    """Chain the per-task feature gradients through the encoder into the shared ``.jac`` fields."""
    backward_jacobian(
        list(features),
        jac_tensors=list(feature_jacobians),
        inputs=shared_parameters,
        parallel_chunk_size=chunk_size(parallel_chunk_size, features),
    )
