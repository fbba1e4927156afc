"""The ``mtlue victim`` subcommand: train one victim, write its ``metrics.json``.

::

    mtlue victim --data resources/data/shapes --backbone resnet18 --weighting ew --seed 0 \\
        --epochs 60 --batch-size 128 [--mode mtl|stl] [--checkpoint-dir DIR] [--poison STORE] \\
        [--defense jpeg+cutout [--defense-set jpeg.quality=20 ...]] \\
        --out results/shapes/victims/clean/resnet18/ew/none/0/metrics.json

Every ``TrainConfig`` and ``VictimConfig`` field has a flag; unset flags keep the paper's
recipe. The output is written atomically and only after training and evaluation succeed, so a
failed or interrupted run never leaves a ``metrics.json`` behind; with ``--checkpoint-dir`` a
rerun resumes from the last finished epoch. The layout of the file is documented in
:mod:`victims.run`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from .config import DECODERS, MODES, STEMS, TrainConfig, VictimConfig

__all__ = ["add_commands", "add_network_arguments", "add_training_arguments", "network_options", "train_config"]


def _option(text: str) -> tuple[str, Any]:
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def _amp(text: str) -> bool | None:
    choices = {"auto": None, "on": True, "off": False}
    if text not in choices:
        raise argparse.ArgumentTypeError(f"--amp takes auto, on or off, got {text!r}")
    return choices[text]


def add_network_arguments(parser: argparse.ArgumentParser, title: str = "network") -> None:
    """Flags of the network's architecture (every field of ``VictimConfig`` but the weighting and mode)."""
    defaults = VictimConfig()
    network = parser.add_argument_group(title)
    network.add_argument("--backbone", default=defaults.backbone, help="`mtlue list backbones`, or any timm model name (default: %(default)s)")
    network.add_argument("--decoder", choices=DECODERS, default=defaults.decoder, help="decoder of each dense task (default: %(default)s)")
    network.add_argument(
        "--decoder-width", type=float, default=defaults.decoder_width,
        help="multiplier of the dense decoders' default widths (default: %(default)s, smp's widths)",
    )
    network.add_argument("--stem", choices=STEMS, default=defaults.stem, help="stem of classification encoders (see victims.backbones)")
    network.add_argument("--pretrained", metavar="FILE", help="local timm checkpoint to start the encoder from (default: from scratch)")


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of every ``TrainConfig`` field: the recipe and how it is executed."""
    defaults = TrainConfig()
    recipe = parser.add_argument_group("training recipe (defaults: MTL-UE's)")
    recipe.add_argument("--seed", type=int, default=defaults.seed, help="initialisation, data order and augmentation (default: %(default)s)")
    recipe.add_argument("--epochs", type=int, default=defaults.epochs, help="(default: %(default)s)")
    recipe.add_argument("--batch-size", type=int, default=defaults.batch_size, help="(default: %(default)s)")
    recipe.add_argument("--lr", type=float, default=defaults.lr, help="Adam learning rate (default: %(default)s)")
    recipe.add_argument("--weight-decay", type=float, default=defaults.weight_decay, help="Adam L2 weight decay (default: %(default)s)")
    recipe.add_argument(
        "--milestones", type=float, nargs="+", default=list(defaults.milestones),
        help="LR drops as fractions of the epochs (default: %(default)s)",
    )
    recipe.add_argument("--gamma", type=float, default=defaults.gamma, help="LR factor at each milestone (default: %(default)s)")
    clip = recipe.add_mutually_exclusive_group()
    clip.add_argument("--clip-norm", type=float, default=defaults.clip_norm, help="global gradient-norm clipping threshold (default: %(default)s)")
    clip.add_argument("--no-clip", action="store_true", help="disable gradient clipping")
    recipe.add_argument("--no-augment", action="store_true", help="train on centre crops (no random crop or flip)")
    recipe.add_argument(
        "--eval-every", type=int, default=defaults.eval_every,
        help="test every k epochs, 0: after the last only (default: %(default)s)",
    )
    recipe.add_argument("--eval-batch-size", type=int, default=defaults.eval_batch_size, help="(default: %(default)s)")

    execution = parser.add_argument_group("execution")
    execution.add_argument("--device", default=defaults.device, help="auto, cpu, cuda, cuda:N or mps (default: %(default)s)")
    execution.add_argument("--amp", type=_amp, default=None, metavar="{auto,on,off}", help="bf16 autocast (default: auto, i.e. on for CUDA with bf16)")
    execution.add_argument("--num-threads", type=int, help="CPU threads for torch (default: torch's choice)")
    execution.add_argument(
        "--data-budget-mb", type=float, default=defaults.data_budget_mb,
        help="memory for keeping the splits on the device (default: %(default)s)",
    )
    progress = execution.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None, help="show a progress bar (default: on a terminal)")
    progress.add_argument("--no-progress", dest="progress", action="store_false", help="never show a progress bar")


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The ``TrainConfig`` of flags added by :func:`add_training_arguments` (ValueError if invalid)."""
    return TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        milestones=tuple(args.milestones), gamma=args.gamma, clip_norm=None if args.no_clip else args.clip_norm,
        augment=not args.no_augment, seed=args.seed, device=args.device, amp=args.amp, num_threads=args.num_threads,
        eval_every=args.eval_every, eval_batch_size=args.eval_batch_size, data_budget_mb=args.data_budget_mb,
    )


def network_options(args: argparse.Namespace) -> dict[str, Any]:
    """``VictimConfig`` keywords of the flags added by :func:`add_network_arguments`."""
    return {
        "backbone": args.backbone, "decoder": args.decoder, "decoder_width": args.decoder_width,
        "stem": args.stem, "pretrained": args.pretrained,
    }


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``victim`` subcommand to the ``mtlue`` command line."""
    from mtlue.tracking import add_tracking_arguments

    defaults = VictimConfig()
    parser = subparsers.add_parser(
        "victim",
        help="train one victim on a prepared dataset and write its test metrics",
        description="Train one victim on a prepared dataset's train split, score it on the test split and "
        "write metrics.json (layout: victims.run). Unset flags keep MTL-UE's recipe.",
    )
    data = parser.add_argument_group("data and output")
    data.add_argument("--data", required=True, help="prepared dataset folder, e.g. resources/data/shapes")
    data.add_argument("--out", required=True, help="metrics.json to write")
    data.add_argument(
        "--poison", metavar="STORE",
        help="train on the published images of this poison store (`mtlue poison`; default: the clean split)",
    )
    data.add_argument("--checkpoint-dir", help="checkpoint every epoch here and resume from it (default: no checkpoints)")

    add_network_arguments(parser, "victim")
    strategy = parser.add_argument_group("multi-task learning")
    strategy.add_argument("--weighting", default=defaults.weighting, help="task-weighting strategy (`mtlue list weightings`)")
    strategy.add_argument(
        "--weighting-option", action="append", type=_option, default=[], metavar="KEY=VALUE",
        help="a hyperparameter of the weighting strategy (repeatable)",
    )
    strategy.add_argument("--mode", choices=MODES, default=defaults.mode, help="mtl: one multi-task network; stl: one network per task")
    defense = parser.add_argument_group("defense")
    defense.add_argument(
        "--defense", default=defaults.defense, metavar="SPEC",
        help="what the attacker trains with: `mtlue list defenses`, or names joined by '+' (default: %(default)s, crop + flip)",
    )
    defense.add_argument(
        "--defense-set", action="append", type=_option, default=[], metavar="KEY=VALUE",
        help="a hyperparameter of the defense, KEY or COMPONENT.KEY for compositions (repeatable)",
    )
    add_training_arguments(parser)
    add_tracking_arguments(parser)
    parser.set_defaults(handler=_victim)


def _published_images(dataset: Any, poison: str | None) -> tuple[Any, str]:
    """The training images an attacker downloads, and their id for the result and checkpoints."""
    if poison is None:
        return None, "clean"
    from mtlue.poisons import POISONED_SPLIT, load_store

    store = load_store(poison, dataset)
    split = dataset.split(POISONED_SPLIT)
    return store.published(split, slice(None)), f"{store.card.method}:{store.card.sha256}"


def _victim(args: argparse.Namespace) -> None:
    from mtlue.cli import CommandError
    from mtlue.data.store import PreparedDataset
    from mtlue.io import atomic_write_json
    from mtlue.tracking import log_victim_result, track_victim, tracking_settings

    from .backbones import BackboneError
    from .checkpoint import CheckpointError
    from .defenses import DefenseError
    from .device import DeviceError
    from .losses import NonFiniteGradientError, NonFiniteLossError
    from .metrics import MetricError
    from .run import run_victim
    from .weighting import WeightingError

    try:
        config = train_config(args)
        victim = VictimConfig(
            weighting=args.weighting, weighting_options=dict(args.weighting_option), mode=args.mode,
            defense=args.defense, defense_options=dict(args.defense_set), **network_options(args),
        )
    except ValueError as error:
        raise CommandError(str(error)) from error
    settings = tracking_settings(args)
    dataset = PreparedDataset(args.data)
    train_images, train_images_id = _published_images(dataset, args.poison)
    out = Path(args.out)
    with track_victim(settings, args, dataset, victim, config) as tracker:
        try:
            result = run_victim(
                dataset, victim, config, train_images=train_images, train_images_id=train_images_id,
                checkpoint_dir=args.checkpoint_dir, progress=args.progress,
                callbacks=[tracker.epoch_callback(prefix_networks=victim.mode == "stl")] if tracker else (),
            )
        except (BackboneError, WeightingError, DefenseError, CheckpointError, DeviceError, MetricError, NonFiniteLossError, NonFiniteGradientError) as error:
            raise CommandError(str(error)) from error
        atomic_write_json(out, result.to_json())
        if tracker is not None:
            log_victim_result(tracker, result, out)
    summary = ", ".join(f"{key} {value:.4g}" for key, value in result.aggregate.items())
    print(f"{dataset.name} {victim.backbone}/{victim.weighting}/{victim.mode}/{victim.defense} seed {config.seed}: {summary}")
    print(f"metrics written to {out}", file=sys.stderr)
