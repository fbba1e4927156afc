"""Time one training step under every registered task-weighting strategy.

    python bench/bench_weighting.py [--model resnet18|cnn] [--batch 64] [--tasks 4] [--steps 5]

The victim is MTL-UE's hard-parameter-sharing network: encoder -> global pooling ->
Linear(feat, 256) -> ELU (the shared features) -> one Linear(256, 2) head per task, trained with
Adam and global-norm clipping at 5 as the release does. A step is forward, the strategy's
``backward``, clipping and ``optimizer.step()``; the table gives the median and the minimum over
the timed steps, and the ratio of minima to ``ew`` (one ordinary backward pass): on a shared
machine the minimum is the estimate least disturbed by other processes. The device is CUDA when
available.
Run it in the project's environment (``pip install -e .``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from importlib.metadata import version
from typing import cast

import timm
import torch
from torch import Tensor, nn

from victims.weighting import Weighting, create_weighting, list_weightings

FEATURE_DIM = 256


class MultiTaskVictim(nn.Module):
    def __init__(self, encoder: nn.Module, encoder_dim: int, num_tasks: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.neck = nn.Sequential(nn.Linear(encoder_dim, FEATURE_DIM), nn.ELU())
        self.heads = nn.ModuleList(nn.Linear(FEATURE_DIM, 2) for _ in range(num_tasks))

    def shared_parameters(self) -> list[nn.Parameter]:
        return [*self.encoder.parameters(), *self.neck.parameters()]

    def forward(self, images: Tensor) -> tuple[Tensor, list[Tensor]]:
        features = self.neck(self.encoder(images))
        return features, [head(features) for head in self.heads]


def small_cnn() -> tuple[nn.Module, int]:
    layers: list[nn.Module] = []
    channels = 3
    for width in (32, 64, 128):
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        layers.append(nn.MaxPool2d(2))
        channels = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers), channels


def build_encoder(name: str) -> tuple[nn.Module, int]:
    if name == "cnn":
        return small_cnn()
    encoder = timm.create_model(name, pretrained=False, num_classes=0)
    return encoder, cast(int, encoder.num_features)


def time_strategy(
    weighting: Weighting, args: argparse.Namespace, device: torch.device
) -> list[float]:
    torch.manual_seed(0)
    encoder, encoder_dim = build_encoder(args.model)
    model = MultiTaskVictim(encoder, encoder_dim, args.tasks).to(device)
    weighting = weighting.to(device)
    optimizer = torch.optim.Adam([*model.parameters(), *weighting.parameters()], lr=1e-3)
    images = torch.randn(args.batch, 3, args.image_size, args.image_size, device=device)
    labels = torch.randint(0, 2, (args.batch, args.tasks), device=device)
    shared = model.shared_parameters()

    def step() -> None:
        features, logits = model(images)
        losses = torch.stack(
            [nn.functional.cross_entropy(out, labels[:, k]) for k, out in enumerate(logits)]
        )
        optimizer.zero_grad()
        weighting.backward(losses, shared, features)
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()

    durations = []
    for index in range(args.warmup + args.steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if index >= args.warmup:
            durations.append(time.perf_counter() - start)
    return durations


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18", help="'cnn' or a timm model name")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per strategy")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per strategy")
    parser.add_argument("--strategies", nargs="+", default=None, help="default: all registered")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    # ew first: it is the baseline of the ratio column.
    names = ["ew", *[name for name in args.strategies or list_weightings() if name != "ew"]]

    print(
        f"model={args.model} batch={args.batch} tasks={args.tasks} image={args.image_size} "
        f"steps={args.steps} device={device} threads={torch.get_num_threads()} "
        f"torch={torch.__version__} torchjd={version('torchjd')}"
    )
    # One untimed pass first: the process's first steps pay for allocator and kernel warm-up,
    # which would otherwise be charged to whichever strategy comes first.
    time_strategy(create_weighting("ew", args.tasks), args, device)
    print(f"{'strategy':<12} {'family':<21} {'median ms':>10} {'min ms':>8} {'x ew':>6}")
    baseline = None
    for name in names:
        try:
            weighting = create_weighting(name, args.tasks)
        except ImportError as error:
            print(f"{name:<12} {'':<21} {'n/a':>10} {'':>8} {'':>6}  ({error})")
            continue
        durations = [1000 * seconds for seconds in time_strategy(weighting, args, device)]
        fastest = min(durations)
        baseline = fastest if name == "ew" else baseline
        assert baseline is not None  # ew runs first
        print(
            f"{name:<12} {weighting.family:<21} {statistics.median(durations):>10.1f} "
            f"{fastest:>8.1f} {fastest / baseline:>6.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
