"""The ``mtlue`` command line: every workflow step is a subcommand, so each can run by hand.

Subcommands import their heavy dependencies (torch, matplotlib) only when they run, so that
``mtlue list datasets`` and ``mtlue check-config`` answer at once. Results go to stdout; log
records, e.g. a poison generation's progress, to stderr, one line each (:mod:`mtlue.logs`).

Run as a program (``main()`` without arguments), a command also takes care of how its process
ends: with ``MTLUE_JOB_TIMING`` set it prints where its time went (:mod:`mtlue.timing`), and it
freezes the garbage collector before returning (see :func:`main`).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from mtlue.arguments import key_value
from mtlue.errors import CommandError, MtlueError

__all__ = ["main", "build_parser"]

#: What ``mtlue list KIND`` can list: the registry's list function and, optionally, a function
#: giving one name's description. New registries (defenses) add a line here.
LISTABLE: dict[str, tuple[str, str | None]] = {
    "datasets": ("mtlue.data:list_datasets", "mtlue.data:dataset_description"),
    "backbones": ("victims.backbones:list_backbones", "victims.backbones:backbone_description"),
    "weightings": ("victims.weighting:list_weightings", "victims.weighting:weighting_description"),
    "methods": ("mtlue.methods:list_methods", "mtlue.methods:method_description"),
    "defenses": ("victims.defenses:list_defenses", "victims.defenses:defense_description"),
}

#: Modules whose ``add_commands(subparsers)`` adds subcommands; imported when the parser is
#: built, so each keeps its heavy imports inside its handlers.
COMMAND_MODULES: tuple[str, ...] = (
    "victims.commands",
    "mtlue.methods.commands",
    "mtlue.methods.surrogate_commands",
    "mtlue.poisons.commands",
    "mtlue.report.commands",
    "mtlue.tracking.commands",
)


def _resolve(reference: str) -> Callable[..., Any]:
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _list(args: argparse.Namespace) -> None:
    list_reference, describe_reference = LISTABLE[args.kind]
    names = _resolve(list_reference)()
    if args.json:
        describe = _resolve(describe_reference) if describe_reference else None
        entries = [{"name": name, **({"description": describe(name)} if describe else {})} for name in names]
        print(json.dumps(entries, indent=2))
    else:
        print("\n".join(names))


def _prepare(args: argparse.Namespace) -> None:
    from mtlue.data import PreparedDataset, create_builder
    from mtlue.data.store import OUTPUT
    from mtlue.io import check_output_dir

    options: dict[str, Any] = {}
    if args.options_json:
        try:
            options.update(json.loads(args.options_json))
        except json.JSONDecodeError as error:
            raise CommandError(f"--options-json is not valid JSON: {error}") from None
    options.update(dict(args.option))
    source = args.source or args.dataset
    out = Path(args.out) if args.out else Path("resources/data") / args.dataset
    raw = Path(args.raw) if args.raw else Path("resources/raw") / source
    builder = create_builder(source, select_tasks=args.tasks or None, **options)
    check_output_dir(out, OUTPUT, inputs=[("--raw", raw)])
    print(f"preparing {args.dataset} ({builder!r}) from {raw} into {out}", file=sys.stderr)
    builder.prepare(out, raw)
    dataset = PreparedDataset(out)
    dataset.verify()
    print(dataset)


def _show(args: argparse.Namespace) -> None:
    from mtlue.data import PreparedDataset
    from mtlue.data.preview import render_sample_grid, summary_lines
    from mtlue.io import check_output_file, is_png

    if args.out:
        check_output_file(args.out, what="sample grid PNG", inputs=[("DATA", args.data)], replaceable=is_png, example="samples.png")
    dataset = PreparedDataset(args.data)
    print("\n".join(summary_lines(dataset)))
    if args.out:
        path = render_sample_grid(dataset, args.out, split=args.split, samples=args.samples)
        print(f"sample grid written to {path}")


def _check_config(args: argparse.Namespace) -> None:
    from mtlue.config import load_config

    config = load_config(args.config)
    if args.print:
        print(yaml.safe_dump(config, sort_keys=False), end="")
    else:
        print(f"{args.config}: valid ({len(config['datasets'])} dataset(s))")


def build_parser() -> argparse.ArgumentParser:
    from mtlue.logs import LEVELS

    parser = argparse.ArgumentParser(prog="mtlue", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument(
        "--log-level", choices=LEVELS, default="INFO",
        help="least severe log record of mtlue's own loggers shown on stderr (default INFO; other libraries: WARNING)",
    )
    verbosity.add_argument(
        "-q", "--quiet", dest="log_level", action="store_const", const="WARNING",
        help="only warnings and errors on stderr, and no progress bars (--log-level WARNING)",
    )
    verbosity.add_argument(
        "-v", "--verbose", dest="log_level", action="store_const", const="DEBUG", help="debug records too (--log-level DEBUG)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    listing = commands.add_parser("list", help="list registered datasets, backbones, weightings, ...")
    listing.add_argument("kind", choices=sorted(LISTABLE))
    listing.add_argument("--json", action="store_true", help="print JSON (with descriptions where known)")
    listing.set_defaults(handler=_list)

    prepare = commands.add_parser("prepare", help="prepare a dataset into the standard on-disk form")
    prepare.add_argument("dataset", help="output name (also the registered dataset unless --source is given)")
    prepare.add_argument("--source", help="registered dataset to prepare (default: DATASET)")
    prepare.add_argument("--out", help="output folder (default: resources/data/DATASET)")
    prepare.add_argument("--raw", help="folder of source files (default: resources/raw/SOURCE)")
    prepare.add_argument("--options-json", help="dataset options as a JSON object")
    prepare.add_argument("--option", action="append", type=key_value, default=[], metavar="KEY=VALUE", help="one dataset option (repeatable)")
    prepare.add_argument(
        "--task", dest="tasks", action="append", default=[], metavar="NAME",
        help="keep only this task (repeatable; default: every task of the dataset)",
    )
    prepare.set_defaults(handler=_prepare)

    show = commands.add_parser("show", help="print a prepared dataset's tasks, sizes and label balance")
    show.add_argument("data", help="prepared dataset folder, e.g. resources/data/shapes")
    show.add_argument("--out", help="also write a PNG grid of samples and their dense maps here")
    show.add_argument("--split", default="train", choices=("train", "test"))
    show.add_argument("--samples", type=int, default=8, help="rows of the sample grid")
    show.set_defaults(handler=_show)

    check = commands.add_parser("check-config", help="validate a workflow config against the schema")
    check.add_argument("config", nargs="?", default="config/config.yaml")
    check.add_argument("--print", action="store_true", help="print the config with every default filled in")
    check.set_defaults(handler=_check_config)

    for module in COMMAND_MODULES:
        importlib.import_module(module).add_commands(commands)
    return parser


def _version() -> str:
    from mtlue import __version__

    return __version__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command of ``argv`` (default: the process's command line) and return its exit status.

    Without ``argv`` the process is this command's own, and ``main`` prepares its end: the
    :mod:`mtlue.timing` exit line when ``MTLUE_JOB_TIMING`` is set, and ``gc.freeze()`` once the
    command is done. torch, timm and MLflow leave millions of objects behind, and the
    interpreter's final garbage collections walked them for 1-2 s of CPU per job (measured on a
    tiny victim); frozen objects are skipped. Nothing is lost: exit handlers still run, and
    files are flushed and closed by reference counting, as before. Callers that pass ``argv``
    (tests, scripts) keep their collector untouched.
    """
    from mtlue import timing
    from mtlue.logs import configure_logging

    as_program = argv is None
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level, progress=args.log_level in ("DEBUG", "INFO"))
    if as_program and timing.enabled():
        timing.CLOCK.report_at_exit(args.command)
    started = timing.Instant.now()
    try:
        args.handler(args)
    except MtlueError as error:
        print(f"mtlue {args.command}: error: {error}", file=sys.stderr)
        return 2
    finally:
        timing.CLOCK.handler = (started, timing.Instant.now())
        if as_program:
            gc.freeze()
    return 0


if __name__ == "__main__":
    sys.exit(main())
