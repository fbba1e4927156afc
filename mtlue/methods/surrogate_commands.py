"""``mtlue surrogate``: train the clean surrogate of a dataset and keep its snapshots.

::

    mtlue surrogate --data resources/data/shapes --out results/shapes/surrogate \\
        [--every 4] [--backbone resnet18] [--epochs 60] [--batch-size 128] [--seed 0] \\
        [--device auto] [--checkpoint-dir DIR]

Writes ``OUT/final.pt`` (TAP's ``--surrogate``), ``OUT/epoch_000.pt``, ``OUT/epoch_004.pt``, ...
(SEP's ``--surrogate-checkpoint``s) and ``OUT/surrogate.json`` (layout:
:mod:`mtlue.methods.surrogate`). Unset flags keep MTL-UE's surrogate: the victim recipe
(ResNet-18, 60 epochs, Adam 1e-3, ...) with a snapshot every 4 epochs.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_commands", "run_surrogate"]


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    from victims.config import DECODERS, STEMS, TrainConfig, VictimConfig

    from .surrogate import DEFAULT_EVERY

    defaults, victim = TrainConfig(), VictimConfig()
    parser = subparsers.add_parser(
        "surrogate",
        help="train a clean multi-task surrogate (with snapshots) for surrogate-dependent UE methods",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--data", required=True, help="prepared dataset folder, e.g. resources/data/shapes")
    parser.add_argument("--out", required=True, help="surrogate folder to write, e.g. results/shapes/surrogate")
    parser.add_argument(
        "--every", type=int, default=DEFAULT_EVERY,
        help="keep a snapshot at epochs 0, k, 2k, ... below --epochs (default: %(default)s, MTL-UE's)",
    )
    parser.add_argument("--checkpoint-dir", help="checkpoint every epoch here and resume from it (default: no resume)")
    network = parser.add_argument_group("network")
    network.add_argument("--backbone", default=victim.backbone, help="`mtlue list backbones` (default: %(default)s)")
    network.add_argument("--stem", choices=STEMS, default=victim.stem, help="stem of classification encoders (default: %(default)s)")
    network.add_argument("--decoder", choices=DECODERS, default=victim.decoder, help="decoder of each dense task (default: %(default)s)")
    network.add_argument("--decoder-width", type=float, default=victim.decoder_width, help="multiplier of the decoders' widths (default: %(default)s)")
    network.add_argument("--pretrained", metavar="FILE", help="local timm checkpoint to start the encoder from")
    recipe = parser.add_argument_group("training recipe (defaults: MTL-UE's victim recipe)")
    recipe.add_argument("--seed", type=int, default=defaults.seed, help="(default: %(default)s)")
    recipe.add_argument("--epochs", type=int, default=defaults.epochs, help="(default: %(default)s)")
    recipe.add_argument("--batch-size", type=int, default=defaults.batch_size, help="(default: %(default)s)")
    recipe.add_argument("--lr", type=float, default=defaults.lr, help="Adam learning rate (default: %(default)s)")
    recipe.add_argument("--weight-decay", type=float, default=defaults.weight_decay, help="(default: %(default)s)")
    recipe.add_argument(
        "--eval-every", type=int, default=defaults.eval_every,
        help="test every k epochs, 0: after the last only (default: %(default)s)",
    )
    execution = parser.add_argument_group("execution")
    execution.add_argument("--device", default=defaults.device, help="auto, cpu, cuda, cuda:N or mps (default: %(default)s)")
    execution.add_argument("--num-threads", type=int, help="CPU threads for torch (default: torch's choice)")
    progress = execution.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None, help="show a progress bar (default: on a terminal)")
    progress.add_argument("--no-progress", dest="progress", action="store_false", help="never show a progress bar")
    parser.set_defaults(handler=run_surrogate)


def run_surrogate(args: argparse.Namespace) -> None:
    from mtlue.cli import CommandError
    from mtlue.data.store import PreparedDataset
    from victims.backbones import BackboneError
    from victims.checkpoint import CheckpointError
    from victims.config import TrainConfig, VictimConfig
    from victims.device import DeviceError
    from victims.losses import NonFiniteGradientError, NonFiniteLossError

    from .surrogate import train_surrogate

    try:
        config = TrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
            seed=args.seed, device=args.device, num_threads=args.num_threads, eval_every=args.eval_every,
        )
        victim = VictimConfig(
            backbone=args.backbone, stem=args.stem, decoder=args.decoder, decoder_width=args.decoder_width,
            pretrained=args.pretrained,
        )
    except ValueError as error:
        raise CommandError(str(error)) from error
    dataset = PreparedDataset(args.data)
    print(f"training the surrogate of {dataset.name}: {victim.backbone}, {config.epochs} epochs, "
          f"snapshot every {args.every}, seed {config.seed}", file=sys.stderr)
    try:
        card = train_surrogate(
            dataset, args.out, victim=victim, config=config, every=args.every,
            checkpoint_dir=args.checkpoint_dir, progress=args.progress,
        )
    except (BackboneError, CheckpointError, DeviceError, NonFiniteLossError, NonFiniteGradientError) as error:
        raise CommandError(str(error)) from error
    epochs = ", ".join(str(item.epoch) for item in card.snapshots)
    print(f"surrogate written to {args.out}: {card.final.file} (epoch {card.final.epoch}) and "
          f"{len(card.snapshots)} snapshot(s) at epoch(s) {epochs}")
