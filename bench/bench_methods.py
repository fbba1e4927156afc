"""Cost of every UE method on the embedded default: seconds and perturbations per second.

    python bench/bench_methods.py [--config config/config.yaml] [--train-size N] [--methods clean,lsp,...]
        [--set METHOD.KEY=VALUE ...] [--set surrogate.KEY=VALUE ...] [--threads 1] [--device cpu]

The data is the config's first dataset (a ``shapes`` dataset with the config's image and crop
sizes and seed), regenerated with ``--train-size`` training samples (default: the config's) and
at most as many test samples in a scratch folder. Every method of ``--methods`` (default: the
config's ``poisons.methods``) runs with the config's hyperparameters, plus the ``--set``
overrides, through the workflow's own call, ``method.generate`` (budget check included), with
seed 0 and the config's epsilon. The resulting config is validated as the workflow's is, so a
misspelt method, hyperparameter or surrogate key is refused before anything runs.

When a selected method needs a clean surrogate (TAP its final model, SEP its snapshots; EM and
MTL-UE + EM train their own alongside), it is trained once, first, exactly as the workflow's
surrogate stage does (``train_surrogate`` with the config's ``surrogate`` backbone, epochs,
batch size, snapshot interval and seed and the victims' ``decoder_width``; its time includes
the final test evaluation), and its time is reported apart from the methods'.

Table **methods**, one row per method:

- ``needs``: what the method requires besides the data (``Requirement``);
- ``seconds``: wall-clock time of ``method.generate`` (surrogate training excluded);
- ``perturb/s``: training samples / ``seconds``;
- ``surrogate s``: the shared surrogate's training time, for the methods that read it (add it
  to ``seconds`` for the cost of protecting a dataset from scratch).

Table **MTL-UE vs per-sample PGD**, for every ``mtlue-X`` whose base method ``X`` also ran
(``mtlue-em`` / ``em``, ``mtlue-tap`` / ``tap``, ``mtlue-sep`` / ``sep``) on the same data:

- ``generator s``: the MTL-UE generator's training, the sum of its per-epoch times
  (``method.history``: generator steps, MTL-UE + EM's surrogate steps, the stop rule's check;
  the final export of the deltas is left out), and ``epochs``: how many ran of ``max_epochs``;
- ``PGD s``: the base method's ``seconds`` (per-sample PGD; for ``em`` the whole min-min run,
  its surrogate's steps included), and ``ran``: its PGD steps per sample, or for ``em`` the
  rounds of the alternation and what ended it (read from the ``EMRun`` that
  ``em.error_minimizing_noise`` returns);
- ``ratio``: ``generator s`` / ``PGD s`` (below 1: the generator is cheaper).

The defaults are the embedded default's whole poison stage (config/config.yaml: every method,
CPU-sized); a paper preset's (``--config config/celeba.yaml``) takes hours on a CPU. A quick
look, under a minute on two shared CPU cores::

    python bench/bench_methods.py --train-size 32 --methods clean,lsp,ar,tap,mtlue-tap \\
        --set surrogate.epochs=2 --set mtlue-tap.max_epochs=2 --set mtlue-tap.batch_size=16

``--threads`` defaults to 1: on a shared two-core machine, two OpenMP threads stall whenever
another process holds a core (we measured 10-50x slowdowns), which would measure the neighbours
rather than the code.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
import yaml

from mtlue.config import ConfigError, load_config, validate_config
from mtlue.data import DatasetError, PreparedDataset, create_builder
from mtlue.methods import GenerationContext, Requirement, UEMethod, create_method, em
from mtlue.methods.mtl_ue import MTLUEMethod
from mtlue.methods.surrogate import surrogate_files, train_surrogate
from mtlue.methods.tap import PGDHyperparameters
from victims.config import TrainConfig, VictimConfig
from victims.device import DeviceError, resolve_device

NEEDS_SURROGATE = (Requirement.SURROGATE, Requirement.SURROGATE_CHECKPOINTS)


@dataclass
class Row:
    method: UEMethod
    seconds: float
    samples: int
    surrogate_seconds: float | None
    #: For ``em``: the rounds of the min-min alternation and what ended it.
    em_run: em.EMRun | None = None


@contextmanager
def recording_em_runs():
    """Keep every ``EMRun`` that ``EMMethod.generate`` computes (it returns only the deltas)."""
    runs: list[em.EMRun] = []
    original = em.error_minimizing_noise

    def recorded(*args, **kwargs):
        runs.append(original(*args, **kwargs))
        return runs[-1]

    em.error_minimizing_noise = recorded
    try:
        yield runs
    finally:
        em.error_minimizing_noise = original


def parse_override(text: str) -> tuple[str, str, object]:
    name_key, separator, value = text.partition("=")
    name, dot, key = name_key.rpartition(".")
    if not separator or not dot or not name or not key:
        raise argparse.ArgumentTypeError(f"expected METHOD.KEY=VALUE or surrogate.KEY=VALUE, got {text!r}")
    return name, key, yaml.safe_load(value)


def resolve_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict:
    """The config with ``--methods`` and ``--set`` applied, validated as the workflow validates it."""
    try:
        config = load_config(args.config)
    except (OSError, ConfigError) as error:
        parser.error(f"--config {args.config}: {error}")
    poisons = config["poisons"]
    if args.methods is not None:
        methods = [name.strip() for name in args.methods.split(",") if name.strip()]
        if not methods:
            parser.error("--methods: give at least one method name, e.g. --methods clean,lsp")
        repeated = sorted({name for name in methods if methods.count(name) > 1})
        if repeated:
            parser.error(f"--methods names {', '.join(repeated)} more than once")
        poisons["methods"] = methods
        poisons["hyperparameters"] = {name: values for name, values in poisons["hyperparameters"].items() if name in methods}
    for name, key, value in args.overrides:
        if name == "surrogate":
            config["surrogate"][key] = value
        elif name in poisons["methods"]:
            poisons["hyperparameters"].setdefault(name, {})[key] = value
        else:
            parser.error(f"--set {name}.{key}: {name!r} is neither 'surrogate' nor one of the methods run ({', '.join(poisons['methods'])})")
    try:
        return validate_config(config)
    except ConfigError as error:
        parser.error(str(error))


def print_table(header: list[str], align: str, rows: list[list[str]]) -> None:
    """A Markdown table; ``align`` has one letter per column, ``l`` (text) or ``r`` (numbers)."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell.ljust(w) if a == "l" else cell.rjust(w) for cell, w, a in zip(cells, widths, align)) + " |"

    print(line(header))
    print("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    for row in rows:
        print(line(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml", help="workflow config whose first dataset and methods to measure")
    parser.add_argument("--train-size", type=int, help="training samples to perturb (default: the config's)")
    parser.add_argument("--methods", help="comma-separated method names (default: the config's poisons.methods)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], type=parse_override, metavar="NAME.KEY=VALUE",
        help="override a method hyperparameter (mtlue-tap.max_epochs=2) or a surrogate key (surrogate.epochs=2); VALUE is YAML; repeatable",
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (see the module docstring)")
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda, ...")
    args = parser.parse_args()
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    try:
        resolve_device(args.device)
    except DeviceError as error:
        parser.error(f"--device: {error}")
    config = resolve_config(parser, args)
    name, entry = next(iter(config["datasets"].items()))
    source = entry.get("source", name)
    if source != "shapes":
        parser.error(f"{args.config}: the benchmark regenerates the embedded shapes data; its first dataset is {source!r}")
    options = dict(entry.get("options", {}))
    train_size = options.get("train_size", 2048) if args.train_size is None else args.train_size
    if train_size < 2:
        parser.error(f"--train-size must be at least 2 (batch norm trains on no fewer), got {train_size}")
    options.update(train_size=train_size, test_size=min(options.get("test_size", 512), train_size))
    torch.set_num_threads(args.threads)
    methods = [create_method(method, **config["poisons"]["hyperparameters"].get(method, {})) for method in config["poisons"]["methods"]]
    surrogate_config = config["surrogate"]

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "shapes"
        try:
            create_builder("shapes", **options).prepare(root, Path(scratch) / "raw")
        except DatasetError as error:
            parser.error(f"datasets.{name}: {error}")
        dataset = PreparedDataset(root)
        samples = len(dataset.split("train"))
        print(
            f"shapes {dataset.image_shape[1]}px (crop {dataset.crop_size}), {samples} training samples, "
            f"epsilon {config['poisons']['epsilon']}/255, device {args.device}, {torch.get_num_threads()} thread(s), "
            f"torch {torch.__version__}, {platform.processor() or platform.machine()}"
        )

        final, snapshots, surrogate_seconds = None, (), None
        if any(method.requires in NEEDS_SURROGATE for method in methods):
            clock = time.perf_counter()
            train_surrogate(
                dataset, Path(scratch) / "surrogate",
                victim=VictimConfig(backbone=surrogate_config["backbone"], decoder_width=config["victims"]["decoder_width"]),
                config=TrainConfig(
                    epochs=surrogate_config["epochs"], batch_size=surrogate_config["batch_size"], seed=surrogate_config["seed"],
                    eval_every=0, device=args.device, num_threads=args.threads,
                ),
                every=surrogate_config["every"], progress=False,
            )
            surrogate_seconds = time.perf_counter() - clock
            final, snapshots = surrogate_files(Path(scratch) / "surrogate")
            print(
                f"surrogate: {surrogate_config['backbone']}, {surrogate_config['epochs']} epoch(s) of batch "
                f"{surrogate_config['batch_size']}, {len(snapshots)} snapshot(s) every {surrogate_config['every']}, "
                f"decoder width {config['victims']['decoder_width']}: {surrogate_seconds:.1f} s"
            )
        context = GenerationContext(
            seed=0, epsilon=config["poisons"]["epsilon"], device=args.device, surrogate=final, surrogate_checkpoints=snapshots,
        )

        rows: dict[str, Row] = {}
        for method in methods:
            with recording_em_runs() as em_runs:
                clock = time.perf_counter()
                method.generate(dataset, context)
                seconds = time.perf_counter() - clock
            needs = surrogate_seconds if method.requires in NEEDS_SURROGATE else None
            rows[method.name] = Row(method, seconds, samples, needs, em_runs[-1] if em_runs else None)
            print(f"  {method.name}: {seconds:.1f} s", flush=True)

    print("\nMethods")
    print_table(
        ["method", "needs", "seconds", "perturb/s", "surrogate s"], "llrrr",
        [
            [
                row.method.name, row.method.requires.value, f"{row.seconds:.2f}", f"{row.samples / row.seconds:.1f}",
                "-" if row.surrogate_seconds is None else f"{row.surrogate_seconds:.2f}",
            ]
            for row in rows.values()
        ],
    )

    pairs = [
        (row, rows[name.removeprefix("mtlue-")]) for name, row in rows.items()
        if isinstance(row.method, MTLUEMethod) and name.removeprefix("mtlue-") in rows
        and isinstance(rows[name.removeprefix("mtlue-")].method.hyperparameters, PGDHyperparameters)
    ]
    if pairs:
        print("\nMTL-UE generator vs per-sample PGD (same data)")
        table = []
        for mtl, base in pairs:
            generator_seconds = sum(record["seconds"] for record in mtl.method.history)
            if base.em_run is not None:
                ran = f"{len(base.em_run.rounds)} round(s), {base.em_run.stopped_by}"
            else:
                ran = f"{base.method.hyperparameters.steps} PGD steps"
            table.append([
                mtl.method.name, f"{generator_seconds:.2f}", f"{len(mtl.method.history)}/{mtl.method.hyperparameters.max_epochs}",
                base.method.name, f"{base.seconds:.2f}", ran, f"{generator_seconds / base.seconds:.2f}x",
            ])
        print_table(["MTL-UE", "generator s", "epochs", "per-sample", "PGD s", "ran", "ratio"], "lrrlrlr", table)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
