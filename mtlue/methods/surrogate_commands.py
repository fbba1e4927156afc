"""``mtlue surrogate``: train the clean surrogate of a dataset and keep its snapshots.

::

    mtlue surrogate --data resources/data/shapes --out results/shapes/surrogate \\
        [--every 4] [--backbone resnet18] [--epochs 60] [--batch-size 128] [--seed 0] \\
        [--device auto] [--checkpoint-dir DIR]

Writes ``OUT/final.pt`` (TAP's ``--surrogate``), ``OUT/epoch_001.pt``, ``OUT/epoch_005.pt``, ...
(SEP's ``--surrogate-checkpoint``s) and ``OUT/surrogate.json`` (layout:
:mod:`mtlue.methods.surrogate`). Unset flags keep MTL-UE's surrogate: the victim recipe
(ResNet-18, 60 epochs, Adam 1e-3, ...) with a snapshot every 4 epochs.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_commands", "run_surrogate"]


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    from mtlue.tracking import add_tracking_arguments
    from victims.commands import add_network_arguments, add_training_arguments

    from .surrogate import DEFAULT_EVERY

    parser = subparsers.add_parser(
        "surrogate",
        help="train a clean multi-task surrogate (with snapshots) for surrogate-dependent UE methods",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--data", required=True, help="prepared dataset folder, e.g. resources/data/shapes")
    parser.add_argument("--out", required=True, help="surrogate folder to write, e.g. results/shapes/surrogate")
    parser.add_argument(
        "--every", type=int, default=DEFAULT_EVERY,
        help="keep a snapshot after epochs 1, 1+k, 1+2k, ... up to --epochs, as the release does (default: %(default)s, MTL-UE's)",
    )
    parser.add_argument("--checkpoint-dir", help="checkpoint every epoch here and resume from it (default: no resume)")
    add_network_arguments(parser)
    add_training_arguments(parser)
    add_tracking_arguments(parser)
    parser.set_defaults(handler=run_surrogate)


def run_surrogate(args: argparse.Namespace) -> None:
    from mtlue.errors import CommandError
    from mtlue.data.store import PreparedDataset
    from mtlue.tracking import log_surrogate_result, track_surrogate, tracking_settings
    from victims.commands import network_options, train_config
    from victims.config import VictimConfig

    from mtlue.io import check_output_dir
    from mtlue.logs import show_progress

    from .surrogate import OUTPUT, train_surrogate

    try:
        config = train_config(args)
        victim = VictimConfig(**network_options(args))
    except ValueError as error:
        raise CommandError(str(error)) from error
    check_output_dir(args.out, OUTPUT, inputs=[("--data", args.data), ("--checkpoint-dir", args.checkpoint_dir), ("--pretrained", args.pretrained)])
    settings = tracking_settings(args)
    dataset = PreparedDataset(args.data)
    print(f"training the surrogate of {dataset.name}: {victim.backbone}, {config.epochs} epochs, "
          f"snapshot every {args.every}, seed {config.seed}", file=sys.stderr)
    with track_surrogate(settings, args, dataset, victim, config) as tracker:
        card = train_surrogate(
            dataset, args.out, victim=victim, config=config, every=args.every,
            checkpoint_dir=args.checkpoint_dir, progress=show_progress(args.progress),
            callbacks=[tracker.epoch_callback()] if tracker else (),
        )
        if tracker is not None:
            log_surrogate_result(tracker, card, args.out)
    epochs = ", ".join(str(item.epoch) for item in card.snapshots)
    print(f"surrogate written to {args.out}: {card.final.file} (epoch {card.final.epoch}) and "
          f"{len(card.snapshots)} snapshot(s) at epoch(s) {epochs}")
