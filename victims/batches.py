"""Batches of a split on the training device, without a DataLoader.

The prepared datasets are uint8 memory maps, so a batch needs no decoding: it is an index
gather. A split whose images and targets fit in ``budget_bytes`` is copied to the device once
(uint8 images, targets in their stored dtypes) and every batch is a gather on the device;
a larger split stays memory-mapped and each batch is gathered on the host, pinned when the
device is a GPU, and copied asynchronously; :func:`prefetched` gathers the next batches of such
a split in a background thread while the current one trains. Images stay uint8 until the augmentation has
cropped them (:mod:`victims.augment`), which moves 4x fewer bytes than float32 would.

Batch order comes from a caller-owned ``torch.Generator``; the final partial batch is kept
(as a DataLoader does) unless it holds a single sample, which batch norm cannot train on.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

__all__ = ["BatchSource", "SplitArrays", "batches_per_epoch", "epoch_batches", "prefetched", "sequential_batches"]

Batch = tuple[torch.Tensor, dict[str, torch.Tensor]]

#: Batches gathered ahead of the one training when a split is not resident.
PREFETCH_DEPTH = 2


@dataclass(frozen=True)
class SplitArrays:
    """Images (N, C, H, W) uint8 and per-task targets (N, ...) of one split, e.g. memory maps."""

    images: np.ndarray
    targets: Mapping[str, np.ndarray]

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 (N, C, H, W), got {self.images.dtype} {self.images.shape}"
            )
        sizes = {name: len(array) for name, array in self.targets.items()}
        wrong = {name: size for name, size in sizes.items() if size != len(self.images)}
        if wrong:
            raise ValueError(f"{len(self.images)} images but targets of other lengths: {wrong}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def nbytes(self) -> int:
        return int(self.images.nbytes + sum(array.nbytes for array in self.targets.values()))


class BatchSource:
    """Serves batches of one split on ``device``, resident there when it fits the budget."""

    def __init__(self, split: SplitArrays, device: torch.device, budget_bytes: int) -> None:
        self.split = split
        self.device = device
        self.resident = split.nbytes <= budget_bytes
        self._pin = device.type == "cuda"
        if self.resident:
            # np.array copies the read-only memory map into writable memory torch can own.
            self._images = torch.from_numpy(np.array(split.images)).to(device)
            self._targets = {name: torch.from_numpy(np.array(array)).to(device) for name, array in split.targets.items()}

    def __len__(self) -> int:
        return len(self.split)

    def batch(self, indices: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Images and targets of the samples ``indices`` (a CPU int64 tensor), on the device."""
        if self.resident:
            on_device = indices.to(self.device)
            return self._images[on_device], {name: array[on_device] for name, array in self._targets.items()}
        rows = indices.numpy()
        return self._transfer(self.split.images[rows]), {
            name: self._transfer(array[rows]) for name, array in self.split.targets.items()
        }

    def _transfer(self, array: np.ndarray) -> torch.Tensor:
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if self._pin:
            return tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.to(self.device)


class Batches(Protocol):
    """What :func:`prefetched` reads from: a :class:`BatchSource`, or one wrapping it (a defense's)."""

    resident: bool

    def batch(self, indices: torch.Tensor) -> Batch: ...


def prefetched(source: Batches, index_batches: Iterable[torch.Tensor], depth: int = PREFETCH_DEPTH) -> Iterator[Batch]:
    """``source.batch(indices)`` for each of ``index_batches``, in order.

    A resident source gathers on the device, which queues asynchronously anyway, so its
    batches are served as asked. Otherwise one background thread gathers (memory-map reads,
    pinning, copies) up to ``depth`` batches ahead. ``index_batches`` is advanced on the calling
    thread only, so any random numbers it draws come in the same order as without prefetching.
    """
    if source.resident:
        for indices in index_batches:
            yield source.batch(indices)
        return
    if depth < 1:
        raise ValueError(f"prefetch depth must be at least 1, got {depth}")
    pending: deque[Future[Batch]] = deque()
    remaining = iter(index_batches)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-prefetch") as worker:
        try:
            for indices in remaining:
                pending.append(worker.submit(source.batch, indices))
                if len(pending) > depth:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


def epoch_batches(size: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """A fresh random permutation of ``range(size)`` cut into batches (see the module docstring)."""
    order = torch.randperm(size, generator=generator)
    for start in range(0, size, batch_size):
        indices = order[start : start + batch_size]
        if len(indices) == 1 and size > 1:
            return
        yield indices


def batches_per_epoch(size: int, batch_size: int) -> int:
    """How many batches :func:`epoch_batches` yields."""
    full, remainder = divmod(size, batch_size)
    return full + (1 if remainder > 1 or (remainder == 1 and size == 1) else 0)


def sequential_batches(size: int, batch_size: int) -> Iterator[torch.Tensor]:
    """``range(size)`` in order, in batches (evaluation)."""
    for start in range(0, size, batch_size):
        yield torch.arange(start, min(start + batch_size, size))
