"""``mtlue poison``: generate a method's perturbations for a prepared dataset and store them.

::

    mtlue poison --data resources/data/shapes --method lsp --out results/shapes/poisons/lsp \\
        [--seed 0] [--epsilon 8] [--ratio 1.0] [--set patch_size=4 ...] [--preview lsp.png] \\
        [--surrogate-dir results/shapes/surrogate]

``add_commands`` adds the subcommand to the ``mtlue`` parser; errors are ``MethodError``
(a ``ConfigError``) or ``PoisonError`` (a ``DatasetError``), which the command line prints as
one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from mtlue.arguments import key_value
from mtlue.poisons import DEFAULT_EPSILON

if TYPE_CHECKING:
    from .base import GenerationContext

__all__ = ["add_commands", "run_poison"]


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    from mtlue.tracking import add_tracking_arguments

    poison = subparsers.add_parser(
        "poison",
        help="generate a UE method's perturbations for a dataset's training split",
        description=__doc__.splitlines()[0],
    )
    poison.add_argument("--data", required=True, help="prepared dataset folder, e.g. resources/data/shapes")
    poison.add_argument("--method", required=True, help="registered method (`mtlue list methods`)")
    poison.add_argument("--out", required=True, help="store folder, e.g. results/shapes/poisons/lsp")
    poison.add_argument("--seed", type=int, default=0, help="random seed of the method and of the poisoned subset")
    poison.add_argument(
        "--epsilon", type=int, default=DEFAULT_EPSILON, help=f"L-inf budget in 1/255 steps (default {DEFAULT_EPSILON})"
    )
    poison.add_argument("--ratio", type=float, default=1.0, help="share of training samples to poison, in [0, 1]")
    poison.add_argument(
        "--set",
        dest="hyperparameters",
        action="append",
        default=[],
        type=key_value,
        metavar="KEY=VALUE",
        help="one method hyperparameter, VALUE read as YAML (repeatable)",
    )
    poison.add_argument("--preview", metavar="PNG", help="also draw clean / amplified delta / published samples here")
    poison.add_argument("--device", default="auto", help="torch device for methods that train: auto (CUDA when present), cpu, cuda:N (default auto)")
    poison.add_argument("--num-threads", type=int, help="CPU threads for torch (default: torch's choice)")
    poison.add_argument(
        "--surrogate-dir", metavar="DIR",
        help="folder written by `mtlue surrogate`: its final model and snapshots go to the methods that need them",
    )
    poison.add_argument("--surrogate", help="clean surrogate checkpoint, for methods that need one")
    poison.add_argument(
        "--surrogate-checkpoint",
        dest="surrogate_checkpoints",
        action="append",
        default=[],
        metavar="PATH",
        help="one checkpoint of a clean surrogate run, for methods that need several (repeatable)",
    )
    add_tracking_arguments(poison)
    poison.set_defaults(handler=run_poison)


def run_poison(args: argparse.Namespace) -> None:
    from mtlue.data.store import PreparedDataset
    from mtlue.poisons.preview import render_poison_preview
    from mtlue.tracking import log_poison_result, track_poison, tracking_settings

    from .classwise import ClasswiseMethod, classification_tasks
    from .generate import make_poison
    from .registry import create_method

    _check_poison_arguments(args)
    method = create_method(args.method, **dict(args.hyperparameters))
    if args.num_threads is not None:
        from victims.device import configure_threads

        configure_threads(args.num_threads)
    dataset = PreparedDataset(args.data)
    context = _generation_context(args)
    print(f"poisoning {dataset.name} with {method!r}, epsilon {context.epsilon}/255, seed {context.seed}", file=sys.stderr)
    if isinstance(method, ClasswiseMethod):
        tasks = classification_tasks(dataset, method.name)
        print(f"class-wise over {len(tasks)} classification task(s): {', '.join(t.name for t in tasks)}", file=sys.stderr)
    with track_poison(tracking_settings(args), args, dataset, method, context) as tracker:
        if tracker is not None:
            context.monitor.add_listener(tracker.progress_listener())
        store = make_poison(dataset, method, context, args.out, ratio=args.ratio)
        # The generation's progress was logged live (stderr) and is in the card's `convergence`;
        # the MTL-UE generator's epoch records are also printed here, as before.
        for record in getattr(method, "history", None) or ():
            print(f"training epoch {json.dumps(record, sort_keys=True)}")
        print(store.card.describe())
        print(f"store written to {store.root} (deltas sha256 {store.card.sha256[:16]})")
        preview = render_poison_preview(dataset, store, args.preview) if args.preview else None
        if preview is not None:
            print(f"preview written to {preview}")
        if tracker is not None:
            log_poison_result(tracker, store, preview)


def _check_poison_arguments(args: argparse.Namespace) -> None:
    """Everything about ``mtlue poison``'s arguments that can fail before any work starts."""
    from mtlue.io import check_output_dir, check_output_file, is_png
    from mtlue.poisons.card import STORE_OUTPUT
    from victims.config import check_seed

    from .base import MethodError

    inputs = [("--data", args.data), ("--surrogate-dir", args.surrogate_dir), ("--surrogate", args.surrogate),
              *(("--surrogate-checkpoint", path) for path in args.surrogate_checkpoints)]
    try:
        check_seed(args.seed)
    except ValueError as error:
        raise MethodError(str(error)) from None
    check_output_dir(args.out, STORE_OUTPUT, inputs=inputs)
    if args.preview:
        check_output_file(args.preview, what="preview PNG", inputs=[*inputs, ("--out", args.out)], replaceable=is_png, example="preview.png", flag="--preview")
    keys = [key for key, _ in args.hyperparameters]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise MethodError(f"hyperparameter(s) {', '.join(repeated)} set more than once with --set; keep one")


def _generation_context(args: argparse.Namespace) -> GenerationContext:
    """The seed, budget, device and surrogate files ``mtlue poison`` was given."""
    from .base import GenerationContext, MethodError

    surrogate, checkpoints = args.surrogate, tuple(args.surrogate_checkpoints)
    if args.surrogate_dir is not None:
        from .surrogate import surrogate_files

        if surrogate is not None or checkpoints:
            raise MethodError("give the surrogate either as --surrogate-dir or as --surrogate/--surrogate-checkpoint files, not both")
        surrogate, checkpoints = surrogate_files(args.surrogate_dir)
    return GenerationContext(seed=args.seed, epsilon=args.epsilon, device=args.device, surrogate=surrogate, surrogate_checkpoints=checkpoints)
