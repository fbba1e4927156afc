"""Per-epoch training checkpoints that resume bit-identically.

A checkpoint holds everything the rest of a run depends on: model, optimizer, scheduler and
weighting-strategy state, the epoch count and history, and every random stream (torch's CPU
and CUDA generators, numpy's and Python's global generators, and the run's own data-order /
augmentation generator). On the CPU a run stopped after any epoch and resumed from its
checkpoint ends with exactly the parameters and metrics of an uninterrupted run.

Files are written atomically (a killed job leaves the previous checkpoint) and read with
``torch.load(weights_only=True)``, so a checkpoint cannot execute code. Each carries a
fingerprint of the run's settings; resuming with different settings is refused.
"""

from __future__ import annotations

import json
import os
import pickle
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mtlue.errors import CheckpointError
from mtlue.io import atomic_write

__all__ = ["CheckpointError", "TrainingState", "capture_rng", "load_checkpoint", "restore_rng", "save_checkpoint"]

FORMAT = "mtlue-victim-checkpoint/1"


def capture_rng(data_generator: torch.Generator) -> dict[str, Any]:
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state(legacy=True)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": random.getstate(),
        "data": data_generator.get_state(),
    }


def restore_rng(state: Mapping[str, Any], data_generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy = state["numpy"]
    np.random.set_state(
        (numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["position"], numpy["has_gauss"], numpy["cached_gaussian"])
    )
    random.setstate(state["python"])
    data_generator.set_state(state["data"])


class TrainingState:
    """The objects a checkpoint saves and restores, gathered in one place."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        weighting: nn.Module,
        data_generator: torch.Generator,
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.weighting = weighting
        self.data_generator = data_generator


def _normalise(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON form, so tuples and lists (and key order) compare equal."""
    return json.loads(json.dumps(fingerprint, sort_keys=True))


def save_checkpoint(
    path: str | os.PathLike[str],
    state: TrainingState,
    *,
    epoch: int,
    history: list[dict[str, Any]],
    fingerprint: Mapping[str, Any],
) -> None:
    payload = {
        "format": FORMAT,
        "fingerprint": _normalise(fingerprint),
        "epoch": epoch,
        "history": history,
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "weighting": state.weighting.state_dict(),
        "rng": capture_rng(state.data_generator),
    }
    with atomic_write(path, "wb") as handle:
        torch.save(payload, handle)


def load_checkpoint(
    path: str | os.PathLike[str], state: TrainingState, *, fingerprint: Mapping[str, Any]
) -> tuple[int, list[dict[str, Any]]]:
    """Restore ``state`` from ``path``; return the completed epochs and the history so far."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as error:  # truncated or foreign files
        raise CheckpointError(f"cannot read checkpoint {path} ({error}); delete it to start the run afresh") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} checkpoint; delete it or choose another checkpoint directory")
    expected = _normalise(fingerprint)
    if payload["fingerprint"] != expected:
        differing = sorted(
            key for key in set(expected) | set(payload["fingerprint"]) if expected.get(key) != payload["fingerprint"].get(key)
        )
        raise CheckpointError(
            f"checkpoint {path} belongs to a run with different settings ({', '.join(differing)} differ); "
            f"delete it or choose another checkpoint directory"
        )
    state.model.load_state_dict(payload["model"])
    state.optimizer.load_state_dict(payload["optimizer"])
    state.scheduler.load_state_dict(payload["scheduler"])
    state.weighting.load_state_dict(payload["weighting"])
    restore_rng(payload["rng"], state.data_generator)
    return int(payload["epoch"]), list(payload["history"])
