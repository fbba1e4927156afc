"""The ``photodigits`` dataset, and task views of any dataset (``select_tasks``)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from mtlue.config import ConfigError, validate_config
from mtlue.data import DatasetError, PreparedDataset, create_builder
from mtlue.data.photodigits import PHOTODIGITS_TASKS

SMALL = dict(image_size=16, crop_size=14, renders=2, test_digits=100, seed=3)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("photodigits") / "pd"
    create_builder("photodigits", **SMALL).prepare(root, root.parent / "raw")
    return PreparedDataset(root)


def _digit_indices(split) -> np.ndarray:
    return np.array([int(item.split("-")[0].removeprefix("digit")) for item in split.ids])


def test_layout_sizes_and_labels_follow_the_digits(prepared):
    assert prepared.image_shape == (3, 16, 16) and prepared.crop_size == 14
    assert [task.name for task in prepared.tasks] == [task.name for task in PHOTODIGITS_TASKS]
    train, test = prepared.split("train"), prepared.split("test")
    assert (len(train), len(test)) == (2 * (1797 - 100), 100)
    classes = load_digits().target
    for split in (train, test):
        digit = classes[_digit_indices(split)]
        assert np.array_equal(split.targets["digit"], digit)
        assert np.array_equal(split.targets["even"], digit % 2 == 0)
        assert np.array_equal(split.targets["large"], digit >= 5)
        assert np.array_equal(split.targets["loop"], np.isin(digit, (0, 6, 8, 9)))
        assert np.array_equal(split.targets["prime"], np.isin(digit, (2, 3, 5, 7)))
    prepared.verify()


def test_no_test_digit_is_ever_seen_in_training(prepared):
    train, test = _digit_indices(prepared.split("train")), _digit_indices(prepared.split("test"))
    assert not set(train) & set(test)
    # Every training digit is drawn `renders` times, each time differently.
    assert np.all(np.bincount(train)[np.unique(train)] == 2)
    images = prepared.split("train").images
    first, second = (np.flatnonzero(train == train[0]))
    assert not np.array_equal(images[first], images[second])


def test_the_digit_is_drawn_over_a_photograph(prepared):
    images = prepared.split("test").images.astype(np.float32)
    # Natural backgrounds: every image has texture, and colours vary between images.
    assert images.std(axis=(1, 2, 3)).min() > 5
    assert images.mean(axis=(2, 3)).std(axis=0).min() > 10


def test_same_seed_same_bytes_and_the_test_split_ignores_renders(tmp_path):
    create_builder("photodigits", **SMALL).prepare(tmp_path / "a", tmp_path / "raw")
    create_builder("photodigits", **SMALL).prepare(tmp_path / "b", tmp_path / "raw")
    create_builder("photodigits", **{**SMALL, "renders": 1}).prepare(tmp_path / "c", tmp_path / "raw")
    create_builder("photodigits", **{**SMALL, "seed": 4}).prepare(tmp_path / "d", tmp_path / "raw")
    a, b, c, d = (PreparedDataset(tmp_path / name) for name in "abcd")
    assert a.manifest["splits"] == b.manifest["splits"]
    assert np.array_equal(a.split("test").images, c.split("test").images)
    assert not np.array_equal(a.split("test").images, d.split("test").images)


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("renders", 0, "renders"), ("test_digits", 1500, "test_digits"), ("crop_size", 40, "crop_size")],
)
def test_bad_options_are_refused(option, value, message):
    with pytest.raises(DatasetError, match=message):
        create_builder("photodigits", **{option: value})


def test_a_task_view_keeps_only_the_selected_tasks(tmp_path, prepared):
    create_builder("photodigits", select_tasks=["loop", "digit"], **SMALL).prepare(tmp_path / "view", tmp_path / "raw")
    view = PreparedDataset(tmp_path / "view")
    # The dataset's order, whatever the selection's.
    assert [task.name for task in view.tasks] == ["digit", "loop"]
    assert sorted(path.name for path in (tmp_path / "view" / "train" / "targets").iterdir()) == ["digit.npy", "loop.npy"]
    assert view.manifest["options"]["select_tasks"] == ["loop", "digit"]
    view.verify()
    full = prepared.split("train")
    assert np.array_equal(view.split("train").images, full.images)
    assert np.array_equal(view.split("train").targets["loop"], full.targets["loop"])


def test_a_task_view_works_for_every_builder(tmp_path):
    create_builder("shapes", select_tasks=["count"], train_size=8, test_size=4, dense_tasks=False).prepare(
        tmp_path / "shapes", tmp_path / "raw"
    )
    assert [task.name for task in PreparedDataset(tmp_path / "shapes").tasks] == ["count"]


def test_an_unknown_task_is_refused_with_the_dataset_tasks_and_leaves_nothing(tmp_path):
    with pytest.raises(DatasetError, match=r"no task\(s\) 'smile'; its tasks: digit, even, large, loop, prime"):
        create_builder("photodigits", select_tasks=["smile"], **SMALL).prepare(tmp_path / "bad", tmp_path / "raw")
    assert not (tmp_path / "bad").exists()


def test_the_config_takes_a_task_view():
    config = validate_config({"datasets": {"digits1": {"source": "photodigits", "tasks": ["digit"]}}})
    assert config["datasets"]["digits1"]["tasks"] == ["digit"]
    with pytest.raises(ConfigError, match="tasks"):
        validate_config({"datasets": {"digits1": {"source": "photodigits", "tasks": []}}})
