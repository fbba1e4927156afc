"""Test-wide settings: nothing reaches the network, nothing writes outside tmp folders."""

from __future__ import annotations

import os

# Set before any test imports timm, huggingface_hub or mlflow.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

import pytest  # noqa: E402

#: Tiny ``shapes`` scenes for the methods' tests: 16 px images, 12 px victim crops.
TINY_SHAPES = dict(train_size=32, test_size=16, image_size=16, crop_size=12)


class Killed(Exception):
    """Stands for the job being killed right after an epoch's checkpoint was written."""


def kill_after(epoch: int):
    """A training callback that raises Killed once ``epoch`` has been checkpointed."""

    def callback(name: str, record: dict) -> None:
        if record["epoch"] == epoch:
            raise Killed

    return callback


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The tensors in tests are tiny: on 2 shared cores, two torch threads run them ~25x slower
    than one (synchronisation, and stalls whenever another process holds a core)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _prepare_shapes(root, **options):
    from mtlue.data import PreparedDataset, create_builder

    create_builder("shapes", **{**TINY_SHAPES, **options}).prepare(root / "shapes", root / "raw")
    return PreparedDataset(root / "shapes")


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory):
    """32 training scenes with the 9 classification tasks (6 binary, 3 multiclass)."""
    return _prepare_shapes(tmp_path_factory.mktemp("tiny_shapes"), dense_tasks=False)


@pytest.fixture(scope="session")
def tiny_dense_shapes(tmp_path_factory):
    """The same scenes with segmentation, depth and normals as well: every task kind."""
    return _prepare_shapes(tmp_path_factory.mktemp("tiny_dense_shapes"))


@pytest.fixture(scope="session")
def tiny_victim_results(tiny_shapes, tmp_path_factory):
    """A results folder of real tiny victims on ``tiny_shapes``: methods clean and lsp (real
    stores from ``mtlue poison``), seeds 0 and 1, test_resnet, one epoch; defense ``none`` and,
    as a second attacker choice, ``bdr`` (bit-depth reduction)."""
    from mtlue.cli import main

    results = tmp_path_factory.mktemp("victim_results")
    data = str(tiny_shapes.root)
    for method in ("clean", "lsp"):
        store = results / "shapes" / "poisons" / method
        assert main(["poison", "--data", data, "--method", method, "--out", str(store), "--num-threads", "1"]) == 0
        for defense, flags in (("none", []), ("bdr", ["--defense", "bdr"])):
            for seed in (0, 1):
                out = results / "shapes" / "victims" / method / "test_resnet" / "ew" / defense / f"seed{seed}" / "metrics.json"
                argv = [
                    "victim", "--data", data, "--poison", str(store), "--backbone", "test_resnet", "--weighting", "ew",
                    "--seed", str(seed), "--epochs", "1", "--batch-size", "16", "--num-threads", "1", "--no-progress",
                    "--out", str(out), *flags,
                ]
                assert main(argv) == 0
    return results


@pytest.fixture
def cut_off_results(tiny_victim_results, tmp_path):
    """A copy of ``tiny_victim_results`` whose ``lsp`` card records a generation that a cap of 3
    rounds cut off before its stop rule held, as the card of such an EM run does (the victims
    and the deltas are the real ones; only the card's convergence record is changed)."""
    import json
    import shutil

    from mtlue.poisons import Convergence

    results = tmp_path / "results"
    shutil.copytree(tiny_victim_results, results)
    path = results / "shapes" / "poisons" / "lsp" / "card.json"
    card = json.loads(path.read_text())
    card["convergence"] = Convergence(
        rule="surrogate training error <= 0.01", converged=False, stopped_by="cap", unit="round", steps=3, cap=3,
        cap_hyperparameter="max_rounds", final={"train_error": 0.4}, target={"train_error": 0.01},
        history=tuple({"round": index, "train_error": 0.4} for index in (1, 2, 3)),
    ).to_json()
    path.write_text(json.dumps(card))
    return results
