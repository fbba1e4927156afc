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
