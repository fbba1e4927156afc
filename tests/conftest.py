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



def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for servers the tests start)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_shapes(tmp_path_factory):
    """32 training scenes with the 9 classification tasks (6 binary, 3 multiclass)."""
    return _prepare_shapes(tmp_path_factory.mktemp("tiny_shapes"), dense_tasks=False)


@pytest.fixture(scope="session")
def tiny_dense_shapes(tmp_path_factory):
    """The same scenes with segmentation, depth and normals as well: every task kind."""
    return _prepare_shapes(tmp_path_factory.mktemp("tiny_dense_shapes"))


@pytest.fixture(scope="session")
def surrogate(tiny_shapes, tmp_path_factory):
    """(final model, snapshots after epochs 1 and 2) of a 2-epoch clean run on ``tiny_shapes``."""
    from mtlue.methods.surrogate import surrogate_files, train_surrogate
    from victims.config import TrainConfig, VictimConfig

    out = tmp_path_factory.mktemp("surrogate") / "surrogate"
    recipe = TrainConfig(epochs=2, batch_size=16, device="cpu", eval_every=0, num_threads=1)
    train_surrogate(tiny_shapes, out, victim=VictimConfig(backbone="test_resnet"), config=recipe, every=1, progress=False)
    return surrogate_files(out)


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


def cut_off_card(results, method, dataset="shapes"):
    """Change the card of ``results/dataset/poisons/method`` to record a generation that a cap of
    3 rounds cut off before its stop rule held, as the card of such an EM run does (the victims
    and the deltas stay the real ones; only the card's convergence record is changed)."""
    import json

    from mtlue.poisons import Convergence

    path = results / dataset / "poisons" / method / "card.json"
    card = json.loads(path.read_text())
    card["convergence"] = Convergence(
        rule="surrogate training error <= 0.01", converged=False, stopped_by="cap", unit="round", steps=3, cap=3,
        cap_hyperparameter="max_rounds", final={"train_error": 0.4}, target={"train_error": 0.01},
        history=tuple({"round": index, "train_error": 0.4} for index in (1, 2, 3)),
    ).to_json()
    path.write_text(json.dumps(card))


@pytest.fixture
def cut_off_results(tiny_victim_results, tmp_path):
    """A copy of ``tiny_victim_results`` whose ``lsp`` card records a generation cut off by its
    cap (:func:`cut_off_card`)."""
    import shutil

    results = tmp_path / "results"
    shutil.copytree(tiny_victim_results, results)
    cut_off_card(results, "lsp")
    return results


#: Headline scores of ``seeded_victim_results``: method -> defense -> one score per seed 0, 1, 2.
#: Chosen so that the tie rule has something to decide (mean ± sample std at the best defense):
#: strong 70.5 ± 0.5 (bdr), twin the same seeds in another order, close 71.5 ± 1 (ties strong),
#: middle 73 ± 0.5 (separated from strong, ties close), flip 70.17 ± 2.02 (bdr by its mean,
#: although seed 1 is better without a defense), weak 79 ± 1 (none; separated from all).
SEEDED_SCORES = {
    "clean": {"none": (80.0, 81.0, 82.0), "bdr": (74.0, 75.0, 76.0)},
    "strong": {"none": (60.0, 61.0, 62.0), "bdr": (70.0, 70.5, 71.0)},
    "twin": {"none": (62.0, 61.0, 60.0), "bdr": (71.0, 70.5, 70.0)},
    "close": {"none": (50.0, 51.0, 52.0), "bdr": (70.5, 71.5, 72.5)},
    "middle": {"none": (55.0, 56.0, 57.0), "bdr": (72.5, 73.0, 73.5)},
    "flip": {"none": (60.0, 80.0, 70.0), "bdr": (72.0, 68.0, 70.5)},
    "weak": {"none": (78.0, 79.0, 80.0), "bdr": (73.0, 74.0, 75.0)},
}


@pytest.fixture(scope="session")
def seeded_victim_results(tiny_victim_results, tmp_path_factory):
    """A results folder of several methods x defenses none, bdr x seeds 0, 1, 2 whose headline
    scores are ``SEEDED_SCORES``: a real victim's metrics.json and poison card (lsp, from
    ``tiny_victim_results``) copied to each path, with the seed, the defense, the images it
    trained on and every task's accuracy set to the score (so the aggregate, delta-m and the
    per-task tables agree with it)."""
    import json

    template_root = tiny_victim_results / "shapes"
    from victims.defenses import defense_class

    template = json.loads((template_root / "victims" / "lsp" / "test_resnet" / "ew" / "none" / "seed0" / "metrics.json").read_text())
    card = json.loads((template_root / "poisons" / "lsp" / "card.json").read_text())
    results = tmp_path_factory.mktemp("seeded_results")
    for method, per_defense in SEEDED_SCORES.items():
        store = results / "shapes" / "poisons" / method
        store.mkdir(parents=True)
        (store / "card.json").write_text(json.dumps({**card, "method": method}, indent=2))
        for defense, scores in per_defense.items():
            for seed, score in enumerate(scores):
                data = json.loads(json.dumps(template))
                data["seed"] = seed
                components = [] if defense == "none" else [{"name": defense, "stage": defense_class(defense).stage, "hyperparameters": {}}]
                data["defense"] = {"components": components, "name": defense, "options": {}}
                data["dataset"]["train_images"] = f"{method}:{card['sha256']}"
                data["metrics"] = {task: {metric: score for metric in values} for task, values in data["metrics"].items()}
                data["aggregate"] = {key: score for key in data["aggregate"]}
                out = results / "shapes" / "victims" / method / "test_resnet" / "ew" / defense / f"seed{seed}" / "metrics.json"
                out.parent.mkdir(parents=True)
                out.write_text(json.dumps(data))
    return results


@pytest.fixture
def seeded_cut_off_results(seeded_victim_results, tmp_path):
    """A copy of ``seeded_victim_results`` whose ``close`` card records a generation cut off by
    its cap (:func:`cut_off_card`): the † mark next to shared ranks and mean ± std."""
    import shutil

    results = tmp_path / "seeded_cut_off"
    shutil.copytree(seeded_victim_results, results)
    cut_off_card(results, "close")
    return results
