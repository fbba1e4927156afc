"""One setup for every network the benchmark trains: victims, the surrogate, and the poisons' own models.

A victim (:func:`victims.run.run_victim`), the clean surrogate
(:func:`mtlue.methods.surrogate.train_surrogate`), EM's and TAP's PGD loops and MTL-UE's
generator training all start the same way, and do so through these functions:

- :func:`prepare_device`: the device resolved (:mod:`victims.device`), the CPU threads fixed,
  and cuDNN made reproducible (deterministic algorithms, no benchmarking), so that the same
  seed gives the same numbers on the same GPU;
- :func:`data_budget_bytes`: how much of the data may live on the device. Unset, it is sized
  from the device's free memory (half of it on a GPU, so that CelebA's 2.39 GB training split
  lives on an 80 GB card) and is :data:`CPU_BUDGET_MB` on the CPU, where a memory map already
  is host memory and residency only saves the per-batch gather;
- :func:`split_sources`: the train and test splits as :class:`~victims.batches.BatchSource`
  within that budget (the train split first);
- :func:`build_model`: a seeded :class:`~victims.model.MultiTaskModel` of a ``VictimConfig``-like
  network description, on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch

from mtlue.data.store import PreparedDataset
from mtlue.data.tasks import Task

from .batches import BatchSource, SplitArrays
from .device import DeviceError, configure_threads, resolve_device
from .model import MultiTaskModel
from .train import seed_everything

__all__ = ["CPU_BUDGET_MB", "GPU_FREE_FRACTION", "NetworkSpec", "build_model", "data_budget_bytes", "prepare_device", "split_sources"]

#: The data budget on the CPU when none is given (MB).
CPU_BUDGET_MB = 2048.0
#: The share of a GPU's free memory the data may take when no budget is given; the rest is for
#: the network, its activations and the optimizer.
GPU_FREE_FRACTION = 0.5


class NetworkSpec(Protocol):
    """What :func:`build_model` reads: a ``VictimConfig``, or EM's hyperparameters."""

    backbone: str
    stem: str
    decoder: str
    decoder_width: float


def prepare_device(name: str, num_threads: int | None = None) -> torch.device:
    """``name`` (``auto``, ``cpu``, ``cuda[:N]``, ``mps``) resolved, threads fixed, cuDNN reproducible.

    Raises :class:`~victims.device.DeviceError` when the device is not available here.
    """
    device = resolve_device(name)
    configure_threads(num_threads)
    if device.type == "cuda":
        # Reproducible convolution algorithms instead of benchmarked ones.
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return device


def data_budget_bytes(device: torch.device, budget_mb: float | None = None) -> int:
    """Bytes of data allowed on ``device``: ``budget_mb``, or sized from its free memory when None."""
    if budget_mb is not None:
        if budget_mb < 0:
            raise DeviceError(f"the data budget must be >= 0 MB, got {budget_mb}")
        return int(budget_mb * 2**20)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * GPU_FREE_FRACTION)
    if device.type == "mps":
        free = torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory()
        return int(max(free, 0) * GPU_FREE_FRACTION)
    return int(CPU_BUDGET_MB * 2**20)


def split_sources(
    dataset: PreparedDataset, device: torch.device, budget_bytes: int, *, train_images: np.ndarray | None = None
) -> tuple[BatchSource, BatchSource]:
    """The train split (with ``train_images`` in place of its images, e.g. a poison) and the test split."""
    train_split, test_split = dataset.split("train"), dataset.split("test")
    images = train_split.images if train_images is None else train_images
    train = BatchSource(SplitArrays(images, train_split.targets), device, budget_bytes)
    remaining = budget_bytes - (train.split.nbytes if train.resident else 0)
    test = BatchSource(SplitArrays(test_split.images, test_split.targets), device, remaining)
    return train, test


def build_model(
    tasks: Sequence[Task], network: NetworkSpec, dataset: PreparedDataset, device: torch.device, *, seed: int, **options: Any
) -> MultiTaskModel:
    """A ``MultiTaskModel`` of ``network`` for ``dataset``'s crops, initialised from ``seed``, on ``device``.

    ``options`` go to ``MultiTaskModel`` (e.g. ``pretrained``). The seed also fixes every random
    stream after it (:func:`victims.train.seed_everything`), as a training run expects.
    """
    seed_everything(seed)
    return MultiTaskModel(
        tasks, network.backbone, image_size=dataset.crop_size, in_chans=dataset.image_shape[0],
        stem=network.stem, decoder=network.decoder, decoder_width=network.decoder_width,  # type: ignore[arg-type]
        **options,
    ).to(device)
