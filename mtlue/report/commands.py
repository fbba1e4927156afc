"""``mtlue report`` and ``mtlue leaderboard``: tables, plots and the leaderboard from metrics.json files.

::

    mtlue report --results results --dataset shapes --out results/shapes/tables [--config-json config.json]
    mtlue leaderboard --results results --out results/leaderboard [--config-json config.json] [--protocol NAME]
        [--dataset D ...]

Both read only the JSON files the workflow wrote (no MLflow), build everything in memory and
write only once all of it succeeded, each file atomically. Neither imports torch.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_commands"]


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    report = subparsers.add_parser(
        "report",
        help="tables and plots of one dataset's victims (CSV, Markdown, PNG)",
        description="Render one dataset's victims into score tables (mean ± std over seeds, delta-m against clean), "
        "the attack x defense table with tie-aware ranks, a README summary and plots (layout: mtlue.report.build).",
    )
    report.add_argument("--results", default="results", help="the workflow's results folder (default: %(default)s)")
    report.add_argument("--dataset", required=True, help="dataset folder under --results")
    report.add_argument("--out", required=True, help="folder for the tables and plots, e.g. results/DATASET/tables")
    report.add_argument("--config-json", metavar="FILE", help="resolved workflow config (JSON): only its methods and victims count")
    report.set_defaults(handler=_report)

    board = subparsers.add_parser(
        "leaderboard",
        help="leaderboard entries (JSON, schema-validated) and their Markdown/HTML rendering",
        description="Build one entry per (method, dataset, protocol) from the victims' metrics.json files, rank them "
        "(score = the attacker's best defense; lower = better protection) and render Markdown and HTML "
        "(layout: mtlue.leaderboard.build).",
    )
    board.add_argument("--results", default="results", help="the workflow's results folder (default: %(default)s)")
    board.add_argument("--out", required=True, help="leaderboard folder, e.g. results/leaderboard")
    board.add_argument("--config-json", metavar="FILE", help="resolved workflow config (JSON): the protocol's axes, methods and datasets")
    board.add_argument("--protocol", default="default", help="protocol name recorded in the entries (default: %(default)s)")
    board.add_argument("--dataset", action="append", dest="datasets", metavar="D", help="only this dataset (repeatable; default: all)")
    board.set_defaults(handler=_leaderboard)


def _selection(args: argparse.Namespace, *, protocol: bool = False):
    from .selection import Selection, config_sha256, load_config_json

    if not args.config_json:
        return Selection(), None
    config = load_config_json(args.config_json)
    return Selection.from_config(config, f"--config-json {args.config_json}", protocol=protocol), config_sha256(config)


def _report(args: argparse.Namespace) -> None:
    from .build import build_dataset_report

    selection, config_hash = _selection(args)
    protocol, _ = _selection(args, protocol=True)
    report = build_dataset_report(args.results, args.dataset, selection, config_hash, protocol)
    written = report.write(args.out)
    print(f"{args.dataset}: {len(report.records)} victims -> {len(written)} files in {args.out}", file=sys.stderr)


def _leaderboard(args: argparse.Namespace) -> None:
    from mtlue.leaderboard.build import build_leaderboard

    selection, config_hash = _selection(args, protocol=True)
    board = build_leaderboard(args.results, selection, args.protocol, config_hash, args.datasets)
    board.write(args.out)
    for item in board.skipped:
        print(f"not ranked: {item.dataset}/{item.protocol}/{item.method}: {item.reason}", file=sys.stderr)
    for entry in board.entries:
        std = "" if entry["score_std"] is None else f" ± {entry['score_std']:.2f}"
        rank = "ref" if entry["method"] == "clean" else "not ranked" if entry["rank"] is None else f"rank {entry['rank']}"
        print(f"{entry['dataset']['name']} {entry['protocol']['name']} {entry['method']}: {entry['score']:.2f}{std} ({entry['best_defense']}, {rank})")
    print(f"{len(board.entries)} entries -> {args.out}", file=sys.stderr)
