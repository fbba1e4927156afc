"""The ``mtlue victim`` subcommand: train victims, write one ``metrics.json`` per seed.

::

    mtlue victim --data resources/data/shapes --backbone resnet18 --weighting ew --seed 0 \\
        --epochs 60 --batch-size 128 [--mode mtl|stl] [--checkpoint-dir DIR] [--poison STORE] \\
        [--defense jpeg+cutout [--defense-set jpeg.quality=20 ...]] \\
        --out results/shapes/victims/clean/resnet18/ew/none/seed0/metrics.json

    mtlue victim ... --seed 0 1 2 --checkpoint-dir 'victims/.../seed{seed}/checkpoints' \\
        --out 'victims/.../seed{seed}/metrics.json'

Every ``TrainConfig`` and ``VictimConfig`` field has a flag; unset flags keep the paper's
recipe. Several ``--seed`` values train one victim per seed, one after another in this process,
so the imports, the data and the tracking store are paid once (about 6 s of CPU, half a tiny
victim's training, measured on the embedded default); ``{seed}`` in ``--out`` and
``--checkpoint-dir`` stands for the seed, and must be there when several seeds are given. Each
seed's output is written atomically as soon as that seed finishes and only after its training
and evaluation succeed, so a failed or interrupted run loses only the seed it was training;
with ``--checkpoint-dir`` a rerun resumes each seed from its last finished epoch (a finished
seed's last checkpoint gives its metrics back without training). Each seed is its own MLflow
run, as with one seed. Every input is checked before the first seed trains. The layout of the
file is documented in :mod:`victims.run`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mtlue.arguments import key_value

from .config import DECODERS, MODES, STEMS, TrainConfig, VictimConfig

__all__ = ["SEED_FIELD", "add_commands", "add_network_arguments", "add_training_arguments", "network_options", "seed_path", "train_config"]

#: What stands for the seed in ``--out`` and ``--checkpoint-dir`` of a multi-seed ``mtlue victim``.
SEED_FIELD = "{seed}"


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


def add_training_arguments(parser: argparse.ArgumentParser, *, several_seeds: bool = False) -> None:
    """Flags of every ``TrainConfig`` field: the recipe and how it is executed.

    With ``several_seeds``, ``--seed`` takes one or more values (a list in ``args.seed``).
    """
    defaults = TrainConfig()
    recipe = parser.add_argument_group("training recipe (defaults: MTL-UE's)")
    if several_seeds:
        recipe.add_argument(
            "--seed", type=int, nargs="+", default=[defaults.seed], metavar="SEED",
            help="initialisation, data order and augmentation; several seeds train one victim each, "
            f"in this process, with {SEED_FIELD} in --out (default: {defaults.seed})",
        )
    else:
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
        help="memory for keeping the splits on the device (default: half a GPU's free memory, 2048 on the CPU)",
    )
    progress = execution.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None, help="show a progress bar (default: on a terminal)")
    progress.add_argument("--no-progress", dest="progress", action="store_false", help="never show a progress bar")


def train_config(args: argparse.Namespace, seed: int | None = None) -> TrainConfig:
    """The ``TrainConfig`` of flags added by :func:`add_training_arguments` (ValueError if invalid),
    with ``seed`` instead of ``args.seed`` when given."""
    return TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
        milestones=tuple(args.milestones), gamma=args.gamma, clip_norm=None if args.no_clip else args.clip_norm,
        augment=not args.no_augment, seed=args.seed if seed is None else seed, device=args.device, amp=args.amp, num_threads=args.num_threads,
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
        help="train victims (one per --seed) on a prepared dataset and write their test metrics",
        description="Train one victim per --seed on a prepared dataset's train split, one after another in this "
        "process, score each on the test split and write its metrics.json (layout: victims.run) as soon as it "
        f"finishes. With several seeds, {SEED_FIELD} in --out and --checkpoint-dir stands for the seed. "
        "Unset flags keep MTL-UE's recipe.",
    )
    data = parser.add_argument_group("data and output")
    data.add_argument("--data", required=True, help="prepared dataset folder, e.g. resources/data/shapes")
    data.add_argument("--out", required=True, help=f"metrics.json to write ({SEED_FIELD} stands for the seed and must appear with several seeds)")
    data.add_argument(
        "--poison", metavar="STORE",
        help="train on the published images of this poison store (`mtlue poison`; default: the clean split)",
    )
    data.add_argument(
        "--checkpoint-dir",
        help=f"checkpoint every epoch here and resume from it ({SEED_FIELD} stands for the seed and must appear with several "
        "seeds; default: no checkpoints)",
    )

    add_network_arguments(parser, "victim")
    strategy = parser.add_argument_group("multi-task learning")
    strategy.add_argument("--weighting", default=defaults.weighting, help="task-weighting strategy (`mtlue list weightings`)")
    strategy.add_argument(
        "--weighting-option", action="append", type=key_value, default=[], metavar="KEY=VALUE",
        help="a hyperparameter of the weighting strategy (repeatable)",
    )
    strategy.add_argument("--mode", choices=MODES, default=defaults.mode, help="mtl: one multi-task network; stl: one network per task")
    defense = parser.add_argument_group("defense")
    defense.add_argument(
        "--defense", default=defaults.defense, metavar="SPEC",
        help="what the attacker trains with: `mtlue list defenses`, or names joined by '+' (default: %(default)s, crop + flip)",
    )
    defense.add_argument(
        "--defense-set", action="append", type=key_value, default=[], metavar="KEY=VALUE",
        help="a hyperparameter of the defense, KEY or COMPONENT.KEY for compositions (repeatable)",
    )
    add_training_arguments(parser, several_seeds=True)
    add_tracking_arguments(parser)
    parser.set_defaults(handler=_victim)


def seed_path(pattern: str, seed: int) -> str:
    """``pattern`` with every ``{seed}`` replaced by ``seed`` (other braces are left alone)."""
    return pattern.replace(SEED_FIELD, str(seed))


def _check_seeds(seeds: Sequence[int], out: str, checkpoint_dir: str | None, tags: dict[str, str]) -> None:
    """Refuse seed lists and path patterns that would lose or mix up results (CommandError)."""
    from mtlue.errors import CommandError

    repeated = sorted({seed for seed in seeds if list(seeds).count(seed) > 1})
    if repeated:
        raise CommandError(f"--seed lists {', '.join(map(str, repeated))} more than once; give each seed once")
    if len(seeds) == 1:
        return
    if SEED_FIELD not in out:
        raise CommandError(
            f"--out {out!r} names one file but --seed gives {len(seeds)} seeds; put {SEED_FIELD} in it, "
            f"e.g. --out 'victims/seed{SEED_FIELD}/metrics.json'"
        )
    if checkpoint_dir is not None and SEED_FIELD not in checkpoint_dir:
        raise CommandError(
            f"--checkpoint-dir {checkpoint_dir!r} is one folder but --seed gives {len(seeds)} seeds; put {SEED_FIELD} in it, "
            f"e.g. --checkpoint-dir 'victims/seed{SEED_FIELD}/checkpoints'"
        )
    if "seed" in tags:
        raise CommandError(
            f"--tag seed={tags['seed']} names one seed but --seed gives {len(seeds)}; drop the --tag: each seed's "
            f"MLflow run is tagged with its own seed"
        )


def _published_images(dataset: Any, poison: str | None) -> tuple[Any, str]:
    """The training images an attacker downloads, and their id for the result and checkpoints."""
    if poison is None:
        return None, "clean"
    from mtlue.poisons import POISONED_SPLIT, load_store

    store = load_store(poison, dataset)
    split = dataset.split(POISONED_SPLIT)
    return store.published(split, slice(None)), f"{store.card.method}:{store.card.sha256}"


def _victim(args: argparse.Namespace) -> None:
    from mtlue import timing
    from mtlue.errors import CommandError
    from mtlue.data.store import PreparedDataset
    from mtlue.io import check_output_file
    from mtlue.tracking import log_victim_result, track_victim, tracking_settings
    from mtlue.logs import show_progress
    from mtlue.victim_metrics import write_victim_metrics

    from mtlue.errors import VictimError

    from .run import is_victim_metrics, run_victim

    seeds = list(args.seed)
    _check_seeds(seeds, args.out, args.checkpoint_dir, dict(args.tags or []))
    try:
        configs = [train_config(args, seed) for seed in seeds]
        victim = VictimConfig(
            weighting=args.weighting, weighting_options=dict(args.weighting_option), mode=args.mode,
            defense=args.defense, defense_options=dict(args.defense_set), **network_options(args),
        )
    except ValueError as error:
        raise CommandError(str(error)) from error
    inputs = [("--data", args.data), ("--poison", args.poison), ("--pretrained", args.pretrained)]
    for seed in seeds:
        check_output_file(seed_path(args.out, seed), what="victim metrics.json", inputs=inputs, replaceable=is_victim_metrics, example="metrics.json")
    settings = tracking_settings(args)
    dataset = PreparedDataset(args.data)
    train_images, train_images_id = _published_images(dataset, args.poison)
    # The first seed's start-up is the process's: imports, data, tracking store, model.
    process_started = timing.process_started()
    started = timing.Instant(process_started, 0.0) if process_started is not None else timing.Instant.now()
    for config in configs:
        out = Path(seed_path(args.out, config.seed))
        checkpoint_dir = None if args.checkpoint_dir is None else seed_path(args.checkpoint_dir, config.seed)
        run_args = argparse.Namespace(**{**vars(args), "out": str(out), "checkpoint_dir": checkpoint_dir, "seed": config.seed})
        with track_victim(settings, run_args, dataset, victim, config) as tracker:
            try:
                result = run_victim(
                    dataset, victim, config, train_images=train_images, train_images_id=train_images_id,
                    checkpoint_dir=checkpoint_dir, progress=show_progress(args.progress),
                    callbacks=[tracker.epoch_callback(prefix_networks=victim.mode == "stl")] if tracker else (),
                    started=started,
                )
            except VictimError as error:
                raise CommandError(f"seed {config.seed}: {error}" if len(seeds) > 1 else str(error)) from error
            write_victim_metrics(out, result.to_json())
            if tracker is not None:
                log_victim_result(tracker, result, out)
        summary = ", ".join(f"{key} {value:.4g}" for key, value in result.aggregate.items())
        print(f"{dataset.name} {victim.backbone}/{victim.weighting}/{victim.mode}/{victim.defense} seed {config.seed}: {summary}", flush=True)
        print(f"metrics written to {out}", file=sys.stderr, flush=True)
        started = timing.Instant.now()
