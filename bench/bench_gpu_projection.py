"""Projected GPU-hours of the paper presets on one A100 / H100, from FLOP counts (not a GPU run).

    python bench/bench_gpu_projection.py [--presets celeba utkface chestxray14] [--utilisation 0.2]

For each preset (``config/<name>.yaml``) it counts, with ``torch.utils.flop_counter``, the
forward + backward FLOPs of one sample through each network the preset trains, at the
dataset's sizes, and multiplies by the work the preset asks for:

- **victims**: every victim of the preset's grid (``mtlue.config.victim_runs``: methods x
  backbones x weightings x defenses x seeds), ``epochs x train images`` training samples each;
  adversarial training (``at``) costs ``1 + 10`` passes per sample (10 PGD steps);
- **surrogate**: one such run of the surrogate network;
- **MTL-UE** (``mtlue-*``): at the epoch cap (``max_epochs``; the stop rule can only end it
  sooner), each sample through the generator (forward + backward) and the surrogate (forward +
  backward to the input), and for ``mtlue-em`` also ``surrogate_steps`` training steps;
- **TAP, SEP**: ``steps`` PGD passes of the training split through the surrogate (SEP's are
  averaged over its snapshots: ``epochs / every`` networks);
- **EM** is given per round (``model_steps`` batches of training and ``steps`` PGD passes of the
  split); its rounds end on an error rule and cannot be counted in advance, so it is left out of
  the total and listed apart.

The FLOPs become hours on a card at ``--utilisation`` of its dense bf16 peak (A100 312 TFLOP/s,
H100 SXM 989 TFLOP/s; NVIDIA's data sheets). The default 0.2 is an assumption for small-image
convolutional networks with batch-norm and per-task heads, which stay far from peak; it is not
measured here (no GPU). For scale, the script also measures this CPU's achieved FLOP/s on a
ResNet-18 training step and prints the CPU-hours the same FLOPs would take. Evaluation passes,
data loading and start-up are left out (a few per cent at these sizes). Dataset sizes are the
official splits the dataset modules document (``mtlue/data/<name>.py``). NYUv2 (dense tasks) is
not projected: its decoders' FLOPs depend on the decoder and are not counted here.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtlue.config import load_config, victim_runs  # noqa: E402
from mtlue.data.tasks import Task, TaskKind  # noqa: E402

#: dense bf16 peak of each card (TFLOP/s), NVIDIA's data sheets (A100 SXM, H100 SXM).
PEAK_TFLOPS = {"A100": 312.0, "H100": 989.0}
#: PGD steps of adversarial training (victims.defenses.at's default).
AT_STEPS = 10


@dataclass(frozen=True)
class DatasetSize:
    train_images: int
    channels: int
    stored: int
    crop: int
    classes: tuple[int, ...]


#: The official splits, as documented in mtlue/data/celeba.py (162,770 train, 70 px stored,
#: 64 px crops, 40 binary), utkface.py (80 % of 23,708, 140 / 128 px, age 9, race 5, gender 2)
#: and chestxray14.py (86,524 train, 1 x 256 / 224 px, 14 binary findings).
DATASETS = {
    "celeba": DatasetSize(162_770, 3, 70, 64, (2,) * 40),
    "utkface": DatasetSize(18_966, 3, 140, 128, (9, 5, 2)),
    "chestxray14": DatasetSize(86_524, 1, 256, 224, (2,) * 14),
}


def _tasks(size: DatasetSize) -> list[Task]:
    return [Task(f"t{i}", TaskKind.BINARY if c == 2 else TaskKind.MULTICLASS, c) for i, c in enumerate(size.classes)]


def _flops_per_sample(model: torch.nn.Module, images: torch.Tensor, *inputs, input_grad: bool = False) -> float:
    """Forward + backward FLOPs of one sample (batch of 2: batch norm needs more than one)."""
    model.train()
    if input_grad:
        images = images.clone().requires_grad_(True)
    with FlopCounterMode(display=False) as counter:
        output = model(images, *inputs)
        values = output.values() if isinstance(output, dict) else [output]
        sum(value.float().square().mean() for value in values).backward()
    return counter.get_total_flops() / images.shape[0]


def network_flops(backbone: str, size: DatasetSize) -> float:
    from victims.model import MultiTaskModel

    model = MultiTaskModel(_tasks(size), backbone, image_size=size.crop, in_chans=size.channels)
    return _flops_per_sample(model, torch.rand(2, size.channels, size.crop, size.crop))


def generator_flops(size: DatasetSize, width: float) -> float:
    from mtlue.methods.mtl_ue_generator import MTLUEGenerator

    tasks = _tasks(size)
    generator = MTLUEGenerator(tasks, (size.channels, size.stored, size.stored), 8 / 255, width_multiplier=width)
    targets = {task.name: torch.randint(0, task.num_classes, (2,)) for task in tasks}
    return _flops_per_sample(generator, torch.rand(2, size.channels, size.stored, size.stored), targets)


def cpu_flops_per_second(size: DatasetSize, flops: float, steps: int = 3, batch: int = 16) -> float:
    """Achieved FLOP/s of ResNet-18 training steps on this CPU (the torch default thread count)."""
    from victims.model import MultiTaskModel

    model = MultiTaskModel(_tasks(size), "resnet18", image_size=size.crop, in_chans=size.channels)
    optimizer = torch.optim.Adam(model.parameters())
    images = torch.rand(batch, size.channels, size.crop, size.crop)

    def step() -> None:
        optimizer.zero_grad()
        sum(output.float().square().mean() for output in model(images).values()).backward()
        optimizer.step()

    step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return flops * batch * steps / (time.perf_counter() - started)


def project(preset: str) -> tuple[dict[str, float], float, DatasetSize]:
    """PFLOPs of each part of ``preset`` and EM's PFLOPs per round."""
    config = load_config(ROOT / "config" / f"{preset}.yaml")
    (dataset,) = config["datasets"]
    size = DATASETS[dataset]
    n = size.train_images
    cache: dict[str, float] = {}

    def net(backbone: str) -> float:
        if backbone not in cache:
            cache[backbone] = network_flops(backbone, size)
        return cache[backbone]

    parts: dict[str, float] = {}
    victims = config["victims"]
    epochs = victims["train"]["epochs"]
    parts["victims"] = sum(
        epochs * n * net(run.backbone) * (1 + AT_STEPS if "at" in run.defense.split("+") else 1) for run in victim_runs(config)
    )
    surrogate = config["surrogate"]
    sur = net(surrogate["backbone"])
    parts["surrogate"] = surrogate["epochs"] * n * sur
    hyper = config["poisons"]["hyperparameters"]
    em_round = 0.0
    for method in config["poisons"]["methods"]:
        h = hyper.get(method, {})
        if method.startswith("mtlue-"):
            per_sample = generator_flops(size, h.get("generator_width", 1.0)) + sur
            if method == "mtlue-em":
                per_sample += h.get("surrogate_steps", 2) * net(h.get("surrogate_backbone", "resnet18"))
            parts[method] = h.get("max_epochs", 100) * n * per_sample
        elif method in ("tap", "sep"):
            members = surrogate["epochs"] // surrogate["every"] if method == "sep" else 1
            parts[method] = h.get("steps", 20) * n * sur * members
        elif method == "em":
            model = net(h.get("backbone", "resnet18"))
            em_round = (h.get("model_steps", 10) * h.get("batch_size", 512) + h.get("steps", 20) * n) * model
    return {k: v / 1e15 for k, v in parts.items()}, em_round / 1e15, size


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=list(DATASETS))
    parser.add_argument("--utilisation", type=float, default=0.2, help="achieved share of the bf16 peak (assumed)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    print(f"assumed utilisation {args.utilisation:.0%} of the dense bf16 peak: " + ", ".join(f"{k} {v:g} TFLOP/s" for k, v in PEAK_TFLOPS.items()))
    cpu_rate = None
    for preset in args.presets:
        parts, em_round, size = project(preset)
        total = sum(parts.values())
        if cpu_rate is None:
            cpu_rate = cpu_flops_per_second(size, network_flops("resnet18", size))
            print(f"this CPU, ResNet-18 training at {size.crop} px: {cpu_rate / 1e9:.1f} GFLOP/s achieved ({torch.get_num_threads()} threads)\n")
        hours = {card: total * 1e15 / (peak * 1e12 * args.utilisation) / 3600 for card, peak in PEAK_TFLOPS.items()}
        print(f"{preset}: {total:,.0f} PFLOP without EM -> A100 {hours['A100']:,.1f} h, H100 {hours['H100']:,.1f} h, "
              f"this CPU {total * 1e15 / cpu_rate / 3600:,.0f} h")
        for name, value in sorted(parts.items(), key=lambda item: -item[1]):
            print(f"  {name:12} {value:10,.1f} PFLOP  A100 {value * 1e15 / (PEAK_TFLOPS['A100'] * 1e12 * args.utilisation) / 3600:8.2f} h")
        if em_round:
            print(f"  {'em / round':12} {em_round:10,.1f} PFLOP  A100 {em_round * 1e15 / (PEAK_TFLOPS['A100'] * 1e12 * args.utilisation) / 3600:8.2f} h (rounds until 1 % error; not in the total)")
        print()


if __name__ == "__main__":
    main()
