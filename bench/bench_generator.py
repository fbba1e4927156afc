"""The MTL-UE generator against the release's, side by side: CPU seconds of a training step.

    python bench/bench_generator.py [--batch-sizes 16 64] [--repeats 3] [--threads 1] [--size 70] [--tasks 40]

The release's generator is rebuilt here from its published source, github:yuyi-sd/MTL-UE
(commit 6fd32d5), ``models/ResNet.py``: ``BasicBlock`` (lines 7-29), ``ResNetDAE.__init__`` for
``stem_end_block=9``, ``imagenet=False``, ``sample_wise=True`` (lines 2676-2743: the 3x3 stem,
layer1, layer2, one ``nn.Embedding(2, 16 * S * S)`` per attribute, ``decoder_p``) and its
``forward`` for binary labels without partial protection (lines 2859-2899: the embeddings
reshaped and concatenated before z, the decoder, the clamp). Its layer3, layer4 and linear
layer, which that forward never calls, are left out: they cost no time. The defaults are
CelebA's: 40 binary attributes at the stored 70 px (``emb_p_spatial_dim=35``, the release's
default), so both generators have the same parameters (3,086,147).

Both run the same step, a forward pass of a random batch and its labels and a backward pass of
the mean squared delta, in interleaved repeats on ``--threads`` CPU threads; the table gives
the median CPU seconds per step and the project/release ratio. The project's generator
computes the decoder's first layer with the class embeddings factored out
(:meth:`mtlue.methods.mtl_ue_generator.MTLUEGenerator.first_layer`). This is a benchmark, not
a test: tests/test_mtl_ue.py checks that the factored layer equals the concatenated one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mtlue.data.tasks import Task, TaskKind  # noqa: E402
from mtlue.methods.mtl_ue_generator import MTLUEGenerator  # noqa: E402


class ReleaseBasicBlock(nn.Module):
    """models/ResNet.py:7-29 of the release."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        return F.relu(out)


class ReleaseGenerator(nn.Module):
    """The used part of the release's ``ResNetDAE`` (small stem, z and label embeddings)."""

    def __init__(self, attributes: int, spatial: int, epsilon: float, in_channels: int = 3) -> None:
        super().__init__()
        self.attributes, self.spatial, self.epsilon, self.emb_p_dim = attributes, spatial, epsilon, 16
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.layer1 = nn.Sequential(ReleaseBasicBlock(64, 64), ReleaseBasicBlock(64, 64))
        self.layer2 = nn.Sequential(ReleaseBasicBlock(64, 128, 2), ReleaseBasicBlock(128, 128))
        for i in range(attributes):
            setattr(self, f"emb_p_{i}", nn.Embedding(2, self.emb_p_dim * spatial * spatial))
        self.decoder_p = nn.Sequential(
            nn.Sequential(
                nn.ConvTranspose2d(128 + self.emb_p_dim * attributes, 64, 4, stride=2, padding=1),
                nn.ConvTranspose2d(64, 64, 3, stride=1, padding=1), nn.InstanceNorm2d(64), nn.ReLU(),
            ),
            nn.Sequential(nn.ConvTranspose2d(64, 32, 3, stride=1, padding=1), nn.InstanceNorm2d(32), nn.ReLU()),
            nn.Sequential(nn.ConvTranspose2d(32, in_channels, 3, stride=1, padding=1)),
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z = self.layer2(self.layer1(F.relu(self.bn1(self.conv1(x)))))
        embedding = torch.cat(
            [getattr(self, f"emb_p_{i}")(y[:, i]).reshape(z.shape[0], self.emb_p_dim, z.shape[2], z.shape[3]) for i in range(self.attributes)],
            dim=1,
        )
        return self.decoder_p(torch.cat([embedding, z], dim=1)).clamp(-self.epsilon, self.epsilon)


def _cpu_seconds(step, repeats: int) -> float:
    started = time.process_time()
    for _ in range(repeats):
        step()
    return (time.process_time() - started) / repeats


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds, each timing one step of both")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--size", type=int, default=70, help="stored image side (CelebA: 70)")
    parser.add_argument("--tasks", type=int, default=40, help="binary attributes (CelebA: 40)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    epsilon = 8 / 255
    tasks = [Task(f"attribute{i}", TaskKind.BINARY, 2) for i in range(args.tasks)]
    project = MTLUEGenerator(tasks, (3, args.size, args.size), epsilon, stem="small")
    release = ReleaseGenerator(args.tasks, project.latent[0], epsilon)
    counts = {name: sum(p.numel() for p in model.parameters()) for name, model in (("project", project), ("release", release))}
    print(f"parameters: project {counts['project']:,}, release {counts['release']:,} (the parts its forward uses)")
    print(f"{args.tasks} binary tasks, {args.size} px, {args.threads} thread(s), median CPU seconds per training step of {args.repeats}\n")
    print(f"{'batch':>5} {'release':>9} {'project':>9} {'project/release':>16}")
    for batch in args.batch_sizes:
        images = torch.rand(batch, 3, args.size, args.size)
        labels = torch.randint(0, 2, (batch, args.tasks))
        targets = {task.name: labels[:, i] for i, task in enumerate(tasks)}

        def release_step(images: torch.Tensor = images, labels: torch.Tensor = labels) -> None:
            release.zero_grad(set_to_none=True)
            release(images, labels).square().mean().backward()

        def project_step(images: torch.Tensor = images, targets: dict = targets) -> None:
            project.zero_grad(set_to_none=True)
            project(images, targets).square().mean().backward()

        release_step(), project_step()  # warm-up: allocator and oneDNN primitives
        times: dict[str, list[float]] = {"release": [], "project": []}
        for _ in range(args.repeats):
            times["release"].append(_cpu_seconds(release_step, 1))
            times["project"].append(_cpu_seconds(project_step, 1))
        ratios = [p / r for p, r in zip(times["project"], times["release"], strict=True)]
        print(
            f"{batch:>5} {statistics.median(times['release']):9.3f} {statistics.median(times['project']):9.3f} "
            f"{statistics.median(ratios):16.2f}"
        )


if __name__ == "__main__":
    main()
