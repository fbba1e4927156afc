"""The surrogate stage: a clean multi-task model, with snapshots, for surrogate-dependent UEs.

TAP (Fowl et al., "Adversarial Examples Make Strong Poisons", NeurIPS 2021,
https://arxiv.org/abs/2106.10807) attacks a model trained on the clean data; SEP (Chen et al.,
"Self-Ensemble Protection: Training Checkpoints Are Good Data Protectors", ICLR 2023,
https://arxiv.org/abs/2211.12005) attacks the checkpoints of one such training run. MTL-UE
(Yu et al., ICML 2025, https://arxiv.org/abs/2505.05279, reference §2.5 and §3) trains that
surrogate with its victim recipe (MTL ResNet-18, 60 epochs) and keeps a checkpoint every 4
epochs; SEP uses those 15 checkpoints, TAP the final model.

**Snapshot schedule (the release's).** The release's clean run (``main_MTL_binary.py:421-472``,
likewise ``main_MTL.py:255-304``) loops over 0-based epochs ``epoch = 0 .. epochs-1``, trains one
epoch, then saves ``<checkpoint>_epoch{epoch}`` when ``epoch % save_frequency == 0``
(``main_MTL_binary.py:464``; ``--save_frequency 4`` in ``some_scripts.sh:15``). Its file
``_epoch{k}`` therefore holds the network after k + 1 epochs of training, and SEP loads
``_epoch0``, ``_epoch4``, ..., ``_epoch56`` (``perturbation_MTL_binary_DAE.py:767-768``,
``perturbation_MTL_DAE.py:635-636``): the models after epochs 1, 5, ..., 57 of 60. No
checkpoint is the untrained initialisation. Here a snapshot is named by the number of epochs
trained (``fit``'s 1-based ``record["epoch"]``): ``epoch_001.pt``, ``epoch_005.pt``, ...,
``epoch_057.pt`` for 60 epochs every 4 (the release's ``_epoch0`` .. ``_epoch56``).

Here the surrogate *is* a victim: built and trained by ``victims`` (``MultiTaskModel``,
``fit`` with the ``TrainConfig`` recipe, equal task weights), on the clean train split, so the
project has a single training loop. ``fit``'s epoch callback keeps a snapshot after epoch
``e`` (1-based) with ``(e - 1) % every == 0``; the final model is kept separately. Output
folder::

    OUT/surrogate.json          the card (format mtlue-surrogate/2): dataset and its content
                                hashes, tasks, backbone, stem, decoder, crop size, channels,
                                pretrained encoder, epochs, every, seed, training recipe, test
                                metrics and history, and per file its epoch and sha256
    OUT/final.pt                the model after the last epoch (TAP's surrogate)
    OUT/epoch_001.pt ...        the snapshots, in epoch order (SEP's checkpoints)

Every ``.pt`` is ``torch.save`` of a plain ``state_dict`` (tensors only) and is read back with
``torch.load(weights_only=True)``, so a surrogate file cannot execute code. The folder is built
under a temporary name and renamed into place when complete (each file inside is itself
written to a temporary file and renamed), so a killed job never leaves a surrogate that looks
finished. With ``checkpoint_dir`` the training state is saved after every epoch and a rerun
resumes from it (``victims.checkpoint``), snapshots included.

:func:`load_surrogate` rebuilds the network from the card, checks the file's sha256 against it,
and refuses a surrogate whose tasks, backbone, crop size, channels or training data do not
match what the caller is about to perturb, naming the command that makes the right one.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mtlue.data.store import PreparedDataset
from mtlue.data.tasks import Task, tasks_to_json
from mtlue.errors import SurrogateError
from mtlue.io import FolderOutput, atomic_directory, atomic_write, atomic_write_json, file_sha256

__all__ = [
    "CARD_NAME",
    "DEFAULT_EVERY",
    "FINAL_NAME",
    "FORMAT",
    "SurrogateCard",
    "SurrogateError",
    "SurrogateFile",
    "load_surrogate",
    "read_surrogate_card",
    "snapshot_epochs",
    "snapshot_name",
    "surrogate_files",
    "train_surrogate",
]

#: Version 2: snapshots are taken after epochs 1, 1 + every, ... (the release's schedule);
#: version 1 folders hold an untrained ``epoch_000.pt`` and are refused, naming the retrain.
FORMAT = "mtlue-surrogate/2"
CARD_NAME = "surrogate.json"
#: What ``mtlue surrogate --out`` holds: the card and the model files it lists (see mtlue.io).
OUTPUT = FolderOutput(
    "surrogate", CARD_NAME, "mtlue-surrogate/", listed=lambda card: [card["final"]["file"], *(item["file"] for item in card["snapshots"])],
)
FINAL_NAME = "final.pt"
#: MTL-UE's clean run keeps a checkpoint every 4 epochs (15 of 60 for SEP: after epochs 1, 5, ..., 57).
DEFAULT_EVERY = 4
#: Name of ``fit``'s resumable training checkpoint inside ``checkpoint_dir``.
TRAINING_CHECKPOINT = "training.pt"


def snapshot_name(epoch: int) -> str:
    return f"epoch_{epoch:03d}.pt"


def snapshot_epochs(epochs: int, every: int) -> list[int]:
    """Epochs trained when a snapshot is kept: 1, 1 + every, 1 + 2*every, ... up to ``epochs``.

    60, 4 -> 1, 5, ..., 57 (15 of them): the release's ``_epoch0`` .. ``_epoch56``, saved after
    0-based epoch k, i.e. after k + 1 epochs (``main_MTL_binary.py:464``; module docstring).
    Never 0: the untrained initialisation is not a checkpoint of the run.
    """
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise SurrogateError(f"--every must be a whole number of epochs >= 1 (MTL-UE: {DEFAULT_EVERY}), got {every!r}")
    if epochs < 1:
        raise SurrogateError(f"a surrogate trains for at least 1 epoch, got {epochs}")
    return list(range(1, epochs + 1, every))


@dataclass(frozen=True)
class SurrogateFile:
    """One model file of a surrogate folder: its name, the epoch it was taken at, its sha256."""

    file: str
    epoch: int
    sha256: str


@dataclass(frozen=True)
class SurrogateCard:
    """The JSON card of a surrogate folder (``surrogate.json``); see the module docstring."""

    dataset: str
    train_content_hash: str
    test_content_hash: str
    tasks: list[dict[str, Any]]
    backbone: str
    stem: str
    decoder: str
    decoder_width: float
    image_size: int
    in_chans: int
    epochs: int
    every: int
    seed: int
    train_config: dict[str, Any]
    final: SurrogateFile
    snapshots: tuple[SurrogateFile, ...]
    metrics: dict[str, Any]
    created: str
    train_seconds: float
    #: The local timm checkpoint the encoder started from, or None (from scratch).
    pretrained: str | None = None
    format: str = FORMAT

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["snapshots"] = [asdict(item) for item in self.snapshots]
        return data

    @classmethod
    def from_json(cls, data: object, source: Path) -> SurrogateCard:
        retrain = f"delete {source.parent} and train the surrogate again with `mtlue surrogate`"
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise SurrogateError(f"{source} is not a {FORMAT} card (format {found!r}); {retrain}")
        try:
            files = {
                "final": SurrogateFile(**data["final"]),
                "snapshots": tuple(SurrogateFile(**item) for item in data["snapshots"]),
            }
            return cls(**{**data, **files})
        except (KeyError, TypeError) as error:
            raise SurrogateError(f"{source} is incomplete or has unknown fields ({error}); {retrain}") from None

    def files(self) -> dict[str, SurrogateFile]:
        """Every model file of the folder by name (snapshots first, in epoch order, then the final model)."""
        return {item.file: item for item in (*self.snapshots, self.final)}


def read_surrogate_card(folder: str | os.PathLike[str]) -> SurrogateCard:
    """The card of the surrogate folder ``folder``."""
    path = Path(folder) / CARD_NAME
    if not path.is_file():
        raise SurrogateError(
            f"{Path(folder)} has no {CARD_NAME}: it is not a surrogate folder; train one with "
            f"`mtlue surrogate --data DATASET --out {Path(folder)}`"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise SurrogateError(f"{path} is not valid JSON ({error}); delete {path.parent} and train the surrogate again") from None
    return SurrogateCard.from_json(data, path)


def surrogate_files(folder: str | os.PathLike[str]) -> tuple[Path, tuple[Path, ...]]:
    """``(final model, snapshots in epoch order)`` of a surrogate folder: TAP's and SEP's inputs."""
    card = read_surrogate_card(folder)
    root = Path(folder)
    return root / card.final.file, tuple(root / item.file for item in card.snapshots)


# ------------------------------------------------------------------------------------------------
# Training


def _fingerprint(dataset: PreparedDataset, victim: Any, config: Any, every: int) -> dict[str, Any]:
    from victims.config import TrainConfig

    train = {key: value for key, value in config.to_json().items() if key not in TrainConfig.OPERATIONAL}
    return {
        "run": "surrogate",
        "dataset": dataset.name,
        "train_content_hash": dataset.manifest["splits"]["train"]["content_hash"],
        "test_content_hash": dataset.manifest["splits"]["test"]["content_hash"],
        "victim": asdict(victim),
        "train_config": train,
        "every": every,
    }


def _save_state_dict(model: Any, path: Path) -> None:
    import torch

    # Plain CPU tensors only: the file loads with weights_only=True on any device.
    state = {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
    with atomic_write(path, "wb") as handle:
        torch.save(state, handle)


def _card(
    dataset: PreparedDataset, victim: Any, config: Any, every: int, building: Path, snapshots: list[SurrogateFile],
    result: Any, device: Any, train_seconds: float,
) -> SurrogateCard:
    """The card of a trained surrogate whose final weights are in ``building``."""
    from victims.run import versions

    return SurrogateCard(
        dataset=dataset.name,
        train_content_hash=dataset.manifest["splits"]["train"]["content_hash"],
        test_content_hash=dataset.manifest["splits"]["test"]["content_hash"],
        tasks=tasks_to_json(dataset.tasks),
        backbone=victim.backbone,
        stem=victim.stem,
        decoder=victim.decoder,
        decoder_width=float(victim.decoder_width),
        image_size=dataset.crop_size,
        in_chans=dataset.image_shape[0],
        epochs=config.epochs,
        every=every,
        seed=config.seed,
        train_config=config.to_json(),
        final=SurrogateFile(FINAL_NAME, config.epochs, file_sha256(building / FINAL_NAME)),
        snapshots=tuple(snapshots),
        metrics={"test": result.metrics, "history": result.history, "versions": versions(), "device": str(device)},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        train_seconds=train_seconds,
        pretrained=victim.pretrained,
    )


def train_surrogate(
    dataset: PreparedDataset,
    out_dir: str | os.PathLike[str],
    *,
    victim: Any = None,
    config: Any = None,
    every: int = DEFAULT_EVERY,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    progress: bool | None = None,
    callbacks: Sequence[Any] = (),
) -> SurrogateCard:
    """Train a clean surrogate on ``dataset``'s train split and write the folder ``out_dir``.

    ``victim`` (a ``victims.VictimConfig``) chooses the network, ``config`` (a
    ``victims.TrainConfig``) the recipe; both default to MTL-UE's (ResNet-18, 60 epochs, Adam
    1e-3, ...). The surrogate is trained with equal task weights as one multi-task network, as
    in MTL-UE; another weighting or single-task mode is refused. ``callbacks`` are ``fit``'s
    epoch callbacks, called after the epoch's snapshot is kept.
    """
    from victims.config import TrainConfig, VictimConfig
    from victims.device import autocast_dtype
    from victims.setup import build_model, data_budget_bytes, prepare_device, split_sources
    from victims.train import fit
    from victims.weighting import create_weighting

    victim = victim or VictimConfig()
    config = config or TrainConfig()
    if victim.mode != "mtl" or victim.weighting != "ew" or victim.weighting_options:
        raise SurrogateError(
            f"the surrogate is one multi-task network with equal task weights (MTL-UE's); got mode "
            f"{victim.mode!r}, weighting {victim.weighting!r}: leave --mode and --weighting at mtl and ew"
        )
    epochs_kept = snapshot_epochs(config.epochs, every)
    out_dir = Path(out_dir)
    started = time.perf_counter()

    device = prepare_device(config.device, config.num_threads)
    amp_dtype = autocast_dtype(device, config.amp)
    train, test = split_sources(dataset, device, data_budget_bytes(device, config.data_budget_mb))
    model = build_model(dataset.tasks, victim, dataset, device, seed=config.seed, pretrained=victim.pretrained)
    weighting = create_weighting("ew", len(dataset.tasks)).to(device)

    with atomic_directory(out_dir, OUTPUT) as building:
        # Snapshots go where the training checkpoint lives, so a resumed run still has the
        # snapshots of the epochs it does not repeat.
        work = Path(checkpoint_dir) if checkpoint_dir is not None else building
        work.mkdir(parents=True, exist_ok=True)
        def keep_snapshot(name: str, record: dict[str, Any]) -> None:
            if record["epoch"] in epochs_kept:
                _save_state_dict(model, work / snapshot_name(record["epoch"]))

        result = fit(
            model, weighting, train, test, config,
            crop_size=dataset.crop_size, amp_dtype=amp_dtype, name="surrogate",
            checkpoint_path=Path(checkpoint_dir) / TRAINING_CHECKPOINT if checkpoint_dir is not None else None,
            fingerprint=_fingerprint(dataset, victim, config, every),
            progress=progress, callbacks=[keep_snapshot, *callbacks],
        )
        _save_state_dict(model, building / FINAL_NAME)
        snapshots = []
        for epoch in epochs_kept:
            name = snapshot_name(epoch)
            if work != building:
                with open(work / name, "rb") as source, atomic_write(building / name, "wb") as target:
                    shutil.copyfileobj(source, target)
            snapshots.append(SurrogateFile(name, epoch, file_sha256(building / name)))
        card = _card(dataset, victim, config, every, building, snapshots, result, device, time.perf_counter() - started)
        atomic_write_json(building / CARD_NAME, card.to_json())
    return card


# ------------------------------------------------------------------------------------------------
# Loading


def _task_signature(tasks: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, int]]:
    return [(task["name"], task["kind"], int(task["num_classes"])) for task in tasks]


def _describe(signature: list[tuple[str, str, int]]) -> str:
    return ", ".join(f"{name} ({kind}, {classes})" for name, kind, classes in signature)


#: The fix every refused surrogate shares.
_RETRAIN = "train a matching surrogate with `mtlue surrogate --data DATASET --out FOLDER`"


def load_surrogate(
    path: str | os.PathLike[str],
    dataset: PreparedDataset | Sequence[Task],
    device: Any = "cpu",
    *,
    backbone: str | None = None,
) -> Any:
    """The ``MultiTaskModel`` saved at ``path`` (a ``.pt`` of a surrogate folder), frozen, in eval mode.

    ``dataset`` is the prepared dataset about to be perturbed (tasks, crop size, channels and
    train-split content must match the surrogate's), or just the tasks it must predict.
    ``backbone``, when given, must be the surrogate's. Parameters do not require gradients:
    a surrogate is only differentiated with respect to its input.
    """
    import torch

    from victims.model import MultiTaskModel

    path = Path(path)
    card = _verified_card(path)
    tasks = dataset.tasks if isinstance(dataset, PreparedDataset) else tuple(dataset)
    _check_surrogate_fits(path, card, tasks, backbone)
    if isinstance(dataset, PreparedDataset):
        _check_surrogate_fits_data(path, card, dataset)
    state = _read_state_dict(path)

    # Building the network draws its (discarded) initialisation from torch's global generator;
    # forking keeps the caller's random stream where it was.
    with torch.random.fork_rng(devices=[]):
        model = MultiTaskModel(
            tasks, card.backbone, image_size=card.image_size, in_chans=card.in_chans,
            stem=card.stem, decoder=card.decoder, decoder_width=card.decoder_width,  # type: ignore[arg-type]
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        first = str(error).splitlines()[:3]
        raise SurrogateError(
            f"{path} does not fit the network its card describes ({' '.join(first)}); delete {path.parent} and {_RETRAIN}"
        ) from None
    model.requires_grad_(False)
    return model.eval().to(device)


def _verified_card(path: Path) -> SurrogateCard:
    """The card of the surrogate file ``path``, once the file is there, listed and unchanged."""
    if not path.is_file():
        raise SurrogateError(f"no surrogate model file at {path}; {_RETRAIN}")
    card = read_surrogate_card(path.parent)
    entry = card.files().get(path.name)
    if entry is None:
        raise SurrogateError(
            f"{path.name} is not listed in {path.parent / CARD_NAME} (files: {', '.join(card.files())}); "
            f"pass one of those, or {_RETRAIN}"
        )
    if file_sha256(path) != entry.sha256:
        raise SurrogateError(
            f"{path} does not match the sha256 its card records: the file changed after training; "
            f"delete {path.parent} and {_RETRAIN}"
        )
    return card


def _check_surrogate_fits(path: Path, card: SurrogateCard, tasks: Sequence[Task], backbone: str | None) -> None:
    """The surrogate predicts ``tasks`` and is the ``backbone`` asked for (when one is)."""
    expected, found = _task_signature(tasks_to_json(tasks)), _task_signature(card.tasks)
    if expected != found:
        raise SurrogateError(
            f"surrogate {path} predicts tasks [{_describe(found)}] but the data has tasks "
            f"[{_describe(expected)}]; {_RETRAIN.replace('DATASET', 'THAT_DATASET')}"
        )
    if backbone is not None and backbone != card.backbone:
        raise SurrogateError(
            f"surrogate {path} is a {card.backbone!r} network, {backbone!r} was asked for; "
            f"train one with `mtlue surrogate --backbone {backbone} ...` or ask for {card.backbone!r}"
        )


def _check_surrogate_fits_data(path: Path, card: SurrogateCard, dataset: PreparedDataset) -> None:
    """The surrogate saw ``dataset``'s crop size, channels and train split."""
    problems = []
    if card.image_size != dataset.crop_size:
        problems.append(f"crop size {card.image_size} vs the dataset's {dataset.crop_size}")
    if card.in_chans != dataset.image_shape[0]:
        problems.append(f"{card.in_chans} image channel(s) vs the dataset's {dataset.image_shape[0]}")
    if card.train_content_hash != dataset.manifest["splits"]["train"]["content_hash"]:
        problems.append(f"it was trained on another version of the train split (dataset {card.dataset!r})")
    if problems:
        raise SurrogateError(
            f"surrogate {path} does not fit dataset {dataset.name!r} at {dataset.root}: {'; '.join(problems)}; "
            f"train one with `mtlue surrogate --data {dataset.root} --out FOLDER`"
        )


def _read_state_dict(path: Path) -> Any:
    """The plain state_dict of tensors saved at ``path``."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as error:
        raise SurrogateError(f"cannot read surrogate {path} ({error}); delete {path.parent} and {_RETRAIN}") from None
    if not isinstance(state, Mapping) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise SurrogateError(f"{path} does not hold a plain state_dict of tensors; delete {path.parent} and {_RETRAIN}")
    return state
