"""The reference results of a preset, and the README table rendered from them.

A reference is what one run of a preset measured, copied from its
``results/<dataset>/tables/attack_defense.csv`` into ``tests/reference/<preset>.json``, with
the machine and the wall time. The README shows each reference as a table between the markers
``<!-- reference:<preset> -->`` and ``<!-- /reference:<preset> -->``; tests/test_reference.py
checks that the README's table is exactly this module's rendering of the committed reference
(so the README's numbers are a run's numbers) and, in its slow tests, that a new run of the
preset reproduces the reference within :func:`tolerance`.

After a change that moves a preset's results, run the preset and refresh both in one step:

    python tests/reference/refresh.py default RESULTS_DIR --wall-time 9m41s

(RESULTS_DIR: the run's working directory; ``--wall-time``: what ``time`` printed).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
REFERENCE_DIR = Path(__file__).resolve().parent
README = ROOT / "README.md"

#: Presets with a reference: their config file.
PRESETS = {"default": "config/config.yaml", "sanity": "config/sanity.yaml"}

#: Accuracy points a single-seed cell may move (its std is unavailable): the largest seed-to-seed
#: std of the default's three-seed cells, rounded up.
SINGLE_SEED_TOLERANCE = 8.0
#: The least tolerance of a cell, in accuracy points: below this, "reproduced" would demand
#: bit-identical arithmetic that a different CPU or BLAS does not give.
MIN_TOLERANCE = 1.0


def tolerance(row: dict[str, Any]) -> float:
    """How far a new run's mean over the same seeds may lie from the reference's ``row``.

    Twice the reference's seed std: the same margin the tie rule (mtlue/report/ties.py) uses to
    tell two methods apart, so a reproduction may move a method by what does not change a rank.
    """
    if row["std"] is None:
        return SINGLE_SEED_TOLERANCE
    return max(MIN_TOLERANCE, 2.0 * row["std"])


def read_results(results: Path) -> list[dict[str, Any]]:
    """The rows of every dataset's attack x defense table under ``results``."""
    rows: list[dict[str, Any]] = []
    tables = sorted(results.glob("results/*/tables/attack_defense.csv"))
    if not tables:
        raise SystemExit(f"no results/*/tables/attack_defense.csv under {results}: run the preset there first")
    for table in tables:
        fits = _train_fits(table.with_name("victims.csv"), results)
        with table.open(newline="") as handle:
            for record in csv.DictReader(handle):
                std = record["std"]
                rows.append({
                    "dataset": table.parts[-3],
                    "method": record["method"],
                    "backbone": record["backbone"],
                    "weighting": record["weighting"],
                    "defense": record["defense"],
                    "n_seeds": int(record["n_seeds"]),
                    "mean": round(float(record["mean"]), 2),
                    "std": round(float(std), 2) if std not in ("", None) else None,
                    "rank": record["rank"] or None,
                    "ties_with": record["ties_with"] or "",
                    "train_fit": fits.get((record["method"], record["backbone"], record["weighting"], record["defense"])),
                })
    return rows


def _train_fits(victims: Path, results: Path) -> dict[tuple[str, str, str, str], float]:
    """Mean over seeds of each victim's accuracy on its own training split (``train_fit``)."""
    seeds: dict[tuple[str, str, str, str], list[float]] = {}
    with victims.open(newline="") as handle:
        for record in csv.DictReader(handle):
            history = json.loads((results / record["path"]).read_text())["runs"][0]["history"]
            fit = history[-1].get("train_fit_aggregate", {}).get("classification_mean")
            if fit is not None:
                key = (record["method"], record["backbone"], record["weighting"], record["defense"])
                seeds.setdefault(key, []).append(fit)
    return {key: round(sum(values) / len(values), 2) for key, values in seeds.items()}


def load(preset: str) -> dict[str, Any]:
    return json.loads((REFERENCE_DIR / f"{preset}.json").read_text())


def _cell(row: dict[str, Any]) -> str:
    if row["std"] is None:
        return f"{row['mean']:.1f}"
    return f"{row['mean']:.1f} ± {row['std']:.1f}"


def _condition(row: dict[str, Any]) -> tuple[str, str, str]:
    return row["backbone"], row["weighting"], row["defense"]


def render(reference: dict[str, Any]) -> str:
    """The README's table: one row per method, one column per victim condition, mean ± std over
    seeds (% test accuracy, the mean over the tasks); for the first condition the drop from
    clean, the accuracy on the victim's own (poisoned) training split, the rank and the ties."""
    rows = reference["rows"]
    blocks = []
    for dataset in dict.fromkeys(row["dataset"] for row in rows):
        in_dataset = [row for row in rows if row["dataset"] == dataset]
        conditions = list(dict.fromkeys(_condition(row) for row in in_dataset))
        # The main condition is the one every method was run in; the robustness blocks follow.
        counts = {condition: sum(_condition(row) == condition for row in in_dataset) for condition in conditions}
        conditions.sort(key=lambda condition: -counts[condition])
        main = conditions[0]
        cells = {(row["method"], _condition(row)): row for row in in_dataset}
        methods = sorted(
            dict.fromkeys(row["method"] for row in in_dataset),
            key=lambda method: (method != "clean", cells[(method, main)]["mean"] if (method, main) in cells else math.inf),
        )
        seeds = {condition: max(row["n_seeds"] for row in in_dataset if _condition(row) == condition) for condition in conditions}
        header = ["method", *(f"{b} · {w} · {d} ({seeds[(b, w, d)]} seed{'s' if seeds[(b, w, d)] > 1 else ''})" for b, w, d in conditions)]
        header += [f"drop from clean ({main[0]} · {main[1]})", "train fit", "rank", "ties with"]
        lines = [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}"]
        clean = cells.get(("clean", main))
        for method in methods:
            values = [_cell(cells[(method, condition)]) if (method, condition) in cells else "" for condition in conditions]
            first = cells.get((method, main))
            if first is None:
                drop, fit, rank, ties = "", "", "", ""
            else:
                drop = "" if method == "clean" or clean is None else f"{clean['mean'] - first['mean']:.1f}"
                fit = "" if first.get("train_fit") is None else f"{first['train_fit']:.1f}"
                rank = "ref" if method == "clean" else (first["rank"] or "")
                ties = "" if method == "clean" else first["ties_with"].replace(" ", ", ")
            lines.append(f"| {' | '.join([method, *values, drop, fit, rank, ties])} |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def readme_block(preset: str, text: str | None = None) -> str:
    """The text between the preset's markers in the README."""
    text = README.read_text() if text is None else text
    return _block(preset, text).group(1).rstrip("\n")


def _block(preset: str, text: str) -> re.Match:
    match = re.search(rf"<!-- reference:{preset} -->\n(.*?)<!-- /reference:{preset} -->", text, re.S)
    if match is None:
        raise SystemExit(f"README.md has no <!-- reference:{preset} --> ... <!-- /reference:{preset} --> block")
    return match


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", choices=sorted(PRESETS))
    parser.add_argument("results", type=Path, help="the working directory the preset ran in")
    parser.add_argument("--wall-time", required=True, help="the run's wall time, as measured (e.g. 9m41s)")
    args = parser.parse_args(argv)
    reference = {
        "preset": args.preset,
        "config": PRESETS[args.preset],
        "wall_time": args.wall_time,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.processor() or platform.platform()}",
        "python": sys.version.split()[0],
        "rows": read_results(args.results),
    }
    if any(not math.isfinite(row["mean"]) for row in reference["rows"]):
        raise SystemExit("a mean is not finite: the run did not finish cleanly")
    text = README.read_text()
    block = _block(args.preset, text)
    _write_atomically(REFERENCE_DIR / f"{args.preset}.json", json.dumps(reference, indent=1) + "\n")
    _write_atomically(README, text[: block.start(1)] + render(reference) + "\n" + text[block.end(1) :])
    print(f"tests/reference/{args.preset}.json and README.md refreshed from {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
