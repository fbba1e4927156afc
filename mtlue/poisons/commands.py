"""``mtlue submit`` and ``mtlue install-submission``: perturbation files entering the leaderboard.

::

    mtlue submit FILE --dataset shapes --name my-ue [--data resources/data/shapes] \\
        [--out submissions/shapes/my-ue] [--epsilon 8]
    mtlue install-submission --data resources/data/shapes --submission submissions/shapes/my-ue \\
        --out results/shapes/poisons/my-ue [--epsilon 8] [--preview my-ue.png]

``submit`` checks the file and writes a perturbation store; ``install-submission`` (the workflow's
rule) checks that store again and copies it to where the victims read every method's store.
Errors are ``PoisonError`` (a ``DatasetError``), printed by the command line as one line.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .budget import DEFAULT_EPSILON

__all__ = ["add_commands", "run_submit", "run_install_submission"]


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    submit = subparsers.add_parser(
        "submit",
        help="check a submitted perturbation file and store it as a method for the leaderboard",
        description="Check a perturbation file (SUBMITTING.md) for a prepared dataset's training split "
        "and write it as a perturbation store.",
    )
    submit.add_argument("file", help="the safetensors file: 'deltas' (int8 or float) or 'images' (uint8), N x C x H x W")
    submit.add_argument("--dataset", required=True, help="dataset name, e.g. shapes or celeba")
    submit.add_argument("--name", required=True, help="the method's name on the leaderboard, e.g. my-ue")
    submit.add_argument("--data", help="prepared dataset folder (default: resources/data/DATASET)")
    submit.add_argument("--out", help="store folder (default: submissions/DATASET/NAME)")
    submit.add_argument(
        "--epsilon", type=int, default=DEFAULT_EPSILON, help=f"L-inf budget in 1/255 steps (default {DEFAULT_EPSILON})"
    )
    submit.set_defaults(handler=run_submit)

    install = subparsers.add_parser(
        "install-submission",
        help="re-verify a submission's store and copy it to results/DATASET/poisons/NAME",
        description="Re-verify a store written by `mtlue submit` (hash, budget, split) and install it "
        "where the victims read the poison stores.",
    )
    install.add_argument("--data", required=True, help="prepared dataset folder, e.g. resources/data/shapes")
    install.add_argument("--submission", required=True, help="submission store, e.g. submissions/shapes/my-ue")
    install.add_argument("--out", required=True, help="installed store, e.g. results/shapes/poisons/my-ue")
    install.add_argument(
        "--epsilon",
        type=int,
        default=DEFAULT_EPSILON,
        help=f"largest budget allowed, in 1/255 steps, whatever the card says (default {DEFAULT_EPSILON})",
    )
    install.add_argument("--preview", metavar="PNG", help="also draw clean / amplified delta / published samples here")
    install.set_defaults(handler=run_install_submission)


def run_submit(args: argparse.Namespace) -> None:
    from mtlue.data.store import PreparedDataset

    from .errors import PoisonError
    from .submissions import SUBMISSIONS_ROOT, check_submission_name, submission_dir, submit_file

    from mtlue.io import check_output_dir

    from .card import STORE_OUTPUT

    # Checked before the dataset is opened: --name also picks the default --out folder.
    check_submission_name(args.name)
    data = Path(args.data) if args.data else Path("resources/data") / args.dataset
    out = Path(args.out) if args.out else submission_dir(SUBMISSIONS_ROOT, args.dataset, args.name)
    check_output_dir(out, STORE_OUTPUT, inputs=[("FILE", args.file), ("--data", data)])
    if not Path(args.file).is_file():
        raise PoisonError(f"submitted file {args.file} does not exist or is not a file; pass the path of your .safetensors file")
    dataset = PreparedDataset(data)
    if dataset.name != args.dataset:
        raise PoisonError(
            f"--data {data} holds the prepared dataset {dataset.name!r}, not {args.dataset!r}; "
            f"pass --dataset {dataset.name} or the folder of {args.dataset!r}"
        )
    store = submit_file(args.file, dataset=dataset, name=args.name, out_dir=out, epsilon=args.epsilon)
    record = store.card.submission
    assert record is not None
    print(store.card.describe())
    print(f"submitted file {args.file}: sha256 {record.sha256}")
    print(f"store written to {store.root} (deltas sha256 {store.card.sha256[:16]})")


def run_install_submission(args: argparse.Namespace) -> None:
    from mtlue.data.store import PreparedDataset

    from mtlue.io import check_output_dir, check_output_file, is_png

    from .card import STORE_OUTPUT
    from .preview import render_poison_preview
    from .submissions import install_submission

    inputs = [("--data", args.data), ("--submission", args.submission)]
    check_output_dir(args.out, STORE_OUTPUT, inputs=inputs)
    if args.preview:
        check_output_file(args.preview, what="preview PNG", inputs=[*inputs, ("--out", args.out)], replaceable=is_png, example="preview.png", flag="--preview")
    dataset = PreparedDataset(args.data)
    store = install_submission(args.submission, dataset, args.out, max_epsilon=args.epsilon)
    print(store.card.describe())
    print(f"installed {args.submission} as {store.root} (deltas sha256 {store.card.sha256[:16]})")
    if args.preview:
        print(f"preview written to {render_poison_preview(dataset, store, args.preview)}")
