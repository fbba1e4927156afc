"""Victim training throughput on the embedded default, per backbone, per weighting and per defense.

    python bench/bench_training.py [--config config/config.yaml] [--batch-size 64] [--steps 4] [--threads 1] [--device cpu]
        [--tables backbones,weightings,defenses] [--defenses none,jpeg,cutout,mixup,ueraser-max,at]

The data is the config's first dataset (a ``shapes`` dataset with the config's image and crop
sizes, regenerated at a few batches' size in a scratch folder, with its dense tasks even where
the config turns them off) and the dense decoders have the config's ``victims.decoder_width``.

Two tables, both from the real training loop (``victims.train.fit``: on-device batch gather,
random crop + flip, forward, losses, the weighting's backward, clipping, Adam):

- **backbones** on the full ``shapes`` task set (6 binary + 3 multiclass + segmentation, depth,
  normals; smp encoder + three U-Net decoders) and on its classification tasks only (timm
  encoder, the CelebA-like setting), all with equal weighting;
- **weightings**: every registered strategy on the classification tasks with ``resnet10t``
  (the paper's weighting experiments are on CelebA, a classification dataset);
- **defenses**: each ``--defenses`` spec (:mod:`victims.defenses`) on the full task set with
  ``--defense-backbone`` and equal weighting: what adversarial training (10 PGD steps) or
  UEraser's search (``ueraser-max``: 5 scored draws per step) costs against plain training.
  Split transforms (``jpeg``, ``bdr``, ...) run once before the epoch and are not in its time;
  their one-off cost is the ``split s`` column. For defenses, ``outside`` includes the defense's
  own per-step work (augmentations, the UEraser search, the PGD attack).

``img/s`` is training images per second over one epoch of ``--steps`` batches (after one warm-up
step); ``outside`` is the share of that epoch not spent in the training step itself (batch
gather, augmentation, history, progress), measured as 1 - (time of the same steps run alone on
pre-built batches) / (epoch time). Defaults finish in about three minutes on two CPU cores.

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
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from mtlue.config import load_config
from mtlue.data import PreparedDataset, create_builder
from mtlue.data.store import SplitData
from mtlue.data.tasks import Task
from victims.augment import RandomCropFlip
from victims.batches import BatchSource, SplitArrays, epoch_batches
from victims.config import TrainConfig
from victims.defenses import DefendedSource, create_defense
from victims.device import resolve_device
from victims.model import MultiTaskModel
from victims.train import fit, seed_everything, stream_seed, train_step
from victims.weighting import create_weighting, list_weightings


@dataclass
class Row:
    view: str
    backbone: str
    weighting: str
    images_per_second: float = float("nan")
    seconds_per_step: float = float("nan")
    outside_share: float = float("nan")
    note: str = ""
    defense: str = "none"
    split_seconds: float = 0.0


def subset(split: SplitData, count: int, tasks: tuple[Task, ...]) -> SplitArrays:
    return SplitArrays(split.images[:count], {task.name: split.targets[task.name][:count] for task in tasks})


def measure(
    dataset: PreparedDataset, tasks: tuple[Task, ...], view: str, backbone: str, weighting_name: str, args: argparse.Namespace,
    defense_spec: str = "none",
) -> Row:
    row = Row(view, backbone, weighting_name, defense=defense_spec)
    defense = create_defense(defense_spec)
    device = resolve_device(args.device)
    count = args.batch_size * args.steps
    train = BatchSource(subset(dataset.split("train"), count, tasks), device, budget_bytes=2**31)
    test = BatchSource(subset(dataset.split("test"), args.batch_size, tasks), device, budget_bytes=2**31)
    seed_everything(0)
    try:
        weighting = create_weighting(weighting_name, len(tasks)).to(device)
    except ImportError as error:  # optional solver dependencies (cvxpy for Nash-MTL)
        row.note = f"unavailable: {error}"
        return row
    model = MultiTaskModel(tasks, backbone, image_size=dataset.crop_size, decoder_width=args.decoder_width).to(device)
    config = TrainConfig(epochs=1, batch_size=args.batch_size, eval_every=0, device=args.device, eval_batch_size=args.batch_size)

    # Pre-built augmented batches: the warm-up step and the compute-only timing use them.
    generator = torch.Generator().manual_seed(stream_seed(0, "bench"))
    augment = RandomCropFlip(tasks, dataset.crop_size)
    batches = [augment(*train.batch(indices), generator) for indices in epoch_batches(len(train), args.batch_size, generator)]
    warmup_optimizer = torch.optim.Adam([*model.parameters(), *weighting.parameters()])
    train_step(model, weighting, warmup_optimizer, *batches[0], clip_norm=config.clip_norm)

    if defense.split_transforms:
        started = time.perf_counter()
        DefendedSource(train, defense)
        row.split_seconds = time.perf_counter() - started
    epoch = fit(model, weighting, train, test, config, crop_size=dataset.crop_size, progress=False, defense=defense).history[0]["seconds"]

    optimizer = torch.optim.Adam([*model.parameters(), *weighting.parameters()])
    started = time.perf_counter()
    for images, targets in batches:
        train_step(model, weighting, optimizer, images, targets, clip_norm=config.clip_norm)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    compute = time.perf_counter() - started

    row.images_per_second = count / epoch
    row.seconds_per_step = epoch / args.steps
    row.outside_share = max(0.0, 1.0 - compute / epoch)
    return row


def print_table(title: str, rows: list[Row]) -> None:
    print(f"\n{title}")
    header = f"| {'tasks':<15} | {'backbone':<16} | {'weighting':<12} | {'img/s':>8} | {'s/step':>7} | {'outside':>7} |"
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for row in rows:
        if row.note:
            print(f"| {row.view:<15} | {row.backbone:<16} | {row.weighting:<12} | {row.note}")
            continue
        print(
            f"| {row.view:<15} | {row.backbone:<16} | {row.weighting:<12} | {row.images_per_second:8.1f} | "
            f"{row.seconds_per_step:7.3f} | {100 * row.outside_share:6.1f}% |"
        )


def print_defense_table(title: str, rows: list[Row]) -> None:
    print(f"\n{title}")
    header = f"| {'defense':<24} | {'img/s':>8} | {'s/step':>7} | {'vs none':>7} | {'outside':>7} | {'split s':>7} |"
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    baseline = next((row.images_per_second for row in rows if row.defense == "none"), float("nan"))
    for row in rows:
        print(
            f"| {row.defense:<24} | {row.images_per_second:8.1f} | {row.seconds_per_step:7.3f} | "
            f"{row.images_per_second / baseline:6.2f}x | {100 * row.outside_share:6.1f}% | {row.split_seconds:7.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml", help="workflow config whose first dataset and victims to measure")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4, help="batches per timed epoch")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (see the module docstring)")
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda, ...")
    parser.add_argument("--backbones", default="resnet18,resnet10t,test_resnet", help="comma-separated, dense-capable")
    parser.add_argument("--classification-backbones", default="resnet18,resnet10t,vit_tiny_patch4")
    parser.add_argument("--weighting-backbone", default="resnet10t")
    parser.add_argument("--weightings", default="all", help="comma-separated names, or all")
    parser.add_argument("--tables", default="backbones,weightings,defenses", help="comma-separated tables to measure")
    parser.add_argument(
        "--defenses", default="none,jpeg,cutout,mixup,cutmix,ueraser-lite,ueraser-max,at",
        help="comma-separated defense specs (`mtlue list defenses`; compositions with '+')",
    )
    parser.add_argument("--defense-backbone", default="resnet10t", help="dense-capable backbone of the defenses table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = load_config(args.config)
    name, entry = next(iter(config["datasets"].items()))
    source = entry.get("source", name)
    if source != "shapes":
        parser.error(f"{args.config}: the benchmark regenerates the embedded shapes data; its first dataset is {source!r}")
    # The dense tasks are always generated, whatever the config says: the "all" rows measure them.
    options = {key: value for key, value in entry["options"].items() if key not in ("train_size", "test_size", "dense_tasks")}
    args.decoder_width = config["victims"]["decoder_width"]

    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "shapes"
        size = max(256, args.batch_size * args.steps)
        create_builder("shapes", **options, dense_tasks=True, train_size=size, test_size=args.batch_size).prepare(root, Path(scratch) / "raw")
        dataset = PreparedDataset(root)
        everything = dataset.tasks
        classification = tuple(task for task in everything if task.kind.is_classification)
        full_view = f"all {len(everything)}"
        print(
            f"shapes {dataset.image_shape[1]}px (crop {dataset.crop_size}), batch {args.batch_size}, "
            f"{args.steps} steps/epoch, decoder width {args.decoder_width}, device {args.device}, {torch.get_num_threads()} thread(s), "
            f"torch {torch.__version__}, {platform.processor() or platform.machine()}"
        )
        tables = set(args.tables.split(","))
        if "backbones" in tables:
            backbone_rows = [measure(dataset, everything, full_view, name, "ew", args) for name in args.backbones.split(",")]
            backbone_rows += [
                measure(dataset, classification, "classification", name, "ew", args) for name in args.classification_backbones.split(",")
            ]
            print_table("Backbones (equal weighting)", backbone_rows)
        if "weightings" in tables:
            names = list_weightings() if args.weightings == "all" else args.weightings.split(",")
            weighting_rows = [measure(dataset, classification, "classification", args.weighting_backbone, name, args) for name in names]
            print_table(f"Weightings ({args.weighting_backbone}, {len(classification)} classification tasks)", weighting_rows)
        if "defenses" in tables:
            defense_rows = [
                measure(dataset, everything, full_view, args.defense_backbone, "ew", args, defense_spec=spec) for spec in args.defenses.split(",")
            ]
            print_defense_table(f"Defenses ({args.defense_backbone}, {full_view} tasks, equal weighting)", defense_rows)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
